"""The node core: never a flush, a diff only once flows and model are both known."""

from __future__ import annotations

import dataclasses

import msgspec
from os_ken.lib.packet import dhcp as okdhcp

from routeflow.rflib import protocol as p
from routeflow.tenant import wire
from routeflow.tenant.model import Change, Cloud, Kind
from routeflow.tenant.nodecore import DhcpReply, InstallFlows, NodeCore, NodeView, SendToServer

from .cloudfix import VM1, VM2, cloud
from .test_dhcp import request


def toy_compile(model: Cloud, view: NodeView) -> frozenset[str]:
    """A stand-in compiler: one flow per network, one per local VIF, one per remote port."""
    flows = {f"net:{n.segmentation_id}" for n in model.networks.values()}
    for port in model.ports.values():
        if port.id in view.bindings:
            flows.add(f"local:{port.id}:{view.bindings[port.id]}")
        elif port.binding_host_id and port.binding_host_id != view.name:
            flows.add(f"remote:{port.id}:{view.tunnel_ofport}")
    return frozenset(flows)


def core() -> NodeCore[str]:
    return NodeCore(name="c1", tunnel_ip="198.51.100.1", compile=toy_compile)


def full(model: Cloud) -> p.TenantChanges:
    return wire.full_state(model)


def test_nothing_is_written_until_both_model_and_switch_flows_are_known() -> None:
    c = core()
    assert c.vifs_read({"port-1": 1}, 100) == []
    assert c.switch_connected(frozenset({"junk"})) == []  # no model yet: junk stays
    (install,) = c.changes(full(cloud()))
    assert isinstance(install, InstallFlows)
    assert install.delete == {"junk"}
    assert install.add == {"net:100", "local:port-1:1", "remote:port-2:100"}


def test_a_restart_with_the_same_flows_writes_nothing() -> None:
    first = core()
    first.vifs_read({"port-1": 1}, 100)
    first.changes(full(cloud()))
    first.switch_connected(frozenset())
    on_switch = first.installed
    assert on_switch
    again = core()  # the agent restarted: same VIFs, same model, flows read back
    again.vifs_read({"port-1": 1}, 100)
    assert again.switch_connected(on_switch) == []
    assert again.changes(full(cloud())) == []
    assert again.counters.installs == 0


def test_deltas_install_diffs_and_losing_the_server_keeps_flows() -> None:
    c = core()
    c.vifs_read({"port-1": 1}, 100)
    c.switch_connected(frozenset())
    c.changes(full(cloud()))
    assert c.server_lost() == []
    (install,) = c.changes(
        p.TenantChanges(
            revision=6, changes=wire.encode([Change(kind=Kind.PORT, id=VM2.id, revision=6)])
        )
    )
    assert isinstance(install, InstallFlows)
    assert install == InstallFlows(add=frozenset(), delete=frozenset({"remote:port-2:100"}))
    # a stale delta (revision already held) changes nothing
    stale = Change(kind=Kind.PORT, id=VM2.id, revision=6, obj=VM2)
    assert c.changes(p.TenantChanges(revision=6, changes=wire.encode([stale]))) == []


def test_a_delta_before_any_full_state_and_garbage_are_ignored() -> None:
    c = core()
    c.switch_connected(frozenset({"keep"}))
    delta = wire.delta(Change(kind=Kind.PORT, id=VM1.id, revision=3, obj=VM1))
    assert c.changes(delta) == []
    assert c.changes(p.TenantChanges(revision=1, changes=b"\xc1", full=True)) == []
    assert c.counters.bad_messages == 1 and c.installed == {"keep"}


def test_bindings_are_reported_on_connect_on_change_and_after_full_state() -> None:
    c = core()
    c.vifs_read({"port-9": 3, "port-x": -1}, 100)  # ofport -1: OVS could not open it
    assert c.server_connected() == [SendToServer(p.NodeBinding(port_id="port-9"))]
    # the model binds port-1 here but it is not plugged: report it unplugged
    out = c.changes(full(cloud()))
    assert SendToServer(p.NodeBinding(port_id="port-1", plugged=False)) in out
    out = c.vifs_read({"port-1": 1}, 100)
    assert out == [
        SendToServer(p.NodeBinding(port_id="port-1", plugged=True)),
        SendToServer(p.NodeBinding(port_id="port-9", plugged=False)),
    ]


def test_dhcp_only_for_plugged_ports_within_the_rate_limit() -> None:
    c = dataclasses.replace(core(), dhcp_burst=2.0, dhcp_rate=1.0)
    c.changes(full(cloud()))
    frame = request(VM1.mac_address, okdhcp.DHCP_DISCOVER)
    assert c.dhcp_request(1, frame, now=0.0) == []  # not plugged yet
    c.vifs_read({"port-1": 1}, 100)
    answers = [c.dhcp_request(1, frame, now=0.0) for _ in range(3)]
    assert [len(a) for a in answers] == [1, 1, 0]
    assert isinstance(answers[0][0], DhcpReply) and answers[0][0].ofport == 1
    assert len(c.dhcp_request(1, frame, now=1.5)) == 1
    assert c.dhcp_request(2, frame, now=9.0) == []  # the wrong port
    assert c.counters.dhcp_limited == 1


def test_a_bgp_gateway_announces_what_it_serves_after_its_flows_and_follows_moves() -> None:
    from routeflow.tenant import nat, sample
    from routeflow.tenant.nodecore import Announce

    uplink = nat.Uplink("172.31.10.2", "172.31.10.1")
    c: NodeCore[str] = NodeCore(
        name="g1", tunnel_ip="198.51.100.9", compile=toy_compile, gateway=True,
        external_ofport=101, uplink=uplink,
    )  # fmt: skip
    c.switch_connected(frozenset())
    model = sample.cloud_external()
    actions = c.changes(full(model))
    assert isinstance(actions[0], InstallFlows)
    assert actions[-1] == Announce(
        frozenset({f"{sample.ROUTER_GATEWAY_IP}/32", f"{sample.FLOATING_IP[1]}/32"}),
        uplink.ip,
    )
    # The one next hop is asked for on the external port at once.
    (ask,) = c.arp_tick(0.0)
    assert isinstance(ask, DhcpReply) and ask.ofport == 101
    # The floating IP released: withdrawn; nothing else changed: nothing announced.
    fid = sample.FLOATING_IP[0]
    gone = Change(kind=Kind.FLOATINGIP, id=fid, revision=model.revision + 1)
    msg = p.TenantChanges(revision=gone.revision, changes=wire.encode([gone]))
    assert c.changes(msg)[-1] == Announce(frozenset({f"{sample.ROUTER_GATEWAY_IP}/32"}), uplink.ip)
    # The node marked down by the server: it withdraws everything.
    node = msgspec.structs.replace(model.nodes["g1"], up=False)
    change = Change(kind=Kind.NODE, id="g1", revision=gone.revision + 1, obj=node)
    msg = p.TenantChanges(revision=change.revision, changes=wire.encode([change]))
    assert c.changes(msg)[-1] == Announce(frozenset(), uplink.ip)

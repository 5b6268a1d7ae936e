"""The tenant compiler's flows, judged by running packets through them in ofsim.

The sample cloud (tenant/sample.py): tenants A and B with the same address space,
a router each, VMs on three nodes. A packet is followed across nodes: what leaves a
node's tunnel port (with its tun_id and tun_dst) is fed to the receiving node.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import ofsim
from routeflow.tenant import pipeline as p
from routeflow.tenant import sample
from routeflow.tenant.compiler import NodeContext, compile_node, diff, flows_per_port
from routeflow.tenant.model import AddressPair, Change, Cloud, HostRoute, Kind

CLOUD = sample.cloud()
BINDINGS = {n: sample.bindings(n) for n in sample.NODES}
IP = {name: ip for name, (_, _, ip) in sample.VMS.items()}
NODE = {name: node for name, (_, node, _) in sample.VMS.items()}
MAC = {port.id: port.mac_address for port in CLOUD.ports.values()}
TUN = p.TUNNEL_OFPORT


def ctx(node: str, cloud: Cloud = CLOUD) -> NodeContext:
    return NodeContext(node, BINDINGS[node])


def pipe(node: str, cloud: Cloud = CLOUD) -> ofsim.Pipeline:
    return ofsim.Pipeline(compile_node(cloud, ctx(node, cloud)))


def ofport(vm: str) -> int:
    return BINDINGS[NODE[vm]][vm]


def ip_packet(src: str, dst_ip: str, eth_dst: str, ttl: int = 64, **extra: object) -> dict:
    return {
        "in_port": ofport(src),
        "eth_src": MAC[src],
        "eth_dst": eth_dst,
        "eth_type": 0x0800,
        "ip_proto": 1,
        "icmpv4_type": 8,
        "ipv4_src": IP[src],
        "ipv4_dst": dst_ip,
        "nw_ttl": ttl,
        **extra,
    }


def arp_request(src: str, target: str) -> dict:
    return {
        "in_port": ofport(src),
        "eth_src": MAC[src],
        "eth_dst": "ff:ff:ff:ff:ff:ff",
        "eth_type": 0x0806,
        "arp_op": 1,
        "arp_spa": IP[src],
        "arp_tpa": target,
        "arp_sha": MAC[src],
        "arp_tha": "00:00:00:00:00:00",
    }


def deliver(src_node: str, packet: dict) -> list[tuple[str, int, dict]]:
    """(node, port, headers) of every copy, following tunnels to the receiving node."""
    out = []
    for o in pipe(src_node).run(packet).outputs:
        if o.port != TUN:
            out.append((src_node, o.port, o.packet))
            continue
        tunnel = dict(o.tunnel)
        node = next(n for n, ip in sample.NODES.items() if ip == tunnel["tun_ipv4_dst"])
        received = {**o.packet, "in_port": TUN, "tunnel_id": tunnel["tunnel_id"]}
        for o2 in pipe(node).run(received).outputs:
            assert o2.port != TUN, "a frame from the tunnel went back into it"
            out.append((node, o2.port, o2.packet))
    return out


# --- L2 ---------------------------------------------------------------------------------------


def test_same_network_same_node_is_delivered_locally():
    result = pipe("n1").run(ip_packet("a1", IP["a4"], MAC["a4"]))
    assert [(o.port, o.tunnel) for o in result.outputs] == [(ofport("a4"), ())]
    assert result.outputs[0].packet["nw_ttl"] == 64


def test_same_network_across_nodes_leaves_the_tunnel_with_vni_and_remote_endpoint():
    packet = ip_packet("a1", IP["a2"], MAC["a2"])
    (out,) = pipe("n1").run(packet).outputs
    assert out.port == TUN
    assert dict(out.tunnel) == {"tunnel_id": 101, "tun_ipv4_dst": sample.NODES["n2"]}
    assert deliver("n1", packet) == [("n2", ofport("a2"), out.packet)]
    assert out.packet["nw_ttl"] == 64 and out.packet["eth_dst"] == MAC["a2"]


def test_broadcast_stays_on_the_node_among_the_network_s_ports():
    packet = {**ip_packet("a1", "10.0.1.255", "ff:ff:ff:ff:ff:ff")}
    result = pipe("n1").run(packet)
    assert result.ports == {ofport("a4")}  # not b1 (other tenant), not the tunnel


# --- ARP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["a2", "a4", "ri-A1"])
def test_arp_for_a_known_address_is_answered_locally_and_never_tunneled(target):
    ip = IP.get(target, "10.0.1.1")
    result = pipe("n1").run(arp_request("a1", ip))
    (out,) = result.outcomes
    assert out.kind == "output" and out.port == ofport("a1") and not out.tunnel
    reply = out.packet
    assert reply["arp_op"] == 2
    assert (reply["arp_sha"], reply["arp_spa"]) == (MAC[target], ip)
    assert (reply["arp_tha"], reply["arp_tpa"]) == (MAC["a1"], IP["a1"])
    assert (reply["eth_src"], reply["eth_dst"]) == (MAC[target], MAC["a1"])


def test_arp_for_an_unknown_address_floods_local_ports_only():
    result = pipe("n1").run(arp_request("a1", "10.0.1.77"))
    assert result.ports == {ofport("a4")}


def test_arp_probe_for_its_own_address_is_not_answered():
    probe = {**arp_request("a1", IP["a1"]), "arp_spa": "0.0.0.0"}
    assert pipe("n1").run(probe).ports == {ofport("a4")}


# --- L3 ---------------------------------------------------------------------------------------


def test_routed_packet_crosses_nodes_with_one_ttl_less_and_rewritten_macs():
    packet = ip_packet("a1", IP["a3"], MAC["ri-A1"])
    (out,) = pipe("n1").run(packet).outputs
    assert out.port == TUN
    assert dict(out.tunnel) == {"tunnel_id": 102, "tun_ipv4_dst": sample.NODES["n2"]}
    (where,) = deliver("n1", packet)
    node, port, headers = where
    assert (node, port) == ("n2", ofport("a3"))
    assert headers["nw_ttl"] == 63
    assert (headers["eth_src"], headers["eth_dst"]) == (MAC["ri-A2"], MAC["a3"])
    assert (headers["ipv4_src"], headers["ipv4_dst"]) == (IP["a1"], IP["a3"])


def test_the_reply_is_routed_on_its_own_source_node():
    packet = ip_packet("a3", IP["a1"], MAC["ri-A2"])
    ((node, port, headers),) = deliver("n2", packet)
    assert (node, port, headers["nw_ttl"]) == ("n1", ofport("a1"), 63)
    assert headers["eth_src"] == MAC["ri-A1"]


def test_an_expired_ttl_is_not_forwarded():
    result = pipe("n1").run(ip_packet("a1", IP["a3"], MAC["ri-A1"], ttl=1))
    assert not result.outputs and result.punted


def test_router_interface_answers_echo_requests():
    for target in ("10.0.1.1", "10.0.2.1"):
        (out,) = pipe("n1").run(ip_packet("a1", target, MAC["ri-A1"])).outcomes
        assert out.port == ofport("a1")
        reply = out.packet
        assert reply["icmpv4_type"] == 0
        assert (reply["ipv4_src"], reply["ipv4_dst"]) == (target, IP["a1"])
        assert (reply["eth_src"], reply["eth_dst"]) == (MAC["ri-A1"], MAC["a1"])


def test_extra_route_sends_to_its_next_hop_port():
    router = msgspec.structs.replace(
        CLOUD.routers["RA"], routes=(HostRoute("192.168.7.0/24", IP["a3"]),), revision_number=1
    )
    cloud = msgspec.structs.replace(CLOUD, routers={**CLOUD.routers, "RA": router})
    result = ofsim.Pipeline(compile_node(cloud, ctx("n1"))).run(
        ip_packet("a1", "192.168.7.9", MAC["ri-A1"])
    )
    (out,) = result.outputs
    assert out.packet["eth_dst"] == MAC["a3"] and out.packet["nw_ttl"] == 63
    assert dict(out.tunnel)["tunnel_id"] == 102


# --- isolation --------------------------------------------------------------------------------


def test_overlapping_tenants_never_cross():
    # b1 has a1's address in tenant B; nothing of tenant A is reachable from it.
    n1 = pipe("n1")
    assert n1.run(ip_packet("b1", IP["a4"], MAC["a4"])).dropped
    assert n1.run(ip_packet("b1", IP["a2"], MAC["a2"])).dropped
    assert n1.run(arp_request("b1", IP["a4"])).dropped  # flooded to no B port
    assert deliver("n1", ip_packet("b1", IP["a3"], MAC["ri-B1"])) == []  # 10.0.2.13: none in B
    # Within tenant B, routing works and lands on B's port with B's VNI.
    ((node, port, _),) = deliver("n1", ip_packet("b1", IP["b2"], MAC["ri-B1"]))
    assert (node, port) == ("n3", ofport("b2"))
    # A frame from the tunnel with A's VNI never reaches b1 (same IP, other tenant).
    from_tunnel = {**ip_packet("a2", IP["a1"], MAC["b1"]), "in_port": TUN, "tunnel_id": 101}
    assert pipe("n1").run(from_tunnel).dropped


# --- services and port security ---------------------------------------------------------------


def test_dhcp_goes_to_the_controller_with_the_port_s_cookie():
    discover = {
        "in_port": ofport("a1"),
        "eth_src": MAC["a1"],
        "eth_dst": "ff:ff:ff:ff:ff:ff",
        "eth_type": 0x0800,
        "ip_proto": 17,
        "ipv4_src": "0.0.0.0",
        "ipv4_dst": "255.255.255.255",
        "udp_src": 68,
        "udp_dst": 67,
        "nw_ttl": 64,
    }
    result = pipe("n1").run(discover)
    assert [o.kind for o in result.outcomes] == ["controller"]
    last = result.flows[-1]
    assert last is not None and last.table == p.DHCP
    assert p.cookie_kind(last.cookie) == (p.Kind.PORT, CLOUD.ports["a1"].key)


def _rebound(vm: str, host: str) -> Cloud:
    port = msgspec.structs.replace(CLOUD.ports[vm], binding_host_id=host)
    return CLOUD.apply(Change(kind=Kind.PORT, id=vm, revision=CLOUD.revision + 1, obj=port))


def test_a_vif_plugged_before_the_server_records_its_binding_already_gets_dhcp():
    """The binding comes back from the server only after the agent reports the VIF:
    the VM's first DHCP request must not be lost waiting for it."""
    node = NODE["a1"]
    discover = {
        "in_port": ofport("a1"),
        "eth_src": MAC["a1"],
        "eth_dst": "ff:ff:ff:ff:ff:ff",
        "eth_type": 0x0800,
        "ip_proto": 17,
        "ipv4_src": "0.0.0.0",
        "ipv4_dst": "255.255.255.255",
        "udp_src": 68,
        "udp_dst": 67,
        "nw_ttl": 64,
    }
    unbound = ofsim.Pipeline(compile_node(_rebound("a1", ""), ctx(node)))
    assert [o.kind for o in unbound.run(discover).outcomes] == ["controller"]
    # bound to another node (a stale plug here): this node does not serve it
    other = next(n for n in sorted(sample.NODES) if n != node)
    elsewhere = ofsim.Pipeline(compile_node(_rebound("a1", other), ctx(node)))
    assert elsewhere.run(discover).dropped


@pytest.mark.parametrize(
    "change",
    [
        {"ipv4_src": "10.0.1.99"},
        {"eth_src": "fa:16:3e:99:99:99"},
        {"ipv4_src": IP["a4"]},
    ],
)
def test_spoofed_source_is_dropped(change):
    assert pipe("n1").run({**ip_packet("a1", IP["a4"], MAC["a4"]), **change}).dropped


def test_spoofed_arp_is_dropped():
    assert pipe("n1").run({**arp_request("a1", IP["a4"]), "arp_spa": IP["a4"]}).dropped


def test_allowed_address_pair_and_disabled_port_security_pass():
    port = CLOUD.ports["a1"]
    pair = msgspec.structs.replace(
        port, allowed_address_pairs=(AddressPair("10.0.1.200"),), revision_number=1
    )
    open_ = msgspec.structs.replace(
        port, port_security_enabled=False, security_groups=(), revision_number=1
    )
    a4 = CLOUD.ports["a4"]
    open4 = msgspec.structs.replace(
        a4, port_security_enabled=False, security_groups=(), revision_number=1
    )
    for changed, src, dst in (
        (pair, "10.0.1.200", a4),  # a pair is also a member of a1's groups
        (open_, "10.0.1.99", open4),  # no port security on either side
    ):
        ports = {**CLOUD.ports, "a1": changed, "a4": dst}
        cloud = msgspec.structs.replace(CLOUD, ports=ports)
        result = ofsim.Pipeline(compile_node(cloud, ctx("n1"))).run(
            {**ip_packet("a1", IP["a4"], MAC["a4"]), "ipv4_src": src}
        )
        assert result.ports == {ofport("a4")}
    # a1 without port security still meets a4's groups: 10.0.1.99 is no member.
    cloud = msgspec.structs.replace(CLOUD, ports={**CLOUD.ports, "a1": open_})
    result = ofsim.Pipeline(compile_node(cloud, ctx("n1"))).run(
        {**ip_packet("a1", IP["a4"], MAC["a4"]), "ipv4_src": "10.0.1.99"}
    )
    assert result.dropped


# --- which flows a node gets ------------------------------------------------------------------


def _vnis(flows) -> set[int]:
    return {v for f in flows for name, v, _ in f.match if name == "metadata"}


def test_a_node_gets_only_its_networks_and_those_routed_from_them():
    assert _vnis(compile_node(CLOUD, ctx("n3"))) == {201, 202}  # b2 on B2; B1 via RB
    assert _vnis(compile_node(CLOUD, ctx("n2"))) == {101, 102}
    assert compile_node(CLOUD, NodeContext("n4", {})) == frozenset()
    # n3 has no port of B1: it routes to B1 (host lookup, dispatch) but has no B1 L2 or ARP.
    n3 = compile_node(CLOUD, ctx("n3"))
    assert all(
        f.table in (p.HOST, p.ROUTING) for f in n3 if ("metadata", 201, 2**64 - 1) in f.match
    )


def test_unbound_and_unknown_ports_are_not_delivered_to():
    unbound = msgspec.structs.replace(CLOUD.ports["a2"], binding_host_id="", revision_number=1)
    cloud = msgspec.structs.replace(CLOUD, ports={**CLOUD.ports, "a2": unbound})
    result = ofsim.Pipeline(compile_node(cloud, ctx("n1"))).run(
        ip_packet("a1", IP["a2"], MAC["a2"])
    )
    assert result.dropped
    # A binding OVSDB reports for a port the cloud does not know gets nothing.
    extra = NodeContext("n1", {**BINDINGS["n1"], "nope": 9})
    assert compile_node(CLOUD, extra) == compile_node(CLOUD, ctx("n1"))


def test_flows_per_port_on_its_own_node_and_on_others(capsys):
    counts = flows_per_port(CLOUD, {n: ctx(n) for n in sample.NODES})
    with capsys.disabled():
        print("\nflows per port (own node / others):")
        for port, per in sorted(counts.items()):
            own = per.get(NODE[port], 0)
            others = {n: c for n, c in per.items() if n != NODE[port]}
            print(f"  {port}: {own} on {NODE[port]}, {others}")
    for port, per in counts.items():
        # 14 of its own, plus one per IPv4 rule of its groups (no port ranges here).
        rules = [
            r
            for g in CLOUD.ports[port].security_groups
            for r in CLOUD.security_groups[g].rules
            if r.ethertype == "IPv4"
        ]
        assert per[NODE[port]] <= 14 + len(rules)
        assert all(c <= 4 for n, c in per.items() if n != NODE[port])
    assert "n3" not in counts["a1"]  # no tenant A on n3


# --- order independence and increments --------------------------------------------------------

OBJECTS = sample.objects()


@settings(max_examples=40)
@given(st.permutations(OBJECTS))
def test_compiled_flows_do_not_depend_on_the_order_objects_arrive(order):
    cloud = Cloud().apply_all(sample.changes(order))
    for node in sample.NODES:
        assert compile_node(cloud, ctx(node)) == compile_node(CLOUD, ctx(node))


@settings(max_examples=25)
@given(st.permutations(OBJECTS), st.sampled_from(sorted(sample.NODES)))
def test_increments_as_set_differences_rebuild_every_intermediate_state(order, node):
    changes = sample.changes(order)
    # Delete a few objects at the end too, so removals are covered.
    last = len(changes)
    changes += [
        msgspec.structs.replace(c, revision=last + 1 + i, obj=None)
        for i, c in enumerate(changes[:: max(1, len(changes) // 4)])
    ]
    switch: dict[tuple, ofsim.Flow] = {}
    cloud, old = Cloud(), frozenset()
    for change in changes:
        cloud = cloud.apply(change)
        new = compile_node(cloud, ctx(node))
        removed, added = diff(old, new)
        for f in removed:
            del switch[(f.table, f.priority, f.match)]
        for f in added:
            switch[(f.table, f.priority, f.match)] = f
        assert frozenset(switch.values()) == new
        ofsim.Pipeline(new)  # never two flows with one identity
        old = new


def test_every_pair_of_vms_in_a_tenant_reaches_each_other_and_never_the_other_tenant():
    gateway = {"A1": "ri-A1", "A2": "ri-A2", "B1": "ri-B1", "B2": "ri-B2"}
    for src, dst in itertools.permutations(sample.VMS, 2):
        net_s, net_d = sample.VMS[src][0], sample.VMS[dst][0]
        eth_dst = MAC[dst] if net_s == net_d else MAC[gateway[net_s]]
        got = deliver(NODE[src], ip_packet(src, IP[dst], eth_dst))
        same_tenant = net_s[0] == net_d[0]
        if same_tenant:
            assert [(n, port) for n, port, _ in got] == [(NODE[dst], ofport(dst))], (src, dst)
        else:
            assert all((n, port) != (NODE[dst], ofport(dst)) for n, port, _ in got), (src, dst)


def test_port_delete_removes_its_flows_everywhere():
    gone = CLOUD.apply(Change(kind=Kind.PORT, id="a2", revision=CLOUD.revision + 1))
    cookie = p.cookie_of(p.Kind.PORT, CLOUD.ports["a2"].key)
    for node in sample.NODES:
        before = {f.cookie for f in compile_node(CLOUD, ctx(node))}
        assert cookie in before or node == "n3"
        assert cookie not in {f.cookie for f in compile_node(gone, ctx(node))}


@settings(max_examples=20)
@given(st.permutations(OBJECTS))
def test_a_full_state_rebuilds_the_snapshot_it_came_from(order):
    cloud = Cloud().apply_all(sample.changes(order))
    again = Cloud.from_changes(cloud.revision, cloud.changes())
    assert again == cloud
    # what the old shortcut did: apply keeps one change per revision, so it is no inverse
    assert Cloud().apply_all(cloud.changes()) != cloud

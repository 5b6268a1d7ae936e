"""Virtual links: a switch link mirrored between the VM ports of its ends, in the vs.

The core is driven as rfproxy's shell would drive it (rfserver's mappings, the switches'
port descriptions and port status), and the virtual switch's flows it writes are run
through the pipeline simulator: what VM A sends out of its link interface reaches VM B.
"""

from __future__ import annotations

import pytest

from routeflow.proxy import openflow as of
from routeflow.proxy import specsim
from routeflow.proxy.actions import Port, WriteFlows
from routeflow.proxy.core import ProxyCore
from routeflow.proxy.vlinks import VirtualLink, VirtualLinks, parse_virtual_links
from routeflow.rflib import ofsim
from routeflow.rflib import protocol as p
from routeflow.rflib.mapping import MAPPING_ETHERTYPE

VS = of.DEFAULT_VS_DPID
A, B = 0x5, 0x6
A_PORT, B_PORT = 2, 3  # the link A:2 - B:3
VS_A, VS_B, VS_HOST = 11, 12, 10
LINK = VirtualLink((A, A_PORT), (B, B_PORT))


def _map(dp: int, port: int, vs_port: int) -> p.DataPlaneMap:
    mac = f"02:00:00:00:{dp:02x}:{port:02x}"
    return p.DataPlaneMap(ct_id=1, dp_id=dp, dp_port=port, vs_id=VS, vs_port=vs_port, hwaddress=mac)


def synced() -> ProxyCore:
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS, virtual_links=[LINK])
    for dp_id in (A, B, VS):
        c.switch_connected(dp_id, object())
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    c.server_message(p.Resync(phase="begin"))
    c.server_message(p.Resync(phase="end"))
    return c


def vs_writes(actions) -> list[tuple[bool, of.FlowSpec]]:
    return [
        (a.delete, f)
        for a in actions
        if isinstance(a, WriteFlows) and a.dp_id == VS
        for f in a.flows
        if f.priority == of.PRIO_VLINK
    ]


def mirrored(c: ProxyCore) -> ProxyCore:
    c.server_message(_map(A, 1, VS_HOST))  # a host port: never mirrored
    c.server_message(_map(A, A_PORT, VS_A))
    c.server_message(_map(B, B_PORT, VS_B))
    return c


def test_a_link_is_mirrored_once_both_ends_are_mapped():
    c = synced()
    assert vs_writes(c.server_message(_map(A, A_PORT, VS_A))) == []
    written = vs_writes(c.server_message(_map(B, B_PORT, VS_B)))
    assert written == [(False, f) for f in of.virtual_link_flows(VS_A, VS_B)]
    vswitch = ofsim.Pipeline(
        [specsim.sim_flow(s) for s in of.virtual_switch_flows()]
        + [specsim.sim_flow(f) for _d, f in written]
    )
    hello = {
        "in_port": VS_A,
        "eth_type": 0x0800,
        "ip_proto": 89,
        "ipv4_dst": "224.0.0.5",
        "nw_ttl": 1,
    }
    (out,) = vswitch.run(hello).outcomes
    assert (out.kind, out.port) == (ofsim.OUTPUT, VS_B)
    (back,) = vswitch.run({**hello, "in_port": VS_B}).outcomes
    assert (back.kind, back.port) == (ofsim.OUTPUT, VS_A)
    # Mapping packets and the host port still reach the controller (the relay).
    (mapping,) = vswitch.run({"in_port": VS_A, "eth_type": MAPPING_ETHERTYPE}).outcomes
    assert mapping.kind == ofsim.CONTROLLER_OUT
    (host,) = vswitch.run({**hello, "in_port": VS_HOST}).outcomes
    assert host.kind == ofsim.CONTROLLER_OUT


@pytest.mark.parametrize("dp,port", [(A, A_PORT), (B, B_PORT)])
def test_a_port_going_down_takes_the_mirror_down_and_back(dp, port):
    c = mirrored(synced())
    down = c.port_status(dp, "modify", Port(port, "02:00:00:00:00:01", "x", up=False))
    assert vs_writes(down) == [(True, f) for f in of.virtual_link_flows(VS_A, VS_B)]
    other = A if dp == B else B
    assert (
        vs_writes(c.port_status(other, "modify", Port(9, "02:00:00:00:00:02", "y", up=True))) == []
    )
    up = c.port_status(dp, "modify", Port(port, "02:00:00:00:00:01", "x", up=True))
    assert vs_writes(up) == [(False, f) for f in of.virtual_link_flows(VS_A, VS_B)]


def test_a_port_down_at_connect_is_not_mirrored():
    c = synced()
    c.ports_described(A, [Port(A_PORT, "02:00:00:00:00:01", "A-eth2", up=False)])
    assert vs_writes([*c.server_message(_map(A, A_PORT, VS_A))]) == []
    assert vs_writes(c.server_message(_map(B, B_PORT, VS_B))) == []
    up = c.port_status(A, "modify", Port(A_PORT, "02:00:00:00:00:01", "A-eth2", up=True))
    assert len(vs_writes(up)) == 2


def test_unmap_remap_and_switch_left():
    c = mirrored(synced())
    gone = c.server_message(p.DataPlaneUnmap(ct_id=1, dp_id=B, dp_port=B_PORT))
    assert vs_writes(gone) == [(True, f) for f in of.virtual_link_flows(VS_A, VS_B)]
    c.server_message(_map(B, B_PORT, VS_B))
    # B's end moves to another vs port: the old flows go, new ones come.
    moved = vs_writes(c.server_message(_map(B, B_PORT, 13)))
    assert moved == [(True, f) for f in of.virtual_link_flows(VS_A, VS_B)] + [
        (False, f) for f in of.virtual_link_flows(VS_A, 13)
    ]
    left = c.switch_left(A, c.switches[A])
    assert vs_writes(left) == [(True, f) for f in of.virtual_link_flows(VS_A, 13)]


def test_a_reconnecting_virtual_switch_gets_the_mirrors_again():
    c = mirrored(synced())
    c.switch_left(VS, c.switches[VS])
    again = vs_writes(c.switch_connected(VS, object()))
    assert again == [(False, f) for f in of.virtual_link_flows(VS_A, VS_B)]


def test_without_virtual_links_nothing_is_mirrored():
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS)
    for dp_id in (A, B, VS):
        c.switch_connected(dp_id, object())
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    c.server_message(p.Resync(phase="end"))
    assert vs_writes(c.server_message(_map(A, A_PORT, VS_A))) == []
    assert vs_writes(c.server_message(_map(B, B_PORT, VS_B))) == []


def test_parse_virtual_links():
    text = "# rftest2\n0x5:2 0x6:3  # A-B\n\n7:1 0x8:4\n"
    assert parse_virtual_links(text) == [LINK, VirtualLink((7, 1), (8, 4))]


@pytest.mark.parametrize(
    "text,words",
    [
        ("0x5:2\n", "line 1"),
        ("0x5:2 0x6:x\n", "expected DPID:PORT DPID:PORT"),
        ("0x5:0 0x6:1\n", "out of range"),
        ("0x5:2 0x6:3\n0x5:2 0x7:1\n", "line 2: 0x5:2 is already an end of line 1"),
        ("5:1 5:1\n", "already an end"),
    ],
)
def test_parse_virtual_links_names_the_bad_line(text, words):
    with pytest.raises(ValueError, match=words):
        parse_virtual_links(text, "links.txt")


def test_update_is_idempotent_and_ignores_unknown_ends():
    v = VirtualLinks([LINK])
    ports = {(A, A_PORT): VS_A, (B, B_PORT): VS_B}
    first = v.update([(A, A_PORT), (9, 9)], ports.get, lambda _e: True)
    assert len(first) == 1 and not first[0].delete
    assert v.update([(A, A_PORT), (B, B_PORT)], ports.get, lambda _e: True) == []
    assert v.is_mirrored((B, B_PORT)) and not v.is_mirrored((9, 9))


# --- --virtual-links discovered: mirrors follow topology discovery -----------------------------


def _discovering() -> ProxyCore:
    from routeflow.proxy.actions import Port

    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS, mirror_discovered=True, discovery_interval=1.0)
    for dp_id in (A, B, VS):
        c.switch_connected(dp_id, object())
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    c.server_message(p.Resync(phase="begin"))
    c.server_message(p.Resync(phase="end"))
    for dp_id, port in ((A, A_PORT), (B, B_PORT)):
        c.port_status(dp_id, "add", Port(port, f"02:00:00:00:00:{port:02x}", "x", up=True))
    return mirrored(c)


def _probe(c: ProxyCore, src, dst, now: float):
    from routeflow.proxy import probe

    return c.packet_in(*dst, probe.build_probe(*src, "02:00:00:00:00:01", 3), now)


def test_discovered_links_are_mirrored_once_seen_both_ways_and_lose_it_with_either():
    c = _discovering()
    assert vs_writes(_probe(c, (A, A_PORT), (B, B_PORT), 1.0)) == []  # one way: not yet
    written = vs_writes(_probe(c, (B, B_PORT), (A, A_PORT), 1.1))
    assert written == [(False, f) for f in of.virtual_link_flows(VS_A, VS_B)]
    assert vs_writes(_probe(c, (B, B_PORT), (A, A_PORT), 1.5)) == []  # seen again: nothing
    # One direction ages out (its probes are lost): the mirror goes at once.
    _probe(c, (B, B_PORT), (A, A_PORT), 3.5)
    gone = vs_writes(c.discovery_tick(4.2))
    assert gone == [(True, f) for f in of.virtual_link_flows(VS_A, VS_B)]
    again = vs_writes(_probe(c, (A, A_PORT), (B, B_PORT), 5.0))
    assert again == [(False, f) for f in of.virtual_link_flows(VS_A, VS_B)]


def test_virtual_links_add_and_discard():
    v = VirtualLinks(discovered=True)
    assert v and v.add(LINK) and not v.add(VirtualLink((A, A_PORT), (B, 9)))
    assert v.discard((B, B_PORT)) == [] and not v.covers((A, A_PORT))
    assert v.discard((A, A_PORT)) == []

"""The datapath relay: a router port's control frames cross its switch's relay link, tagged.

Both switches are programmed with what the proxy core writes in datapath mode
(router port 2 of DP mapped to virtual switch port 7; DP's relay link is port
900 on DP and port 60 on the virtual switch), and frames are run through them
by the pipeline simulator: what leaves DP's relay port enters the virtual
switch on its relay port, and the other way round.
"""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import ofmsg, reconcile, specsim
from routeflow.proxy import openflow as of
from routeflow.proxy.actions import Port, ToServer, WriteFlows
from routeflow.proxy.core import ProxyCore
from routeflow.proxy.relay import RelayLink, parse_relay_links
from routeflow.rflib import ofsim
from routeflow.rflib import protocol as p
from routeflow.rflib.mapping import MAPPING_ETHERTYPE
from routeflow.rflib.protocol import FibEntry, RouteKind

VS = of.DEFAULT_VS_DPID
DP = 0x99
PORT, VS_PORT, RELAY, VS_RELAY = 2, 7, 900, 60
MAC = "02:00:00:00:0a:02"
PEER_MAC = "02:00:00:00:0b:02"
LINKS = {DP: RelayLink(RELAY, VS_RELAY)}


def master() -> tuple[ProxyCore, list]:
    """A synced master in datapath mode; returns it and every flow it wrote."""
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS, relay_links=LINKS)
    written: list = []
    for dp_id in (DP, VS):
        written += c.switch_connected(dp_id, object())
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    c.server_message(p.Resync(phase="begin"))
    c.server_message(p.Resync(phase="end"))
    m = p.DataPlaneMap(ct_id=1, dp_id=DP, dp_port=PORT, vs_id=VS, vs_port=VS_PORT, hwaddress=MAC)
    written += c.server_message(m)
    return c, written


def flows_of(actions, dp_id) -> list[of.FlowSpec]:
    return [f for a in actions if isinstance(a, WriteFlows) and a.dp_id == dp_id for f in a.flows]


CORE, WRITTEN = master()
FIB = [FibEntry(prefix="10.0.12.1/32", kind=RouteKind.LOCAL, dp_port=PORT)]
SWITCH = ofsim.Pipeline(
    [specsim.sim_flow(s) for s in of.base_flows() + flows_of(WRITTEN, DP)]
    + [specsim.sim_flow(s) for e in FIB for s in of.fib_flows(e)]
)
VSWITCH = ofsim.Pipeline([specsim.sim_flow(s) for s in flows_of(WRITTEN, VS)])


def frame(in_port=PORT, eth_dst=MAC, **fields):
    base = {"in_port": in_port, "eth_src": PEER_MAC, "eth_dst": eth_dst}
    return {**base, **fields}


def ipv4(dst, proto, **more):
    return frame(
        eth_type=0x0800,
        ip_proto=proto,
        ipv4_src="10.0.12.2",
        ipv4_dst=dst,
        nw_ttl=255,
        **more,
    )


OSPF_HELLO = ipv4("224.0.0.5", 89, eth_dst="01:00:5e:00:00:05")
OSPF_UNICAST = ipv4("10.0.12.1", 89)
BFD = ipv4("10.0.12.1", 17, udp_src=49152, udp_dst=3784)
ARP_TO_ROUTER = frame(eth_type=0x0806, arp_op=2, arp_spa="10.0.12.2", arp_tpa="10.0.12.1")
OSPF6_HELLO = frame(
    eth_dst="33:33:00:00:00:05",
    eth_type=0x86DD,
    ip_proto=89,
    ipv6_src="fe80::2",
    ipv6_dst="ff02::5",
    nw_ttl=1,
)


def only(result: ofsim.Result) -> ofsim.Outcome:
    (out,) = result.outcomes
    return out


def to_vm(packet: dict) -> ofsim.Outcome:
    """Run a frame from the physical port to the VM: DP, relay link, virtual switch."""
    on_link = only(SWITCH.run(packet))
    assert (on_link.kind, on_link.port) == (ofsim.OUTPUT, RELAY)
    assert on_link.packet["vlan_vid"] == of.OFPVID_PRESENT | PORT
    return only(VSWITCH.run({**on_link.packet, "in_port": VS_RELAY}))


@pytest.mark.parametrize(
    "packet",
    [OSPF_HELLO, OSPF_UNICAST, BFD, ARP_TO_ROUTER, OSPF6_HELLO],
    ids=["ospf-hello", "ospf-unicast", "bfd", "arp-for-router", "ospfv3-hello"],
)
def test_control_frames_reach_the_vm_untagged_without_the_controller(packet):
    out = to_vm(packet)
    assert (out.kind, out.port) == (ofsim.OUTPUT, VS_PORT)
    assert "vlan_vid" not in out.packet
    wire = ofsim.Pipeline([specsim.sim_flow(of.FlowSpec(0, 0, (), (of.Output(1),)))])
    direct = only(wire.run(packet))  # the frame as it would leave a plain wire
    assert out.packet == direct.packet


def test_what_the_vm_sends_leaves_the_router_port_untagged():
    from_vm = {**BFD, "in_port": VS_PORT, "eth_src": MAC, "eth_dst": PEER_MAC}
    on_link = only(VSWITCH.run(from_vm))
    assert (on_link.port, on_link.packet["vlan_vid"]) == (VS_RELAY, of.OFPVID_PRESENT | PORT)
    out = only(SWITCH.run({**on_link.packet, "in_port": RELAY}))
    assert (out.kind, out.port) == (ofsim.OUTPUT, PORT)
    assert "vlan_vid" not in out.packet


def test_mapping_frames_still_reach_the_controller():
    mapping = {"in_port": VS_PORT, "eth_src": MAC, "eth_dst": "ff:ff:ff:ff:ff:ff"}
    out = only(VSWITCH.run({**mapping, "eth_type": MAPPING_ETHERTYPE}))
    assert out.kind == ofsim.CONTROLLER_OUT
    # An unmapped VM port still goes to the controller (the packet-in relay).
    assert only(VSWITCH.run({**mapping, "in_port": 8, "eth_type": 0x0806})).kind == (
        ofsim.CONTROLLER_OUT
    )


def test_transit_and_the_router_s_own_addresses_are_unchanged():
    # Transit BFD to another router (to the router MAC, not our address) is routed
    # by the FIB as before: here it has no route, so it is dropped, not punted.
    transit = ipv4("10.9.9.9", 6, tcp_src=1000, tcp_dst=179)
    assert only(SWITCH.run(transit)).kind == ofsim.DROP
    # The router's own address, other protocols: the FIB's LOCAL punt, packet-in relay.
    ping = ipv4("10.0.12.1", 1)
    assert only(SWITCH.run(ping)).kind == ofsim.CONTROLLER_OUT
    # A broadcast ARP request for the router's address: the FIB's LOCAL ARP punt.
    request = frame(eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_tpa="10.0.12.1")
    assert only(SWITCH.run(request)).kind == ofsim.CONTROLLER_OUT
    # Frames from the relay link with another port's tag are dropped.
    stray = {**OSPF_HELLO, "in_port": RELAY, "vlan_vid": of.OFPVID_PRESENT | 5}
    assert only(SWITCH.run(stray)).kind == ofsim.DROP


def test_the_relay_port_is_not_a_switch_port_for_rfserver():
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS, relay_links=LINKS)
    c.switch_connected(DP, object())
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    out = c.ports_described(DP, [Port(1, MAC, "p1", True), Port(RELAY, MAC, "rl", True)])
    registered = [m.dp_port for a in out if isinstance(a, ToServer) for m in a.messages]
    assert registered == [1]


def test_unmap_and_a_departing_switch_remove_the_virtual_switch_flows():
    c, written = master()
    vs_flows = flows_of(written, VS)
    relay = [f for f in vs_flows if f.cookie >> of.COOKIE_KIND_SHIFT & 0xFF == of.Kind.RELAY]
    assert len(relay) == 2
    out = c.server_message(p.DataPlaneUnmap(ct_id=1, dp_id=DP, dp_port=PORT))
    assert WriteFlows(VS, tuple(relay), delete=True) in out
    c, _ = master()
    conn = c.switches[DP]
    assert WriteFlows(VS, tuple(relay), delete=True) in c.switch_left(DP, conn)


def test_a_reconnecting_virtual_switch_gets_the_relay_flows_back():
    c, written = master()
    out = c.switch_connected(VS, object())
    assert set(flows_of(out, VS)) == set(flows_of(written, VS))


def test_reconciliation_wants_the_relay_flows():
    c, written = master()
    c.read_started(DP, 10, 11)
    c.flows_read(DP)
    (start,) = c.group_reply(DP, 11, {}, more=False)
    plan = c.plan(start.stream, start.read)
    wanted = {reconcile.spec_flow(s)[0] for s in flows_of(written, DP)}
    assert wanted <= {reconcile.spec_flow(s)[0] for s in plan.flows.add_now}


class _Datapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


def test_the_relay_flows_text_is_what_os_ken_builds():
    """Reconciliation compares our text with the switch's: they must agree."""
    for spec in flows_of(WRITTEN, DP) + flows_of(WRITTEN, VS):
        fm = ofmsg.flow_mod(_Datapath, spec, False)
        key, text = reconcile.spec_flow(spec)
        assert key[2] == ofmsg.format_match(fm.match)
        assert text == ofmsg.format_instructions(fm.instructions)


def test_relay_links_are_parsed_and_bad_ones_named():
    assert parse_relay_links("0x1:65000:60001, 2:65000:60002") == {
        1: RelayLink(65000, 60001),
        2: RelayLink(65000, 60002),
    }
    for bad, says in [
        ("1:2", "DPID:DP_PORT:VS_PORT"),
        ("1:x:3", "DPID:DP_PORT:VS_PORT"),
        ("1:0:3", "ports are"),
        ("1:5:3,1:6:4", "two relay links"),
        ("1:5:3,2:6:3", "used twice"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_relay_links(bad)

"""OVS's text forms -> ofsim: dumps and traces as Open vSwitch 3.1 printed them.

The texts below were captured from a real bridge; the component test
(tests/component/test_ofsim_vs_ovs.py) reads live ones.
"""

from __future__ import annotations

import pytest

from routeflow.rflib import ofsim as o
from routeflow.rflib import ovstext, ovstrace

DUMP_FLOWS = """\
OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x5246020000000001, duration=318.177s, table=0, n_packets=0, n_bytes=0, priority=310,arp,in_port=1,arp_tpa=10.0.1.1 actions=CONTROLLER:65535
 cookie=0x0, duration=318.177s, table=0, n_packets=0, n_bytes=0, priority=300,ip,in_port=1,nw_dst=224.0.0.0/24 actions=CONTROLLER:65535
 cookie=0x0, duration=318.177s, table=0, n_packets=0, n_bytes=0, priority=300,ipv6,in_port=1,ipv6_dst=ff02::/16 actions=CONTROLLER:65535
 cookie=0x0, duration=318.177s, table=0, n_packets=0, n_bytes=0, priority=200,in_port=1,dl_dst=02:00:00:00:00:01 actions=goto_table:1
 cookie=0x0, duration=318.178s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop
 cookie=0x0, duration=307.676s, table=1, n_packets=0, n_bytes=0, priority=1030,ip,nw_dst=10.0.3.0/24 actions=dec_ttl,set_field:02:00:00:00:00:77->eth_dst,output:2
 cookie=0x0, duration=318.176s, table=1, n_packets=0, n_bytes=0, priority=1016,ip,nw_dst=10.0.0.0/16 actions=group:8
 cookie=0x0, duration=1.0s, table=1, n_packets=0, n_bytes=0, udp,tp_dst=53 actions=write_actions(output:3,set_field:10.0.0.1->ip_dst),write_metadata:0x1/0xff,goto_table:2
"""  # noqa: E501

DUMP_GROUPS = """\
OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):
 group_id=7,type=indirect,bucket=actions=set_field:02:00:00:00:00:01->eth_src,dec_ttl,output:2
 group_id=8,type=select,bucket=actions=output:2,bucket=weight:3,actions=output:3
 group_id=9,type=ff,bucket=watch_port:9,actions=output:9,bucket=watch_port:4,actions=output:4
"""


def test_dump_flows_parse_to_oxm_fields_and_instructions():
    flows = ovstext.parse_flows(DUMP_FLOWS)
    assert len(flows) == 8
    arp = flows[0]
    assert (arp.table, arp.priority, arp.cookie) == (0, 310, 0x5246020000000001)
    assert arp.match == o.make_match({"eth_type": 0x0806, "in_port": 1, "arp_tpa": "10.0.1.1"})
    assert arp.instructions == (o.ApplyActions((o.Output(o.CONTROLLER),)),)
    mcast = {"eth_type": 0x0800, "in_port": 1, "ipv4_dst": "224.0.0.0/24"}
    assert flows[1].match == o.make_match(mcast)
    assert flows[3].instructions == (o.GotoTable(1),)
    assert flows[4].match == () and flows[4].instructions == ()
    assert flows[5].instructions == (
        o.ApplyActions((o.DecTtl(), o.SetField("eth_dst", "02:00:00:00:00:77"), o.Output(2))),
    )
    last = flows[7]
    assert last.priority == 32768  # OVS omits the default priority
    assert last.match == o.make_match({"eth_type": 0x0800, "ip_proto": 17, "udp_dst": 53})
    assert last.instructions == (
        o.WriteActions((o.Output(3), o.SetField("ipv4_dst", "10.0.0.1"))),
        o.WriteMetadata(1, 0xFF),
        o.GotoTable(2),
    )


def test_dump_groups_parse_with_weights_and_watch_ports():
    g7, g8, g9 = ovstext.parse_groups(DUMP_GROUPS)
    assert g7 == o.GroupEntry(
        7, "indirect",
        (o.Bucket((o.SetField("eth_src", "02:00:00:00:00:01"), o.DecTtl(), o.Output(2))),),
    )  # fmt: skip
    assert [(b.weight, b.actions) for b in g8.buckets] == [(1, (o.Output(2),)), (3, (o.Output(3),))]
    assert [b.watch_port for b in g9.buckets] == [9, 4]


def test_what_we_write_is_what_we_read():
    flows = ovstext.parse_flows(DUMP_FLOWS)
    groups = ovstext.parse_groups(DUMP_GROUPS)
    assert ovstext.parse_flows("\n".join(map(ovstext.flow_text, flows))) == flows
    assert ovstext.parse_groups("\n".join(map(ovstext.group_text, groups))) == groups


def test_unknown_text_is_refused_not_skipped():
    with pytest.raises(o.SimError, match="learn"):
        ovstext.parse_flows("table=0, priority=1 actions=learn(table=1)")
    with pytest.raises(o.SimError, match="ct option"):
        ovstext.parse_flows("table=0, priority=1 actions=ct(nat(src=10.0.0.1-10.0.0.9))")
    with pytest.raises(o.SimError, match="unknown match field"):
        ovstext.parse_flows("table=0, priority=1,ct_mark=1 actions=drop")
    with pytest.raises(o.SimError, match="tp_dst without"):
        ovstext.parse_flows("table=0, priority=1,ip,tp_dst=53 actions=drop")


DPIF_SHOW = """\
netdev@ovs-netdev: hit:0 missed:0
  br0:
    br0 65534/1: (tap)
    p1 1/2: (tap)
    p2 2/3: (tap)
  br1:
    br1 65534/4: (tap)
    q1 1/5: (tap)
"""


def test_datapath_ports_map_to_openflow_ports_of_one_bridge():
    assert ovstrace.parse_dpif_ports(DPIF_SHOW, "br0") == {1: o.LOCAL, 2: 1, 3: 2}
    assert ovstrace.parse_dpif_ports(DPIF_SHOW, "br1") == {4: o.LOCAL, 5: 1}


PORTS = {1: o.LOCAL, 2: 1, 3: 2, 4: 3}
PACKET = {
    "in_port": 1,
    "eth_src": "02:00:00:00:00:55",
    "eth_dst": "02:00:00:00:00:01",
    "eth_type": 0x0800,
    "ip_proto": 17,
    "ipv4_src": "10.0.1.5",
    "ipv4_dst": "10.0.0.9",
    "nw_ttl": 9,
    "udp_src": 1001,
    "udp_dst": 53,
}

TRACE_PICKED = """\
Flow: dp_hash=0x3,udp,in_port=1,vlan_tci=0x0000,dl_src=02:00:00:00:00:55,dl_dst=02:00:00:00:00:01,nw_src=10.0.1.5,nw_dst=10.0.0.9,nw_tos=0,nw_ecn=0,nw_ttl=9,nw_frag=no,tp_src=1001,tp_dst=53

bridge("br0")
-------------
 0. in_port=1,dl_dst=02:00:00:00:00:01, priority 200
    goto_table:1
 1. ip,nw_dst=10.0.0.0/16, priority 1016
    group:8
     -> using bucket 1
    bucket 1
            dec_ttl
            set_field:02:00:00:00:00:01->eth_src
            set_field:02:00:00:00:00:97->eth_dst
            output:3

Final flow: unchanged
Megaflow: recirc_id=0,dp_hash=0x3/0xf,eth,udp,in_port=1,dl_src=02:00:00:00:00:55,dl_dst=02:00:00:00:00:01,nw_dst=10.0.0.0/24,nw_ttl=9,nw_frag=no
Datapath actions: set(eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:97)),set(ipv4(ttl=8)),4
"""  # noqa: E501

TRACE_HASHED = """\
bridge("br0")
-------------
 0. in_port=1,dl_dst=02:00:00:00:00:01, priority 200
    goto_table:1
 1. ip,nw_dst=10.0.0.0/16, priority 1016
    group:8
     -> no live bucket

Final flow: unchanged
Megaflow: recirc_id=0,eth,ip,in_port=1,dl_dst=02:00:00:00:00:01,nw_dst=10.0.0.0/24,nw_frag=no
Datapath actions: hash(sym_l4(0)),recirc(0x4)
"""

TRACE_EXPIRED = """\
 0. in_port=1,dl_dst=02:00:00:00:00:01, priority 200
 1. ip,nw_dst=10.0.2.0/24, priority 1024
             >> IPv4 decrement TTL exception
Datapath actions: userspace(pid=0,controller(reason=2,dont_send=1,continuation=0,recirc_id=2,rule_cookie=0,controller_id=0,max_len=65535))
"""  # noqa: E501

TRACE_MISS = """\
 0. No match.
    drop
Datapath actions: drop
"""


def test_a_trace_becomes_tables_hit_and_outcomes():
    t = ovstrace.parse_trace(TRACE_PICKED, PACKET, PORTS)
    assert t.hits == ((0, 200), (1, 1016))
    assert t.dp_hash_mask == 0xF and not t.recirculated
    (out,) = t.outcomes
    assert out == o.Outcome(
        o.OUTPUT,
        3,
        tuple(sorted({
            **{k: v for k, v in PACKET.items() if k != "in_port"},
            "eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:97", "nw_ttl": 8,
        }.items())),
    )  # fmt: skip
    hashed = ovstrace.parse_trace(TRACE_HASHED, PACKET, PORTS)
    assert hashed.recirculated and hashed.outcomes == ()
    expired = ovstrace.parse_trace(TRACE_EXPIRED, PACKET, PORTS)
    assert [x.kind for x in expired.outcomes] == [o.TTL_EXPIRED]
    assert expired.hits == ((0, 200), (1, 1024))
    miss = ovstrace.parse_trace(TRACE_MISS, PACKET, PORTS)
    assert miss.hits == ((0, None),) and miss.outcomes == (o.Outcome(o.DROP),)


def test_every_dp_hash_up_to_the_mask_is_traced():
    asked = []

    def trace(flow: str) -> str:
        asked.append(flow)
        if not flow.startswith("dp_hash="):
            return TRACE_HASHED
        n = int(flow.split(",", 1)[0].split("=")[1])
        port = 2 + n % 2  # two buckets, as OVS spreads them
        return TRACE_PICKED.replace("),4\n", f"),{port + 1}\n")

    hits, ways = ovstrace.trace_every_way(trace, PACKET, PORTS)
    assert hits == ((0, 200), (1, 1016))
    assert len(asked) == 1 + 16  # the first trace, then dp_hash 1..16 (mask 0xf)
    assert {w[0].port for w in ways} == {2, 3}


def test_trace_flow_puts_the_protocol_first_and_uses_ovs_names():
    assert ovstrace.trace_flow(PACKET) == (
        "udp,in_port=1,eth_src=02:00:00:00:00:55,eth_dst=02:00:00:00:00:01,"
        "nw_src=10.0.1.5,nw_dst=10.0.0.9,nw_ttl=9,udp_src=1001,udp_dst=53"
    )
    arp = {"in_port": 2, "eth_type": 0x0806, "arp_tpa": "10.0.0.1"}
    assert ovstrace.trace_flow(arp) == "arp,in_port=2,arp_tpa=10.0.0.1"


def test_live_ports_from_the_port_description():
    text = """\
OFPST_PORT_DESC reply (OF1.3) (xid=0x2):
 1(p1): addr:7a:50:a9:ca:c3:e8
     config:     PORT_DOWN
     state:      LINK_DOWN
 2(p2): addr:f6:46:80:5f:17:3f
     config:     0
     state:      LIVE
 LOCAL(br0): addr:46:0c:25:9f:df:47
     config:     0
     state:      LIVE
"""
    assert ovstext.parse_live_ports(text) == {2, o.LOCAL}


def test_nicira_moves_loads_registers_and_tunnel_fields_round_trip():
    line = (
        "table=50,priority=1001,reg5=2,tun_id=0x65,arp,arp_op=1 actions=move:NXM_OF_ETH_SRC[]"
        "->NXM_OF_ETH_DST[],move:NXM_OF_ETH_DST[0..31]->NXM_NX_REG0[],load:0x5->NXM_NX_REG6[],"
        "set_field:198.51.100.2->tun_dst,set_field:0x65->tun_id,set_field:7->reg7,IN_PORT"
    )
    (flow,) = ovstext.parse_flows(line)
    assert flow.match == o.make_match(
        {"reg5": 2, "tunnel_id": 0x65, "eth_type": 0x0806, "arp_op": 1}
    )
    assert flow.instructions == (
        o.ApplyActions(
            (
                o.Move("eth_src", "eth_dst"),
                o.Move("eth_dst", "reg0", 32),
                o.SetField("reg6", 5),
                o.SetField("tun_ipv4_dst", "198.51.100.2"),
                o.SetField("tunnel_id", 0x65),
                o.SetField("reg7", 7),
                o.Output(o.IN_PORT),
            )
        ),
    )
    assert ovstext.parse_flows(ovstext.flow_text(flow)) == [flow]
    with pytest.raises(o.SimError, match="bits"):
        ovstext.parse_flows("actions=move:NXM_OF_ETH_SRC[0..15]->NXM_NX_REG0[0..7]")


# What OVS 3.1 printed for conntrack and conjunction flows (ovs-ofctl dump-flows).
CT_DUMP = """\
 cookie=0x1, table=10, priority=100,ip actions=ct(table=15,zone=NXM_NX_REG6[0..15])
 cookie=0x1, table=15, priority=1001,ct_state=+inv+trk actions=drop
 cookie=0x1, table=15, priority=900,ct_state=-new-est+rel-inv+trk actions=goto_table:20
 cookie=0x1, table=15, priority=50,conj_id=7,ip actions=ct(commit,zone=NXM_NX_REG6[0..15]),goto_table:20
 cookie=0x1, table=15, priority=50,ct_state=+new+trk,tcp,reg6=0x3,tp_dst=0x1000/0xf000 actions=conjunction(7,1/2),conjunction(8,1/2)
 cookie=0x1, table=15, priority=40,ct_state=+new+trk,udp,reg6=0x3 actions=ct(commit,zone=5),goto_table:20
"""  # noqa: E501


def test_conntrack_and_conjunction_flows_round_trip():
    flows = ovstext.parse_flows(CT_DUMP)
    assert flows[0].instructions == (o.ApplyActions((o.Ct(table=15, zone_src="reg6"),)),)
    assert dict((n, (v, m)) for n, v, m in flows[2].match)["ct_state"] == (0x24, 0x37)
    assert flows[4].instructions[0].actions == (o.Conjunction(7, 1, 2), o.Conjunction(8, 1, 2))
    assert flows[5].instructions[0].actions == (o.Ct(commit=True, zone=5),)
    assert ovstext.parse_flows("\n".join(map(ovstext.flow_text, flows))) == flows


def test_ct_nat_round_trips():
    for text in (
        "ct(commit,table=65,zone=65534,nat(src=203.0.113.10))",
        "ct(table=46,zone=65534,nat)",
    ):
        (flow,) = ovstext.parse_flows(f"table=60, priority=100 actions={text}")
        assert ovstext.flow_text(flow).endswith(f"actions={text}")

"""The fast reconciliation path gives exactly the diff of the old (os-ken object) path.

Old path, kept here as the reference: an os-ken OFPFlowMod per desired flow
and os-ken's parse of every flow-stats entry, both formatted by
ofmsg.format_match / ofmsg.format_instructions. Fast path: reconcile.desired_flows
from our own specs and reconcile.read_flow_stats on the raw reply bytes.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.controller import ofp_event
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import ofmsg, reconcile
from routeflow.proxy import openflow as of
from routeflow.rflib.protocol import FibEntry, RouteKind


class _Datapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser
    id = 0x99


DP = _Datapath()
P = ofproto_v1_3_parser
OFP = ofproto_v1_3
FOREIGN_COOKIE = 0x1234


# --- the old path -------------------------------------------------------------------------


def old_desired(specs: list[of.FlowSpec], fib: list[FibEntry]) -> dict:
    for entry in fib:
        specs = specs + of.fib_flows(entry)
    out = {}
    for spec in specs:
        fm = ofmsg.flow_mod(DP, spec, False)
        out[(spec.table, spec.priority, ofmsg.format_match(fm.match))] = ofmsg.format_instructions(
            fm.instructions
        )
    return out


def old_actual(body: bytes) -> dict:
    out = {}
    offset = 0
    while offset < len(body):
        f = P.OFPFlowStats.parser(body, offset)
        key = (f.table_id, f.priority, ofmsg.format_match(f.match))
        out[key] = (ofmsg.format_instructions(f.instructions), f.cookie)
        offset += f.length
    return out


def stats_entry(fm) -> bytes:
    """The ofp_flow_stats entry a switch would report for flow-mod ``fm``."""
    fm.set_xid(1)
    fm.serialize()
    rest = bytes(fm.buf[48:])  # ofp_match and instructions, as the switch echoes them
    head = struct.pack(
        "!HBxIIHHHH4xQQQ", 48 + len(rest), fm.table_id, 7, 8, fm.priority, 0, 0, 0,
        fm.cookie, 10, 1000,
    )  # fmt: skip
    return head + rest


# --- random states --------------------------------------------------------------------------

macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
ports = st.integers(1, 0xFFFFFF00)
prefixes = st.builds(
    lambda addr, plen: str(ipaddress.IPv4Network((addr, plen), strict=False)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
entries = st.builds(
    lambda prefix, kind, nh, port: FibEntry(
        prefix=prefix,
        kind=kind,
        nexthop_id=nh if kind == RouteKind.UNICAST else 0,
        dp_port=port if kind != RouteKind.UNICAST else 0,
    ),
    prefixes,
    st.sampled_from(list(RouteKind)),
    st.integers(0, 2**32 - 1),
    ports,
)
router_ports = st.dictionaries(ports, macs, max_size=4)
#: Actions of flows somebody else put on the switch (or ours, changed).
other_actions = st.lists(
    st.one_of(
        st.builds(of.Output, ports),
        st.just(of.ToController()),
        st.builds(of.Group, st.integers(0, 2**32 - 1)),
        st.builds(of.SetEthSrc, macs),
        st.builds(of.SetEthDst, macs),
        st.just(of.DecTtl()),
        st.builds(of.Goto, st.integers(1, 5)),
    ),
    max_size=4,
).map(tuple)


def base_specs(rports: dict[int, str]) -> list[of.FlowSpec]:
    specs = list(of.base_flows())
    for port, mac in rports.items():
        specs.extend(of.router_port_flows(port, mac))
    return specs


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(entries, max_size=20))
def test_desired_texts_are_the_old_ones(rports, fib):
    specs = base_specs(rports)
    fast = reconcile.desired_flows(specs, fib)
    assert {k: v[0] for k, v in fast.items()} == old_desired(specs, fib)
    for key, (_text, source) in fast.items():
        spec = reconcile.source_spec(key, source)
        assert reconcile.spec_flow(spec)[0] == key


def _unusual_flow_mods(data) -> list:
    """Flows routeflow never installs: the raw parser hands them to os-ken."""
    return [
        P.OFPFlowMod(
            DP, table_id=0, priority=5, cookie=FOREIGN_COOKIE,
            match=P.OFPMatch(eth_type=0x0800, ip_proto=6, tcp_dst=data.draw(st.integers(0, 65535))),
            instructions=[P.OFPInstructionActions(OFP.OFPIT_APPLY_ACTIONS, [P.OFPActionPopVlan()])],
        ),
        P.OFPFlowMod(
            DP, table_id=1, priority=7, cookie=of.cookie(of.Kind.ROUTE),
            match=P.OFPMatch(eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00"), vlan_vid=0x1005),
            instructions=[P.OFPInstructionWriteMetadata(5, 0xFF), P.OFPInstructionGotoTable(2)],
        ),
        P.OFPFlowMod(
            DP, table_id=0, priority=9, cookie=FOREIGN_COOKIE,
            match=P.OFPMatch(in_port=3, eth_src=data.draw(macs)),
            instructions=[P.OFPInstructionActions(
                OFP.OFPIT_APPLY_ACTIONS, [P.OFPActionSetField(ipv4_dst="10.0.0.1")]
            )],
        ),
    ]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(entries, max_size=20), st.data())
def test_raw_flow_stats_and_diff_are_the_old_ones(rports, fib, data):
    """Switch = desired, perturbed: flows missing, actions changed, stale ours, foreign."""
    _raw_and_diff_are_the_old_ones(rports, fib, data, entries, _unusual_flow_mods(data))


def _raw_and_diff_are_the_old_ones(rports, fib, data, stale_entries, unusual) -> None:
    specs = base_specs(rports)
    for entry in fib:
        specs = specs + of.fib_flows(entry)
    on_switch = []
    for spec in specs:
        fate = data.draw(st.sampled_from(["same", "same", "missing", "changed", "foreign"]))
        if fate == "missing":
            continue
        if fate == "changed":
            spec = of.FlowSpec(
                spec.table, spec.priority, spec.match, data.draw(other_actions), spec.cookie
            )
        elif fate == "foreign":
            spec = of.FlowSpec(spec.table, spec.priority, spec.match, spec.actions, FOREIGN_COOKIE)
        on_switch.append(ofmsg.flow_mod(DP, spec, False))
    for entry in data.draw(st.lists(stale_entries, max_size=5)):  # stale: ours, or someone else's
        for spec in of.fib_flows(entry):
            cookie = data.draw(st.sampled_from([spec.cookie, FOREIGN_COOKIE, 0]))
            spec = of.FlowSpec(
                spec.table, spec.priority, spec.match, data.draw(other_actions), cookie
            )
            on_switch.append(ofmsg.flow_mod(DP, spec, False))
    on_switch += unusual
    # A switch keeps one flow per key: the last one written.
    body = b"".join(stats_entry(fm) for fm in on_switch)

    fast_actual: reconcile.ActualFlows = {}
    n = reconcile.read_flow_stats(body, 0, len(body), fast_actual, ofmsg.parse_flow_stats_entry)
    assert n == len(on_switch)
    old = old_actual(body)
    assert {k: v[:2] for k, v in fast_actual.items()} == old
    for key, (_t, _c, match_bytes) in fast_actual.items():  # the match a delete would carry
        assert ofmsg.format_match(P.OFPMatch.parser(match_bytes, 0)) == key[2]

    fast = reconcile.diff_flows(
        reconcile.desired_flows(base_specs(rports), fib), fast_actual, of.is_ours
    )
    slow = reconcile.diff_flows(old_desired(base_specs(rports), fib), old, of.is_ours)
    assert (sorted(fast.add), sorted(fast.delete), fast.unchanged) == (
        sorted(slow.add), sorted(slow.delete), slow.unchanged,
    )  # fmt: skip


def test_foreign_kept_changed_readded_stale_deleted():
    route = FibEntry(prefix="10.1.2.0/24", kind=RouteKind.UNICAST, nexthop_id=7)
    other = FibEntry(prefix="10.9.0.0/16", kind=RouteKind.UNICAST, nexthop_id=7)
    (spec,) = of.fib_flows(route)
    (stale,) = of.fib_flows(FibEntry(prefix="198.18.0.0/24", kind=RouteKind.UNICAST, nexthop_id=7))
    foreign = of.FlowSpec(
        1, 1024, (("eth_type", 0x0800), ("ipv4_dst", ("203.0.113.0", "255.255.255.0"))), (), 0x42
    )
    changed = of.FlowSpec(spec.table, spec.priority, spec.match, (of.Group(8),), spec.cookie)
    on_switch = (*of.base_flows(), changed, stale, foreign)
    body = b"".join(stats_entry(ofmsg.flow_mod(DP, s, False)) for s in on_switch)
    actual: reconcile.ActualFlows = {}

    def fallback(buf, offset):
        raise AssertionError("routeflow's own flows are read without os-ken")

    reconcile.read_flow_stats(body, 0, len(body), actual, fallback)
    d = reconcile.diff_flows(
        reconcile.desired_flows(of.base_flows(), [route, other]), actual, of.is_ours
    )
    assert sorted(d.add) == sorted(
        [
            (1, 1024, "eth_type=2048,ipv4_dst=10.1.2.0/255.255.255.0"),  # group 8 -> 7
            (1, 1016, "eth_type=2048,ipv4_dst=10.9.0.0/255.255.0.0"),  # missing
        ]
    )
    assert d.delete == [(1, 1024, "eth_type=2048,ipv4_dst=198.18.0.0/255.255.255.0")]
    assert d.unchanged == 2  # the table-miss flows; the foreign flow is left alone


def _reply(entries: list[bytes], more: bool) -> bytes:
    body = b"".join(entries)
    flags = OFP.OFPMPF_REPLY_MORE if more else 0
    return (
        struct.pack(
            "!BBHIHH4x", 4, OFP.OFPT_MULTIPART_REPLY, 16 + len(body), 9, OFP.OFPMP_FLOW, flags
        )
        + body
    )


def test_flow_stats_replies_stay_raw_until_body_is_read():
    ofmsg.install_flow_stats_parser()
    ofmsg.install_flow_stats_parser()  # idempotent: os-ken's parser is still the fallback
    flows = [ofmsg.flow_mod(DP, s, False) for s in of.router_port_flows(1, "02:00:00:00:00:01")]
    raw = _reply([stats_entry(fm) for fm in flows], more=True)
    msg = ofproto_v1_3_parser.msg_parser(DP, 4, OFP.OFPT_MULTIPART_REPLY, len(raw), 9, raw)
    assert isinstance(msg, P.OFPFlowStatsReply)
    assert "_body" in msg.__dict__ and msg.__dict__["_body"] is None  # not parsed yet
    assert type(ofp_event.ofp_msg_to_ev(msg)) is ofp_event.EventOFPFlowStatsReply
    assert msg.flags == OFP.OFPMPF_REPLY_MORE and msg.type == OFP.OFPMP_FLOW
    actual: reconcile.ActualFlows = {}
    assert reconcile.read_flow_stats(
        msg.buf, 16, msg.msg_len, actual, ofmsg.parse_flow_stats_entry
    ) == len(flows)
    # The statistics poll still gets os-ken's objects.
    assert [(f.table_id, f.priority, ofmsg.format_match(f.match)) for f in msg.body] == list(actual)
    # Other multipart replies are os-ken's as before.
    desc = struct.pack("!BBHIHH4x", 4, OFP.OFPT_MULTIPART_REPLY, 16, 3, OFP.OFPMP_PORT_DESC, 0)
    other = ofproto_v1_3_parser.msg_parser(DP, 4, OFP.OFPT_MULTIPART_REPLY, 16, 3, desc)
    assert isinstance(other, P.OFPPortDescStatsReply) and other.body == []


def test_default_route_is_in_sync_with_what_the_switch_reports():
    """A switch stores ipv4_dst=0.0.0.0/0.0.0.0 as no field at all ("ip"): the
    default route must compare equal to that, or every reconciliation would
    re-add it and then strict-delete it (losing the default route)."""
    default = FibEntry(prefix="0.0.0.0/0", kind=RouteKind.UNICAST, nexthop_id=9)
    (spec,) = of.fib_flows(default)
    assert spec.match == (("eth_type", of.ETH_TYPE_IPV4),)
    as_stored = P.OFPFlowMod(
        DP,
        cookie=spec.cookie,
        table_id=of.TABLE_FIB,
        priority=of.PRIO_ROUTE_BASE,
        match=P.OFPMatch(eth_type=of.ETH_TYPE_IPV4),
        instructions=[
            P.OFPInstructionActions(
                OFP.OFPIT_APPLY_ACTIONS, [P.OFPActionGroup(of.route_group(9, "0.0.0.0/0"))]
            )
        ],
    )
    body = stats_entry(as_stored)
    actual: reconcile.ActualFlows = {}
    reconcile.read_flow_stats(body, 0, len(body), actual, old_actual_fallback)
    d = reconcile.diff_flows(reconcile.desired_flows([], [default]), actual, of.is_ours)
    assert (d.add, d.delete, d.unchanged) == ([], [], 1)


def old_actual_fallback(buf, offset):
    return P.OFPFlowStats.parser(buf, offset)


# --- IPv6 ---------------------------------------------------------------------------------------

#: Addresses of every shape: random, sparse words (the runs of zeros text
#: compresses, where writers disagree), IPv4-mapped and -compatible.
addresses6 = st.one_of(
    st.integers(0, 2**128 - 1),
    st.lists(st.sampled_from([0, 0, 1, 0xFFFF, 0x2001, 0xDB8]), min_size=8, max_size=8).map(
        lambda words: int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")
    ),
    st.integers(0, 2**32 - 1).map(lambda v: 0xFFFF << 32 | v),
    st.integers(0, 2**32 - 1),
)
prefixes6 = st.builds(
    lambda addr, plen: str(ipaddress.IPv6Network((addr, plen), strict=False)),
    addresses6,
    st.one_of(st.integers(0, 128), st.sampled_from([0, 64, 128])),
)
dual_entries = st.builds(
    lambda prefix, kind, nh, port: FibEntry(
        prefix=prefix,
        kind=kind,
        nexthop_id=nh if kind == RouteKind.UNICAST else 0,
        dp_port=port if kind != RouteKind.UNICAST else 0,
    ),
    st.one_of(prefixes, prefixes6, prefixes6),
    st.sampled_from(list(RouteKind)),
    st.integers(0, 2**32 - 1),
    ports,
)


@given(addresses6)
def test_os_ken_writes_ipv6_as_inet_ntop_does(value):
    """The raw parser and desired_flows write inet_ntop's form; the fallback
    (os-ken, netaddr) must agree or an unusual entry would never compare equal."""
    raw = value.to_bytes(16, "big")
    match = P.OFPMatch(eth_type=0x86DD, ipv6_dst=ipaddress.IPv6Address(raw).compressed)
    buf = bytearray()
    match.serialize(buf, 0)
    parsed = P.OFPMatch.parser(bytes(buf), 0)
    assert parsed["ipv6_dst"] == socket.inet_ntop(socket.AF_INET6, raw)


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(dual_entries, max_size=20))
def test_dual_stack_desired_texts_are_the_old_ones(rports, fib):
    specs = base_specs(rports)
    fast = reconcile.desired_flows(specs, fib)
    assert {k: v[0] for k, v in fast.items()} == old_desired(specs, fib)
    for key, (_text, source) in fast.items():
        spec = reconcile.source_spec(key, source)
        assert reconcile.spec_flow(spec)[0] == key


def _unusual_ipv6_flow_mods(data) -> list:
    """IPv6 flows routeflow never installs (fields and actions the raw parser does
    not decode, or a mask no prefix has): os-ken's text must be theirs."""
    addr = str(ipaddress.IPv6Address(data.draw(addresses6)))
    return [
        P.OFPFlowMod(
            DP, table_id=0, priority=11, cookie=FOREIGN_COOKIE,
            match=P.OFPMatch(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_nd_target=addr),
            instructions=[P.OFPInstructionActions(OFP.OFPIT_APPLY_ACTIONS, [P.OFPActionOutput(2)])],
        ),
        P.OFPFlowMod(
            DP, table_id=1, priority=12, cookie=of.cookie(of.Kind.ROUTE),
            match=P.OFPMatch(eth_type=0x86DD, ipv6_src=(addr, "ffff::ffff"), ipv6_dst=addr),
            instructions=[P.OFPInstructionActions(
                OFP.OFPIT_APPLY_ACTIONS, [P.OFPActionSetField(ipv6_dst=addr)]
            )],
        ),
    ]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(dual_entries, max_size=20), st.data())
def test_dual_stack_raw_flow_stats_and_diff_are_the_old_ones(rports, fib, data):
    _raw_and_diff_are_the_old_ones(
        rports, fib, data, dual_entries, _unusual_flow_mods(data) + _unusual_ipv6_flow_mods(data)
    )


# An OFPMP_FLOW reply from Open vSwitch 3.1 (userspace datapath), captured after
# `ovs-ofctl -O OpenFlow13 add-flows` of routeflow's IPv6 flow shapes (OVS's own
# encoder, not os-ken's): the ff02::/16 punt of router port 1, a /128 and a /64
# route and ::/0 via group 7, LOCAL fe80::1 of port 1, and an IPv4 /24 route.
_OVS_REPLY_ONE_GROUP = bytes.fromhex(
    "04130270000000020001000000000000008000000000000001d905c0012c0000000000000000000052460200"
    "000000010000000000000000000000000000000000010036800000040000000180000a0286dd80003720ff02"
    "0000000000000000000000000000ffff00000000000000000000000000000000000400180000000000000010"
    "fffffffdffff000000000000006001000000000001d905c00468000000000000000000005246040000000000"
    "000000000000000000000000000000000001001e80000a0286dd8000361020010db800020000000000000000"
    "0005000000040010000000000016000800000007006801000000000001d905c007d000000000000000000000"
    "5246030000000001000000000000000000000000000000000001001e80000a0286dd80003610fe8000000000"
    "000000000000000000010000000400180000000000000010fffffffdffff0000000000000070010000000000"
    "01d905c00428000000000000000000005246040000000000000000000000000000000000000000000001002e"
    "80000a0286dd8000372020010db8000100000000000000000000ffffffffffffffff00000000000000000000"
    "00040010000000000016000800000007005801000000000001d905c004000000000000000000000052460400"
    "00000000000000000000000000000000000000000001001680000a020800800019080a000000ffffff000000"
    "00040010000000000016000800000007005001000000000001d905c003e80000000000000000000052460400"
    "00000000000000000000000000000000000000000001000a80000a0286dd0000000000000004001000000000"
    "0016000800000007"
)


def _sharded(reply: bytes, prefixes: list[str]) -> bytes:
    """The reply as OVS gave it when a next hop was one group (7): each route flow's
    group action now names the next hop's shard for its prefix (openflow.route_group),
    flows in the reply's order."""
    action = bytes.fromhex("0016000800000007")
    parts = reply.split(action)
    assert len(parts) == len(prefixes) + 1
    out = parts[0]
    for prefix, rest in zip(prefixes, parts[1:], strict=True):
        out += action[:4] + of.route_group(7, prefix).to_bytes(4, "big") + rest
    return out


OVS_REPLY = _sharded(
    _OVS_REPLY_ONE_GROUP, ["2001:db8:2::5/128", "2001:db8:1::/64", "10.0.0.0/24", "::/0"]
)


def test_ipv6_flows_as_open_vswitch_reports_them_are_in_sync():
    """What a restarted rfproxy reads back from OVS must equal what it wants,
    decoded without os-ken, or the restart would re-add and delete IPv6 flows."""
    fib = [
        FibEntry(prefix="2001:db8:1::/64", kind=RouteKind.UNICAST, nexthop_id=7),
        FibEntry(prefix="2001:db8:2::5/128", kind=RouteKind.UNICAST, nexthop_id=7),
        FibEntry(prefix="::/0", kind=RouteKind.UNICAST, nexthop_id=7),
        FibEntry(prefix="fe80::1/128", kind=RouteKind.LOCAL, dp_port=1),
        FibEntry(prefix="10.0.0.0/24", kind=RouteKind.UNICAST, nexthop_id=7),
    ]
    v6_punt = [
        f for f in of.router_port_flows(1, "02:00:00:00:00:01") if ("eth_type", 0x86DD) in f.match
    ]
    actual: reconcile.ActualFlows = {}

    def fallback(buf, offset):
        raise AssertionError("routeflow's own IPv6 flows are read without os-ken")

    assert reconcile.read_flow_stats(OVS_REPLY, 16, len(OVS_REPLY), actual, fallback) == 6
    assert {k: v[:2] for k, v in actual.items()} == old_actual(OVS_REPLY[16:])
    d = reconcile.diff_flows(reconcile.desired_flows(v6_punt, fib), actual, of.is_ours)
    assert (d.add, d.delete, d.unchanged) == ([], [], 6)
    assert (1, 1064, "eth_type=34525,ipv6_dst=2001:db8:1::/ffff:ffff:ffff:ffff::") in actual


_bucket_actions = st.lists(
    st.sampled_from(
        [
            of.Output(3),
            of.ToController(),
            of.DecTtl(),
            of.SetEthSrc("02:00:00:00:00:01"),
            of.SetEthDst("06:00:00:00:00:0a"),
            of.Group(4),
        ]
    ),
    max_size=4,
).map(tuple)


@given(
    st.integers(0, 2**32 - 2),
    st.booleans(),
    st.lists(st.tuples(_bucket_actions, st.integers(0, 65535)), max_size=4).map(tuple),
)
def test_group_text_is_the_text_of_the_group_mod_os_ken_builds(gid, select, buckets):
    """The desired groups' text (pure) is what the switch's would be for the same group."""
    group = of.GroupSpec(gid, select, buckets)
    assert reconcile.group_text(group) == ofmsg.format_group(ofmsg.group_mod(DP, group, "add"))

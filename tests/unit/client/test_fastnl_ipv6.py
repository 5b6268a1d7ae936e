"""fastnl on IPv6, multipath and RFC 5549 routes: real kernel bytes, generated ones, garbage.

``data/netlink.txt`` holds what Linux 6.18 sent for each step of
``data/capture_netlink.py`` (route, nexthop and link notifications, and
dumps). The decoder must agree with pyroute2 on every message, hand none of
the route messages to it, and KernelView must end up with the same routes
whichever decoder fed it.
"""

from __future__ import annotations

import ipaddress
import logging
import pathlib
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routeflow.client import fastnl
from routeflow.client.kernel import KernelView
from routeflow.rflib.protocol import NextHop, Route, RouteKind

from .test_fastnl import GeneralView, attr, effective, link_msg, links, slow, u32

CAPTURE = pathlib.Path(__file__).parent / "data" / "netlink.txt"
ROUTE_EVENTS = (24, 25)


def captured() -> list[tuple[str, list[bytes]]]:
    """(step, datagrams) in capture order."""
    steps: list[tuple[str, list[bytes]]] = []
    for line in CAPTURE.read_text().splitlines():
        if line.startswith("# captured"):
            continue
        if line.startswith("# "):
            steps.append((line[2:], []))
        elif line:
            steps[-1][1].append(bytes.fromhex(line))
    return steps


def kinds(data: bytes) -> list[int]:
    out, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        out.append(kind)
        off += (length + 3) & ~3
    return out


def test_the_capture_covers_what_it_says():
    steps = dict(captured())
    assert len(steps) >= 30
    route_msgs = sum(kinds(d).count(24) + kinds(d).count(25) for s in steps.values() for d in s)
    assert route_msgs > 100


def test_captured_route_messages_never_reach_pyroute2():
    calls: list[bytes] = []

    def counting(data: bytes):
        calls.append(data)
        return slow(data)

    for _step, datagrams in captured():
        for data in datagrams:
            fast = fastnl.parse(data, counting)
            reference = slow(data)
            assert len(fast) == len(reference)
            for f, r in zip(fast, reference, strict=True):
                assert effective(f) == effective(r)
    assert calls
    assert not [c for c in calls if kinds(c)[0] in ROUTE_EVENTS]


def test_bench_routes_are_notes():
    steps = dict(captured())
    notes = [n for data in steps["bench routes v6 add"] for n in fastnl.parse(data, slow)]
    assert len(notes) == 3
    prefix, shape, deleted, nlflags = notes[0]
    assert (prefix, deleted, nlflags & 0x100) == ("fd00::/48", False, 0)
    family, table, _tos, metric, rtype, _flags, oif, gw, nhid = shape
    assert (family, table, metric, rtype, gw, nhid) == (10, 254, 1024, 1, "2001:db8:1::100", None)
    assert oif > 0
    assert [n[0] for n in notes] == ["fd00::/48", "fd00:0:1::/48", "fd00:0:2::/48"]
    deleted = [n for data in steps["bench routes v6 del"] for n in fastnl.parse(data, slow)]
    assert len(deleted) == 3 and all(n.__class__ is tuple and n[2] for n in deleted)


def test_replace_keeps_its_flag_and_group_routes_are_notes():
    steps = dict(captured())
    (replace,) = fastnl.parse(steps["v6 replace"][0], slow)
    assert replace[3] & 0x100  # NLM_F_REPLACE: the view drops what it replaced
    (group,) = fastnl.parse(steps["v6 nexthop group"][0], slow)
    assert group[0] == "2001:db8:105::/48" and group[1][8] == 10
    (ecmp,) = fastnl.parse(steps["v6 ECMP"][0], slow)
    hops = [(h["hops"], h["RTA_GATEWAY"]) for h in ecmp["RTA_MULTIPATH"]]
    assert hops == [(0, "2001:db8:1::100"), (2, "2001:db8:2::100")]
    (via,) = fastnl.parse(steps["v4 over an IPv6 gateway (RFC 5549)"][0], slow)
    assert via["RTA_VIA"] == {"family": 10, "addr": "fe80::1"}
    (mapped,) = fastnl.parse(steps["v6 mapped prefix"][0], slow)
    assert mapped[0] == f"{ipaddress.IPv6Address('::ffff:1.2.3.0')}/120"


def test_the_captured_sequence_gives_the_same_view():
    fast, general = KernelView(1), GeneralView(1)
    out_fast: list = []
    out_general: list = []
    seen: dict[str, dict[str, Route]] = {}
    for step, datagrams in captured():
        for data in datagrams:
            fast.feed_many(fastnl.parse(data, slow))
            general.feed_many(slow(data))
        assert fast.routes == general.routes, step
        out_fast += fast.drain()
        out_general += general.drain()
        seen[step] = fast.routes
    assert out_fast == out_general
    assert fast.snapshot() == general.snapshot()
    # What a reader of the capture expects (eth1 is VM port 1, eth2 port 2).
    after = seen["v6 replace"]
    assert after["2001:db8:100::/48"].nexthops == [NextHop(2, "2001:db8:2::100")]
    ecmp = seen["v6 ECMP delete one hop"]["2001:db8:103::/48"]
    assert ecmp.nexthops == [NextHop(1, "2001:db8:1::100"), NextHop(2, "2001:db8:2::100", 3)]
    group = seen["v6 nexthop group"]["2001:db8:105::/48"]
    assert group.nexthops == [NextHop(1, "2001:db8:1::100"), NextHop(2, "2001:db8:2::100", 3)]
    replaced = seen["v6 replace by a group"]["2001:db8:101::/48"]
    assert replaced.nexthops == group.nexthops
    bench = seen["bench routes v6 add"]
    assert bench["fd00::/48"] == Route(
        prefix="fd00::/48", kind=RouteKind.UNICAST, nexthops=[NextHop(1, "2001:db8:1::100")]
    )
    assert "fd00::/48" not in seen["bench routes v6 del"]
    assert "2001:db8:108::/48" not in bench  # table 100
    assert "2001:db8:107::/48" not in bench  # blackhole


# --- generated IPv6 messages ---------------------------------------------------------------


def ip6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def message6(kind, dst_len, table, rtype, flags, nlflags, attrs) -> bytes:
    body = struct.pack("=BBBBBBBBI", 10, dst_len, 0, 0, table, 3, 0, rtype, flags)
    body += b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), kind, nlflags, 7, 0) + body


def multipath6(hops) -> bytes:
    out = b""
    for oif, gw, weight in hops:
        inner = attr(5, ip6(gw))
        out += struct.pack("=HBBi", 8 + len(inner), 0, weight - 1, oif) + inner
    return out


CACHEINFO = attr(12, bytes(32))
PREF = attr(20, b"\x00")
addresses6 = st.sampled_from(
    ["2001:db8:1::100", "fe80::1", "::ffff:1.2.3.4", "fd00::", "ff02::1", "::", "2001:db8:2::1"]
)
attributes6 = st.one_of(
    st.builds(lambda a: attr(1, ip6(a)), addresses6),  # RTA_DST
    st.builds(lambda a: attr(5, ip6(a)), addresses6),  # RTA_GATEWAY
    st.builds(lambda a: attr(7, ip6(a)), addresses6),  # RTA_PREFSRC
    st.builds(lambda v: attr(4, u32(v)), st.integers(0, 5)),  # RTA_OIF
    st.builds(lambda v: attr(6, u32(v)), st.sampled_from([0, 256, 1024, 20])),  # RTA_PRIORITY
    st.builds(lambda v: attr(15, u32(v)), st.sampled_from([254, 255, 100])),  # RTA_TABLE
    st.builds(lambda v: attr(30, u32(v)), st.integers(1, 9)),  # RTA_NH_ID
    st.just(CACHEINFO),
    st.just(PREF),
    st.builds(
        lambda hops: attr(9, multipath6(hops)),
        st.lists(st.tuples(st.integers(1, 4), addresses6, st.integers(1, 3)), min_size=1),
    ),
    st.builds(lambda a: attr(5, socket.inet_aton(a)), st.just("10.0.0.1")),  # wrong size
)
messages6 = st.builds(
    message6,
    st.sampled_from(ROUTE_EVENTS),
    st.sampled_from([0, 8, 48, 64, 128]),
    st.sampled_from([254, 255, 0]),
    st.sampled_from([1, 2, 6]),
    st.sampled_from([0, 0x200]),
    st.sampled_from([0, 0x600, 0x100, 0x400, 0xC00]),
    st.lists(attributes6, max_size=8),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages6, min_size=1, max_size=5))
def test_generated_ipv6_messages_agree_with_pyroute2(msgs):
    logging.disable(logging.WARNING)  # pyroute2 logs every attribute it cannot decode
    try:
        data = b"".join(msgs)
        fast = fastnl.parse(data, slow)
        reference = slow(data)
    finally:
        logging.disable(logging.NOTSET)
    assert len(fast) == len(reference) == len(msgs)
    for f, r in zip(fast, reference, strict=True):
        assert effective(f) == effective(r)


# Real-kernel shapes (attribute order as Linux writes them) for the view's fast path.
prefixes6 = st.sampled_from(["fd00::", "fd00:0:1::", "2001:db8:5::", "::", "fe80::", "ff00::"])
gateways6 = st.sampled_from([None, "2001:db8:1::100", "2001:db8:2::100", "fe80::1"])


def kernel_route6(kind, dst, plen, table, rtype, metric, gw, oif, nhid, nlflags) -> bytes:
    attrs = [attr(15, u32(table))]
    if dst != "::" or plen:
        attrs.append(attr(1, ip6(dst)))
    attrs.append(attr(6, u32(metric)))
    if nhid:
        attrs.append(attr(30, u32(nhid)))
    if gw:
        attrs.append(attr(5, ip6(gw)))
    if oif:
        attrs.append(attr(4, u32(oif)))
    attrs += [CACHEINFO, PREF]
    return message6(kind, plen, table, rtype, 0, nlflags, attrs)


def nexthop_msg(nhid: int, oif: int, gw: str) -> bytes:
    body = struct.pack("=BBBBI", 10, 0, 3, 0, 0)
    body += attr(1, u32(nhid)) + attr(6, ip6(gw)) + attr(5, u32(oif))
    return struct.pack("=IHHII", 16 + len(body), 104, 0, 7, 0) + body


routes6 = st.builds(
    kernel_route6,
    st.sampled_from([24, 24, 25]),
    prefixes6,
    st.sampled_from([48, 64, 128, 0]),
    st.sampled_from([254, 254, 255]),
    st.sampled_from([1, 1, 2]),
    st.sampled_from([1024, 20]),
    gateways6,
    st.sampled_from([None, 1, 2]),
    st.sampled_from([None, None, 7]),
    st.sampled_from([0x600, 0x100, 0x400, 0xC00, 0]),
)
events6 = st.one_of(
    routes6,
    st.builds(link_msg, st.integers(1, 2), st.booleans()),
    st.builds(nexthop_msg, st.just(7), st.integers(1, 2), gateways6.filter(bool)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(events6, max_size=25), st.integers(1, 5))
def test_ipv6_fast_path_matches_the_general_path(sequence, every):
    fast, general = KernelView(1), GeneralView(1)
    for view in (fast, general):
        view.feed_many(links())
    out_fast, out_general = [], []
    for i, data in enumerate(sequence):
        fast.feed_many(fastnl.parse(data, slow))
        general.feed_many(slow(data))
        if i % every == 0:
            out_fast += fast.drain()
            out_general += general.drain()
        assert fast.routes == general.routes
        assert fast.counts() == general.counts()
        assert fast.unresolved_gateways() == general.unresolved_gateways()
    assert out_fast + fast.drain() == out_general + general.drain()
    assert fast.snapshot() == general.snapshot()


@given(st.binary(min_size=16, max_size=16))
def test_ipv6_text_is_pythons(raw):
    assert fastnl.addr_text(10, raw) == str(ipaddress.IPv6Address(raw))


# --- garbage ---------------------------------------------------------------------------


def _raw(data: bytes) -> list:
    return [("raw", data)]


def _check_output(out: list) -> None:
    for item in out:
        if item.__class__ is tuple and item[0] != "raw":
            prefix, shape, deleted, nlflags = item
            assert "/" in prefix and len(shape) == 9
            assert isinstance(deleted, bool) and isinstance(nlflags, int)
        elif item.__class__ is dict:
            assert item["event"] in ("RTM_NEWROUTE", "RTM_DELROUTE")


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data):
    _check_output(fastnl.parse(data, _raw))
    _check_output(fastnl.parse(bytearray(data) + bytearray(64), _raw, len(data)))


def _route_messages() -> list[bytes]:
    out = []
    for _step, datagrams in captured():
        for data in datagrams:
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind in ROUTE_EVENTS:
                    out.append(data[off : off + length])
                off += (length + 3) & ~3
    return out


@settings(max_examples=500)
@given(
    st.sampled_from(_route_messages()),
    st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_damaged_kernel_messages_never_raise(message, changes):
    """Real route messages with bytes changed: lengths, types and addresses go wrong."""
    data = bytearray(message)
    for pos, value in changes:
        if pos < len(data):
            data[pos] = value
    _check_output(fastnl.parse(bytes(data), _raw))


@pytest.mark.parametrize("cut", [17, 28, 40, 100])
def test_cut_messages_go_to_the_general_decoder(cut):
    data = dict(captured())["bench routes v6 add"][0]
    out = fastnl.parse(data[:cut], _raw)
    assert out == [("raw", data[:cut])] or all(o[0] != "raw" for o in out)


class CountingView(KernelView):
    """KernelView counting the messages its fast paths handed to the general path."""

    general = 0

    def _on_route(self, msg, deleted):
        self.general += 1
        super()._on_route(msg, deleted)


def test_zebras_move_of_an_ipv6_route_stays_on_the_fast_path():
    """zebra moves an IPv6 route to another peer by removing it and adding the new one,
    and adds nexthop objects as it goes (each one makes the view forget its shapes):
    the removal is still recognised as the one route stored, by value. Before, each
    went the general way: a fifth of rfclient's CPU when a peer of 50k IPv6 routes
    went down."""
    view, reference = CountingView(1), GeneralView(1)
    old_hop, new_hop = nexthop_msg(7, 1, "2001:db8:1::100"), nexthop_msg(8, 2, "2001:db8:2::100")
    prefixes = [f"2001:db8:{i:x}::" for i in range(1, 40)]

    def route(kind, dst, nhid, gw, oif, flags=0x600):
        return kernel_route6(kind, dst, 48, 254, 1, 20, gw, oif, nhid, flags)

    steps = [old_hop, *(route(24, p, 7, "2001:db8:1::100", 1) for p in prefixes), new_hop]
    for p in prefixes:
        steps += [route(25, p, 7, "2001:db8:1::100", 1, 0), route(24, p, 8, "2001:db8:2::100", 2)]
    for v in (view, reference):
        v.feed_many(links())
        for data in steps:
            v.feed_many(fastnl.parse(data, slow) if v is view else slow(data))
    assert view.general == 0
    assert view.routes == reference.routes
    assert view.drain() == reference.drain()
    assert {p: r.nexthops for p, r in view.routes.items() if p.startswith("2001:db8:")} == {
        f"{p}/48": [NextHop(2, "2001:db8:2::100")] for p in prefixes
    }

"""The fast route decoder agrees with pyroute2 on everything KernelView reads."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from routeflow.client import fastnl
from routeflow.client.kernel import KernelView
from routeflow.client.netlink import RtnlMarshal

_marshal = RtnlMarshal()


def _addr(value):
    """Address text as KernelView compares it (IPv6 through ipaddress)."""
    if value is None or ":" not in str(value):
        return value
    return str(ipaddress.IPv6Address(str(value)))


def _hops(multipath):
    if not multipath:
        return None
    out = []
    for nh in multipath:
        via = nh.get("RTA_VIA")
        out.append(
            (
                nh.get("oif"),
                nh.get("hops") or 0,
                _addr(nh.get("RTA_GATEWAY")),
                None if via is None else (via.get("family"), _addr(via.get("addr"))),
            )
        )
    return out


def effective(msg) -> tuple:
    """What KernelView takes from a route message (as its general path reads it)."""
    if msg.__class__ is tuple:
        msg = fastnl.note_dict(msg)
    get = msg.get
    family = get("family")
    if family not in (2, 10):
        return ("family", family)
    table = get("RTA_TABLE") or get("table") or 0
    dst = get("RTA_DST")
    header = get("header")
    nh = get("RTA_NH_ID")
    via = get("RTA_VIA")
    return (
        get("event"),
        f"{_addr(dst) if dst else ('0.0.0.0' if family == 2 else '::')}/{get('dst_len') or 0}",
        (table, get("tos") or 0, get("RTA_PRIORITY") or 0),
        get("type"),
        get("flags") or 0,
        # a nexthop object's route is read through the object, not its hops
        None if nh is not None else get("RTA_OIF"),
        None if nh is not None else _addr(get("RTA_GATEWAY")) or None,
        nh,
        None if nh is not None else _hops(get("RTA_MULTIPATH")),
        None if via is None else (via.get("family"), _addr(via.get("addr"))),
        (header.get("flags") or 0) & 0x100 if header is not None else 0,  # NLM_F_REPLACE
    )


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def ip(text: str) -> bytes:
    return socket.inet_aton(text)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def message(kind: int, family: int, dst_len: int, table: int, rtype: int, flags: int, attrs):
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 4, 0, rtype, flags)
    body += b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 7, 0) + body


def multipath(hops) -> bytes:
    out = b""
    for oif, gw, weight in hops:
        inner = attr(5, ip(gw))
        out += struct.pack("=HBBi", 8 + len(inner), 0, weight - 1, oif) + inner
    return out


addresses = st.sampled_from(["10.0.0.0", "172.31.2.100", "100.64.1.0", "0.0.0.0", "1.2.3.4"])
attributes = st.one_of(
    st.builds(lambda a: attr(1, ip(a)), addresses),  # RTA_DST
    st.builds(lambda a: attr(5, ip(a)), addresses),  # RTA_GATEWAY
    st.builds(lambda a: attr(7, ip(a)), addresses),  # RTA_PREFSRC
    st.builds(lambda v: attr(4, u32(v)), st.integers(0, 50)),  # RTA_OIF
    st.builds(lambda v: attr(6, u32(v)), st.integers(0, 2**32 - 1)),  # RTA_PRIORITY
    st.builds(lambda v: attr(15, u32(v)), st.sampled_from([254, 255, 1000])),  # RTA_TABLE
    st.builds(lambda v: attr(30, u32(v)), st.integers(1, 9)),  # RTA_NH_ID
    st.builds(lambda v: attr(16, u32(v)), st.integers(0, 9)),  # RTA_MARK
    st.builds(lambda v: attr(20, bytes([v])), st.integers(0, 3)),  # RTA_PREF
    st.builds(
        lambda hops: attr(9, multipath(hops)),
        st.lists(st.tuples(st.integers(1, 4), addresses, st.integers(1, 3)), min_size=1),
    ),
)
messages = st.builds(
    message,
    st.sampled_from([24, 25]),
    st.sampled_from([2, 2, 2, 10]),
    st.integers(0, 32),
    st.sampled_from([254, 255, 0]),
    st.sampled_from([1, 2, 3, 6]),
    st.sampled_from([0, 0x200]),
    st.lists(attributes, max_size=6),
)


def slow(data: bytes):
    return list(_marshal.parse(data))


def links() -> list:
    out = []
    for index in range(1, 5):
        m = ifinfmsg()
        m["index"] = index
        m["flags"] = 1
        m["attrs"] = [("IFLA_IFNAME", f"eth{index}"), ("IFLA_ADDRESS", f"02:00:00:00:00:0{index}")]
        m["header"]["type"] = 16
        m.encode()
        out += slow(m.data)
    return out


@given(st.lists(messages, min_size=1, max_size=5))
def test_fast_and_pyroute2_agree(msgs):
    data = b"".join(msgs)
    fast = fastnl.parse(data, slow)
    reference = slow(data)
    assert len(fast) == len(reference) == len(msgs)
    for f, r in zip(fast, reference, strict=True):
        assert effective(f) == effective(r)


@given(st.lists(messages, min_size=1, max_size=8))
def test_kernel_view_sees_the_same_routes(msgs):
    data = b"".join(msgs)
    a, b = KernelView(1), KernelView(1)
    for view in (a, b):
        view.feed_many(links())
        view.drain()
    a.feed_many(fastnl.parse(data, slow))
    b.feed_many(slow(data))
    assert a.routes == b.routes
    assert a.drain() == b.drain()


def test_simple_routes_do_not_touch_pyroute2():
    calls = []

    def counting(data):
        calls.append(data)
        return slow(data)

    attrs = [attr(15, u32(254)), attr(1, ip("100.0.1.0")), attr(5, ip("172.31.2.100"))]
    data = message(24, 2, 24, 254, 1, 0, [*attrs, attr(4, u32(3))])
    (note,) = fastnl.parse(data * 1, counting)
    assert not calls
    assert note == ("100.0.1.0/24", (2, 254, 0, 0, 1, 0, 3, "172.31.2.100", None), False, 0)
    mp = message(24, 2, 24, 254, 1, 0, [attr(9, multipath([(3, "1.2.3.4", 1)]))])
    (msg,) = fastnl.parse(mp, counting)
    assert not calls
    assert msg["RTA_MULTIPATH"] == [{"flags": 0, "hops": 0, "oif": 3, "RTA_GATEWAY": "1.2.3.4"}]
    encap = message(24, 2, 24, 254, 1, 0, [attr(22, struct.pack("=HH4s", 8, 1, b"\0\0\1\0"))])
    fastnl.parse(encap, counting)
    assert calls == [encap]  # an encapsulation is pyroute2's


def test_truncated_input_goes_to_the_general_decoder():
    calls = []
    good = message(24, 2, 24, 254, 1, 0, [attr(1, ip("100.0.1.0"))])
    fastnl.parse(good + good[:20], lambda d: calls.append(d) or [])
    assert calls == [good[:20]]


class GeneralView(KernelView):
    """KernelView without its fast paths: every message takes the general path."""

    def _on_simple_route(self, msg):
        return False

    def _on_note(self, prefix, shape_key, deleted, nlflags=0):
        self._on_route(fastnl.note_dict((prefix, shape_key, deleted, nlflags)), deleted)


def link_msg(index: int, up: bool, name: str | None = None) -> bytes:
    m = ifinfmsg()
    m["index"] = index
    m["flags"] = 1 if up else 0
    m["attrs"] = [("IFLA_IFNAME", name or f"eth{index}"), ("IFLA_ADDRESS", "02:00:00:00:00:01")]
    m["header"]["type"] = 16
    m.encode()
    return m.data


route_prefixes = st.sampled_from(["100.0.1.0", "100.0.2.0", "10.0.0.0", "0.0.0.0"])
simple_routes = st.builds(
    lambda kind, dst, plen, table, rtype, gw, oif, prio, nhid: message(
        kind,
        2,
        plen,
        table,
        rtype,
        0,
        [
            attr(15, u32(table)),
            attr(1, ip(dst)),
            *([attr(5, ip(gw))] if gw else []),
            *([attr(4, u32(oif))] if oif else []),
            *([attr(6, u32(prio))] if prio else []),
            *([attr(30, u32(nhid))] if nhid else []),
        ],
    ),
    st.sampled_from([24, 24, 25]),
    route_prefixes,
    st.sampled_from([24, 8]),
    st.sampled_from([254, 254, 255]),
    st.sampled_from([1, 1, 2]),
    st.sampled_from([None, "172.31.2.100", "172.31.1.2"]),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([0, 20]),
    st.sampled_from([None, None, 7]),
)
events = st.one_of(
    simple_routes,
    st.builds(link_msg, st.integers(1, 2), st.booleans()),
    st.builds(lambda i: link_msg(i, True, "mgmt0"), st.integers(1, 2)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=25), st.integers(1, 5))
def test_fast_paths_match_the_general_path(sequence, every):
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

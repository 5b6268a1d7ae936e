"""The precomputed route flow-mods are byte-for-byte what os-ken would send."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import fastof, ofmsg
from routeflow.proxy import openflow as of
from routeflow.rflib.protocol import FibEntry, RouteKind


class _Datapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


DP = _Datapath()


def _os_ken(prefix: str, group: int, xid: int, delete: bool) -> bytes:
    """os-ken's flow-mod of the route ``prefix`` through next hop ``group`` (which
    applies that next hop's shard for the prefix, openflow.route_group)."""
    (spec,) = of.fib_flows(FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=group))
    msg = ofmsg.flow_mod(DP, spec, delete)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


# /1 to /32: the default route (/0) has no ipv4_dst field and is never packed
# (fibwriter sends it through os-ken).
prefixes = st.builds(
    lambda addr, plen: str(ipaddress.IPv4Network((addr, plen), strict=False)),
    st.integers(0, 2**32 - 1),
    st.integers(1, 32),
)


@given(prefixes, st.integers(1, 2**32 - 2), st.integers(0, 2**32 - 1))
def test_route_add_matches_os_ken(prefix, group, xid):
    net, plen = fastof.parse_prefix(prefix)
    buf = bytearray(fastof.FLOW_ADD_SIZE + 5)
    fastof.pack_route_add(buf, 5, xid, net, plen, of.route_group(group, prefix))
    assert bytes(buf[5:]) == _os_ken(prefix, group, xid, delete=False)


@given(prefixes, st.integers(0, 2**32 - 1))
def test_route_delete_matches_os_ken(prefix, xid):
    net, plen = fastof.parse_prefix(prefix)
    buf = bytearray(fastof.FLOW_DELETE_SIZE)
    fastof.pack_route_delete(buf, 0, xid, net, plen)
    assert bytes(buf) == _os_ken(prefix, 1, xid, delete=True)


@pytest.mark.parametrize("plen", range(1, 33))
def test_every_prefix_length(plen):
    prefix = str(ipaddress.IPv4Network((0xC0A80101, plen), strict=False))
    net, got = fastof.parse_prefix(prefix)
    assert got == plen
    buf = bytearray(fastof.FLOW_ADD_SIZE)
    fastof.pack_route_add(buf, 0, 1, net, plen, of.route_group(7, prefix))
    assert bytes(buf) == _os_ken(prefix, 7, 1, delete=False)


def test_parse_prefix_clears_host_bits_and_rejects_junk():
    assert fastof.parse_prefix("10.1.2.3/8") == (0x0A000000, 8)
    assert fastof.parse_prefix("10.1.2.3") == (0x0A010203, 32)
    for bad in ("10.1.2/8", "10.1.2.3/33", "10.1.2.3/-1", "x.y.z.w/8", "10.1.2.300/8", ""):
        with pytest.raises(ValueError):
            fastof.parse_prefix(bad)


def test_barrier_request_matches_os_ken():
    msg = ofproto_v1_3_parser.OFPBarrierRequest(DP)
    msg.set_xid(0x1234)
    msg.serialize()
    assert fastof.barrier_request(0x1234) == bytes(msg.buf)


# --- IPv6 -------------------------------------------------------------------------------------

#: Addresses of every shape: random, sparse words (runs of zeros the text
#: compresses), IPv4-mapped and -compatible.
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
    st.integers(1, 128),
)


@given(prefixes6, st.integers(1, 2**32 - 2), st.integers(0, 2**32 - 1))
def test_route6_add_matches_os_ken(prefix, group, xid):
    net, plen = fastof.parse_prefix6(prefix)
    buf = bytearray(fastof.FLOW6_ADD_SIZE + 5)
    size = fastof.pack_route6_add(buf, 5, xid, net, plen, of.route_group(group, prefix))
    assert bytes(buf[5 : 5 + size]) == _os_ken(prefix, group, xid, delete=False)


@given(prefixes6, st.integers(0, 2**32 - 1))
def test_route6_delete_matches_os_ken(prefix, xid):
    net, plen = fastof.parse_prefix6(prefix)
    buf = bytearray(fastof.FLOW6_ADD_SIZE)
    size = fastof.pack_route6_delete(buf, 0, xid, net, plen)
    assert bytes(buf[:size]) == _os_ken(prefix, 1, xid, delete=True)


def test_every_ipv6_prefix_length():
    for plen in range(1, 129):
        prefix = str(ipaddress.IPv6Network(("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", plen), False))
        net, got = fastof.parse_prefix6(prefix)
        assert got == plen
        buf = bytearray(fastof.FLOW6_ADD_SIZE)
        size = fastof.pack_route6_add(buf, 0, 1, net, plen, of.route_group(7, prefix))
        assert bytes(buf[:size]) == _os_ken(prefix, 7, 1, delete=False), prefix
        size = fastof.pack_route6_delete(buf, 0, 2, net, plen)
        assert bytes(buf[:size]) == _os_ken(prefix, 7, 2, delete=True), prefix


def test_parse_prefix6_clears_host_bits_and_rejects_junk():
    net, plen = fastof.parse_prefix6("2001:db8::1/32")
    assert (ipaddress.IPv6Address(net), plen) == (ipaddress.IPv6Address("2001:db8::"), 32)
    assert fastof.parse_prefix6("::ffff:1.2.3.4") == (
        ipaddress.IPv6Address("::ffff:1.2.3.4").packed,
        128,
    )
    for bad in ("2001:db8::/129", "2001:db8::/-1", "2001:db8::/x", "10.0.0.0/8", "2001:::1/64", ""):
        with pytest.raises(ValueError):
            fastof.parse_prefix6(bad)

"""The precomputed route flow-mods are byte-for-byte what os-ken would send."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import fastof
from routeflow.proxy import openflow as of
from routeflow.proxy.app import _flow_mod
from routeflow.rflib.protocol import FibEntry, RouteKind


class _Datapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


DP = _Datapath()


def _os_ken(prefix: str, group: int, xid: int, delete: bool) -> bytes:
    (spec,) = of.fib_flows(FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=group))
    msg = _flow_mod(DP, spec, delete)
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
    fastof.pack_route_add(buf, 5, xid, net, plen, group)
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
    fastof.pack_route_add(buf, 0, 1, net, plen, 7)
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

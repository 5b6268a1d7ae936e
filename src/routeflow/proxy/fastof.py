"""Precomputed OpenFlow 1.3 encoding for the one flow shape a full table is made of.

A route is a table-1 flow matching ``eth_type=IPv4, ipv4_dst=prefix`` (or
``eth_type=IPv6, ipv6_dst=prefix``) whose only instruction applies
``group:<next hop>``. os-ken's general encoder builds
half a dozen objects per flow-mod and walks its OXM tables (about 50 us); a
million routes would spend most of a minute there. Here each flow-mod is one
``struct.pack_into`` of a precompiled layout (well under 1 us).

The layouts are tested byte-for-byte against os-ken's encoder
(tests/unit/proxy/test_fastof.py), for every prefix length, so the two cannot
drift apart. Anything else (connected and local routes, router ports, groups)
still goes through os-ken; those are few.
"""

from __future__ import annotations

import socket
import struct

from routeflow.proxy.openflow import (
    COOKIE_KIND_SHIFT,
    COOKIE_RF,
    PRIO_ROUTE_BASE,
    TABLE_FIB,
    Kind,
)

__all__ = [
    "FLOW6_ADD_SIZE",
    "FLOW_ADD_SIZE",
    "FLOW_DELETE_SIZE",
    "ROUTE_COOKIE",
    "barrier_request",
    "flow_delete_strict",
    "pack_route6_add",
    "pack_route6_delete",
    "pack_route_add",
    "pack_route_delete",
    "parse_prefix",
    "parse_prefix6",
]

OFP_VERSION = 4
OFPT_BARRIER_REQUEST = 20
OFPT_FLOW_MOD = 14
OFPFC_ADD = 0
OFPFC_DELETE_STRICT = 4
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPMT_OXM = 1
OFPIT_APPLY_ACTIONS = 4
OFPAT_GROUP = 22
# OXM headers: class 0x8000 (OpenFlow basic) | field << 9 | hasmask << 8 | length.
OXM_ETH_TYPE = 0x80000A02
OXM_IPV4_DST = 0x80001804
OXM_IPV4_DST_W = 0x80001908
OXM_IPV6_DST = 0x80003610
OXM_IPV6_DST_W = 0x80003720
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_IPV6 = 0x86DD

ROUTE_COOKIE = COOKIE_RF | (Kind.ROUTE << COOKIE_KIND_SHIFT)
FLOW_ADD_SIZE = 88
FLOW_DELETE_SIZE = 72

# ofp_flow_mod (48 bytes), then ofp_match padded to 8 bytes, then for ADD one
# OFPIT_APPLY_ACTIONS instruction holding one OFPAT_GROUP action.
_HEAD = "!BBHIQQBBHHHIIIHxx"
_MATCH_W = "HHIHIIIxx"  # type, len=22, eth_type, ipv4_dst/mask, 2 bytes pad
_MATCH_H = "HHIHII6x"  # type, len=18, eth_type, ipv4_dst, 6 bytes pad
_GROUP = "HHxxxxHHI"
_ADD_W = struct.Struct(_HEAD + _MATCH_W + _GROUP)
_ADD_H = struct.Struct(_HEAD + _MATCH_H + _GROUP)
_DEL_W = struct.Struct(_HEAD + _MATCH_W)
_DEL_H = struct.Struct(_HEAD + _MATCH_H)
_BARRIER = struct.Struct("!BBHI")
assert _ADD_W.size == _ADD_H.size == FLOW_ADD_SIZE
assert _DEL_W.size == _DEL_H.size == FLOW_DELETE_SIZE

# IPv6: the match is longer, and differs in length between a /128 (exact) and
# a masked prefix, so these messages come in two sizes.
_MATCH6_W = "HHIHI16s16sxx"  # type, len=46, eth_type, ipv6_dst/mask, 2 bytes pad
_MATCH6_H = "HHIHI16sxx"  # type, len=30, eth_type, ipv6_dst, 2 bytes pad
_ADD6_W = struct.Struct(_HEAD + _MATCH6_W + _GROUP)
_ADD6_H = struct.Struct(_HEAD + _MATCH6_H + _GROUP)
_DEL6_W = struct.Struct(_HEAD + _MATCH6_W)
_DEL6_H = struct.Struct(_HEAD + _MATCH6_H)
#: The largest route flow-mod of either family: what a buffer must allow per route.
FLOW6_ADD_SIZE = _ADD6_W.size
assert (_ADD6_W.size, _ADD6_H.size, _DEL6_W.size, _DEL6_H.size) == (112, 96, 96, 80)

_MASKS = tuple((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33))
_PLEN = {str(n): n for n in range(33)}
_inet_aton = socket.inet_aton
_from_bytes = int.from_bytes


def parse_prefix(prefix: str) -> tuple[int, int]:
    """``"a.b.c.d/len"`` -> (network address as int, len); host bits are cleared.

    Only the canonical dotted-quad form is accepted (what rfserver sends).
    """
    addr, sep, plen_text = prefix.partition("/")
    plen = _PLEN.get(plen_text) if sep else 32
    if plen is None or addr.count(".") != 3:
        raise ValueError(f"not an IPv4 prefix: {prefix!r}")
    try:
        value = _from_bytes(_inet_aton(addr), "big")
    except OSError:
        raise ValueError(f"not an IPv4 prefix: {prefix!r}") from None
    return value & _MASKS[plen], plen


_MASKS6 = tuple(((2**128 - 1) ^ (2 ** (128 - n) - 1)) for n in range(129))
_MASK6_BYTES = tuple(m.to_bytes(16, "big") for m in _MASKS6)
_PLEN6 = {str(n): n for n in range(129)}
_AF6 = socket.AF_INET6
_inet_pton = socket.inet_pton


def parse_prefix6(prefix: str) -> tuple[bytes, int]:
    """``"addr/len"`` (IPv6, any textual form) -> (network address, len); host bits cleared."""
    addr, sep, plen_text = prefix.partition("/")
    plen = _PLEN6.get(plen_text) if sep else 128
    if plen is None or ":" not in addr:
        raise ValueError(f"not an IPv6 prefix: {prefix!r}")
    try:
        raw = _inet_pton(_AF6, addr)
    except OSError:
        raise ValueError(f"not an IPv6 prefix: {prefix!r}") from None
    if plen == 128:
        return raw, plen
    return (_from_bytes(raw, "big") & _MASKS6[plen]).to_bytes(16, "big"), plen


def pack_route6_add(
    buf: bytearray, offset: int, xid: int, net: bytes, plen: int, group_id: int
) -> int:
    """Write the ADD flow-mod of IPv6 route ``net/plen`` -> ``group_id``; returns its size."""
    prio = PRIO_ROUTE_BASE + plen
    if plen == 128:
        _ADD6_H.pack_into(
            buf, offset, OFP_VERSION, OFPT_FLOW_MOD, 96, xid, ROUTE_COOKIE, 0,
            TABLE_FIB, OFPFC_ADD, 0, 0, prio, OFP_NO_BUFFER, 0, 0, 0,
            OFPMT_OXM, 30, OXM_ETH_TYPE, ETH_TYPE_IPV6, OXM_IPV6_DST, net,
            OFPIT_APPLY_ACTIONS, 16, OFPAT_GROUP, 8, group_id,
        )  # fmt: skip
        return 96
    _ADD6_W.pack_into(
        buf, offset, OFP_VERSION, OFPT_FLOW_MOD, 112, xid, ROUTE_COOKIE, 0,
        TABLE_FIB, OFPFC_ADD, 0, 0, prio, OFP_NO_BUFFER, 0, 0, 0,
        OFPMT_OXM, 46, OXM_ETH_TYPE, ETH_TYPE_IPV6, OXM_IPV6_DST_W, net, _MASK6_BYTES[plen],
        OFPIT_APPLY_ACTIONS, 16, OFPAT_GROUP, 8, group_id,
    )  # fmt: skip
    return 112


def pack_route6_delete(buf: bytearray, offset: int, xid: int, net: bytes, plen: int) -> int:
    """Write the DELETE_STRICT flow-mod of the FIB flow of IPv6 ``net/plen``; returns its size."""
    prio = PRIO_ROUTE_BASE + plen
    if plen == 128:
        _DEL6_H.pack_into(
            buf, offset, OFP_VERSION, OFPT_FLOW_MOD, 80, xid, 0, 0,
            TABLE_FIB, OFPFC_DELETE_STRICT, 0, 0, prio, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
            OFPMT_OXM, 30, OXM_ETH_TYPE, ETH_TYPE_IPV6, OXM_IPV6_DST, net,
        )  # fmt: skip
        return 80
    _DEL6_W.pack_into(
        buf, offset, OFP_VERSION, OFPT_FLOW_MOD, 96, xid, 0, 0,
        TABLE_FIB, OFPFC_DELETE_STRICT, 0, 0, prio, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
        OFPMT_OXM, 46, OXM_ETH_TYPE, ETH_TYPE_IPV6, OXM_IPV6_DST_W, net, _MASK6_BYTES[plen],
    )  # fmt: skip
    return 96


def pack_route_add(
    buf: bytearray, offset: int, xid: int, net: int, plen: int, group_id: int
) -> None:
    """Write the ADD flow-mod of route ``net/plen`` -> ``group_id`` at ``buf[offset:]``."""
    prio = PRIO_ROUTE_BASE + plen
    if plen == 32:
        _ADD_H.pack_into(
            buf, offset, OFP_VERSION, OFPT_FLOW_MOD, FLOW_ADD_SIZE, xid, ROUTE_COOKIE, 0,
            TABLE_FIB, OFPFC_ADD, 0, 0, prio, OFP_NO_BUFFER, 0, 0, 0,
            OFPMT_OXM, 18, OXM_ETH_TYPE, ETH_TYPE_IPV4, OXM_IPV4_DST, net,
            OFPIT_APPLY_ACTIONS, 16, OFPAT_GROUP, 8, group_id,
        )  # fmt: skip
    else:
        _ADD_W.pack_into(
            buf, offset, OFP_VERSION, OFPT_FLOW_MOD, FLOW_ADD_SIZE, xid, ROUTE_COOKIE, 0,
            TABLE_FIB, OFPFC_ADD, 0, 0, prio, OFP_NO_BUFFER, 0, 0, 0,
            OFPMT_OXM, 22, OXM_ETH_TYPE, ETH_TYPE_IPV4, OXM_IPV4_DST_W, net, _MASKS[plen],
            OFPIT_APPLY_ACTIONS, 16, OFPAT_GROUP, 8, group_id,
        )  # fmt: skip


def pack_route_delete(buf: bytearray, offset: int, xid: int, net: int, plen: int) -> None:
    """Write the DELETE_STRICT flow-mod of the FIB flow of ``net/plen`` at ``buf[offset:]``."""
    prio = PRIO_ROUTE_BASE + plen
    if plen == 32:
        _DEL_H.pack_into(
            buf, offset, OFP_VERSION, OFPT_FLOW_MOD, FLOW_DELETE_SIZE, xid, 0, 0,
            TABLE_FIB, OFPFC_DELETE_STRICT, 0, 0, prio, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
            OFPMT_OXM, 18, OXM_ETH_TYPE, ETH_TYPE_IPV4, OXM_IPV4_DST, net,
        )  # fmt: skip
    else:
        _DEL_W.pack_into(
            buf, offset, OFP_VERSION, OFPT_FLOW_MOD, FLOW_DELETE_SIZE, xid, 0, 0,
            TABLE_FIB, OFPFC_DELETE_STRICT, 0, 0, prio, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
            OFPMT_OXM, 22, OXM_ETH_TYPE, ETH_TYPE_IPV4, OXM_IPV4_DST_W, net, _MASKS[plen],
        )  # fmt: skip


_FLOW_MOD_HEAD = struct.Struct(_HEAD)


def flow_delete_strict(xid: int, table: int, priority: int, match: bytes) -> bytes:
    """DELETE_STRICT of any flow, given its ofp_match as the switch reported it.

    ``match`` is the padded ofp_match of an OFPMP_FLOW reply entry: echoing
    it names exactly the flow the switch holds, whatever its fields, with no
    decoding and re-encoding (what os-ken's OFPMatch would cost per flow).
    """
    head = _FLOW_MOD_HEAD.pack(
        OFP_VERSION, OFPT_FLOW_MOD, 48 + len(match), xid, 0, 0,
        table, OFPFC_DELETE_STRICT, 0, 0, priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0,
    )  # fmt: skip
    return head + match


def barrier_request(xid: int) -> bytes:
    return _BARRIER.pack(OFP_VERSION, OFPT_BARRIER_REQUEST, 8, xid)

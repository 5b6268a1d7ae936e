"""Route notifications decoded without pyroute2: the hot path of a BGP full table.

pyroute2 decodes an RTM_NEWROUTE in about 40 us (it builds a tree of
attribute objects and looks every name up in tables); a full table is a
million of them. Here:

* a simple IPv4 route message (every attribute 4 bytes: table, destination,
  gateway, output interface, metric, nexthop object id) is decoded with one
  ``struct`` call into a *note*, a plain tuple ``(prefix, shape, deleted)``
  where ``shape = (table, tos, priority, type, flags, oif, gateway, nhid)``,
  which KernelView takes directly (``note_dict`` gives its pyroute2 form);
* other IPv4 route messages it can read become a dict with the keys and
  values KernelView reads from pyroute2's messages;
* anything else (multipath, RFC 5549 RTA_VIA, IPv6 routes, links,
  neighbours, nexthop objects, errors) is handed to the pyroute2 marshal
  unchanged, one message at a time. IPv6 tables are an order of magnitude
  smaller than IPv4 ones, so they are not worth a decoder of their own.

tests/unit/client/test_fastnl.py checks that the decoders never disagree.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["Note", "Shape", "note_dict", "parse"]

#: (table, tos, priority, type, flags, oif, gateway, nhid): what a route's fast path keys on
Shape = tuple[int, int, int, int, int, int | None, str | None, int | None]
#: (prefix, shape, deleted)
Note = tuple[str, Shape, bool]

RTM_NEWROUTE = 24
RTM_DELROUTE = 25
AF_INET = 2

# Attributes decoded here; any other attribute sends the message to pyroute2
# unless listed in _IGNORED (attributes KernelView never reads).
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_TABLE = 15
RTA_NH_ID = 30
_IGNORED = frozenset(
    {
        2,  # RTA_SRC
        3,  # RTA_IIF
        8,  # RTA_METRICS
        11,  # RTA_FLOW
        12,  # RTA_CACHEINFO
        16,  # RTA_MARK
        20,  # RTA_PREF
        23,  # RTA_EXPIRES
        24,  # RTA_PAD
        25,  # RTA_UID
        26,  # RTA_TTL_PROPAGATE
        27,  # RTA_IP_PROTO
        28,  # RTA_SPORT
        29,  # RTA_DPORT
    }
)

_HEAD = struct.Struct("=IHHII BBBBBBBBI")  # nlmsghdr + rtmsg
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_EVENTS = {RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE"}
_ADDRS = {RTA_DST: "RTA_DST", RTA_GATEWAY: "RTA_GATEWAY", RTA_PREFSRC: "RTA_PREFSRC"}
_U32S = {
    RTA_OIF: "RTA_OIF",
    RTA_PRIORITY: "RTA_PRIORITY",
    RTA_TABLE: "RTA_TABLE",
    RTA_NH_ID: "RTA_NH_ID",
}
_ntoa = socket.inet_ntoa

Fallback = Callable[[bytes], list[Any]]

_MAX_SIMPLE = 8
#: nlmsghdr + rtmsg + n attributes of 4-byte payloads, per n.
_SIMPLE = tuple(struct.Struct("=IHHII BBBBBBBBI" + "HH4s" * n) for n in range(_MAX_SIMPLE + 1))
#: 4-byte attributes a note may carry (the ignored ones are skipped).
_SIMPLE_ATTRS = frozenset({RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_NH_ID})
_SIMPLE_SKIP = (_IGNORED - {20}) | {RTA_PREFSRC}  # RTA_PREF is one byte


class _Layout:
    """How to read simple route messages whose attributes come in one order."""

    __slots__ = ("dst", "gw", "nhid", "oif", "prio", "struct", "table")

    def __init__(self, types: tuple[int, ...]) -> None:
        fmt = "=IHHII BBBBBBBBI"
        pos = 14
        first: dict[int, int] = {}
        for atype in types:
            atype &= 0x3FFF
            if atype in _SIMPLE_ATTRS and atype not in first:
                first[atype] = pos
                fmt += "HH4s" if atype in _ADDRS else "HHI"
            else:
                fmt += "HH4s"  # skipped, or repeated (pyroute2 reports the first)
            pos += 3
        self.struct = struct.Struct(fmt)
        self.dst = first.get(RTA_DST, 0) + 2 if RTA_DST in first else 0
        self.gw = first.get(RTA_GATEWAY, 0) + 2 if RTA_GATEWAY in first else 0
        self.oif = first.get(RTA_OIF, 0) + 2 if RTA_OIF in first else 0
        self.table = first.get(RTA_TABLE, 0) + 2 if RTA_TABLE in first else 0
        self.prio = first.get(RTA_PRIORITY, 0) + 2 if RTA_PRIORITY in first else 0
        self.nhid = first.get(RTA_NH_ID, 0) + 2 if RTA_NH_ID in first else 0


_layouts: dict[tuple[int, ...], _Layout | None] = {}
_EIGHTS = tuple((8,) * n for n in range(_MAX_SIMPLE + 1))


def _layout(types: tuple[int, ...]) -> _Layout | None:
    known = _SIMPLE_ATTRS | _SIMPLE_SKIP
    layout = _Layout(types) if all(t & 0x3FFF in known for t in types) else None
    if len(_layouts) < 1024:  # a handful in practice; never grow without bound
        _layouts[types] = layout
    return layout


def _note(data: Any, off: int, length: int, kind: int) -> Note | None:
    """A simple IPv4 route message as a note, or None."""
    n, rest = divmod(length - 28, 8)
    if rest or n > _MAX_SIMPLE:
        return None
    v = _SIMPLE[n].unpack_from(data, off)
    if v[5] != AF_INET or v[14::3] != _EIGHTS[n]:
        return None
    types = v[15::3]
    layout = _layouts.get(types)
    if layout is None:
        layout = _layout(types) if types not in _layouts else None
        if layout is None:
            return None
    v = layout.struct.unpack_from(data, off)
    i = layout.dst
    prefix = f"{_ntoa(v[i]) if i else '0.0.0.0'}/{v[6]}"
    i = layout.gw
    gw = _ntoa(v[i]) if i else None
    i = layout.table
    table = (v[i] if i else 0) or v[9]
    i = layout.prio
    prio = v[i] if i else 0
    i = layout.oif
    oif = v[i] if i else None
    i = layout.nhid
    nhid = v[i] if i else None
    return (prefix, (table, v[8], prio, v[12], v[13], oif, gw, nhid), kind == RTM_DELROUTE)


def note_dict(note: Note) -> dict[str, Any]:
    """A note in the form pyroute2 (and KernelView's general path) gives messages."""
    prefix, (table, tos, prio, rtype, flags, oif, gw, nhid), deleted = note
    dst, plen = prefix.split("/")
    msg: dict[str, Any] = {
        "event": "RTM_DELROUTE" if deleted else "RTM_NEWROUTE",
        "family": AF_INET,
        "dst_len": int(plen),
        "tos": tos,
        "table": table,
        "type": rtype,
        "flags": flags,
        "RTA_TABLE": table,
        "RTA_DST": dst,
    }
    for name, value in (
        ("RTA_PRIORITY", prio or None),
        ("RTA_OIF", oif),
        ("RTA_GATEWAY", gw),
        ("RTA_NH_ID", nhid),
    ):
        if value is not None:
            msg[name] = value
    return msg


def _route(data: bytes, off: int, end: int, kind: int) -> dict[str, Any] | None:
    """One route message as KernelView sees it, or None for the general decoder."""
    (
        _length,
        _type,
        _nlflags,
        _seq,
        _pid,
        family,
        dst_len,
        src_len,
        tos,
        table,
        proto,
        scope,
        rtype,
        flags,
    ) = _HEAD.unpack_from(data, off)
    msg: dict[str, Any] = {
        "event": _EVENTS[kind],
        "family": family,
        "dst_len": dst_len,
        "src_len": src_len,
        "tos": tos,
        "table": table,
        "proto": proto,
        "scope": scope,
        "type": rtype,
        "flags": flags,
    }
    if family != AF_INET:
        return None  # IPv6 and the rest: pyroute2 decodes them (not the hot path)
    pos = off + _HEAD.size
    while pos + 4 <= end:
        alen, atype = _ATTR.unpack_from(data, pos)
        if alen < 4 or pos + alen > end:
            return None
        atype &= 0x3FFF  # NLA_F_NESTED / NLA_F_NET_BYTEORDER
        name = _ADDRS.get(atype)
        if name is not None:
            if alen != 8:
                return None
            if name not in msg:  # pyroute2 reports the first of repeated attributes
                msg[name] = _ntoa(data[pos + 4 : pos + 8])
        else:
            name = _U32S.get(atype)
            if name is not None:
                if alen != 8:
                    return None
                if name not in msg:
                    msg[name] = _U32.unpack_from(data, pos + 4)[0]
            elif atype not in _IGNORED:
                return None  # RTA_MULTIPATH, RTA_VIA, encapsulation...: pyroute2 knows them
        pos += (alen + 3) & ~3
    table_attr = msg.get("RTA_TABLE")
    if table_attr is not None:
        msg["table"] = table_attr  # as pyroute2's get("table"): the attribute wins
    return msg


_LEN_KIND = struct.Struct("=IH")


def parse(data: Any, fallback: Fallback, size: int | None = None) -> list[Any]:
    """Every netlink message in ``data[:size]``; routes fast, the rest via ``fallback``.

    ``fallback(message_bytes)`` must return the decoded messages of exactly
    that one message (pyroute2's ``Marshal.parse`` does). ``data`` may be a
    reused bytearray: nothing returned refers to it.
    """
    out: list[Any] = []
    off = 0
    if size is None:
        size = len(data)
    while off + 16 <= size:
        length, kind = _LEN_KIND.unpack_from(data, off)
        if length < 16 or off + length > size:
            out.extend(fallback(bytes(data[off:size])))  # let the general decoder complain
            break
        msg = None
        if kind in _EVENTS and length >= _HEAD.size:
            msg = _note(data, off, length, kind) or _route(data, off, off + length, kind)
        if msg is None:
            out.extend(fallback(bytes(data[off : off + length])))
        else:
            out.append(msg)
        off += (length + 3) & ~3
    return out

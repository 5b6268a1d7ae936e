"""Route notifications decoded without pyroute2: the hot path of a BGP full table.

pyroute2 decodes an RTM_NEWROUTE in about 40 us (it builds a tree of
attribute objects and looks every name up in tables); a full table is a
million of them, in either family. Here:

* a route message by one hop or one nexthop object (destination, gateway,
  output interface, metric, table, nexthop id, plus attributes KernelView
  never reads such as IPv6's cache info and preference) is decoded into a
  *note*, a plain tuple ``(prefix, shape, deleted, nlflags)`` where
  ``shape = (family, table, tos, priority, type, flags, oif, gateway, nhid)``,
  which KernelView takes directly (``note_dict`` gives its pyroute2 form).
  IPv4 messages whose attributes are all 4 bytes long take one ``struct``
  call; others (IPv6 ones, or a nexthop-group route with the group's hops
  spelled out in RTA_MULTIPATH, which the view does not read since the
  object says it) take one ``struct`` call of a layout learnt from the first
  message of the same attribute sequence;
* other route messages (multipath, RFC 5549 RTA_VIA) become a dict with
  the keys and values KernelView reads from pyroute2's messages;
* anything else (routes with an encapsulation, links, neighbours, nexthop
  objects, errors, malformed messages) is handed to the pyroute2 marshal
  unchanged, one message at a time.

Addresses are text as KernelView keeps them: IPv4 dotted, IPv6 as Python's
``ipaddress`` writes it (the kernel's inet_ntop agrees except for addresses
with an embedded IPv4 address, which are converted again).

tests/unit/client/test_fastnl.py checks that the decoders never disagree,
on generated messages and on messages captured from the kernel.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["Note", "Shape", "addr_text", "note_dict", "parse"]

#: (family, table, tos, priority, type, flags, oif, gateway, nhid): what a route's fast path keys on
Shape = tuple[int, int, int, int, int, int, int | None, str | None, int | None]
#: (prefix, shape, deleted, netlink header flags)
Note = tuple[str, Shape, bool, int]

RTM_NEWROUTE = 24
RTM_DELROUTE = 25
AF_INET = 2
AF_INET6 = 10
RT_TABLE_MAIN = 254

# Attributes decoded here; any other attribute sends the message to pyroute2
# unless listed in _IGNORED (attributes KernelView never reads).
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
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
_RTNH = struct.Struct("=HBBi")  # struct rtnexthop
_EVENTS = {RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE"}
_ADDRS = {RTA_DST: "RTA_DST", RTA_GATEWAY: "RTA_GATEWAY", RTA_PREFSRC: "RTA_PREFSRC"}
_U32S = {
    RTA_OIF: "RTA_OIF",
    RTA_PRIORITY: "RTA_PRIORITY",
    RTA_TABLE: "RTA_TABLE",
    RTA_NH_ID: "RTA_NH_ID",
}
_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop


def _text6(raw: bytes) -> str:
    text = _ntop(AF_INET6, raw)
    return text if "." not in text else str(ipaddress.IPv6Address(raw))


def addr_text(family: int, raw: bytes) -> str:
    """An address of ``family`` (raw bytes of the right length) as KernelView keeps it."""
    return _ntoa(raw) if family == AF_INET else _text6(raw)


Fallback = Callable[[bytes], list[Any]]

# --- IPv4 messages of 4-byte attributes: one struct call ------------------------------

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


def _note(data: Any, off: int, length: int, kind: int, nlflags: int) -> Note | None:
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
    shape = (AF_INET, table, v[8], prio, v[12], v[13], oif, gw, nhid)
    return (prefix, shape, kind == RTM_DELROUTE, nlflags)


# --- other route messages by one hop or one nexthop object: learnt layouts -------------

#: Attributes a learnt layout reads, by payload kind.
_LEARN_ADDRS = frozenset({RTA_DST, RTA_GATEWAY})
_LEARN_U32S = frozenset({RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_NH_ID})
#: Skipped: never read by KernelView, or (RTA_MULTIPATH) only beside RTA_NH_ID.
_LEARN_SKIP = _IGNORED | {RTA_PREFSRC, RTA_MULTIPATH}
_ADDR_SIZE = {AF_INET: 4, AF_INET6: 16}


class _Learnt:
    """The attribute sequence of one message, as a struct that reads it in one call.

    Every attribute is three values (length, type, payload); ``lens`` and
    ``types`` are what a message must show at those places to share it.
    """

    __slots__ = (
        "dst",
        "family",
        "gw",
        "lens",
        "multipath",
        "nhid",
        "oif",
        "prio",
        "struct",
        "table",
        "types",
    )

    def __init__(
        self,
        fmt: str,
        lens: tuple[int, ...],
        types: tuple[int, ...],
        at: dict[int, int],
        family: int,
        multipath: bool,
    ):
        self.struct = struct.Struct(fmt)
        self.family = family
        self.multipath = multipath
        self.lens = lens
        self.types = types
        self.dst = at.get(RTA_DST, 0)
        self.gw = at.get(RTA_GATEWAY, 0)
        self.oif = at.get(RTA_OIF, 0)
        self.prio = at.get(RTA_PRIORITY, 0)
        self.table = at.get(RTA_TABLE, 0)
        self.nhid = at.get(RTA_NH_ID, 0)


#: Learnt layouts by message length; the bound keeps odd input from growing it.
_learnt: dict[int, list[_Learnt]] = {}
_learnt_count = 0
_MAX_LEARNT = 256


def _learn(data: Any, off: int, length: int, family: int) -> _Learnt | None:
    """Walk one message's attributes; a layout if a note can be made of it."""
    global _learnt_count
    size = _ADDR_SIZE.get(family)
    if size is None:
        return None
    fmt = "=IHHII BBBBBBBBI"
    lens: list[int] = []
    types: list[int] = []
    at: dict[int, int] = {}
    multipath = False
    pos, end, index = off + _HEAD.size, off + length, 14
    while pos < end:
        if pos + 4 > end:
            return None
        alen, raw_type = _ATTR.unpack_from(data, pos)
        if alen < 4 or pos + alen > end:
            return None
        atype = raw_type & 0x3FFF
        payload = alen - 4
        if atype in _LEARN_ADDRS:
            if payload != size:
                return None
        elif atype in _LEARN_U32S:
            if payload != 4:
                return None
        elif atype == RTA_MULTIPATH:
            multipath = True
        elif atype not in _LEARN_SKIP:
            return None
        if atype not in at and (atype in _LEARN_ADDRS or atype in _LEARN_U32S):
            at[atype] = index + 2  # pyroute2 reports the first of repeated attributes
            code = "I" if atype in _LEARN_U32S else f"{payload}s"
        else:
            code = f"{payload}s"
        pad = min(-alen % 4, end - pos - alen)
        fmt += f"HH{code}{pad}x"
        lens.append(alen)
        types.append(raw_type)
        pos += alen + pad
        index += 3
    if multipath and RTA_NH_ID not in at:
        return None  # real multipath: the dict path
    layout = _Learnt(fmt, tuple(lens), tuple(types), at, family, multipath)
    if _learnt_count < _MAX_LEARNT:
        _learnt.setdefault(length, []).append(layout)
        _learnt_count += 1
    return layout


def _note_learnt(data: Any, off: int, length: int, kind: int, nlflags: int) -> Note | None:
    """A route message by one hop or one nexthop object as a note, or None."""
    layout: _Learnt | None
    for layout in _learnt.get(length, ()):
        v = layout.struct.unpack_from(data, off)
        if v[15::3] == layout.types and v[14::3] == layout.lens and v[5] == layout.family:
            break
    else:
        layout = _learn(data, off, length, _HEAD.unpack_from(data, off)[5])
        if layout is None:
            return None
        v = layout.struct.unpack_from(data, off)
    family, plen = v[5], v[6]
    i = layout.table
    table = (v[i] if i else 0) or v[9]
    if layout.multipath and table != RT_TABLE_MAIN:
        return None  # a local route's hops are read, not its nexthop object's
    i = layout.dst
    if family == AF_INET6:
        prefix = f"{_text6(v[i]) if i else '::'}/{plen}"
        i = layout.gw
        gw = _text6(v[i]) if i else None
    else:
        prefix = f"{_ntoa(v[i]) if i else '0.0.0.0'}/{plen}"
        i = layout.gw
        gw = _ntoa(v[i]) if i else None
    i = layout.prio
    prio = v[i] if i else 0
    i = layout.oif
    oif = v[i] if i else None
    i = layout.nhid
    nhid = v[i] if i else None
    shape = (family, table, v[8], prio, v[12], v[13], oif, gw, nhid)
    return (prefix, shape, kind == RTM_DELROUTE, nlflags)


def note_dict(note: Note) -> dict[str, Any]:
    """A note in the form pyroute2 (and KernelView's general path) gives messages."""
    prefix, (family, table, tos, prio, rtype, flags, oif, gw, nhid), deleted, nlflags = note
    dst, plen = prefix.rsplit("/", 1)
    msg: dict[str, Any] = {
        "event": "RTM_DELROUTE" if deleted else "RTM_NEWROUTE",
        "header": {"flags": nlflags},
        "family": family,
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


# --- everything else about routes: dicts ---------------------------------------------


def _via(data: Any, pos: int, alen: int) -> dict[str, Any] | None:
    """struct rtvia: family (u16) and address, as pyroute2 gives it."""
    if alen < 6:
        return None
    family = struct.unpack_from("=H", data, pos + 4)[0]
    raw = bytes(data[pos + 6 : pos + alen])
    if len(raw) != _ADDR_SIZE.get(family, -1):
        return None
    return {"family": family, "addr": addr_text(family, raw)}


def _multipath(data: Any, pos: int, end: int, family: int) -> list[dict[str, Any]] | None:
    """RTA_MULTIPATH's rtnexthops as pyroute2 gives them (oif, hops, flags, attributes)."""
    size = _ADDR_SIZE[family]
    hops: list[dict[str, Any]] = []
    while pos + 8 <= end:
        nlen, nflags, nhops, oif = _RTNH.unpack_from(data, pos)
        if nlen < 8 or pos + nlen > end:
            return None
        hop: dict[str, Any] = {"flags": nflags, "hops": nhops, "oif": oif}
        apos, aend = pos + 8, pos + nlen
        while apos + 4 <= aend:
            alen, atype = _ATTR.unpack_from(data, apos)
            if alen < 4 or apos + alen > aend:
                return None
            atype &= 0x3FFF
            if atype == RTA_GATEWAY:
                if alen - 4 != size:
                    return None
                gateway = addr_text(family, bytes(data[apos + 4 : apos + alen]))
                hop.setdefault("RTA_GATEWAY", gateway)
            elif atype == RTA_VIA:
                via = _via(data, apos, alen)
                if via is None:
                    return None
                hop.setdefault("RTA_VIA", via)
            elif atype != 11:  # RTA_FLOW; an encapsulation is pyroute2's
                return None
            apos += (alen + 3) & ~3
        hops.append(hop)
        pos += (nlen + 3) & ~3
    return hops


def _route(data: Any, off: int, end: int, kind: int) -> dict[str, Any] | None:
    """One route message as KernelView sees it, or None for the general decoder."""
    (
        _length,
        _type,
        nlflags,
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
    size = _ADDR_SIZE.get(family)
    if size is None:
        return None
    msg: dict[str, Any] = {
        "event": _EVENTS[kind],
        "header": {"flags": nlflags},
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
    pos = off + _HEAD.size
    while pos + 4 <= end:
        alen, atype = _ATTR.unpack_from(data, pos)
        if alen < 4 or pos + alen > end:
            return None
        atype &= 0x3FFF  # NLA_F_NESTED / NLA_F_NET_BYTEORDER
        name = _ADDRS.get(atype)
        if name is not None:
            if alen - 4 != size:
                return None
            if name not in msg:  # pyroute2 reports the first of repeated attributes
                msg[name] = addr_text(family, bytes(data[pos + 4 : pos + alen]))
        else:
            name = _U32S.get(atype)
            if name is not None:
                if alen != 8:
                    return None
                if name not in msg:
                    msg[name] = _U32.unpack_from(data, pos + 4)[0]
            elif atype == RTA_MULTIPATH:
                hops = _multipath(data, pos + 4, pos + alen, family)
                if hops is None:
                    return None
                msg.setdefault("RTA_MULTIPATH", hops)
            elif atype == RTA_VIA:
                via = _via(data, pos, alen)
                if via is None:
                    return None
                msg.setdefault("RTA_VIA", via)
            elif atype not in _IGNORED:
                return None  # encapsulation and the like: pyroute2 knows them
        pos += (alen + 3) & ~3
    table_attr = msg.get("RTA_TABLE")
    if table_attr is not None:
        msg["table"] = table_attr  # as pyroute2's get("table"): the attribute wins
    return msg


_LEN_KIND = struct.Struct("=IHH")


def parse(
    data: Any,
    fallback: Fallback,
    size: int | None = None,
    start: int = 0,
    out: list[Any] | None = None,
) -> list[Any]:
    """Every netlink message in ``data[start:size]``; routes fast, the rest via ``fallback``.

    ``fallback(message_bytes)`` must return the decoded messages of exactly
    that one message (pyroute2's ``Marshal.parse`` does). ``data`` may be a
    reused bytearray: nothing returned refers to it. The messages are
    appended to ``out`` if given (and it is returned).
    """
    if out is None:
        out = []
    off = start
    if size is None:
        size = len(data)
    while off + 16 <= size:
        length, kind, nlflags = _LEN_KIND.unpack_from(data, off)
        if length < 16 or off + length > size:
            out.extend(fallback(bytes(data[off:size])))  # let the general decoder complain
            break
        msg = None
        if kind in _EVENTS and length >= _HEAD.size:
            msg = (
                _note(data, off, length, kind, nlflags)
                or _note_learnt(data, off, length, kind, nlflags)
                or _route(data, off, off + length, kind)
            )
        if msg is None:
            out.extend(fallback(bytes(data[off : off + length])))
        else:
            out.append(msg)
        off += (length + 3) & ~3
    return out

"""FibMod -> encoded flow-mods, in chunks, updating the proxy's desired FIB as it goes.

Route entries (prefix -> next-hop group), which are nearly all of a big table,
are packed with the precomputed layouts of fastof.py (IPv4 and IPv6);
connected and local entries and default routes go through
``slow(spec, delete)`` (os-ken's encoder). Entries are
handled strictly in order: for each, the flows it no longer needs are deleted
and its flows are (re)added, so one FibMod naming a prefix twice ends as the
last mention says.

A route on a next-hop shard (openflow.GROUP_SHARDS) no route used before gets
the shard's group first: its group-add goes ahead of the route's flow-mod in
the same chunk (``group_add`` encodes it), and the shard is recorded in the
state's ``shards``. A route through a next hop rfserver has not described
(never: it sends new next hops before the routes using them) makes no group.

``fib_chunks`` yields ``(bytes, message count)`` per ``chunk`` entries and
takes ``lock`` only while it computes a chunk: the caller writes the bytes
(and may block on a slow switch) without holding the lock, so packet relay
and switch events are never stuck behind a full table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from routeflow.proxy import fastof
from routeflow.proxy import openflow as of
from routeflow.proxy.core import DatapathState
from routeflow.rflib.protocol import FibEntry, FibMod, Mod, NextHopMod, RouteKind

__all__ = ["CHUNK", "fib_chunks"]

CHUNK = 4096
_UNICAST = RouteKind.UNICAST
_ADD_SIZE = fastof.FLOW_ADD_SIZE
#: Room per entry in a chunk's buffer: an IPv6 route's flow-mod is the largest.
_ROOM = max(_ADD_SIZE, fastof.FLOW6_ADD_SIZE)
_DEL_SIZE = fastof.FLOW_DELETE_SIZE
#: xid of route flow-mods: errors for them name their chunk.
XID_BASE = 0xE0000000

SlowEncoder = Callable[[of.FlowSpec, bool], bytes | None]
GroupEncoder = Callable[[of.GroupSpec], bytes | None]


def _no_group(_spec: of.GroupSpec) -> None:
    return None


def fib_chunks(
    state: Callable[[], DatapathState],
    msg: FibMod,
    slow: SlowEncoder,
    *,
    group_add: GroupEncoder = _no_group,
    lock: Any = None,
    chunk: int = CHUNK,
) -> Iterator[tuple[bytes, int]]:
    """Apply ``msg`` to the desired state returned by ``state()`` (its FIB, and the
    shards its routes make) and yield the group-mods and flow-mods it takes.

    ``slow`` and ``group_add`` may return None (no switch to encode for): the
    state is still updated and the chunk then yields nothing for those messages.
    """
    entries = msg.entries
    delete = msg.mod == Mod.DELETE
    guard = lock if lock is not None else contextlib.nullcontext()
    pack_add = fastof.pack_route_add
    pack_del = fastof.pack_route_delete
    parse = fastof.parse_prefix
    pack_add6 = fastof.pack_route6_add
    pack_del6 = fastof.pack_route6_delete
    parse6 = fastof.parse_prefix6
    group = of.route_group  # the next hop's shard for this prefix
    for n, start in enumerate(range(0, len(entries), chunk)):
        part = entries[start : start + chunk]
        xid = XID_BASE + (n & 0x0FFFFFFF)
        # Packed flow-mods are at most _ROOM bytes each, one per entry.
        buf = bytearray(len(part) * _ROOM)
        off = seg = 0
        count = 0
        parts: list[bytes] = []  # set when a slow-path message must keep its place
        with guard:
            st = state()
            table = st.fib
            pop = table.pop
            shards = st.shards
            nexthops = st.groups
            for entry in part:
                old = pop(entry.prefix, None)
                if delete:
                    if old is None:
                        continue
                    if old.kind == _UNICAST and not old.prefix.endswith(_DEFAULT):
                        if ":" in old.prefix:
                            net6, plen = parse6(old.prefix)
                            off += pack_del6(buf, off, xid, net6, plen)
                        else:
                            net, plen = parse(old.prefix)
                            pack_del(buf, off, xid, net, plen)
                            off += _DEL_SIZE
                        count += 1
                        continue
                    slow_flows: list[of.FlowSpec] = []
                    stale = of.fib_flows(old)
                else:
                    table[entry.prefix] = entry
                    if (
                        entry.kind == _UNICAST
                        and (old is None or old.kind == _UNICAST)
                        and not entry.prefix.endswith(_DEFAULT)
                    ):
                        gid = group(entry.nexthop_id, entry.prefix)
                        if gid not in shards:
                            # The shard's first route: its group goes first.
                            if off > seg:
                                parts.append(bytes(buf[seg:off]))
                                seg = off
                            count += _new_shard(gid, entry, nexthops, shards, group_add, parts)
                        # Same (table, priority, match) as any earlier route flow
                        # of this prefix: an ADD replaces it in place.
                        if ":" in entry.prefix:
                            net6, plen = parse6(entry.prefix)
                            off += pack_add6(buf, off, xid, net6, plen, gid)
                        else:
                            net, plen = parse(entry.prefix)
                            pack_add(buf, off, xid, net, plen, gid)
                            off += _ADD_SIZE
                        count += 1
                        continue
                    slow_flows = of.fib_flows(entry)
                    keep = {f.key for f in slow_flows}
                    stale = (
                        [] if old is None else [f for f in of.fib_flows(old) if f.key not in keep]
                    )
                if off > seg:
                    parts.append(bytes(buf[seg:off]))
                    seg = off
                if slow_flows and entry.kind == _UNICAST:  # a default route: its shard too
                    gid = group(entry.nexthop_id, entry.prefix)
                    if gid not in shards:
                        count += _new_shard(gid, entry, nexthops, shards, group_add, parts)
                count += _slow_all(slow, slow_flows, False, parts)
                count += _slow_all(slow, stale, True, parts)
        if parts:
            if off > seg:
                parts.append(bytes(buf[seg:off]))
            data = b"".join(parts)
        else:
            data = bytes(buf[:off])
        if count and data:
            yield data, count


#: The default route's match has no ipv4_dst (ipv6_dst) at all (see
#: openflow._prefix_match), which the packed flow-mods cannot express: it takes
#: the slow path.
_DEFAULT = "/0"


def _new_shard(
    gid: int,
    entry: FibEntry,
    nexthops: dict[int, NextHopMod],
    shards: set[int],
    group_add: GroupEncoder,
    out: list[bytes],
) -> int:
    """Record shard ``gid`` of the entry's next hop and encode its group-add into
    ``out``; the number of messages (none if the next hop is unknown)."""
    mod = nexthops.get(entry.nexthop_id)
    if mod is None:
        return 0
    shards.add(gid)
    data = group_add(of.nexthop_group(mod, gid))
    if data is None:
        return 0
    out.append(data)
    return 1


def _slow_all(slow: SlowEncoder, flows: list[of.FlowSpec], delete: bool, out: list[bytes]) -> int:
    n = 0
    for flow in flows:
        data = slow(flow, delete)
        if data is not None:
            out.append(data)
            n += 1
    return n

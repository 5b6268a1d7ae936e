"""Recorded BGP data as routeflow's tables and churn streams: the pure part.

Route collectors (RouteViews, RIPE RIS) and routers (BIRD, OpenBGPD, Quagga/FRR)
write MRT files; people pass them around as text too, printed by ``bgpdump -m``
or ``bgpkit-parser``. Whatever the source, it comes here as ``Record``s: one
announcement, withdrawal or session change of one peer, with a time. This module
turns them into what the benches take:

* a table (``table_from_records``): each prefix once, with the first peer's AS
  path (a RIB dump lists every peer's; a table has one path per prefix);
* a churn stream (``stream_from_records``): one peer's updates, replayed through
  one speaker, as that peer's router would see them. A multi-peer file is cut
  to one peer (the busiest unless named), since announcements of different
  peers are not withdrawals of each other. ADD-PATH (RFC 7911) is folded: a
  prefix stays announced while any of its path ids does. A session leaving
  Established withdraws everything the peer had announced, as the router
  would. Withdrawals of prefixes the file never announced (they were announced
  before it began) change nothing and are left out, as are default routes
  (they would take over the bench lab's own routing); both are counted.

Text lines (``parse_text_records``): bgpdump's ``-m`` layout
(``BGP4MP|time|A|peer|peer_as|prefix|as_path|...``, ``W``, ``STATE``,
``TABLE_DUMP2|time|B|...``) and bgpkit-parser's (``A|time|peer|peer_as|prefix|
as_path|...``, ``W``). AS sets (``{1,2}``) are left out of paths, as the MRT
readers do. Errors name the source and the line. Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from routeflow.bench.churn import ChurnError, Update
from routeflow.bench.table import TableEntry, TableError, _entry

__all__ = [
    "Record",
    "StreamInfo",
    "looks_like_text_records",
    "parse_text_records",
    "stream_from_records",
    "table_from_records",
]

#: BGP FSM state 6 (RFC 4271 8.2.2), as MRT and bgpdump number it.
ESTABLISHED = 6
DEFAULTS = frozenset({"0.0.0.0/0", "::/0"})


class Record(NamedTuple):
    """One event of one peer. ``op``: "A" announce (RIB entries are "A" too),
    "W" withdraw, "S" session state (``state`` is the new FSM state)."""

    t: float
    peer: str
    op: str
    prefix: str = ""
    as_path: tuple[int, ...] = ()
    path_id: int = 0
    state: int = 0


@dataclass
class StreamInfo:
    """What became of a file's records, for the bench to say."""

    peers: dict[str, int] = field(default_factory=dict)  # peer -> its A/W records
    peer: str = ""  # the one replayed
    updates: int = 0
    session_downs: int = 0  # times the session left Established (all withdrawn)
    unknown_withdrawals: int = 0  # of prefixes announced before the file began
    defaults_left_out: int = 0

    def summary(self) -> str:
        others = len(self.peers) - 1
        return (
            f"peer {self.peer} ({self.peers.get(self.peer, 0)} records"
            + (f"; {others} other peers left out" if others > 0 else "")
            + f"): {self.updates} updates, {self.session_downs} session resets, "
            f"{self.unknown_withdrawals} withdrawals of prefixes announced before the "
            f"file began and {self.defaults_left_out} default routes left out"
        )


def table_from_records(records: Iterable[Record], source: str) -> list[TableEntry]:
    """The announced prefixes, each once with the first path seen (file order)."""
    out: list[TableEntry] = []
    seen: set[str] = set()
    for r in records:
        if r.op != "A" or r.prefix in seen:
            continue
        seen.add(r.prefix)
        try:
            out.append(_entry(r.prefix, r.as_path))
        except ValueError as err:
            raise TableError(f"{source}: {err}") from None
    if not out:
        raise TableError(f"{source}: no announced prefix in it")
    return out


def stream_from_records(
    records: Iterable[Record], source: str, peer: str | None = None
) -> tuple[list[Update], StreamInfo]:
    """One peer's updates as a churn stream (times from its first record, never
    going back); see the module's docstring for the rules."""
    records = list(records)
    info = StreamInfo(peers=dict(Counter(r.peer for r in records if r.op in "AW")))
    if not info.peers:
        raise ChurnError(f"{source}: no announcement or withdrawal in it")
    if peer is None:
        peer = max(info.peers, key=lambda p: (info.peers[p], p))
    elif peer not in info.peers:
        known = ", ".join(sorted(info.peers, key=lambda p: -info.peers[p])[:10])
        raise ChurnError(f"{source}: no updates from peer {peer} (peers: {known})")
    info.peer = peer
    mine = [r for r in records if r.peer == peer]
    start = mine[0].t
    last = 0.0
    live: dict[str, set[int]] = {}  # prefix -> announced path ids
    out: list[Update] = []
    for r in mine:
        t = max(last, round(r.t - start, 6))
        last = t
        if r.op == "S":
            if r.state != ESTABLISHED and live:
                info.session_downs += 1
                out.extend(Update(t, "W", p) for p in live)
                live.clear()
            continue
        if r.prefix in DEFAULTS:
            info.defaults_left_out += 1
            continue
        ids = live.get(r.prefix)
        if r.op == "A":
            live.setdefault(r.prefix, set()).add(r.path_id)
            out.append(Update(t, "A", r.prefix, r.as_path))
        elif ids is None:
            info.unknown_withdrawals += 1
        else:
            ids.discard(r.path_id)
            if not ids:
                del live[r.prefix]
                out.append(Update(t, "W", r.prefix))
    info.updates = len(out)
    return out, info


def _prefix(text: str, where: str) -> str:
    try:
        return str(ipaddress.ip_network(text))
    except ValueError as err:
        raise ChurnError(f"{where}: {err}") from None


def _path(text: str, where: str) -> tuple[int, ...]:
    path = []
    for token in text.split():
        if token.startswith(("{", "[")):  # AS_SET / AS_CONFED_SET: left out
            continue
        token = token.strip("()")  # AS_CONFED_SEQUENCE members as bgpdump brackets them
        if not token.isdigit() or not 0 < int(token) < 2**32:
            raise ChurnError(f"{where}: AS number {token!r} in the path is not 1..2**32-1")
        path.append(int(token))
    return tuple(path)


def _time(text: str, where: str) -> float:
    try:
        t = float(text)
    except ValueError:
        raise ChurnError(f"{where}: time {text!r} is not a number") from None
    if not t >= 0:
        raise ChurnError(f"{where}: time {text!r} is negative")
    return t


BGPDUMP_KINDS = ("BGP4MP", "BGP4MP_ET", "TABLE_DUMP", "TABLE_DUMP2", "TABLE_DUMP_V2")


def looks_like_text_records(line: str) -> bool:
    """Is this (the first data line of a file) bgpdump -m or bgpkit-parser output?"""
    head = line.split("|", 1)[0]
    return "|" in line and (head in BGPDUMP_KINDS or head in ("A", "W"))


def parse_text_records(
    lines: Iterable[str], source: str, *, first_per_prefix: bool = False
) -> Iterator[Record]:
    """Records of ``bgpdump -m`` or ``bgpkit-parser`` lines (blank and ``#`` lines
    skipped), lazily. ``first_per_prefix``: announcements of a prefix already seen
    are skipped unparsed (a RIB dump as text lists each prefix once per peer:
    tens of millions of lines for a collector's full view)."""
    seen: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        f = line.split("|")
        if f[0] in BGPDUMP_KINDS:
            if len(f) < 3:
                raise ChurnError(f"{where}: too few '|' fields: {line[:80]!r}")
            t, op, rest = f[1], f[2], f[3:]
        elif f[0] in ("A", "W"):  # bgpkit-parser: type first
            op, t, rest = f[0], f[1] if len(f) > 1 else "", f[2:]
        else:
            raise ChurnError(
                f"{where}: neither bgpdump -m (BGP4MP|..., TABLE_DUMP2|...) nor "
                f"bgpkit-parser (A|... / W|...) output: {line[:80]!r}"
            )
        if op == "B":  # a RIB entry (TABLE_DUMP*)
            op = "A"
        if first_per_prefix and op == "A" and len(rest) > 2:
            if rest[2] in seen:
                continue
            seen.add(rest[2])
        when = _time(t, where)
        if op == "STATE":
            if len(rest) < 4 or not rest[3].isdigit():
                raise ChurnError(f"{where}: want STATE|peer|peer_as|old|new: {line[:80]!r}")
            yield Record(when, rest[0], "S", state=int(rest[3]))
            continue
        if op not in ("A", "W"):
            continue  # bgpdump's other kinds (e.g. OPEN/NOTIFY summaries) carry no routes
        need = 4 if op == "A" else 3
        if len(rest) < need:
            raise ChurnError(f"{where}: too few '|' fields for {op}: {line[:80]!r}")
        prefix = _prefix(rest[2], where)
        path = _path(rest[3], where) if op == "A" else ()
        yield Record(when, rest[0], op, prefix, path)

"""The discovered topology (pure): the switch-to-switch links rfproxy's probes found.

rfproxy reports each directed link (proxy/discovery.py) as it comes up or
goes down (DatapathLink), and its whole table (DatapathLinks) after a new
session or mastership. Here they become the server's view of the cabling,
kept in the state store so that a restarted rfserver still shows it. The
time is passed in; store records are encoded and decoded here, written by
the shell.

Rules:

1. A link up adds the link, or confirms it, under the reporting controller; a
   link down removes it. A repeated report changes nothing (no action).
2. A full table from controller ``ct_id`` for switches ``dp_ids`` replaces
   what ``ct_id`` reported heard at those switches: such links not in the
   table are removed ("not in the table"), the table's links are added or
   confirmed. Links heard at other switches, or reported by other
   controllers, stay.
3. A switch that left its controller takes the links that controller heard
   at it (destination end) down: their probes can no longer arrive.
4. Links loaded from the store are unconfirmed until their controller
   reports them again (rules 1, 2); the view shows which.

Actions out: ``LinkAdded`` and ``LinkRemoved``; ``records`` turns them into
store writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import msgspec

from routeflow.rflib import protocol as p

__all__ = [
    "RECORD_PREFIX",
    "KnownLink",
    "LinkAdded",
    "LinkRemoved",
    "Topology",
    "check_link",
    "records",
]

#: State store keys of discovered links: link/<src dp hex>:<port>-<dst dp hex>:<port>.
RECORD_PREFIX = "link/"
#: OpenFlow switch ports are 1..0xfffffeff; from 0xffffff00 up they are reserved ports.
_MAX_PORT = 0xFFFFFEFF
_MAX_REASON = 64

Key = tuple[int, int, int, int]


class KnownLink(msgspec.Struct, frozen=True, kw_only=True):
    ends: p.LinkEnds
    ct_id: int
    #: When it was first reported up (unix time), as the server saw it.
    since: float
    #: Reported by its controller since this server started (rule 4).
    confirmed: bool = True


class LinkAdded(msgspec.Struct, frozen=True):
    link: KnownLink


class LinkRemoved(msgspec.Struct, frozen=True):
    link: KnownLink
    reason: str


Action = LinkAdded | LinkRemoved


def key(ends: p.LinkEnds) -> Key:
    return (ends.src_dp_id, ends.src_port, ends.dst_dp_id, ends.dst_port)


def check_link(ends: p.LinkEnds, field: str = "link") -> str | None:
    """Why ``ends`` cannot be a link between switch ports (naming the field), or None."""
    for name in ("src_dp_id", "dst_dp_id"):
        value = getattr(ends, name)
        if not 0 <= value < 1 << 64:
            return f"{field}.{name} {value}: not a 64-bit datapath id"
    for name in ("src_port", "dst_port"):
        value = getattr(ends, name)
        if not 1 <= value <= _MAX_PORT:
            return f"{field}.{name} {value}: not a switch port (1..{_MAX_PORT:#x})"
    return None


def check_message(msg: p.DatapathLink | p.DatapathLinks) -> str | None:
    """Why a topology report is unusable (naming the field), or None."""
    if isinstance(msg, p.DatapathLink):
        if len(msg.reason) > _MAX_REASON:
            return f"reason: longer than {_MAX_REASON} characters"
        return check_link(msg.link)
    for i, ends in enumerate(msg.links):
        why = check_link(ends, f"links[{i}]")
        if why is not None:
            return why
    for i, dp_id in enumerate(msg.dp_ids):
        if not 0 <= dp_id < 1 << 64:
            return f"dp_ids[{i}] {dp_id}: not a 64-bit datapath id"
    return None


class Topology:
    """The links known now (see the module docstring for the rules)."""

    def __init__(self, stored: Iterable[KnownLink] = ()) -> None:
        self._links: dict[Key, KnownLink] = {
            key(k.ends): msgspec.structs.replace(k, confirmed=False) for k in stored
        }

    def links(self) -> list[KnownLink]:
        return [self._links[k] for k in sorted(self._links)]

    def __len__(self) -> int:
        return len(self._links)

    def link(self, msg: p.DatapathLink, now: float) -> list[Action]:
        """Rule 1."""
        if msg.up:
            return self._up(msg.ct_id, msg.link, now)
        old = self._links.pop(key(msg.link), None)
        return [] if old is None else [LinkRemoved(old, msg.reason or "down")]

    def table(self, msg: p.DatapathLinks, now: float) -> list[Action]:
        """Rule 2."""
        keep = {key(e) for e in msg.links}
        covered = set(msg.dp_ids)
        out: list[Action] = [
            LinkRemoved(self._links.pop(k), "not in the table")
            for k in sorted(self._links)
            if self._links[k].ct_id == msg.ct_id and k[2] in covered and k not in keep
        ]
        for ends in msg.links:
            out += self._up(msg.ct_id, ends, now)
        return out

    def switch_left(self, ct_id: int, dp_id: int) -> list[Action]:
        """Rule 3."""
        gone = [k for k, v in sorted(self._links.items()) if v.ct_id == ct_id and k[2] == dp_id]
        return [LinkRemoved(self._links.pop(k), "switch left") for k in gone]

    def _up(self, ct_id: int, ends: p.LinkEnds, now: float) -> list[Action]:
        k = key(ends)
        old = self._links.get(k)
        if old is not None and old.ct_id == ct_id and old.confirmed:
            return []
        since = old.since if old is not None and old.ct_id == ct_id else now
        new = self._links[k] = KnownLink(ends=ends, ct_id=ct_id, since=since)
        return [LinkAdded(new)]


# --- store records -------------------------------------------------------------------------


def record_key(ends: p.LinkEnds) -> str:
    return f"{RECORD_PREFIX}{ends.src_dp_id:x}:{ends.src_port}-{ends.dst_dp_id:x}:{ends.dst_port}"


def records(actions: Iterable[Action]) -> dict[str, bytes | None]:
    """The store writes of ``actions``: key -> record, or None to delete."""
    out: dict[str, bytes | None] = {}
    for a in actions:
        name = record_key(a.link.ends)
        if isinstance(a, LinkAdded):
            out[name] = json.dumps({"ct_id": a.link.ct_id, "since": a.link.since}).encode()
        else:
            out[name] = None
    return out


def from_records(items: Iterable[tuple[str, bytes]]) -> tuple[list[KnownLink], list[str]]:
    """Links from the store's records, and the keys of records that could not be read."""
    links, bad = [], []
    for name, value in items:
        try:
            src, dst = name[len(RECORD_PREFIX) :].split("-")
            sd, sp = src.split(":")
            dd, dport = dst.split(":")
            ends = p.LinkEnds(
                src_dp_id=int(sd, 16), src_port=int(sp), dst_dp_id=int(dd, 16), dst_port=int(dport)
            )
            data = json.loads(value)
            link = KnownLink(ends=ends, ct_id=int(data["ct_id"]), since=float(data["since"]))
        except (ValueError, KeyError, TypeError):
            bad.append(name)
            continue
        if check_link(ends) is not None:
            bad.append(name)
            continue
        links.append(link)
    return links, bad

"""`bench fib --table`: a table file's routes as the bench's kernel routes, flows and peers.

Pure helpers for fib.py: the peers' next hops on the bench lab's gateway
link (peer 0 is the real gateway host, the others are permanent neighbours
with MACs of their own, so each gets its own group on the switch), the
routes file nlroutes loads (each prefix through its best peer), the raw
baseline's flows (the same prefixes, priorities and one group per peer),
and the check that a table keeps out of the lab's own networks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from routeflow.bench.table import TableEntry, TableError
from routeflow.bench.tablepeers import Spread
from routeflow.proxy import openflow as of

__all__ = ["Peer", "check_table", "make_peers", "peer_down", "raw_flow_lines", "routes_lines"]

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
#: Ranges a bench table must keep out of, besides the lab's own networks.
_RESERVED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/3",
        "::/8",
        "fe80::/10",
        "ff00::/8",
    )
)


@dataclass(frozen=True, slots=True)
class Peer:
    index: int
    family: int
    address: str
    mac: str


def make_peers(
    families: set[int], count: int, v4: tuple[str, str], v6: tuple[str, str]
) -> dict[tuple[int, int], Peer]:
    """(family, index) -> Peer. Peer 0 of a family is ``v4``/``v6`` (address, MAC).

    The others follow on the same link: IPv4 .101, .102..., IPv6 ::101...;
    their MACs are locally administered and distinct per family and peer.
    """
    out = {}
    for family in sorted(families):
        address, mac = v4 if family == AF_INET else v6
        base = ipaddress.ip_address(address)
        for i in range(count):
            if i == 0:
                peer_mac = mac
            else:
                peer_mac = (
                    f"06:00:00:{4 if family == AF_INET else 6:02x}:{i >> 8:02x}:{i & 255:02x}"
                )
            out[(family, i)] = Peer(i, family, str(base + i), peer_mac)
    return out


def check_table(entries: list[TableEntry], source: str, lab_networks: list[str]) -> None:
    """TableError if a prefix would disturb the bench: default, reserved, or the lab's own."""
    avoid = [ipaddress.ip_network(n, strict=False) for n in lab_networks] + list(_RESERVED)
    if not entries:
        raise TableError(f"{source}: the table has no prefixes")
    # Only short prefixes can contain a lab network, only prefixes inside
    # one of these ranges can be contained: checking each prefix is cheap.
    by_family: dict[int, list[tuple[int, int, str]]] = {}
    for net in avoid:
        family = AF_INET if net.version == 4 else AF_INET6
        by_family.setdefault(family, []).append((int(net.network_address), net.prefixlen, str(net)))
    for e in entries:
        if e.plen == 0:
            raise TableError(f"{source}: {e.prefix}: a default route would carry the lab's traffic")
        bits = e.bits
        for onet, olen, text in by_family.get(e.family, ()):
            short = min(e.plen, olen)
            mask = ((1 << short) - 1) << (bits - short)
            if e.net & mask == onet & mask:
                raise TableError(
                    f"{source}: {e.prefix} overlaps {text} (the bench lab or reserved)"
                )


def routes_lines(
    entries: list[TableEntry], spread: Spread, peers: dict[tuple[int, int], Peer]
) -> Iterator[str]:
    """nlroutes' routes file: each prefix through its best peer."""
    for e, best in zip(entries, spread.best, strict=True):
        yield f"{e.prefix} {peers[(e.family, best)].address}\n"


def raw_flow_lines(
    entries: list[TableEntry], spread: Spread, groups: dict[tuple[int, int], int]
) -> Iterator[str]:
    """ovs-ofctl add-flows lines of the route flows routeflow makes of the table."""
    cookie = f"{of.cookie(of.Kind.ROUTE):#x}"
    for e, best in zip(entries, spread.best, strict=True):
        match = "ip,nw_dst" if e.family == AF_INET else "ipv6,ipv6_dst"
        prio = of.PRIO_ROUTE_BASE + e.plen
        group = groups[(e.family, best)]
        yield (
            f"table={of.TABLE_FIB},priority={prio},cookie={cookie},{match}={e.prefix},"
            f"actions=group:{group}\n"
        )


def peer_down(
    entries: list[TableEntry], spread: Spread, dead: int
) -> tuple[list[tuple[TableEntry, int]], list[TableEntry]]:
    """What BGP does when peer ``dead`` goes: (prefixes moving, their new peer), and gone ones.

    A prefix whose best route was through the dead peer moves to another
    peer offering it (the lowest one: the order among the survivors does
    not matter here), or disappears if no other peer offers it.
    """
    moves: list[tuple[TableEntry, int]] = []
    gone: list[TableEntry] = []
    for e, best, offer in zip(entries, spread.best, spread.offers, strict=True):
        if best != dead:
            continue
        rest = [p for p in offer if p != dead]
        if rest:
            moves.append((e, rest[0]))
        else:
            gone.append(e)
    return moves, gone

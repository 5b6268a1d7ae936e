"""A realistic BGP table, made up: the shape of the Internet's, none of its data.

What makes a real table hard for a FIB is its shape, not its addresses:

* prefix lengths: IPv4 is about 60 % /24, the rest /8 to /23 (a fifth /22 and
  /23); IPv6 is about half /48, the rest /19 to /47 with peaks at /32, /40,
  /44 and /29 (the mixes below follow the public CIDR reports of 2024-25);
* nesting: more than half of the prefixes are more specifics of another one
  in the table (a customer's /24 inside its provider's /16, a /48 inside a
  /32), so lookups depend on longest-prefix priority;
* AS paths: tens of thousands of distinct ones, a few origins announcing
  many prefixes, some paths prepended.

``generate`` is deterministic for a seed. Prefixes are unicast only and
keep out of the ranges the labs and benchmarks use (10/8, 100/8, 127/8,
169.254/16, 172/8, 192/8, the documentation range 2001:db8::/32 and the
unique local range fc00::/7).
"""

from __future__ import annotations

import random
import socket

from routeflow.bench.table import TableEntry, format_table, table_stats
from routeflow.client.fastnl import addr_text

__all__ = ["V4_LENGTHS", "V6_LENGTHS", "generate", "main_table_gen"]

#: IPv4 prefixes per length in a table of about a million.
V4_LENGTHS = {
    8: 14,
    9: 12,
    10: 35,
    11: 100,
    12: 290,
    13: 580,
    14: 1150,
    15: 2000,
    16: 13500,
    17: 8200,
    18: 13800,
    19: 25000,
    20: 44000,
    21: 55000,
    22: 125000,
    23: 110000,
    24: 600000,
}
#: IPv6 prefixes per length in a table of about 220 thousand.
V6_LENGTHS = {
    19: 2,
    20: 15,
    21: 10,
    22: 25,
    23: 15,
    24: 50,
    25: 10,
    26: 20,
    27: 40,
    28: 400,
    29: 6000,
    30: 1200,
    31: 900,
    32: 27000,
    33: 3000,
    34: 2500,
    35: 1500,
    36: 7000,
    37: 800,
    38: 2000,
    39: 1000,
    40: 16000,
    41: 1200,
    42: 4000,
    43: 900,
    44: 18000,
    45: 2500,
    46: 6500,
    47: 4500,
    48: 105000,
}
#: Chance that a prefix is carved out of a less specific one already drawn.
NEST_SHARE = 0.68
#: First IPv4 octets never drawn (private, CGN, loopback, link-local, lab ranges).
_V4_SKIP = frozenset({0, 10, 100, 127, 169, 172, 192})
_V4_FIRST = tuple(o for o in range(1, 224) if o not in _V4_SKIP)
_V6_BASE, _V6_SIZE = 0x2 << 125, 1 << 125  # 2000::/3
_V6_DOC = (0x20010DB8 << 96, 32)  # 2001:db8::/32
_TIER1 = (174, 701, 1299, 2914, 3257, 3320, 3356, 3491, 5511, 6453, 6461, 6762, 6830, 6939, 7018)


def _counts(total: int, mix: dict[int, int]) -> list[int]:
    """``total`` prefix lengths in the proportions of ``mix`` (largest remainders), ascending."""
    weight = sum(mix.values())
    exact = {plen: total * n / weight for plen, n in mix.items()}
    counts = {plen: int(x) for plen, x in exact.items()}
    if total >= 4 * len(mix):  # every length present, as in a real table
        for plen in counts:
            counts[plen] = max(counts[plen], 1)
    rest = total - sum(counts.values())
    while rest < 0:  # the minimums above came out of the largest length
        big = max(counts, key=lambda p: counts[p])
        counts[big] += rest
        rest = 0
    for plen in sorted(exact, key=lambda p: exact[p] - counts[p], reverse=True)[:rest]:
        counts[plen] += 1
    return [plen for plen in sorted(counts) for _ in range(counts[plen])]


def _overlaps(net: int, plen: int, bits: int, other: tuple[int, int]) -> bool:
    onet, olen = other
    short = min(plen, olen)
    mask = ((1 << short) - 1) << (bits - short)
    return net & mask == onet & mask


class _Paths:
    """AS paths: an upstream chain per origin, sometimes another one, sometimes prepended."""

    def __init__(self, rng: random.Random, prefixes: int):
        self.rng = rng
        self.transit = rng.sample(range(1000, 64000), 2500)
        # 2-byte ASNs up to 64000, then 4-byte ones from 131072 (past the
        # documentation and private ranges)
        pool = rng.sample(range(1000, 64000 + 400000 - 131072), max(50, prefixes // 14))
        self.origins = [a if a < 64000 else a - 64000 + 131072 for a in pool]
        self.chains: dict[int, tuple[int, ...]] = {}

    def origin(self) -> int:
        """A few origins announce many prefixes, most a handful."""
        return self.origins[int(len(self.origins) * self.rng.random() ** 3)]

    def _chain(self) -> tuple[int, ...]:
        rng = self.rng
        return (rng.choice(_TIER1), *rng.sample(self.transit, rng.choice((0, 1, 1, 2, 2, 3))))

    def path(self, origin: int) -> tuple[int, ...]:
        rng = self.rng
        chain = self.chains.get(origin)
        if chain is None or rng.random() < 0.25:
            chain = self._chain()
            self.chains.setdefault(origin, chain)
        prepend = rng.choice((1, 2, 3)) if rng.random() < 0.08 else 0
        return (*chain, *(origin,) * (1 + prepend))


def _family(
    rng: random.Random, paths: _Paths, lengths: list[int], v6: bool
) -> list[tuple[int, int, int]]:
    """(plen, net, origin) per prefix: ascending lengths, nested ones carved from earlier ones."""
    bits = 128 if v6 else 32
    out: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set()
    shorter = 0  # out[:shorter] are strictly shorter than the current length
    for i, plen in enumerate(lengths):
        if i and plen != lengths[i - 1]:
            shorter = len(out)
        for _attempt in range(20):
            if shorter and rng.random() < NEST_SHARE:
                pplen, pnet, porigin = out[rng.randrange(shorter)]
                net = pnet | (rng.getrandbits(plen - pplen) << (bits - plen))
                origin = porigin if rng.random() < 0.6 else paths.origin()
            elif v6:
                net = (_V6_BASE + rng.getrandbits(125)) >> (bits - plen) << (bits - plen)
                if _overlaps(net, plen, bits, _V6_DOC):
                    continue
                origin = paths.origin()
            else:
                net = (
                    (rng.choice(_V4_FIRST) << 24 | rng.getrandbits(24))
                    >> (32 - plen)
                    << (32 - plen)
                )
                origin = paths.origin()
            if (plen, net) not in seen:
                seen.add((plen, net))
                out.append((plen, net, origin))
                break
    return out


def generate(ipv4: int, ipv6: int, seed: int = 1) -> list[TableEntry]:
    """A table of ``ipv4`` + ``ipv6`` prefixes (a few fewer if the small lengths run out)."""
    if ipv4 < 0 or ipv6 < 0:
        raise ValueError("prefix counts must not be negative")
    rng = random.Random(seed)
    paths = _Paths(rng, ipv4 + ipv6)
    entries = []
    for family, count, mix in (
        (socket.AF_INET, ipv4, V4_LENGTHS),
        (socket.AF_INET6, ipv6, V6_LENGTHS),
    ):
        if not count:
            continue
        v6 = family == socket.AF_INET6
        size = 16 if v6 else 4
        for plen, net, origin in _family(rng, paths, _counts(count, mix), v6):
            text = addr_text(family, net.to_bytes(size, "big"))
            entries.append(TableEntry(f"{text}/{plen}", family, plen, net, paths.path(origin)))
    entries.sort(key=lambda e: (e.family, e.net, e.plen))
    return entries


def main_table_gen(ipv4: int, ipv6: int, seed: int, output: str, console) -> int:
    """`routeflow bench table-gen`: write the table, print what it is made of."""
    import os

    entries = generate(ipv4, ipv6, seed)
    stats = table_stats(entries)
    header = [
        f"routeflow bench table-gen --ipv4 {ipv4} --ipv6 {ipv6} --seed {seed}",
        f"{stats['ipv4']} IPv4 + {stats['ipv6']} IPv6 prefixes, {stats['nested']} nested "
        f"({stats['nested_share']:.0%}), {stats['as_paths']} distinct AS paths",
    ]
    tmp = f"{output}.tmp"
    with open(tmp, "w") as fh:
        fh.writelines(format_table(entries, header))
    os.replace(tmp, output)
    for line in header[1:]:
        console.print(f"{output}: {line}", markup=False)
    for family in ("ipv4", "ipv6"):
        lengths = stats[f"{family}_lengths"]
        if isinstance(lengths, dict) and lengths:
            mix = " ".join(f"/{p}:{n}" for p, n in lengths.items())
            console.print(f"  {family} lengths: {mix}", markup=False)
    return 0

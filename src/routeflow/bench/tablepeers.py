"""Several peers offering one table: who offers which prefix, whose route wins.

An edge router sees the same prefixes from several peers, each with its own
AS path; BGP installs one best route per prefix. ``spread`` makes that
deterministic for a seed: every peer offers each prefix with probability
``share`` (at least one peer offers it), its path is the table's path seen
through that peer (its own AS in front, sometimes a hop more or less), and
the best is the shortest path, ties to the lower peer. Only best routes
reach the kernel, so the FIB has the table's prefixes spread over the
peers' next hops, and a peer that goes down leaves many prefixes with a
path through another peer.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from routeflow.bench.table import TableEntry

__all__ = ["Spread", "spread"]

MAX_PEERS = 64


class Spread(NamedTuple):
    best: list[int]  # per table entry: the peer whose route is installed
    offers: list[tuple[int, ...]]  # per table entry: the peers offering it (ascending)

    def per_peer(self, peers: int) -> list[int]:
        """Installed routes per peer."""
        counts = [0] * peers
        for peer in self.best:
            counts[peer] += 1
        return counts

    def shared(self) -> int:
        """Prefixes offered by more than one peer."""
        return sum(1 for offer in self.offers if len(offer) > 1)


def spread(entries: list[TableEntry], peers: int, seed: int = 1, share: float = 0.7) -> Spread:
    if not 1 <= peers <= MAX_PEERS:
        raise ValueError(f"peers must be 1-{MAX_PEERS}, not {peers}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], not {share}")
    if peers == 1:
        return Spread([0] * len(entries), [(0,)] * len(entries))
    rng = random.Random(seed)
    best: list[int] = []
    offers: list[tuple[int, ...]] = []
    everyone = range(peers)
    for e in entries:
        offer = tuple(p for p in everyone if rng.random() < share) or (rng.randrange(peers),)
        length = len(e.as_path) + 1
        scores = [(length + rng.choice((-1, 0, 0, 0, 1, 2)), p) for p in offer]
        best.append(min(scores)[1])
        offers.append(offer)
    return Spread(best, offers)

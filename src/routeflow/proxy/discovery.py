"""Switch-to-switch links as rfproxy's probes find them (pure): events in, link changes out.

Every ``interval`` seconds the master replica sends a probe (probe.py) out of
every up port of every physical switch; a switch that receives one punts it
(openflow.discovery_flows), and its arrival is a sighting of the directed link
(sending switch, port) -> (receiving switch, port). The time is always passed
in: this module has no clock.

Rules:

1. A sighting of a link not in the table brings it up (``LinkUp``); a
   sighting of a known link only renews it.
2. A port hears one neighbour: a sighting at a receiving port from another
   sender replaces the link there (``LinkDown`` "replaced", then ``LinkUp``),
   as a recabling would. A sending port may reach several receivers.
3. A link not sighted for ``hold`` seconds (its last sighting plus ``hold`` is
   at or before the tick's time) goes down "aged" on the next ``tick``.
4. A port that goes down takes every link it is an end of down at once
   ("port down"); a switch that leaves, every link of its ports ("switch left").
5. ``clear`` forgets everything without a word (a replica that stops being
   master no longer speaks for the switches).

Each link has exactly one state, and the changes alternate per link: replaying
the ``LinkUp``/``LinkDown`` actions of any event sequence into a set gives
``links()`` (tests/unit/proxy/test_discovery.py checks this with hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_MISSES", "End", "Link", "LinkDown", "LinkTable", "LinkUp"]

#: Seconds between probes, and probes a link may miss before it ages out.
DEFAULT_INTERVAL = 1.0
DEFAULT_MISSES = 3

#: (dp_id, port number)
End = tuple[int, int]


@dataclass(frozen=True, order=True)
class Link:
    """A directed link: probes sent out of ``src`` arrive at ``dst``."""

    src: End
    dst: End


@dataclass(frozen=True)
class LinkUp:
    link: Link


@dataclass(frozen=True)
class LinkDown:
    link: Link
    reason: str  # "aged", "port down", "switch left", "replaced"


Change = LinkUp | LinkDown


class LinkTable:
    """The links seen and when they were last seen (see the module docstring)."""

    def __init__(self, hold: float) -> None:
        if hold <= 0:
            raise ValueError(f"hold {hold}: must be positive")
        self.hold = hold
        #: Receiving end -> (its link, when it was last seen).
        self._at: dict[End, tuple[Link, float]] = {}

    def links(self) -> list[Link]:
        return sorted(link for link, _ in self._at.values())

    def __len__(self) -> int:
        return len(self._at)

    def has(self, src: End, dst: End) -> bool:
        """Whether the directed link ``src`` -> ``dst`` is up."""
        seen = self._at.get(dst)
        return seen is not None and seen[0] == Link(src, dst)

    def seen(self, src: End, dst: End, now: float) -> list[Change]:
        """A probe from ``src`` arrived at ``dst`` at ``now`` (rules 1, 2)."""
        link = Link(src, dst)
        old = self._at.get(dst)
        self._at[dst] = (link, now)
        if old is None:
            return [LinkUp(link)]
        if old[0] == link:
            return []
        return [LinkDown(old[0], "replaced"), LinkUp(link)]

    def tick(self, now: float) -> list[Change]:
        """Age out the links not seen for ``hold`` seconds (rule 3)."""
        stale = [dst for dst, (_, last) in self._at.items() if last + self.hold <= now]
        return [LinkDown(self._at.pop(dst)[0], "aged") for dst in sorted(stale)]

    def port_down(self, end: End) -> list[Change]:
        """``end`` lost its link (or was deleted): its links go at once (rule 4)."""
        return self._drop(lambda link: end in (link.src, link.dst), "port down")

    def switch_left(self, dp_id: int) -> list[Change]:
        return self._drop(lambda link: dp_id in (link.src[0], link.dst[0]), "switch left")

    def clear(self) -> None:
        self._at.clear()

    def _drop(self, which, reason: str) -> list[Change]:
        gone = sorted(dst for dst, (link, _) in self._at.items() if which(link))
        return [LinkDown(self._at.pop(dst)[0], reason) for dst in gone]

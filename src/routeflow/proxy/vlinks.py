"""Virtual links: the physical topology mirrored between VM ports in the virtual switch (pure).

In the virtual-domain control plane (``rfproxy --virtual-links FILE``) every
switch-to-switch link joins, in the virtual switch, the two VM interfaces mapped to its
ends: a frame one VM sends out of that interface goes straight to the other VM (two
flows, one per direction), so OSPF and BFD hellos, LSAs and ARP between routers never
touch the physical switches or rfproxy's relay. A link is mirrored while

* both of its ends are mapped to a VM port (DataPlaneMap), and
* neither end's switch reports its port down (port status).

A port going down deletes the two flows at once; the VMs also hear it from rfserver
(PortConfig LINK_DOWN sets their interface down), so their routing protocols see the
link go, not just silence. Traffic to and from hosts and external peers, and whatever a
switch's FIB punts to a router, still takes the relay.

The links come from whoever knows the cabling: a file (the lab runner writes it from the
lab file), or rfproxy's own topology discovery (``--virtual-links discovered``): a link
seen in both directions is mirrored, and loses its mirror as soon as either direction
goes (port down, probes lost, switch gone). This module only decides: the proxy core
calls ``VirtualLinks.update`` (or ``add``/``discard``) with what changed and writes what
comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

End = tuple[int, int]  # (dp_id, dp_port)
_MAX_PORT = 0xFFFFFEFF


@dataclass(frozen=True)
class VirtualLink:
    a: End
    b: End


@dataclass(frozen=True)
class Mirror:
    """Write (or, with ``delete``, remove) the virtual switch flows joining vs ports a, b."""

    link: VirtualLink
    vs_a: int
    vs_b: int
    delete: bool = False


def parse_virtual_links(text: str, source: str = "virtual links") -> list[VirtualLink]:
    """One link a line, ``DPID:PORT DPID:PORT`` (integers in any base Python reads).

    Blank lines and ``#`` comments are skipped. Raises ValueError naming the line.
    """
    links: list[VirtualLink] = []
    seen: dict[End, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            ends = [_end(word) for word in line.split()]
            if len(ends) != 2:
                raise ValueError
        except ValueError:
            raise ValueError(f"{source} line {n}: {line!r}: expected DPID:PORT DPID:PORT") from None
        for end in ends:
            if not 0 < end[1] <= _MAX_PORT:
                raise ValueError(f"{source} line {n}: port {end[1]} is out of range 1..{_MAX_PORT}")
            if end in seen:
                raise ValueError(
                    f"{source} line {n}: {end[0]:#x}:{end[1]} is already an end of line {seen[end]}"
                )
            seen[end] = n
        if ends[0] == ends[1]:
            raise ValueError(f"{source} line {n}: a link needs two different ends")
        links.append(VirtualLink(ends[0], ends[1]))
    return links


def _end(word: str) -> End:
    dp, port = word.split(":")
    return int(dp, 0), int(port, 0)


class VirtualLinks:
    """Which links are mirrored now, and on which virtual switch ports.

    ``vs_port_of(end)`` says where an end is mapped (None: not mapped), ``is_up(end)``
    whether its switch reports the port up. ``update(ends)`` re-decides the links of
    those ends and returns the changes; ``mirrored()`` is everything to write on a
    virtual switch that (re)connects.
    """

    def __init__(self, links: Iterable[VirtualLink] = (), discovered: bool = False) -> None:
        #: Links come and go with topology discovery (add, discard) instead of a file.
        self.discovered = discovered
        self.links = list(links)
        self._by_end: dict[End, VirtualLink] = {}
        for link in self.links:
            self._by_end[link.a] = link
            self._by_end[link.b] = link
        #: link -> (vs port of a, vs port of b), as written.
        self._mirrored: dict[VirtualLink, tuple[int, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.links) or self.discovered

    def add(self, link: VirtualLink) -> bool:
        """A discovered link; False if one of its ends already has a link."""
        if link.a in self._by_end or link.b in self._by_end or link.a == link.b:
            return False
        self.links.append(link)
        self._by_end[link.a] = link
        self._by_end[link.b] = link
        return True

    def discard(self, end: End) -> list[Mirror]:
        """Forget the link at ``end`` (it went down); its mirror's removal, if it had one."""
        link = self._by_end.get(end)
        if link is None:
            return []
        del self._by_end[link.a], self._by_end[link.b]
        self.links.remove(link)
        have = self._mirrored.pop(link, None)
        return [] if have is None else [Mirror(link, *have, delete=True)]

    def covers(self, end: End) -> bool:
        return end in self._by_end

    def update(
        self,
        ends: Iterable[End],
        vs_port_of: Callable[[End], int | None],
        is_up: Callable[[End], bool],
    ) -> list[Mirror]:
        out: list[Mirror] = []
        for link in dict.fromkeys(self._by_end[e] for e in ends if e in self._by_end):
            vs_a, vs_b = vs_port_of(link.a), vs_port_of(link.b)
            want = (
                (vs_a, vs_b)
                if vs_a is not None and vs_b is not None and is_up(link.a) and is_up(link.b)
                else None
            )
            have = self._mirrored.get(link)
            if want == have:
                continue
            if have is not None:
                del self._mirrored[link]
                out.append(Mirror(link, *have, delete=True))
            if want is not None:
                self._mirrored[link] = want
                out.append(Mirror(link, *want))
        return out

    def mirrored(self) -> list[Mirror]:
        return [Mirror(link, *ports) for link, ports in self._mirrored.items()]

    def is_mirrored(self, end: End) -> bool:
        link = self._by_end.get(end)
        return link is not None and link in self._mirrored

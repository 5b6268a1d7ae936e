"""ARP on a gateway node's external port (pure): who the next hops are, and their MACs.

The NAT pipeline (tenant/nat.py) sends a router's outbound traffic to the external
subnet's gateway, whose MAC nothing in the model says. The node agent asks for it: a
``Resolver`` says which requests to send when (``due``) and learns from the replies the
pipeline punts (``learn``); the compiler gets ``neighbours``. An unresolved next hop is
asked at once, again after ``first_retry`` seconds, then twice as long each time up to
every ``retry`` seconds; resolved ones are refreshed every ``refresh`` seconds (a MAC
that changes is relearned on the next reply; an entry is never aged out, so a fabric
that stops answering keeps its last MAC). ``gratuitous`` is the frame a gateway node
sends for every address it takes over (nodecore rule 7).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

BROADCAST = b"\xff" * 6
ETH_ARP = 0x0806


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def request(target_ip: str, sender_ip: str, sender_mac: str) -> bytes:
    """A broadcast ARP request for ``target_ip`` (Ethernet frame, 42 bytes)."""
    mac = _mac(sender_mac)
    eth = BROADCAST + mac + struct.pack("!H", ETH_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac
    arp += ipaddress.IPv4Address(sender_ip).packed + b"\x00" * 6
    arp += ipaddress.IPv4Address(target_ip).packed
    return eth + arp


def gratuitous(ip: str, mac: str) -> bytes:
    """A gratuitous ARP for ``ip`` at ``mac``: a broadcast request whose sender and
    target address are both ``ip`` (what Linux's arping -U and Neutron send): neighbours
    that hold ``ip`` take the MAC, switches and bridges learn where ``mac`` is now."""
    return request(ip, ip, mac)


def parse_reply(frame: bytes) -> tuple[str, str] | None:
    """(sender IP, sender MAC) of an ARP reply frame; None for anything else."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_ARP:
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    sha, spa = frame[22:28], frame[28:32]
    if sha == b"\x00" * 6 or sha[0] & 1:
        return None
    return str(ipaddress.IPv4Address(spa)), _mac_text(sha)


@dataclass
class Resolver:
    """Next-hop MACs of one gateway node."""

    retry: float = 1.0
    refresh: float = 30.0
    #: An unanswered request is repeated after ``first_retry``, then twice as long
    #: each time up to ``retry``: one lost frame costs a tenth of a second, not one.
    first_retry: float = 0.1
    neighbours: dict[str, str] = field(default_factory=dict)
    _asked: dict[str, float] = field(default_factory=dict)
    _tries: dict[str, int] = field(default_factory=dict)

    def due(self, hops: Iterable[tuple[str, str, str]], now: float) -> list[bytes]:
        """ARP requests to send now for ``hops`` ((next hop, our IP, our MAC))."""
        out = []
        for hop, ip, mac in hops:
            if hop in self.neighbours:
                wait = self.refresh
            else:
                tries = self._tries.get(hop, 0)
                wait = min(self.retry, self.first_retry * 2 ** max(0, tries - 1))
            if now - self._asked.get(hop, -1e18) >= wait:
                self._asked[hop] = now
                self._tries[hop] = self._tries.get(hop, 0) + 1
                out.append(request(hop, ip, mac))
        return out

    def learn(self, frame: bytes, wanted: Iterable[str]) -> bool:
        """Learn from a punted ARP reply if it answers a wanted next hop; True: the
        neighbours changed (recompile)."""
        parsed = parse_reply(frame)
        if parsed is None or parsed[0] not in set(wanted):
            return False
        ip, mac = parsed
        self._tries.pop(ip, None)
        if self.neighbours.get(ip) == mac:
            return False
        self.neighbours[ip] = mac
        return True

"""Measuring what a fault costs: continuous traffic, counted by the receiver.

The numbers a reliability claim rests on (packets lost, longest outage) come
from ping's own sequence numbers, not from anything routeflow reports.
"""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass


@dataclass
class PingResult:
    sent: int
    received: int
    longest_gap: int  # most consecutive sequence numbers lost
    interval: float
    missing: tuple[int, ...] = ()  # sequence numbers never answered, to see where

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def outage_s(self) -> float:
        return self.longest_gap * self.interval


class ContinuousPing:
    """`ping -i INTERVAL` from a lab host, running until stop()."""

    def __init__(self, node, dst_ip: str, interval: float = 0.05) -> None:
        self.interval = interval
        self.proc = node.popen(
            ["ping", "-n", "-i", f"{interval:g}", "-W", "1", dst_ip],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> PingResult:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        return parse_ping(out, self.interval)


def parse_ping(out: str, interval: float) -> PingResult:
    """Count from ping's sequence numbers.

    ping (iputils) stops at once on SIGINT and counts the probe it sent a moment
    before as lost, although its reply is merely still on the way. So a missing
    *last* probe is taken as in flight and left out of the count; an outage that
    lasts until the stop still shows, as every probe before the last one.
    """
    seqs = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", out)})
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    sent = int(m.group(1)) if m else (seqs[-1] if seqs else 0)
    received = int(m.group(2)) if m else len(seqs)
    if sent and sent not in seqs and received < sent:
        sent -= 1  # the probe in flight when ping stopped
    gap = 0
    previous = 0
    for seq in seqs:
        gap = max(gap, seq - previous - 1)
        previous = seq
    gap = max(gap, sent - previous)  # lost at the end
    missing = tuple(sorted(set(range(1, sent + 1)) - set(seqs)))
    return PingResult(sent, received, gap, interval, missing)

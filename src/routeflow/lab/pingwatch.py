"""A 20 ms ping across a failure, and the gap it saw (lab check stages; I/O shell).

``measure_outage`` runs ``ping -D -i 0.02`` from a namespace, waits for a steady
stream of replies, calls ``kill``, polls until replies come again (and a second has
passed), stops the ping and gives the longest gap between replies from the last one
before the kill on (``outage``). Both gateway failover stages use it: bgp mode
(lab/cloudbgp.py) and connected mode (lab/cloudfabric.py).
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from routeflow.lab.poll import poll_until

__all__ = ["Outage", "measure_outage", "outage", "parse_ping"]

_PING_LINE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [\d.]+: icmp_seq=(\d+)")


def parse_ping(lines: list[str]) -> list[tuple[float, int]]:
    """(wall time, icmp_seq) of every reply line of ``ping -D``."""
    out = []
    for line in lines:
        m = _PING_LINE.match(line)
        if m:
            out.append((float(m.group(1)), int(m.group(2))))
    return out


def outage(replies: list[tuple[float, int]], at: float) -> tuple[float, int] | None:
    """(the longest gap between replies from the last one before ``at`` on, the echo
    requests lost after it), or None if no reply came after ``at``. The longest gap, not
    the first reply after ``at``: a reply already on its way when the node died may
    arrive just after it."""
    before = [r for r in replies if r[0] <= at]
    after = [r for r in replies if r[0] > at]
    if not before or not after:
        return None
    run = [before[-1], *after]
    gap = max(b[0] - a[0] for a, b in itertools.pairwise(run))
    lost = (run[-1][1] - run[0][1] + 1) - len({seq for _, seq in run})
    return gap, lost


@dataclass
class Outage:
    """What one ``measure_outage`` saw."""

    #: False: no steady ping before the kill (nothing was killed).
    steady: bool
    #: Wall time of the kill (``time.time()``), and the load average just before it.
    at: float = 0.0
    load: str = ""
    #: ``outage()`` of the replies: (longest gap in seconds, pings lost), or None.
    gap: tuple[float, int] | None = None
    lines: list[str] = field(default_factory=list)


def measure_outage(
    prefix: list[str],
    target: str,
    kill: Callable[[], None],
    on_poll: Callable[[float], None] | None = None,
    *,
    interval: float = 0.02,
    resume_timeout: float = 15.0,
) -> Outage:
    """Ping ``target`` from ``prefix`` (``nsenter ...``) every ``interval`` across
    ``kill()``; ``on_poll(at)`` runs every 10 ms after the kill (to time what else
    happens meanwhile)."""
    ping = subprocess.Popen(
        [*prefix, "ping", "-n", "-D", "-i", str(interval), "-W", "1", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert ping.stdout is not None
        for line in ping.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = Outage(steady=False, lines=lines)
    try:
        if not poll_until(lambda: len(parse_ping(lines)) >= 25, timeout=10, interval=0.05).ok:
            return result
        result.steady = True
        result.load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        at = result.at = time.time()
        kill()

        def resumed() -> bool:
            if on_poll is not None:
                on_poll(at)
            got = parse_ping(lines)
            now = time.time()
            return bool(got) and got[-1][0] > at and now - at > 1.0 and now - got[-1][0] < 0.1

        poll_until(resumed, timeout=resume_timeout, interval=0.01)
    finally:
        ping.send_signal(signal.SIGINT)
        try:
            ping.wait(5)
        except subprocess.TimeoutExpired:
            ping.kill()
            ping.wait()
        reader.join(5)
    result.gap = outage(parse_ping(lines), result.at)
    return result

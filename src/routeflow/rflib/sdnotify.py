"""systemd readiness and watchdog (sd_notify), for `Type=notify` units.

Written by hand: the protocol is one datagram of `KEY=VALUE` lines to the
socket named by $NOTIFY_SOCKET (libsystemd's sd_notify), and the PyPI
wrappers add nothing but a dependency. Outside systemd (no $NOTIFY_SOCKET)
every call is a no-op, so daemons call it unconditionally.

The watchdog is pinged from the daemon's own event loop, never from a side
thread: a ping then proves the loop that does the work is alive, which is
the point of WatchdogSec=.
"""

from __future__ import annotations

import asyncio
import os
import socket


def notify(*states: str) -> bool:
    """Send `READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`...; False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not states:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None if no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog is meant for another process (e.g. our parent)
    return int(usec) / 2e6


async def watchdog() -> None:
    """Ping systemd's watchdog forever from the running asyncio loop (if asked to)."""
    period = watchdog_period()
    if period is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period)

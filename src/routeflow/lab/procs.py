"""Processes a lab started, stopped by the pid it recorded (never by name).

Killing by name (as `mn -c` does) would also kill another lab's daemons, or
the host's; a lab only ever signals pids it started itself.

A pid alone is not enough either: a self-daemonizing process (FRR's daemons,
known by their pidfiles) that died early leaves a number the kernel hands to the
next process, and this machine's pid_max is 32768, which a test run wraps in
minutes. Signalling that number once hit a pytest worker of the suite running
beside the labs. So each such process is held by a pidfd (Linux 5.3), taken as
soon as its pid is known: a pidfd names that process, never a later one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
from dataclasses import dataclass

from routeflow.lab.poll import poll_until

log = logging.getLogger("routeflow.lab")


@dataclass
class Tracked:
    name: str
    pid: int
    popen: subprocess.Popen | None = None
    pidfile: str | None = None
    #: The process itself (see the module's docstring); None for a Popen child, which
    #: Popen already never signals once it has reaped it, or once closed.
    pidfd: int | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.pidfd is None:
            return False
        # A pidfd turns readable when its process ends (a zombie counts as ended).
        return not select.select([self.pidfd], [], [], 0)[0]

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process, if it still runs; never to a reuse of its pid."""
        if self.popen is not None:
            self.popen.send_signal(sig)  # a no-op once Popen has reaped it
        elif self.pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, sig)

    def forget(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class ProcessSet:
    def __init__(self) -> None:
        self.procs: list[Tracked] = []

    def add_popen(self, name: str, popen: subprocess.Popen) -> Tracked:
        t = Tracked(name, popen.pid, popen)
        self.procs.append(t)
        return t

    def add_pidfile(self, name: str, pidfile: str, timeout: float = 10.0) -> Tracked:
        """Record a self-daemonizing process by the pidfile it writes."""
        got = poll_until(lambda: _read_pid(pidfile), timeout=timeout, interval=0.05)
        if got.value is None:
            raise RuntimeError(f"{name} did not write {pidfile} within {timeout:.0f} s")
        try:
            pidfd = os.pidfd_open(got.value)
        except ProcessLookupError:
            raise RuntimeError(f"{name} (pid {got.value}) died right after starting") from None
        t = Tracked(name, got.value, None, pidfile, pidfd)
        self.procs.append(t)
        return t

    def dead(self) -> list[Tracked]:
        return [t for t in self.procs if not t.alive()]

    def stop_one(self, t: Tracked, timeout: float = 5.0) -> None:
        if t.alive():
            t.signal(signal.SIGTERM)
            poll_until(lambda: not t.alive(), timeout=timeout, interval=0.05)
            if t.alive():
                log.warning("%s (pid %d) ignored SIGTERM; killing", t.name, t.pid)
                t.signal(signal.SIGKILL)
        if t.popen is not None:
            try:
                t.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) would not die", t.name, t.pid)
        elif t.pidfd is not None and t.alive():
            poll_until(lambda: not t.alive(), timeout=timeout, interval=0.05)
        t.forget()
        if t in self.procs:
            self.procs.remove(t)

    def stop_many(self, tracked: list[Tracked], timeout: float = 5.0) -> None:
        """Stop several processes at once: SIGTERM to all, then wait for all, SIGKILL what is
        left. A 50-switch lab has some 150 daemons; one after the other took 15 s."""
        for t in tracked:
            if t.alive():
                t.signal(signal.SIGTERM)
        wait_exited(tracked, timeout)
        for t in tracked:
            self.stop_one(t, timeout)  # reaps, escalates to SIGKILL for any still alive

    def stop_all(self) -> None:
        """Stop in reverse start order: clients before the server they talk to."""
        for t in list(reversed(self.procs)):
            self.stop_one(t)


def _read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def wait_exited(tracked: list[Tracked], timeout: float) -> bool:
    """Wait until none of ``tracked`` is alive; False if some still are after ``timeout``."""
    return poll_until(
        lambda: not any(t.alive() for t in tracked), timeout=timeout, interval=0.05
    ).ok

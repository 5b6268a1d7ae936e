"""Processes a lab started, stopped by the pid it recorded (never by name).

Killing by name (as `mn -c` does) would also kill another lab's daemons, or
the host's; a lab only ever signals pids it started itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
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

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child of someone else still answers kill(0); check its state.
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                return fh.read().split(") ", 1)[1][:1] != "Z"
        except OSError:
            return False


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
        t = Tracked(name, got.value, None, pidfile)
        self.procs.append(t)
        return t

    def dead(self) -> list[Tracked]:
        return [t for t in self.procs if not t.alive()]

    def stop_one(self, t: Tracked, timeout: float = 5.0) -> None:
        if t.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(t.pid, signal.SIGTERM)
            poll_until(lambda: not t.alive(), timeout=timeout, interval=0.05)
            if t.alive():
                log.warning("%s (pid %d) ignored SIGTERM; killing", t.name, t.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(t.pid, signal.SIGKILL)
        if t.popen is not None:
            try:
                t.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) would not die", t.name, t.pid)
        if t in self.procs:
            self.procs.remove(t)

    def stop_many(self, tracked: list[Tracked], timeout: float = 5.0) -> None:
        """Stop several processes at once: SIGTERM to all, then wait for all, SIGKILL what is
        left. A 50-switch lab has some 150 daemons; one after the other took 15 s."""
        for t in tracked:
            if t.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(t.pid, signal.SIGTERM)
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

"""Poll until: the one way the lab waits for something (FRR topotests' run_and_expect).

A lab converges on its own time: daemons write pidfiles, OVS opens ports, OSPF fills the
VMs' kernels. Every such wait is the same loop (ask, judge, sleep, give up at a deadline),
and some fifteen hand-written copies of it had drifted: some judged once more after the
deadline and some did not, some slept first. Here the rules are written once:

- ``fn`` is called at once, then every ``interval`` seconds, until ``until(value)`` holds
  or ``timeout`` seconds have passed; it is always called at least once, and once more
  at (or just after) the deadline, so a slow machine never fails a wait that the last
  look would have passed;
- the answer says whether it matched, the last value seen (the evidence for a message),
  how many tries and how long it took; a timeout is not an exception, since most callers
  report it as a failed check. ``wait_for`` is the raising form, with a message that
  names what was awaited and the last value;
- an exception in ``fn`` ends the wait (a daemon that died is an answer, not a retry).

The clock and sleep are parameters, so the rules are unit-tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Polled(Generic[T]):
    """The outcome of a wait: ``ok`` if the last value matched. True as a boolean iff ok."""

    ok: bool
    value: T
    tries: int
    elapsed: float

    def __bool__(self) -> bool:
        return self.ok


class PollTimeout(RuntimeError):
    """``wait_for`` gave up: the message names what was awaited and the last value."""


def _truthy(value: object) -> bool:
    return bool(value)


def poll_until(
    fn: Callable[[], T],
    until: Callable[[T], bool] = _truthy,
    *,
    timeout: float,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Polled[T]:
    """Call ``fn`` until ``until(value)`` holds (default: the value is truthy) or time is up."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, not {interval!r}")
    start = clock()
    deadline = start + max(timeout, 0.0)
    tries = 0
    while True:
        value = fn()
        tries += 1
        now = clock()
        if until(value):
            return Polled(True, value, tries, now - start)
        if now >= deadline:
            return Polled(False, value, tries, now - start)
        sleep(min(interval, deadline - now))


def wait_for(
    fn: Callable[[], T],
    until: Callable[[T], bool] = _truthy,
    *,
    what: str,
    timeout: float,
    interval: float = 0.1,
    describe: Callable[[T], str] = repr,
    error: type[Exception] = PollTimeout,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``poll_until`` that returns the matching value, or raises ``error`` on timeout.

    The message reads "<what>: not within <timeout> s (<tries> tries); last: <value>".
    """
    got = poll_until(fn, until, timeout=timeout, interval=interval, clock=clock, sleep=sleep)
    if not got.ok:
        raise error(
            f"{what}: not within {timeout:g} s ({got.tries} tries); last: {describe(got.value)}"
        )
    return got.value


def wait_until(pred: Callable[..., object], timeout: float, interval: float = 0.5) -> bool:
    """True once ``pred()`` is truthy, False if it is not within ``timeout`` seconds.

    (``...``: callers bind loop variables as defaults, ``lambda h=h: ...``.)"""
    return poll_until(pred, timeout=timeout, interval=interval).ok

"""poll_until's rules (lab/poll.py), on a fake clock: no test here waits."""

from __future__ import annotations

import pytest

from routeflow.lab.poll import Polled, PollTimeout, poll_until, wait_for, wait_until


class Clock:
    """A clock that moves only when slept on; records the sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def counter(values):
    it = iter(values)
    return lambda: next(it)


def test_matches_on_first_try_without_sleeping():
    c = Clock()
    got = poll_until(lambda: 7, lambda v: v == 7, timeout=5, clock=c, sleep=c.sleep)
    assert got == Polled(True, 7, 1, 0.0)
    assert got and c.sleeps == []


def test_default_predicate_is_truthiness_and_value_is_the_matching_one():
    c = Clock()
    got = poll_until(counter([0, [], "", "up"]), timeout=5, interval=1, clock=c, sleep=c.sleep)
    assert got.ok and got.value == "up" and got.tries == 4
    assert c.sleeps == [1, 1, 1] and got.elapsed == 3


def test_timeout_returns_the_last_value_and_tries_once_more_at_the_deadline():
    c = Clock()
    got = poll_until(
        counter(range(100)), lambda v: v < 0, timeout=2.5, interval=1, clock=c, sleep=c.sleep
    )
    assert not got and got.value == 3 and got.tries == 4
    assert c.sleeps == [1, 1, 0.5]  # the last sleep is cut to land on the deadline
    assert got.elapsed == 2.5


def test_zero_or_negative_timeout_still_looks_once():
    c = Clock()
    assert poll_until(lambda: True, timeout=0, clock=c, sleep=c.sleep).tries == 1
    got = poll_until(lambda: False, timeout=-3, clock=c, sleep=c.sleep)
    assert not got and got.tries == 1 and c.sleeps == []


def test_an_exception_in_fn_ends_the_wait():
    c = Clock()

    def died():
        raise RuntimeError("rfproxy died")

    with pytest.raises(RuntimeError, match="rfproxy died"):
        poll_until(died, timeout=5, clock=c, sleep=c.sleep)
    assert c.sleeps == []


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        poll_until(lambda: True, timeout=1, interval=0)


def test_wait_for_returns_the_value_or_raises_naming_what_and_last_value():
    c = Clock()
    assert wait_for(counter([None, 42]), what="pid", timeout=1, clock=c, sleep=c.sleep) == 42
    with pytest.raises(
        PollTimeout, match=r"^routes on s1: not within 1 s \(3 tries\); last: \['a'\]$"
    ):
        wait_for(
            lambda: ["a"],
            lambda v: len(v) == 2,
            what="routes on s1",
            timeout=1,
            interval=0.5,
            clock=c,
            sleep=c.sleep,
        )


def test_wait_for_raises_the_callers_error_with_its_description():
    c = Clock()
    with pytest.raises(KeyError, match=r"ports: not within 0 s .*; last: 2 missing"):
        wait_for(
            lambda: {"a", "b"},
            lambda v: not v,
            what="ports",
            timeout=0,
            describe=lambda v: f"{len(v)} missing",
            error=KeyError,
            clock=c,
            sleep=c.sleep,
        )


def test_wait_until_is_the_boolean_shorthand():
    assert wait_until(lambda: 1, timeout=0) is True
    assert wait_until(lambda: 0, timeout=0) is False

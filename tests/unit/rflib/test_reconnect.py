"""Tests for routeflow.rflib.reconnect: the one reconnect policy of rfclient and rfproxy."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.reconnect import STANDBY_MAX_BACKOFF, ReconnectPolicy


def bounds(a: float, b: float) -> tuple[float, float]:
    """A random source that shows what it was asked: (low, high) instead of a draw."""
    return (a, b)  # type: ignore[return-value]


def test_backoff_doubles_up_to_the_cap_and_is_jittered_over_its_upper_half():
    policy = ReconnectPolicy(1, min_backoff=0.1, max_backoff=1.0, uniform=bounds)
    asked = [policy.delay() for _ in range(6)]
    # Doubling and halving are exact in binary floating point.
    assert asked == [(0.05, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.8), (0.5, 1.0), (0.5, 1.0)]


def test_a_session_that_lasted_starts_the_backoff_again():
    policy = ReconnectPolicy(1, min_backoff=0.1, max_backoff=5.0, stable=1.0, uniform=bounds)
    for _ in range(5):
        policy.delay()
    policy.set_up(now=100.0)
    policy.ended(now=101.0)
    assert policy.delay() == (0.05, 0.1)


def test_a_session_ended_at_once_does_not_reset_the_backoff():
    # A server that accepts but ends the session (wrong secret) is retried ever more slowly.
    policy = ReconnectPolicy(1, min_backoff=0.1, max_backoff=5.0, stable=1.0, uniform=bounds)
    policy.delay()
    policy.answered(0)
    policy.set_up(now=100.0)
    policy.ended(now=100.2)
    assert policy.delay() == (0.1, 0.2)
    policy.ended(now=200.0)  # no session set up since: a failed setup
    assert policy.delay() == (0.2, 0.4)


def test_a_standby_to_find_caps_the_backoff_at_one_second():
    assert ReconnectPolicy(1, max_backoff=3.0).max_backoff == 3.0
    assert ReconnectPolicy(2, max_backoff=3.0).max_backoff == STANDBY_MAX_BACKOFF == 1.0
    assert ReconnectPolicy(2, max_backoff=0.5).max_backoff == 0.5
    # Never below the minimum: the arguments still mean what they say.
    assert ReconnectPolicy(2, min_backoff=2.0, max_backoff=3.0).max_backoff == 2.0


def test_rounds_start_with_the_address_that_answered_last():
    policy = ReconnectPolicy(3)
    assert policy.order() == [0, 1, 2]
    assert policy.answered(2) is True
    assert policy.order() == [2, 0, 1]
    assert policy.answered(2) is False
    assert policy.answered(0) is True
    assert policy.order() == [0, 1, 2]


def test_arguments_are_checked():
    for kwargs in ({"min_backoff": 0}, {"min_backoff": 2, "max_backoff": 1}):
        with pytest.raises(ValueError):
            ReconnectPolicy(1, **kwargs)
    with pytest.raises(ValueError):
        ReconnectPolicy(0)


@settings(max_examples=300, deadline=None)
@given(
    addresses=st.integers(1, 4),
    lo=st.floats(0.01, 2.0),
    factor=st.floats(1.0, 20.0),
    steps=st.lists(
        st.tuples(st.sampled_from(["delay", "session", "answered"]), st.floats(0, 3)), max_size=40
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_delay_is_within_half_to_all_of_a_bounded_backoff(addresses, lo, factor, steps, seed):
    hi = lo * factor
    rng = random.Random(seed)
    policy = ReconnectPolicy(
        addresses, min_backoff=lo, max_backoff=hi, stable=1.0, uniform=rng.uniform
    )
    cap = policy.max_backoff
    assert lo <= cap <= hi and (addresses == 1 or cap <= max(lo, STANDBY_MAX_BACKOFF))
    expected = lo  # the model: doubles per delay, back to lo after a session of 1 s or more
    now = 0.0
    for step, lasted in steps:
        if step == "delay":
            d = policy.delay()
            assert expected / 2 <= d <= expected
            expected = min(expected * 2, cap)
        elif step == "session":
            policy.set_up(now)
            now += lasted
            policy.ended(now)
            if lasted >= 1.0:
                expected = lo
        else:
            index = rng.randrange(addresses)
            policy.answered(index)
            order = policy.order()
            assert order[0] == index and sorted(order) == list(range(addresses))

"""The link table's rules (proxy/discovery.py), and a model check of its aging with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.proxy.discovery import Link, LinkDown, LinkTable, LinkUp

A1, A2, B1, B2, C1 = (1, 1), (1, 2), (2, 1), (2, 2), (3, 1)


def test_a_sighting_brings_a_link_up_once():
    t = LinkTable(hold=3)
    assert t.seen(A1, B1, 0.0) == [LinkUp(Link(A1, B1))]
    assert t.seen(A1, B1, 1.0) == []
    assert t.links() == [Link(A1, B1)]


def test_a_link_ages_out_after_hold_seconds_without_a_sighting():
    t = LinkTable(hold=3)
    t.seen(A1, B1, 0.0)
    t.seen(A1, B1, 1.0)
    assert t.tick(3.9) == []
    assert t.tick(4.0) == [LinkDown(Link(A1, B1), "aged")]
    assert t.links() == []
    assert t.tick(10.0) == []


def test_a_port_going_down_takes_its_links_at_once_both_directions():
    t = LinkTable(hold=3)
    t.seen(A1, B1, 0.0)
    t.seen(B1, A1, 0.0)
    t.seen(A2, C1, 0.0)
    assert t.port_down(B1) == [
        LinkDown(Link(B1, A1), "port down"),
        LinkDown(Link(A1, B1), "port down"),
    ]
    assert t.links() == [Link(A2, C1)]


def test_a_switch_leaving_takes_every_link_of_its_ports():
    t = LinkTable(hold=3)
    t.seen(A1, B1, 0.0)
    t.seen(B2, C1, 0.0)
    t.seen(C1, B2, 0.0)
    assert {c.link for c in t.switch_left(2)} == {Link(A1, B1), Link(B2, C1), Link(C1, B2)}
    assert t.links() == []


def test_a_new_neighbour_at_a_port_replaces_the_old_one():
    t = LinkTable(hold=3)
    t.seen(A1, B1, 0.0)
    assert t.seen(C1, B1, 1.0) == [LinkDown(Link(A1, B1), "replaced"), LinkUp(Link(C1, B1))]
    # One sender may reach several receivers (a shared segment).
    assert t.seen(C1, B2, 1.0) == [LinkUp(Link(C1, B2))]
    assert t.links() == [Link(C1, B1), Link(C1, B2)]


def test_clear_forgets_without_a_word():
    t = LinkTable(hold=3)
    t.seen(A1, B1, 0.0)
    t.clear()
    assert t.links() == [] and t.tick(100.0) == []


def test_hold_must_be_positive():
    with pytest.raises(ValueError, match="hold"):
        LinkTable(hold=0)


# --- model check ----------------------------------------------------------------------------

ends = st.tuples(st.integers(1, 3), st.integers(1, 3))
events = st.lists(
    st.one_of(
        st.tuples(st.just("seen"), ends, ends, st.floats(0, 2)),
        st.tuples(st.just("tick"), st.floats(0, 2)),
        st.tuples(st.just("port_down"), ends),
        st.tuples(st.just("switch_left"), st.integers(1, 3)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(events, st.sampled_from([0.5, 1.0, 3.0]))
def test_the_table_follows_the_model_and_its_changes_replay_into_it(evs, hold):
    """A model of the rules: per receiving end, (link, last seen); time only moves forward.

    After every event: the table's links are the model's, and the changes the table
    returned, replayed into a set (up adds, down removes), give the same links; a
    link never comes up while up nor goes down while down.
    """
    t = LinkTable(hold=hold)
    model: dict[tuple[int, int], tuple[Link, float]] = {}
    replay: set[Link] = set()
    now = 0.0
    for ev in evs:
        kind = ev[0]
        if kind == "seen":
            _, src, dst, dt = ev
            now += dt
            changes = t.seen(src, dst, now)
            model[dst] = (Link(src, dst), now)
        elif kind == "tick":
            now += ev[1]
            changes = t.tick(now)
            model = {d: (lk, at) for d, (lk, at) in model.items() if at + hold > now}
        elif kind == "port_down":
            end = ev[1]
            changes = t.port_down(end)
            model = {d: v for d, v in model.items() if end not in (v[0].src, v[0].dst)}
        else:
            dp = ev[1]
            changes = t.switch_left(dp)
            model = {d: v for d, v in model.items() if dp not in (v[0].src[0], v[0].dst[0])}
        for c in changes:
            if isinstance(c, LinkUp):
                assert c.link not in replay, f"{c.link} up twice"
                replay.add(c.link)
            else:
                assert c.link in replay, f"{c.link} down while down"
                replay.remove(c.link)
        want = sorted(lk for lk, _ in model.values())
        assert t.links() == want
        assert sorted(replay) == want
        # Nothing in the table is older than hold after a tick at now.
        if kind == "tick":
            assert t.tick(now) == []


@settings(max_examples=100)
@given(st.floats(0.1, 5), st.integers(1, 5), st.floats(0.0, 0.99))
def test_a_link_probed_every_interval_never_ages_and_ages_after_k_misses(interval, k, jitter):
    """Probes every ``interval`` keep a link up; after the last one it goes within k intervals."""
    t = LinkTable(hold=k * interval)
    now = 0.0
    t.seen(A1, B1, now)
    for _ in range(20):
        # The next probe arrives up to (almost) one interval late; ticks in between.
        assert t.tick(now + interval * jitter) == []
        now += interval
        t.seen(A1, B1, now)
        assert t.links() == [Link(A1, B1)]
    last = now
    assert t.tick(last + k * interval - 1e-6) == []
    assert t.tick(last + k * interval) == [LinkDown(Link(A1, B1), "aged")]

"""Tests for routeflow.server.roles: which rfproxy replica is OpenFlow master."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.server.roles import MASTER, SLAVE, Assign, Generation, Hold, RoleArbiter


def assigns(actions) -> list[tuple[str, str, int]]:
    return [(a.replica, a.role, a.generation) for a in actions if isinstance(a, Assign)]


def test_first_fresh_replica_becomes_master_the_next_slave():
    r = RoleArbiter()
    out = r.connect(1, "ct1a")
    assert out == [Generation(1, 1), Assign(1, "ct1a", MASTER, 1, promoted=True)]
    assert r.connect(1, "ct1b") == [Assign(1, "ct1b", SLAVE, 1)]
    assert r.master(1) == "ct1a"
    assert r.replicas(1) == {"ct1a": MASTER, "ct1b": SLAVE}


def test_master_death_promotes_lowest_named_replica_with_a_new_generation():
    r = RoleArbiter()
    r.connect(1, "ct1b")
    r.connect(1, "ct1c")
    r.connect(1, "ct1a")
    assert r.master(1) == "ct1b"
    out = r.disconnect(1, "ct1b")
    assert out == [
        Generation(1, 2),
        Assign(1, "ct1a", MASTER, 2, promoted=True),
        Assign(1, "ct1c", SLAVE, 2),
    ]
    assert r.master(1) == "ct1a"


def test_slave_death_changes_nothing():
    r = RoleArbiter()
    r.connect(1, "ct1a")
    r.connect(1, "ct1b")
    assert r.disconnect(1, "ct1b") == []
    assert r.master(1) == "ct1a" and r.generation(1) == 1


def test_last_replica_gone_then_a_fresh_one_is_promoted():
    r = RoleArbiter()
    r.connect(1, "ct1a")
    assert r.disconnect(1, "ct1a") == []
    assert r.master(1) is None
    assert assigns(r.connect(1, "ct1b")) == [("ct1b", MASTER, 2)]


def test_restarted_server_keeps_the_master_that_says_so_without_churn():
    # rfserver restarted with generation 7 in its store; the slave reconnects
    # first and waits; the old master comes back and keeps its role.
    r = RoleArbiter({1: 7}, hold=5.0)
    assert r.connect(1, "ct1b", holds=SLAVE) == [Hold(1, 5.0, 1)]
    assert r.master(1) is None
    out = r.connect(1, "ct1a", holds=MASTER)
    assert out == [Assign(1, "ct1a", MASTER, 7), Assign(1, "ct1b", SLAVE, 7)]
    assert r.expire(1, 1) == []  # the hold timer firing later is a no-op
    assert r.generation(1) == 7


def test_hold_expires_and_promotes_when_the_master_does_not_come_back():
    r = RoleArbiter({1: 3})
    (hold,) = r.connect(1, "ct1b", holds=SLAVE)
    assert r.connect(1, "ct1c", holds=SLAVE) == []  # already holding
    assert r.connect(1, "ct1d") == []  # a fresh one waits with them
    assert assigns(r.expire(1, hold.token)) == [
        ("ct1b", MASTER, 4),
        ("ct1c", SLAVE, 4),
        ("ct1d", SLAVE, 4),
    ]


def test_stale_hold_token_is_ignored():
    r = RoleArbiter()
    (hold,) = r.connect(1, "ct1b", holds=SLAVE)
    r.connect(1, "ct1a", holds=MASTER)
    r.disconnect(1, "ct1a")  # ct1b promoted
    r.disconnect(1, "ct1b")
    (hold2,) = r.connect(1, "ct1c", holds=SLAVE)
    assert hold2.token != hold.token
    assert r.expire(1, hold.token) == []
    assert r.master(1) is None
    assert assigns(r.expire(1, hold2.token)) == [("ct1c", MASTER, 3)]


def test_replica_claiming_master_while_another_is_master_becomes_slave():
    r = RoleArbiter()
    r.connect(1, "ct1b")
    assert r.connect(1, "ct1a", holds=MASTER) == [Assign(1, "ct1a", SLAVE, 1)]


def test_master_with_no_known_generation_starts_at_one():
    r = RoleArbiter()
    assert r.connect(1, "ct1a", holds=MASTER) == [
        Generation(1, 1),
        Assign(1, "ct1a", MASTER, 1),
    ]


def test_same_replica_reconnecting_keeps_its_role():
    r = RoleArbiter()
    r.connect(1, "ct1a")
    r.connect(1, "ct1b")
    assert r.connect(1, "ct1a") == [Assign(1, "ct1a", MASTER, 1)]
    assert r.connect(1, "ct1b", holds=SLAVE) == [Assign(1, "ct1b", SLAVE, 1)]
    assert r.generation(1) == 1


def test_controllers_are_independent():
    r = RoleArbiter()
    r.connect(1, "ct1a")
    r.connect(2, "ct2a")
    r.disconnect(1, "ct1a")
    assert r.master(2) == "ct2a" and r.generation(2) == 1
    assert r.master(1) is None


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["connect", "disconnect", "expire"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["", MASTER, SLAVE]),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(events=EVENTS)
def test_invariants(events):
    """At most one master, always a connected one; generations never go back;
    every promotion is a new generation; a connected replica never stays
    without a role unless a hold is pending."""
    r = RoleArbiter()
    connected: set[str] = set()
    generation = 0
    token = 0
    for kind, name, holds in events:
        if kind == "connect":
            out = r.connect(1, name, holds)
            connected.add(name)
        elif kind == "disconnect":
            out = r.disconnect(1, name)
            connected.discard(name)
        else:
            out = r.expire(1, token)
        for a in out:
            if isinstance(a, Hold):
                token = a.token
            if isinstance(a, Generation):
                assert a.generation == generation + 1
                generation = a.generation
            if isinstance(a, Assign):
                assert a.replica in connected
                assert a.generation == r.generation(1)
                if a.promoted:
                    assert any(isinstance(g, Generation) for g in out)
        roles = r.replicas(1)
        assert set(roles) == connected
        masters = [n for n, role in roles.items() if role == MASTER]
        assert masters == ([r.master(1)] if r.master(1) else [])
        assert r.generation(1) == generation
        if r.master(1) is None and connected:
            # Only waiting for a previous master (a hold) leaves replicas unassigned.
            assert all(role == "" for role in roles.values())
        if r.master(1) is not None:
            assert all(role in (MASTER, SLAVE) for role in roles.values())

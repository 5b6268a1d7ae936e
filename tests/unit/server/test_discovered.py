"""The discovered topology's rules (server/discovered.py) and the session rule for its reports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routeflow.rflib import protocol as p
from routeflow.server.discovered import (
    KnownLink,
    LinkAdded,
    LinkRemoved,
    Topology,
    from_records,
    records,
)
from routeflow.server.sessions import ControllerSession, Refused, TopologyReport


def ends(sd=5, sp=1, dd=6, dport=1) -> p.LinkEnds:
    return p.LinkEnds(src_dp_id=sd, src_port=sp, dst_dp_id=dd, dst_port=dport)


AB, BA, AC = ends(), ends(6, 1, 5, 1), ends(5, 2, 7, 1)


def up(e, ct=1) -> p.DatapathLink:
    return p.DatapathLink(ct_id=ct, link=e, up=True)


def test_a_link_comes_up_once_and_goes_with_its_reason():
    t = Topology()
    (added,) = t.link(up(AB), 10.0)
    assert added == LinkAdded(KnownLink(ends=AB, ct_id=1, since=10.0))
    assert t.link(up(AB), 11.0) == []
    down = p.DatapathLink(ct_id=1, link=AB, up=False, reason="aged")
    assert t.link(down, 12.0) == [LinkRemoved(added.link, "aged")]
    assert t.link(down, 13.0) == [] and t.links() == []


def test_a_full_table_replaces_what_its_controller_reported_only():
    t = Topology()
    t.link(up(AB), 1.0)
    t.link(up(BA), 1.0)
    t.link(up(AC, ct=2), 1.0)
    assert t.table(p.DatapathLinks(ct_id=1, links=[AB], dp_ids=[6]), 5.0) == []  # BA is at 5
    out = t.table(p.DatapathLinks(ct_id=1, links=[AB], dp_ids=[5, 6, 7]), 5.0)
    assert out == [LinkRemoved(KnownLink(ends=BA, ct_id=1, since=1.0), "not in the table")]
    assert [(k.ends, k.ct_id, k.since) for k in t.links()] == [(AB, 1, 1.0), (AC, 2, 1.0)]


def test_stored_links_are_unconfirmed_until_reported_and_keep_their_age():
    stored = [KnownLink(ends=AB, ct_id=1, since=1.0), KnownLink(ends=BA, ct_id=1, since=2.0)]
    t = Topology(stored)
    assert [k.confirmed for k in t.links()] == [False, False]
    out = t.table(p.DatapathLinks(ct_id=1, links=[AB], dp_ids=[5, 6]), 50.0)
    assert out == [
        LinkRemoved(KnownLink(ends=BA, ct_id=1, since=2.0, confirmed=False), "not in the table"),
        LinkAdded(KnownLink(ends=AB, ct_id=1, since=1.0)),
    ]
    assert t.links() == [KnownLink(ends=AB, ct_id=1, since=1.0)]


def test_a_switch_leaving_takes_the_links_heard_at_it():
    t = Topology()
    for e in (AB, BA, AC):
        t.link(up(e), 1.0)
    assert [a.link.ends for a in t.switch_left(1, 6)] == [AB]
    assert t.switch_left(2, 5) == []  # another controller's switch


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**64 - 1),
            st.integers(1, 0xFFFFFEFF),
            st.integers(0, 2**64 - 1),
            st.integers(1, 0xFFFFFEFF),
            st.integers(1, 2**31),
        ),
        max_size=5,
    )
)
def test_store_records_round_trip(rows):
    t = Topology()
    actions = []
    for sd, sp, dd, dport, ct in rows:
        actions += t.link(up(ends(sd, sp, dd, dport), ct), 3.5)
    loaded, bad = from_records([(k, v) for k, v in records(actions).items() if v is not None])
    assert bad == []
    assert Topology(loaded).links() == [
        KnownLink(ends=k.ends, ct_id=k.ct_id, since=k.since, confirmed=False) for k in t.links()
    ]
    removed = records([LinkRemoved(k, "aged") for k in t.links()])
    assert all(v is None for v in removed.values())


def test_unreadable_records_are_named():
    good = records([LinkAdded(KnownLink(ends=AB, ct_id=1, since=1.0))])
    items = [*((k, v) for k, v in good.items() if v is not None)]
    items += [
        ("link/zz", b"{}"),
        ("link/5:1-6:1", b"not json"),
        ("link/5:0-6:1", b'{"ct_id": 1, "since": 1}'),
    ]
    loaded, bad = from_records(items)
    assert [k.ends for k in loaded] == [AB]
    assert bad == ["link/zz", "link/5:1-6:1", "link/5:0-6:1"]


# --- the controller session (rule 12) ------------------------------------------------------


def test_the_session_passes_reports_of_its_own_controller_and_names_bad_fields():
    s = ControllerSession(1, "ct1")
    assert s.handle(up(AB), is_master=True) == [TopologyReport(up(AB))]
    table = p.DatapathLinks(ct_id=1, links=[AB])
    assert s.handle(table, is_master=True) == [TopologyReport(table)]
    (foreign,) = s.handle(up(AB, ct=2), is_master=True)
    assert isinstance(foreign, Refused) and "controller 2" in foreign.reason
    assert type(s.handle(up(AB), is_master=False)[0]).__name__ == "NotMaster"


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (up(ends(sp=0)), "link.src_port 0"),
        (up(ends(dport=0xFFFFFFFD)), "link.dst_port"),
        (up(ends(sd=-1)), "link.src_dp_id"),
        (up(ends(dd=2**64)), "link.dst_dp_id"),
        (p.DatapathLinks(ct_id=1, links=[AB, ends(sp=0)]), "links[1].src_port"),
        (p.DatapathLinks(ct_id=1, links=[AB], dp_ids=[5, -1]), "dp_ids[1]"),
        (p.DatapathLink(ct_id=1, link=AB, up=False, reason="x" * 65), "reason"),
    ],
)
def test_bad_reports_are_refused_naming_the_field(msg, field):
    (refused,) = ControllerSession(1, "ct1").handle(msg, is_master=True)
    assert isinstance(refused, Refused) and field in refused.reason


small_ends = st.builds(
    p.LinkEnds,
    src_dp_id=st.integers(1, 3),
    src_port=st.integers(1, 2),
    dst_dp_id=st.integers(1, 3),
    dst_port=st.integers(1, 2),
)
reports = st.lists(
    st.one_of(
        st.builds(p.DatapathLink, ct_id=st.integers(1, 2), link=small_ends, up=st.booleans()),
        st.builds(
            p.DatapathLinks,
            ct_id=st.integers(1, 2),
            links=st.lists(small_ends, max_size=4),
            dp_ids=st.lists(st.integers(1, 3), max_size=3),
        ),
        st.tuples(st.integers(1, 2), st.integers(1, 3)),  # switch (ct, dp) left
    ),
    max_size=30,
)


@given(st.lists(small_ends, max_size=4), reports)
def test_the_actions_replay_into_the_table_and_the_store(stored, evs):
    """Whatever arrives, the actions (and the store records made of them) say what changed."""
    from routeflow.server.discovered import key

    t = Topology([KnownLink(ends=e, ct_id=1, since=0.0) for e in stored])
    replay = {key(k.ends): k for k in t.links()}
    store = {key(k.ends): True for k in t.links()}
    for i, ev in enumerate(evs):
        if isinstance(ev, p.DatapathLink):
            actions = t.link(ev, float(i))
        elif isinstance(ev, p.DatapathLinks):
            actions = t.table(ev, float(i))
            # Rule 2: afterwards the controller's links at those switches are its table's.
            at = set(ev.dp_ids)
            mine = {
                key(k.ends) for k in t.links() if k.ct_id == ev.ct_id and k.ends.dst_dp_id in at
            }
            assert mine == {key(e) for e in ev.links if e.dst_dp_id in at}
        else:
            actions = t.switch_left(*ev)
            assert not [k for k in t.links() if (k.ct_id, k.ends.dst_dp_id) == ev]
        for a in actions:
            if isinstance(a, LinkAdded):
                replay[key(a.link.ends)] = a.link
            else:
                assert replay.pop(key(a.link.ends)) == a.link
        for name, rec in records(actions).items():
            loaded, _ = from_records([(name, rec)] if rec is not None else [])
            if rec is None:
                store = {k: v for k, v in store.items() if _name(k) != name}
            else:
                store[key(loaded[0].ends)] = True
        assert replay == {key(k.ends): k for k in t.links()}
        assert set(store) == set(replay)


def _name(k) -> str:
    from routeflow.server.discovered import record_key

    return record_key(p.LinkEnds(src_dp_id=k[0], src_port=k[1], dst_dp_id=k[2], dst_port=k[3]))

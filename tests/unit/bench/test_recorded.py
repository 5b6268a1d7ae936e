"""bench/recorded.py: recorded BGP data (bgpdump/bgpkit text, MRT records) as tables
and churn streams: one peer, ADD-PATH folded, session resets withdraw, nothing
invented."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.bench.churn import ChurnError, final_state
from routeflow.bench.recorded import (
    ESTABLISHED,
    Record,
    looks_like_text_records,
    parse_text_records,
    stream_from_records,
    table_from_records,
)
from routeflow.bench.table import TableError

BGPDUMP = """\
# bgpdump -m updates.20261201.0000.bz2
BGP4MP|1764547200|A|195.66.224.175|13030|1.0.0.0/24|13030 13335|IGP|195.66.224.175|0|0||NAG||
BGP4MP|1764547200|A|195.66.224.175|13030|2001:db8::/32|13030 6939 {64512,64513}|IGP|::|0|0||NAG||
BGP4MP_ET|1764547201.250000|W|195.66.224.175|13030|1.0.0.0/24
BGP4MP|1764547202|STATE|195.66.224.175|13030|6|1
BGP4MP|1764547203|A|80.81.192.1|6695|8.8.8.0/24|6695 15169|IGP|80.81.192.1|0|0||NAG||
"""

BGPKIT = """\
A|1764547200.5|2001:7f8::1|6939|2001:db8:1::/48|6939 3333|IGP|2001:7f8::1|0|0||false|||
W|1764547201.0|2001:7f8::1|6939|2001:db8:1::/48|||||||||
"""


def test_bgpdump_lines_are_records():
    recs = list(parse_text_records(BGPDUMP.splitlines(), "u.txt"))
    assert recs == [
        Record(1764547200.0, "195.66.224.175", "A", "1.0.0.0/24", (13030, 13335)),
        Record(1764547200.0, "195.66.224.175", "A", "2001:db8::/32", (13030, 6939)),  # set out
        Record(1764547201.25, "195.66.224.175", "W", "1.0.0.0/24"),
        Record(1764547202.0, "195.66.224.175", "S", state=1),
        Record(1764547203.0, "80.81.192.1", "A", "8.8.8.0/24", (6695, 15169)),
    ]
    assert looks_like_text_records(BGPDUMP.splitlines()[1])
    assert not looks_like_text_records("1.0.0.0/24 13030 13335")


def test_bgpkit_lines_are_records():
    recs = list(parse_text_records(BGPKIT.splitlines(), "k.txt"))
    assert [(r.op, r.peer, r.prefix, r.as_path) for r in recs] == [
        ("A", "2001:7f8::1", "2001:db8:1::/48", (6939, 3333)),
        ("W", "2001:7f8::1", "2001:db8:1::/48", ()),
    ]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("BGP4MP|x|A|1.1.1.1|1|1.0.0.0/24|1", "u.txt:2: time 'x'"),
        ("BGP4MP|1|A|1.1.1.1|1|1.0.0.1/24|1", "u.txt:2: .*host bits"),
        ("BGP4MP|1|A|1.1.1.1|1|1.0.0.0/24|1 AS2", "u.txt:2: AS number 'AS2'"),
        ("BGP4MP|1|A|1.1.1.1|1", "u.txt:2: too few"),
        ("hello|1|2", "u.txt:2: neither bgpdump"),
    ],
)
def test_bad_lines_name_file_and_line(line, says):
    with pytest.raises(ChurnError, match=says):
        list(parse_text_records(["# header", line], "u.txt"))


def test_a_table_keeps_each_prefix_once_with_the_first_path():
    lines = [
        "TABLE_DUMP2|1764547200|B|1.1.1.1|1|1.0.0.0/24|1 13335|IGP|1.1.1.1|0|0||NAG||",
        "TABLE_DUMP2|1764547200|B|2.2.2.2|2|1.0.0.0/24|2 3356 13335|IGP|2.2.2.2|0|0||NAG||",
        "TABLE_DUMP2|1764547200|B|2.2.2.2|2|2001:db8::/32|2 6939|IGP|::|0|0||NAG||",
    ]
    table = table_from_records(parse_text_records(lines, "rib.txt", first_per_prefix=True), "r")
    assert [(e.prefix, e.as_path) for e in table] == [
        ("1.0.0.0/24", (1, 13335)),
        ("2001:db8::/32", (2, 6939)),
    ]
    with pytest.raises(TableError, match="no announced prefix"):
        table_from_records([], "empty.txt")


def test_a_stream_is_one_peer_and_a_reset_withdraws_what_it_had():
    updates, info = stream_from_records(parse_text_records(BGPDUMP.splitlines(), "u"), "u")
    assert info.peer == "195.66.224.175" and info.peers == {
        "195.66.224.175": 3,
        "80.81.192.1": 1,
    }
    assert [(u.t, u.op, u.prefix) for u in updates] == [
        (0.0, "A", "1.0.0.0/24"),
        (0.0, "A", "2001:db8::/32"),
        (1.25, "W", "1.0.0.0/24"),
        (2.0, "W", "2001:db8::/32"),  # the session went Idle
    ]
    assert info.session_downs == 1 and "1 other peers left out" in info.summary()
    other, _ = stream_from_records(
        parse_text_records(BGPDUMP.splitlines(), "u"), "u", peer="80.81.192.1"
    )
    assert [(u.t, u.prefix) for u in other] == [(0.0, "8.8.8.0/24")]
    with pytest.raises(ChurnError, match=r"no updates from peer 9\.9\.9\.9"):
        stream_from_records(parse_text_records(BGPDUMP.splitlines(), "u"), "u", peer="9.9.9.9")


prefixes = st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "0.0.0.0/0"])
events = st.lists(
    st.one_of(
        st.tuples(st.just("A"), prefixes, st.integers(0, 2), st.integers(1, 5)),
        st.tuples(st.just("W"), prefixes, st.integers(0, 2), st.just(0)),
        st.tuples(st.just("S"), st.just(""), st.just(0), st.sampled_from([1, ESTABLISHED])),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events, st.lists(st.floats(0, 5), min_size=40, max_size=40))
def test_a_stream_ends_where_the_peer_s_routes_end(evs, gaps):
    """Whatever the order: the stream's final state is what the peer still announces
    (some path id live, session up since), defaults left out; times never go back;
    a withdrawal is only ever of a prefix the stream has announced at that point."""
    t = 100.0
    recs = []
    for (op, prefix, pid, asn), gap in zip(evs, gaps, strict=False):
        t += gap if op != "S" else -gap  # a session change may carry an earlier stamp
        recs.append(Record(t, "p", op, prefix, (asn,) if op == "A" else (), pid, asn))
    if not any(r.op in "AW" for r in recs):
        with pytest.raises(ChurnError):
            stream_from_records(recs, "s")
        return
    updates, _info = stream_from_records(recs, "s")
    live: dict[str, tuple[set[int], tuple[int, ...]]] = {}
    for r in recs:
        if r.op == "S":
            if r.state != ESTABLISHED:
                live.clear()
        elif r.prefix == "0.0.0.0/0":
            continue
        elif r.op == "A":
            live.setdefault(r.prefix, (set(), ()))[0].add(r.path_id)
            live[r.prefix] = (live[r.prefix][0], r.as_path)
        elif r.prefix in live:
            live[r.prefix][0].discard(r.path_id)
            if not live[r.prefix][0]:
                del live[r.prefix]
    assert final_state(updates) == {p: path for p, (_ids, path) in live.items()}
    assert all(b.t >= a.t for a, b in itertools.pairwise(updates))
    announced: set[str] = set()
    for u in updates:
        assert u.prefix != "0.0.0.0/0"
        if u.op == "A":
            announced.add(u.prefix)
        else:
            announced.remove(u.prefix)  # KeyError: withdrawn while not announced


def test_a_bgpdump_rib_file_is_a_table_file(tmp_path):
    from routeflow.bench.table import read_table_file

    path = tmp_path / "rib.txt"
    path.write_text(
        "TABLE_DUMP2|1764547200|B|1.1.1.1|1|1.0.0.0/24|1 13335|IGP|1.1.1.1|0|0||NAG||\n"
        "TABLE_DUMP2|1764547200|B|2.2.2.2|2|1.0.0.0/24|2 13335|IGP|2.2.2.2|0|0||NAG||\n"
        "TABLE_DUMP2|1764547200|B|2.2.2.2|2|2001:db8::/32|2 6939|IGP|::|0|0||NAG||\n"
    )
    assert [(e.prefix, e.as_path) for e in read_table_file(str(path))] == [
        ("1.0.0.0/24", (1, 13335)),
        ("2001:db8::/32", (2, 6939)),
    ]
    path.write_text("TABLE_DUMP2|1764547200|B|1.1.1.1|1|1.0.0.1/24|1|IGP\n")
    with pytest.raises(TableError, match=r"rib\.txt:1: .*host bits"):
        read_table_file(str(path))

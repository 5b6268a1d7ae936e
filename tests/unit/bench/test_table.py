"""Table files: parsing, errors naming file and line, nesting, and the generator's tables."""

from __future__ import annotations

import ipaddress
import pathlib
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.bench import fibtable, tablegen, tablepeers
from routeflow.bench.fib import load_bench_table
from routeflow.bench.table import (
    TableError,
    format_table,
    nested_count,
    parse_table,
    read_table,
    table_stats,
)

SHIPPED = pathlib.Path(__file__).parents[3] / "labs" / "tables" / "small.txt"


def test_lines_comments_and_both_families():
    entries = parse_table(
        [
            "# a table",
            "",
            "193.0.0.0/21 3356 1299 3333",
            "2001:67C:2E8:0::/48 6939 3333   # trailing comment",
            "   10.0.0.0/8",
        ],
        "t.txt",
    )
    assert [(e.prefix, e.as_path) for e in entries] == [
        ("193.0.0.0/21", (3356, 1299, 3333)),
        ("2001:67c:2e8::/48", (6939, 3333)),
        ("10.0.0.0/8", ()),
    ]
    assert entries[1].family == socket.AF_INET6 and entries[1].plen == 48
    assert entries[1].net == int(ipaddress.IPv6Address("2001:67c:2e8::"))


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("10.0.0.0 1", "not a prefix"),
        ("10.0.0.300/24", "not an IPv4 address"),
        ("2001:db8::g/48", "not an IPv6 address"),
        ("10.0.0.0/33", "prefix length '33' is not 0-32"),
        ("2001:db8::/129", "not 0-128"),
        ("10.0.0.0/x", "prefix length 'x'"),
        ("10.0.0.1/24 1", "host bits set"),
        ("10.0.0.0/24 1 x", "AS number 'x'"),
        ("10.0.0.0/24 0", "AS number '0'"),
        ("10.0.0.0/24 4294967296", "AS number '4294967296'"),
        ("10.0.0.0/24 1 {2,3}", "AS sets are not supported"),
        ("10.0.0.0/24 ²", "AS number"),
    ],
)
def test_bad_lines_name_the_file_and_line(line, says):
    with pytest.raises(TableError) as err:
        parse_table(["# ok", "10.1.0.0/16 1", line], "t.txt")
    assert str(err.value).startswith("t.txt:3: ")
    assert says in str(err.value)


def test_a_prefix_appears_once():
    with pytest.raises(TableError, match=r"t.txt:4: 2001:db8::/32 already on line 2"):
        parse_table(["", "2001:db8::/32 1", "10.0.0.0/8", "2001:DB8:0::/32 2"], "t.txt")


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(TableError, match=r"nope\.txt"):
        read_table(str(tmp_path / "nope.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"10.0.0.0/8\n\xff\xfe\n")
    with pytest.raises(TableError, match=r"bad\.txt"):
        read_table(str(bad))


def _brute_nested(entries) -> int:
    nets = [ipaddress.ip_network(e.prefix) for e in entries]
    return sum(
        1
        for n in nets
        if any(o != n and o.version == n.version and n.subnet_of(o) for o in nets)  # type: ignore[arg-type]
    )


prefixes = st.one_of(
    st.builds(
        lambda a, p: ipaddress.ip_network(f"{ipaddress.IPv4Address(a)}/{p}", strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, p: ipaddress.ip_network(f"{ipaddress.IPv6Address(a << 96)}/{p}", strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 40),
    ),
)


@settings(max_examples=200)
@given(
    st.lists(prefixes, max_size=30, unique=True),
    st.lists(st.lists(st.integers(1, 2**32 - 1), max_size=4), max_size=30),
)
def test_round_trip_and_nesting(nets, paths):
    lines = [
        f"{n} {' '.join(map(str, p))}"
        for n, p in zip(nets, (paths + [[]] * len(nets))[: len(nets)], strict=True)
    ]
    entries = parse_table(lines, "gen")
    again = parse_table(list(format_table(entries, ["header"])), "again")
    assert again == entries
    assert [e.prefix for e in entries] == [str(n) for n in nets]
    assert nested_count(entries) == _brute_nested(entries)


def test_generated_tables_look_like_the_internet():
    entries = tablegen.generate(3000, 800, seed=7)
    st_ = table_stats(entries)
    assert (st_["ipv4"], st_["ipv6"]) == (3000, 800)
    v4, v6 = st_["ipv4_lengths"], st_["ipv6_lengths"]
    assert isinstance(v4, dict) and isinstance(v6, dict)
    assert set(v4) == set(range(8, 25)) and set(v6) == set(range(19, 49))
    assert 0.55 < v4[24] / 3000 < 0.65 and 0.4 < v6[48] / 800 < 0.55
    assert st_["nested_share"] > 0.5  # type: ignore[operator]
    assert st_["as_paths"] > 800  # type: ignore[operator]
    # host bits clear, unique, parseable: a written table reads back the same
    assert parse_table(list(format_table(entries)), "gen") == entries
    assert tablegen.generate(3000, 800, seed=7) == entries
    assert tablegen.generate(3000, 800, seed=8) != entries
    # kept out of the bench lab's networks and reserved ranges
    fibtable.check_table(entries, "gen", ["172.31.0.0/16", "2001:db8:f::/64"])


def test_the_shipped_table_fits_the_bench():
    entries = load_bench_table(str(SHIPPED))
    stats = table_stats(entries)
    assert stats["ipv4"] == 2000 and stats["ipv6"] == 500
    assert stats["nested_share"] > 0.5  # type: ignore[operator]


def test_peers_offer_overlapping_prefixes():
    entries = tablegen.generate(500, 100, seed=1)
    sp = tablepeers.spread(entries, 4, seed=3)
    assert all(best in offer for best, offer in zip(sp.best, sp.offers, strict=True))
    assert sp.shared() > len(entries) / 2
    assert sum(sp.per_peer(4)) == len(entries) and min(sp.per_peer(4)) > 0
    assert tablepeers.spread(entries, 4, seed=3) == sp
    one = tablepeers.spread(entries, 1)
    assert set(one.best) == {0} and one.shared() == 0
    with pytest.raises(ValueError, match="peers must be 1-64"):
        tablepeers.spread(entries, 0)


def test_bench_routes_and_raw_flows():
    entries = parse_table(["100.1.0.0/16 1", "100.1.2.0/24 2", "2001:db9::/32 3"], "t")
    sp = tablepeers.Spread(best=[0, 1, 1], offers=[(0, 1), (1,), (0, 1)])
    peers = fibtable.make_peers(
        {socket.AF_INET, socket.AF_INET6},
        2,
        ("172.31.2.100", "02:00:00:00:00:02"),
        ("2001:db8:f::100", "06:00:00:be:ef:06"),
    )
    assert peers[(socket.AF_INET, 1)].address == "172.31.2.101"
    assert peers[(socket.AF_INET6, 1)].address == "2001:db8:f::101"
    assert len({p.mac for p in peers.values()}) == 4
    assert list(fibtable.routes_lines(entries, sp, peers)) == [
        "100.1.0.0/16 172.31.2.100\n",
        "100.1.2.0/24 172.31.2.101\n",
        "2001:db9::/32 2001:db8:f::101\n",
    ]
    groups = {(socket.AF_INET, 0): 1, (socket.AF_INET, 1): 2, (socket.AF_INET6, 1): 4}
    flows = list(fibtable.raw_flow_lines(entries, sp, groups))
    assert flows[1].startswith("table=1,priority=1024,") and "nw_dst=100.1.2.0/24" in flows[1]
    assert flows[1].endswith("actions=group:2\n")
    assert "ipv6,ipv6_dst=2001:db9::/32,actions=group:4" in flows[2]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("0.0.0.0/0", "default route"),
        ("172.31.1.0/24", "overlaps 172.31.1.0/24"),
        ("172.0.0.0/8", "overlaps"),
        ("127.0.0.0/8", "overlaps 127.0.0.0/8"),
        ("2001:db8::/32", "overlaps 2001:db8:f::/64"),
        ("ff02::/16", "overlaps ff00::/8"),
    ],
)
def test_tables_that_would_disturb_the_lab_are_refused(tmp_path, line, says):
    path = tmp_path / "t.txt"
    path.write_text(f"100.0.0.0/8\n{line}\n")
    with pytest.raises(TableError, match=says):
        load_bench_table(str(path))


def test_a_dead_peer_moves_its_prefixes_to_the_next_one():
    entries = parse_table(["100.1.0.0/16", "100.2.0.0/16", "100.3.0.0/16", "100.4.0.0/16"], "t")
    sp = tablepeers.Spread(best=[0, 1, 0, 0], offers=[(0, 2), (0, 1), (0,), (0, 1, 2)])
    moves, gone = fibtable.peer_down(entries, sp, 0)
    assert [(e.prefix, p) for e, p in moves] == [("100.1.0.0/16", 2), ("100.4.0.0/16", 1)]
    assert [e.prefix for e in gone] == ["100.3.0.0/16"]

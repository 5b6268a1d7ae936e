"""Update streams for `bench churn`: the format, the generator, latency matching."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.bench import churn
from routeflow.bench.churnfeed import command
from routeflow.bench.table import read_table_file

SMALL = read_table_file(str(Path(__file__).parents[3] / "labs" / "tables" / "churn-seed.txt"))


def test_a_stream_round_trips_through_its_text():
    updates = churn.generate(SMALL, seconds=3, rate=40, seed=2)
    text = "".join(churn.format_stream(updates, "test"))
    assert text.startswith(churn.HEADER)
    again = churn.parse_stream(text.splitlines(), "s")
    assert [(u.op, u.prefix, u.as_path) for u in again] == [
        (u.op, u.prefix, u.as_path) for u in updates
    ]


def test_the_generated_stream_is_a_table_then_churn_and_a_reset_burst():
    updates = churn.generate(SMALL, seconds=4, rate=50, seed=1)
    assert [u.prefix for u in updates[: len(SMALL)]] == [e.prefix for e in SMALL]
    assert all(u.t == 0 for u in updates[: len(SMALL)])
    later = updates[len(SMALL) :]
    # the reset: a share of the table withdrawn within half a second
    ws = [u.t for u in later if u.op == "W"]
    burst = [t for t in ws if 3.0 <= t <= 3.55]
    assert len(burst) >= 0.4 * len(SMALL) - 1
    # every withdrawal withdraws something announced; times never go back
    present: set[str] = set()
    last = 0.0
    for u in updates:
        assert u.t >= last
        last = u.t
        if u.op == "W":
            assert u.prefix in present
            present.discard(u.prefix)
        else:
            present.add(u.prefix)
    assert set(churn.final_state(updates)) == present


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("x A 1.0.0.0/8", "time 'x'"),
        ("1 B 1.0.0.0/8", "neither A nor W"),
        ("1 A 1.0.0.1/8", "host bits"),
        ("1 W 1.0.0.0/8 174", "no AS path"),
        ("1 A 1.0.0.0/8 0", "AS number '0'"),
        ("1 A", "want 'time"),
    ],
)
def test_bad_lines_name_the_file_and_line(line, match):
    with pytest.raises(churn.ChurnError, match=rf"s:2: .*{match}"):
        churn.parse_stream(["0 A 2.0.0.0/8", line], "s")


def test_time_must_not_go_back():
    with pytest.raises(churn.ChurnError, match="s:2: time 1 goes back"):
        churn.parse_stream(["2 A 2.0.0.0/8", "1 W 2.0.0.0/8"], "s")


def test_latency_counts_switch_changes_once_and_skips_overtaken_ones():
    u = churn.Update
    updates = [
        u(0, "A", "1.0.0.0/8", (1,)),
        u(0, "A", "2.0.0.0/8", (1,)),
        u(1, "A", "1.0.0.0/8", (2,)),  # a path change: the switch stays as it is
        u(2, "W", "2.0.0.0/8"),
        u(2.1, "A", "2.0.0.0/8", (3,)),  # back before any sample: both overtaken
        u(3, "W", "1.0.0.0/8"),
    ]
    emitted = [10.0, 10.0, 11.0, 12.0, 12.1, 13.0]
    samples = [
        (10.5, {"1.0.0.0/8"}),
        (10.7, {"1.0.0.0/8", "2.0.0.0/8"}),
        (12.5, {"1.0.0.0/8", "2.0.0.0/8"}),
        (13.2, {"1.0.0.0/8", "2.0.0.0/8"}),
        (13.4, {"2.0.0.0/8"}),
    ]
    lat, unseen = churn.latencies(updates, emitted, samples)
    assert lat == pytest.approx([0.5, 0.7, 0.4]) and unseen == 0
    assert churn.percentiles(lat)["max"] == pytest.approx(0.7)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.floats(1, 5), st.floats(5, 80))
def test_any_generated_stream_parses(seed, seconds, rate):
    updates = churn.generate(SMALL[:50], seconds=seconds, rate=rate, seed=seed)
    assert churn.parse_stream("".join(churn.format_stream(updates)).splitlines()) == updates


def test_feed_commands_are_exabgp_api_text():
    assert command("A", "1.0.0.0/8", (174,), 65100, "192.0.2.2", "fd::1") == (
        "announce route 1.0.0.0/8 next-hop 192.0.2.2 as-path [ 65100 174 ]\n"
    )
    assert command("W", "2001:db8::/32", (), 65100, "192.0.2.2", "fd::1") == (
        "withdraw route 2001:db8::/32 next-hop fd::1\n"
    )

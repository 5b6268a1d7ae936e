"""A round of pings stays within what the emulated data plane carries."""

import pytest

from routeflow.lab import checks


def test_a_round_of_pings_is_paced_to_the_probe_rate_whatever_the_hosts():
    # A small lab probes as fast as fping goes; a big one spreads its round so that
    # all sources together stay at checks.PROBE_RATE (the emulated data plane's budget).
    assert checks.probe_interval_ms(1) == 1
    assert checks.probe_interval_ms(4) == 1
    for sources in (6, 50, 69, 300):
        gap = checks.probe_interval_ms(sources)
        assert sources * 1000 / gap <= checks.PROBE_RATE
        assert sources * 1000 / (gap - 1) > checks.PROBE_RATE or gap == 1


CHAIN = """
name: chain
switches: [{name: A, dpid: 1}, {name: B, dpid: 2}, {name: C, dpid: 3}, {name: D, dpid: 4}]
links: [[A, B], [B, C], [C, D], [A, B]]
hosts:
  - {name: ha, switch: A, ip: 172.16.1.100/24}
  - {name: hc, switch: C, ip: 172.16.3.100/24}
  - {name: hd, switch: D, ip: 172.16.4.100/24}
"""


def test_probes_are_counted_by_the_switches_they_cross():
    from routeflow.lab.model import parse_lab, plan

    p = plan(parse_lab(CHAIN))
    ha, hc, hd = (p.host(n).address for n in ("ha", "hc", "hd"))
    assert checks.mean_crossings(p, [("ha", hc)]) == 3  # A, B, C (parallel links: one hop)
    assert checks.mean_crossings(p, [("ha", hd), ("hd", ha)]) == 4
    assert checks.mean_crossings(p, [("hc", hd), ("ha", "192.0.2.1")]) == 1.5  # not a host: 1
    assert checks.mean_crossings(p, []) == 1.0


def test_a_round_crossing_many_switches_is_paced_below_the_probe_rate():
    # Short paths: PROBE_RATE is the bound; long ones: CROSSING_RATE switch crossings.
    assert checks.probe_rate(1) == checks.probe_rate(2) == checks.PROBE_RATE
    for crossings in (5.25, 12.95, 30):
        rate = checks.probe_rate(crossings)
        assert rate * crossings == pytest.approx(checks.CROSSING_RATE)
        assert rate < checks.PROBE_RATE
    # Syringa's 74 sources at 12.95 crossings: a gap that keeps them within the budget.
    gap = checks.probe_interval_ms(74, checks.probe_rate(12.95))
    assert 74 * 1000 / gap * 12.95 <= checks.CROSSING_RATE

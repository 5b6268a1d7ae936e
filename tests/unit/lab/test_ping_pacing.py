"""A round of pings stays within what the emulated data plane carries."""

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

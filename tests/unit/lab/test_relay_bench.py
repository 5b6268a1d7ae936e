"""Parsing what the relay benchmark reads (fping -C output)."""

from routeflow.bench.relay import parse_fping_c


def test_fping_c_round_trips_and_losses() -> None:
    text = (
        "10.0.0.2 : 1.23 0.98 - 4.10\n"
        "10.0.0.6 : - - - -\n"
        "ICMP Host Unreachable from 10.0.0.5 for ICMP Echo sent to 10.0.0.9\n"
        "10.0.0.9 : 12.5 13.0 12.1 11.9\n"
    )
    assert parse_fping_c(text) == {
        "10.0.0.2": [1.23, 0.98, None, 4.1],
        "10.0.0.6": [None, None, None, None],
        "10.0.0.9": [12.5, 13.0, 12.1, 11.9],
    }

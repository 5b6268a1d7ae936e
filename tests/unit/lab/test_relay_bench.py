"""Parsing what the relay benchmark reads (fping -C output)."""

from routeflow.bench.relay import RelayResult, parse_fping_c


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


def test_a_lab_that_never_converged_is_no_pass() -> None:
    result = RelayResult(lab="x", switches=2, links=1, bfd=True)
    assert not result.ok  # nothing measured
    result.stages = [{"stage": "routes in VM kernels", "ok": False, "seconds": 300, "detail": ""}]
    assert not result.ok
    result.stages = [{"stage": "relay round trips", "ok": True, "seconds": 1, "detail": ""}]
    result.probes, result.ospf_full = 10, (2, 2)
    assert result.ok

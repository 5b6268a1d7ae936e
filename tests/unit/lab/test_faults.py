"""Counting ping loss from ping's own output (lab/faults.py)."""

from routeflow.lab.faults import parse_ping


def _ping_output(received: list[int], transmitted: int) -> str:
    lines = [f"64 bytes from 10.0.0.4: icmp_seq={s} ttl=61 time=0.4 ms" for s in received]
    lines.append("--- 10.0.0.4 ping statistics ---")
    lines.append(
        f"{transmitted} packets transmitted, {len(received)} received, "
        f"{100 * (transmitted - len(received)) // transmitted}% packet loss, time 1000ms"
    )
    return "\n".join(lines) + "\n"


def test_all_answered():
    r = parse_ping(_ping_output(list(range(1, 21)), 20), 0.05)
    assert (r.sent, r.received, r.lost, r.longest_gap) == (20, 20, 0, 0)


def test_last_probe_unanswered_is_in_flight_not_lost():
    r = parse_ping(_ping_output(list(range(1, 20)), 20), 0.05)
    assert (r.sent, r.lost, r.longest_gap) == (19, 0, 0)


def test_loss_in_the_middle_is_counted():
    seqs = [s for s in range(1, 21) if s not in (7, 8, 9)]
    r = parse_ping(_ping_output(seqs, 20), 0.05)
    assert (r.lost, r.longest_gap, r.missing) == (3, 3, (7, 8, 9))
    assert abs(r.outage_s - 0.15) < 1e-9


def test_outage_until_the_stop_is_counted_except_the_probe_in_flight():
    r = parse_ping(_ping_output(list(range(1, 11)), 20), 0.05)
    assert (r.sent, r.lost, r.longest_gap) == (19, 9, 9)


def test_nothing_answered():
    r = parse_ping(_ping_output([], 10), 0.05)
    assert (r.sent, r.received, r.lost) == (9, 0, 9)

"""`routeflow bench tput`'s pure parts: iperf3's JSON, the ratios, the verdict."""

from __future__ import annotations

import json

import pytest

from routeflow.bench import tput
from routeflow.bench.tput import PathResult, TputFailure, TputResult


def iperf3_json(bps: float, retransmits: int = 7, seconds: float = 10.0) -> str:
    return json.dumps(
        {
            "start": {"version": "iperf 3.12"},
            "intervals": [],
            "end": {
                "sum_sent": {"bits_per_second": bps * 1.01, "retransmits": retransmits},
                "sum_received": {"bits_per_second": bps, "seconds": seconds},
            },
        }
    )


def test_parse_takes_what_the_receiver_got() -> None:
    assert tput.parse_iperf3(iperf3_json(2.5e9, 12, 9.98)) == (2.5, 12, 9.98)


def test_parse_names_iperf3s_error() -> None:
    # iperf3 -J exits 0 with the error in its JSON (the bench retries "refused")
    text = json.dumps({"start": {}, "intervals": [], "end": {},
                       "error": "unable to connect to server: Connection refused"})  # fmt: skip
    with pytest.raises(TputFailure, match="Connection refused"):
        tput.parse_iperf3(text)


@pytest.mark.parametrize("text", ["", "iperf3: error", json.dumps({"end": {"sum_sent": {}}})])
def test_parse_rejects_output_without_a_figure(text: str) -> None:
    with pytest.raises(TputFailure):
        tput.parse_iperf3(text)


def _result(*figures: tuple[str, float | None]) -> TputResult:
    r = TputResult(seconds=10)
    for name, gbps in figures:
        r.paths.append(PathResult(name, gbps=gbps, retransmits=3, mtu=1450, load=[1.0, 2.5],
                                  problem=None if gbps else "no route"))  # fmt: skip
    return r


def test_rows_give_the_ratio_to_the_veth_baseline() -> None:
    r = _result((tput.BASELINE, 4.0), (tput.SAME_NET, 0.5), (tput.FIP, None))
    rows = tput.result_rows(r)
    assert rows[0] == (tput.BASELINE, "4.00", "1.00x", "3", "1450", "1.0 -> 2.5")
    assert rows[1][1:3] == ("0.50", "0.12x")
    assert rows[2][1:3] == ("- (no route)", "-")


def test_rows_show_the_range_of_repeated_runs() -> None:
    r = _result((tput.BASELINE, 4.0), (tput.SNAT, 0.5))
    r.paths[1].runs_gbps = [0.5, 0.31, 0.72]
    assert tput.result_rows(r)[1][1:3] == ("0.50 (0.31-0.72)", "0.12x")
    assert tput.result_rows(r)[0][1] == "4.00"  # one run: no range


def test_ok_only_when_every_path_has_a_figure() -> None:
    assert _result((tput.BASELINE, 4.0), (tput.SNAT, 0.2)).ok
    assert not _result((tput.BASELINE, 4.0), (tput.SNAT, None)).ok
    assert not _result((tput.BASELINE, 4.0), (tput.SNAT, 0.0)).ok
    assert not TputResult(seconds=1).ok


def test_the_bench_lab_is_a_valid_cloud() -> None:
    cloud = tput._cloud()
    assert [n.name for n in cloud.nodes] == ["c1", "c2", "g1"]
    assert [n.gateway for n in cloud.nodes] == [False, False, True]
    assert cloud.mtu == 1450
    vms = {vm.name: vm.node for vm in cloud.tenants[0].vms}
    assert vms == {"v1": "c1", "v2": "c2", "v3": "c2"}  # every measured VM pair crosses nodes

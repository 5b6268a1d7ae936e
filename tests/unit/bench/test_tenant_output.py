"""The tenant benchmark's table and JSON from made-up figures (no system runs)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from routeflow.bench import tenant
from routeflow.bench import tenantplan as tp


def _system(name: str, scale: float) -> tp.SystemResult:
    timings = [tp.PortTiming(0.01, 0.05, 0.1 * scale, 0.2 * scale, 0.25 * scale)] * 4
    return tp.SystemResult(
        name,
        setup_s=3.0,
        timings=timings,
        latency_ms=tp.summarize(timings),
        flows_per_node={"n1": 100, "n2": 90},
        flows_per_port={"own_median": 13, "same_network_median": 4, "elsewhere_total": 0},
        isolated_flows_elsewhere=0,
        cpu_s={"d": 1.0 * scale},
        rss_peak_mb={"d": 50.0},
    )


def _result(ovn: bool) -> tp.TenantBenchResult:
    rf = _system("routeflow", 1.0)
    rf.api_rate = {tp.API_WITH_NODES: 100.0, tp.API_ALONE: 120.0}
    rf.dhcp_retried = 1
    result = tp.TenantBenchResult(2, 4, 10, "geneve", raw_api_rate=200.0, routeflow=rf)
    if ovn:
        result.ovn = _system("OVN", 2.0)
        result.ovn.api_rate = {"OVSDB JSON-RPC": 400.0, "ovn-nbctl daemon": 50.0}
        result.ovn.flows_per_port = {"per_port_on_every_chassis": 7.3}
    result.load = [1.0, 2.0]
    return result


def test_rows_carry_both_systems_and_the_ratios() -> None:
    rows = tenant.result_rows(_result(ovn=True))
    api = [r for r in rows if "OVSDB JSON-RPC" in r[3] or "daemon" in r[3]]
    assert api[0][:3] == ("API port creates/s", "100.0", "200.0 (stub)")
    assert api[0][4] == "0.25x" and api[1][4] == "2.00x"
    alone = next(r for r in rows if "server alone" in r[0])
    assert alone[1] == "120.0"
    ping = next(r for r in rows if "first ping" in r[0])
    assert ping[1] == "250.0 / 250.0" and ping[3] == "500.0 / 500.0" and ping[4] == "0.50x"
    lost = next(r for r in rows if "DISCOVER" in r[0])
    assert lost[1] == "1" and lost[3] == "0"


def test_print_and_json_with_and_without_ovn(tmp_path) -> None:
    for ovn in (True, False):
        result = _result(ovn)
        out = io.StringIO()
        tenant.print_result(result, Console(file=out, width=160))
        text = out.getvalue()
        assert "bench tenant: 2 nodes" in text and "OK" in text
        assert "lost their first DHCP DISCOVER" in text
        assert ("OVSDB JSON-RPC" in text) is ovn
        path = tmp_path / f"r{ovn}.json"
        tenant.write_json(result, str(path))
        data = json.loads(path.read_text())
        assert data["ok"] is True and data["routeflow"]["api_rate"][tp.API_ALONE] == 120.0
        assert (data["ovn"] is None) is not ovn


def test_a_system_with_problems_or_no_timings_fails_the_run() -> None:
    result = _result(ovn=True)
    assert result.ok
    result.ovn.problems.append("boom")  # type: ignore[union-attr]
    assert not result.ok
    result = _result(ovn=False)
    result.routeflow.timings = []
    assert not result.ok

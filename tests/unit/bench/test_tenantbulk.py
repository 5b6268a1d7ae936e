"""bench tenant --bulk's figures and bench tenant-compile at its smallest."""

from __future__ import annotations

from routeflow.bench import tenantcompile
from routeflow.bench.tenantbulk import bulk_rows
from routeflow.bench.tenantplan import SystemResult, TenantBenchResult


def test_bulk_rows_and_a_bulk_run_is_ok_without_sequential_timings() -> None:
    rf = SystemResult("routeflow", bulk={"created_s": 2.0, "all_ping_s": 9.0, "up": 3})
    ov = SystemResult("OVN", bulk={"created_s": 1.0, "all_ping_s": 3.0, "up": 3})
    rows = {r[0]: r for r in bulk_rows(rf, ov)}
    assert rows["bulk: every port created (API) (s)"][1:] == ("2.00", "", "1.00", "2.00x")
    assert rows["  every VM pinged, routed, across nodes (s)"][4] == "3.00x"
    assert rows["  every VM leased (s)"][1] == "-"
    result = TenantBenchResult(2, 3, 0, "geneve", routeflow=rf, ovn=ov)
    assert result.ok
    ov.bulk["up"] = 0
    assert not result.ok


def test_compile_bench_smallest() -> None:
    (r,) = tenantcompile.run([12], 0.5, 2, True)
    assert r.ports == 12 and r.remote == 6 and r.flows > 12 * 10
    assert r.per_change_incremental_ms > 0 and r.per_change_full_ms > 0
    assert r.build_incremental_s is not None and 0 < r.fragments_per_change < 20

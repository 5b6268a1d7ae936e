"""`routeflow bench web` at a CI size: pages come back right and the index is sorted once."""

from __future__ import annotations

from routeflow.bench.web import run_web_bench


def test_small_web_bench_reads_every_page_and_sorts_once():
    result = run_web_bench(3000)
    assert result.routes == 3000
    assert result.index_rebuilds == 1  # 20 small changes followed, not sorted again
    assert result.fib_ms["p50"] > 0 and result.after_change_ms["max"] > 0

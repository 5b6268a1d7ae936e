"""Route scale at CI size: `routeflow bench fib` and the BGP full-table lab, a few thousand routes.

The full-size figures (a million routes) come from the same code; these runs
keep it working: the benchmark must count every flow in OVS, change the next
hop with one group-mod, withdraw everything and report memory; the BGP lab
must carry an ExaBGP speaker's prefixes into the switch and out again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import lab_plan

from routeflow.lab.scenarios import run_check

pytestmark = pytest.mark.e2e

ROUTES = 3000


def test_bench_fib_small(run_dir, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "routeflow.cli",
            "bench",
            "fib",
            "--routes",
            str(ROUTES),
            "--json",
            str(out),
            "--run-dir",
            run_dir,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["ok"] and not r["problems"], r["problems"]
    assert r["routes"] == ROUTES
    assert r["ours_rate"] > 0 and r["raw_rate"] > 0 and r["ratio"] > 0
    # One group-mod moves every route to the gateway's new MAC; no flow changes.
    assert r["nexthop_flows_unchanged"] is True
    assert r["nexthop_change_s"] < 1.0
    assert r["withdraw_s"] is not None
    assert set(r["rss_peak_mb"]) == {"rfserver", "rfproxy", "rfclient"}
    assert r["progress"][-1][1] == ROUTES
    # The packet relay kept answering while the routes were written.
    ping = r["relay_ping"]
    assert ping["sent"] >= 2 and ping["received"] >= ping["sent"] - 1, ping
    print(
        f"bench fib {ROUTES}: ours {r['ours_rate']:,.0f} routes/s, raw {r['raw_rate']:,.0f}/s, "
        f"ratio {r['ratio']}, next-hop change {r['nexthop_change_s'] * 1000:.0f} ms, "
        f"RSS {r['rss_peak_total_mb']} MB"
    )
    assert "routes/s" in proc.stdout


def test_bgp_table_lab_carries_the_speakers_prefixes_in_and_out(run_dir):
    plan = lab_plan("bgp-table")
    assert plan.speakers and plan.speakers[0].announce.count >= 1000
    result = run_check(plan, run_dir, timeout=90)
    failed = [s for s in result.stages if not s["ok"]]
    assert result.ok, f"failed stages: {failed}; logs in {run_dir}"
    names = " | ".join(s["stage"] for s in result.stages)
    for stage in ("bgp session x1", "announced prefixes of x1", "hosts reach prefixes", "stopped"):
        assert stage in names, names
    assert os.path.exists(os.path.join(run_dir, "speakers", "x1", "exabgp.conf"))

"""Route scale at CI size: `routeflow bench fib` and the BGP full-table lab, a few thousand routes.

The full-size figures (a million routes) come from the same code; these runs
keep it working: the benchmark must count every flow in OVS, change the next
hop with one group-mod, withdraw everything and report memory, and, with
--wipe-switch, see a wiped switch get its whole table back from a restarted
rfproxy (IPv4, and IPv6 with --ipv6); the BGP lab must carry an ExaBGP
speaker's prefixes into the switch and out again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import LABS, lab_plan

from routeflow.lab.scenarios import run_check

pytestmark = pytest.mark.e2e

ROUTES = 3000
ROUTES6 = 2000


def _bench(run_dir, tmp_path, routes: int, *options: str) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "routeflow.cli",
            "bench",
            "fib",
            "--routes",
            str(routes),
            "--json",
            str(out),
            "--run-dir",
            run_dir,
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["ok"] and not r["problems"], r["problems"]
    assert r["routes"] == routes
    return r, proc.stdout


def _check_wipe(r: dict, routes: int) -> None:
    """The wiped switch got everything back, all re-added, nothing deleted."""
    d = r["wipe_diff"]
    assert d["flows_add"] > routes and d["flows_delete"] == 0 and d["flows_unchanged"] == 0, d
    assert d["groups_add"] >= 1 and d["groups_unchanged"] == 0, d
    assert r["wipe_s"] > 0 and r["wipe_ratio"] > 0
    assert 0 < r["wipe_connected_s"] <= r["wipe_s"]


def test_bench_fib_small(run_dir, tmp_path):
    r, stdout = _bench(run_dir, tmp_path, ROUTES, "--wipe-switch")
    assert r["ipv6"] is False and r["prefixlen"] == 24
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
    _check_wipe(r, ROUTES)
    print(
        f"bench fib {ROUTES}: ours {r['ours_rate']:,.0f} routes/s, raw {r['raw_rate']:,.0f}/s, "
        f"ratio {r['ratio']}, next-hop change {r['nexthop_change_s'] * 1000:.0f} ms, "
        f"RSS {r['rss_peak_total_mb']} MB, wiped switch back in {r['wipe_s']} s"
    )
    assert "routes/s" in stdout


def test_bench_fib_small_ipv6(run_dir, tmp_path):
    r, stdout = _bench(run_dir, tmp_path, ROUTES6, "--ipv6", "--wipe-switch")
    assert r["ipv6"] is True and r["prefixlen"] == 48
    assert r["ours_rate"] > 0 and r["raw_rate"] > 0 and r["ratio"] > 0
    assert r["progress"][-1][1] == ROUTES6
    assert r["nexthop_flows_unchanged"] is True
    assert r["withdraw_s"] is not None
    _check_wipe(r, ROUTES6)
    print(
        f"bench fib --ipv6 {ROUTES6}: ours {r['ours_rate']:,.0f} routes/s, "
        f"raw {r['raw_rate']:,.0f}/s, wiped switch back in {r['wipe_s']} s"
    )
    assert "IPv6 /48" in stdout


def test_bench_fib_small_table_over_three_peers(run_dir, tmp_path):
    """The shipped table (both families, nested, many AS paths) over 3 overlapping peers,
    one of which then goes down."""
    out = tmp_path / "bench.json"
    table = os.path.join(os.path.dirname(__file__), "..", "..", "labs", "tables", "small.txt")
    args = ["--table", table, "--peers", "3", "--peer-down"]
    args += ["--json", str(out), "--run-dir", run_dir]
    proc = subprocess.run(
        [sys.executable, "-m", "routeflow.cli", "bench", "fib", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["ok"] and not r["problems"], r["problems"]
    assert r["routes"] == 2500 and r["peers"] == 3 and r["ipv6"] is True
    assert r["table_stats"]["ipv4"] == 2000 and r["table_stats"]["nested_share"] > 0.5
    assert r["shared_prefixes"] > 1250
    # every peer of each family carries routes; each one's group holds exactly them
    assert len(r["routes_per_peer"]) == 6 and sum(r["routes_per_peer"].values()) == 2500
    assert r["progress"][-1][1] == 2500 and r["ratio"] > 0
    assert r["nexthop_flows_unchanged"] is True and r["withdraw_s"] is not None
    # peer 0 died: its groups emptied, its prefixes moved to the others or gone
    assert r["peer_down_moved"] > 0 and r["peer_down_gone"] > 0
    assert r["peer_down_off_s"] is not None and r["peer_down_moved_s"] is not None
    print(
        f"bench fib --table small.txt --peers 3: ours {r['ours_rate']:,.0f} routes/s, "
        f"raw {r['raw_rate']:,.0f}/s"
    )


def test_bench_fib_refuses_a_bad_table_naming_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("100.0.0.0/8 1\n100.1.0.1/16 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "routeflow.cli", "bench", "fib", "--table", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bad}:2: 100.1.0.1/16 has host bits set" in proc.stdout + proc.stderr


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


def test_bgp_table_file_lab_announces_a_real_shaped_table_in_both_families(run_dir):
    """A speaker announces a table file (IPv4 /8../24 and IPv6 /19../48, nested, AS
    paths) over one session, IPv6 by MP-BGP: every prefix reaches the switch through
    the speaker's groups, hosts reach addresses inside them (IPv6 too), and they go."""
    plan = lab_plan("bgp-table-file")
    (sp,) = plan.speakers
    assert sp.announce.file and sp.announce.count == 2500 and sp.address6
    result = run_check(plan, run_dir, timeout=90)
    failed = [s for s in result.stages if not s["ok"]]
    assert result.ok, f"failed stages: {failed}; logs in {run_dir}"
    names = " | ".join(s["stage"] for s in result.stages)
    for stage in ("announced prefixes of x1", "hosts reach prefixes", "stopped"):
        assert stage in names, names
    reach = next(s for s in result.stages if s["stage"].startswith("hosts reach prefixes"))
    assert "10/10 pings" in reach["detail"] and "::" in reach["detail"], reach
    with open(os.path.join(run_dir, "speakers", "x1", "exabgp.conf")) as fh:
        conf = fh.read()
    assert conf.count(" as-path [ 65100 ") == 2000
    with open(os.path.join(run_dir, "speakers", "x1", "announce6.txt")) as fh:
        assert fh.read().count(f" next-hop {sp.address6} ") == 500


def test_bench_churn_replays_a_stream_through_a_speaker(run_dir, tmp_path):
    """`bench churn` at CI size: a 300-prefix table (both families), 2 s of churn and a
    session reset, replayed as fast as possible; the switch ends exactly as the kernel."""
    stream = tmp_path / "stream.txt"
    cli = [sys.executable, "-m", "routeflow.cli", "bench"]
    seed = os.path.join(LABS, "tables", "churn-seed.txt")
    subprocess.run(
        [*cli, "churn-gen", "--table", seed, "--seconds", "2",
         "--rate", "40", "-o", str(stream)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    out = tmp_path / "churn.json"
    proc = subprocess.run(
        [*cli, "churn", str(stream), "--speed", "0", "--timeout", "30", "--run-dir", run_dir,
         "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["ok"] and r["converged_s"] is not None and r["never_seen"] == 0, r["problems"]
    assert r["latency_counted"] >= 300 and r["latency_s"]["p50"] > 0


def test_bench_churn_replays_a_real_routers_mrt_updates(run_dir, tmp_path):
    """`bench churn` on an MRT update file Quagga wrote (tests/data/mrt/quagga_bgp): the
    busiest peer's 6 prefixes (both families), its session reset 66 s later (all
    withdrawn) and the re-announcement, at 10x; the switch follows every update."""
    mrt = os.path.join(os.path.dirname(__file__), "..", "data", "mrt", "quagga_bgp")
    out = tmp_path / "churn.json"
    proc = subprocess.run(
        [sys.executable, "-m", "routeflow.cli", "bench", "churn", mrt, "--speed", "10",
         "--timeout", "30", "--run-dir", run_dir, "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["ok"] and r["updates"] == 18 and r["never_seen"] == 0, r["problems"]
    assert "peer 192.168.0.10" in r["converted"] and "1 session resets" in r["converted"]
    assert r["latency_counted"] == 18


def test_bench_bgp_carries_a_table_to_the_switch_and_follows_a_peer_going_down(run_dir, tmp_path):
    """`bench bgp --peer-down` at CI size: 2000 IPv4 and 500 IPv6 prefixes of a made-up
    table from two speakers to the VM's bgpd, one session each (IPv6 by MP-BGP); the
    kernel (zebra) and the switch get them all, the switch ends exactly as the kernel,
    and both times and the lag ratio are reported. Then the preferred peer shuts its
    session down: zebra moves every route to the other peer in the kernel, the switch
    every flow to its groups, both timed, with the VM and the switch side on CPUs of
    their own (--split-cpus)."""
    table = tmp_path / "table.txt"
    cli = [sys.executable, "-m", "routeflow.cli", "bench"]
    subprocess.run(
        [*cli, "table-gen", "--ipv4", "2000", "--ipv6", "500", "-o", str(table)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    out = tmp_path / "bgp.json"
    proc = subprocess.run(
        [*cli, "bgp", str(table), "--peer-down", "--split-cpus", "--timeout", "60",
         "--run-dir", run_dir, "--json", str(out)],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["ok"] and (r["prefixes"], r["prefixes6"]) == (2500, 500), r["problems"]
    assert r["kernel_routes"] == 2500 and r["switch_equals_kernel"]
    # Both times reported (the switch may fill a sample before zebra's FIB count does:
    # zebra counts a route when it reads the kernel's acknowledgement, rfclient acts on
    # the kernel's notification), and never before the speaker sent anything.
    assert r["kernel_s"] > 0 and r["switch_s"] > 0 and r["lag_ratio"] is not None
    # Peer down: every route moved (zebra's kernel provider did at least one update per
    # prefix), kernel and switch end on the survivor, both times and the lag reported.
    assert r["peers"] == 2 and r["down_kernel_updates"] >= 2500
    assert (r["down_kernel_via_survivor"], r["down_switch_via_survivor"]) == (2500, 2500)
    assert r["down_kernel_s"] > 0 and r["down_switch_s"] > 0 and r["down_lag_ratio"] is not None
    # --split-cpus: the VM's FRR and rfclient on one CPU, the switch side on another.
    vm_side, switch_side = (sorted(names) for names in r["down_pinned"].values())
    assert vm_side == ["bgpd@A", "rfclient@A", "zebra@A"]
    assert switch_side == ["ovs-vswitchd", "ovsdb-server", "rfproxy", "rfserver"]

"""`routeflow bench tenant` at its smallest: two nodes, two measured ports, both systems.

A smoke test, not a measurement: the figures must be there and sane (non-zero, the
ports came up, the node without a port of the isolated network holds none of its flows),
and everything the run made (namespaces, processes) must be gone afterwards. No timing
is asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from routeflow.bench import ovn as ovn_harness
from routeflow.bench import tenant
from routeflow.bench import tenantplan as tp

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
    pytest.mark.skipif(shutil.which("udhcpc") is None, reason="needs udhcpc (busybox)"),
    pytest.mark.skipif(bool(ovn_harness.missing_tools()), reason="needs ovn-central, ovn-host"),
]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_tenant_bench_smoke(tmp_path) -> None:
    result = tenant.run_tenant_bench(2, 2, 3, str(tmp_path))
    rf, ov = result.routeflow, result.ovn
    assert ov is not None
    assert rf.problems == [] and ov.problems == [], (rf.problems, ov.problems)
    assert result.ok
    assert result.raw_api_rate and result.raw_api_rate > 0
    assert set(rf.api_rate) == {tp.API_WITH_NODES, tp.API_ALONE}
    assert all(v > 0 for v in rf.api_rate.values())
    assert set(ov.api_rate) == {"one ovn-nbctl per port", "ovn-nbctl daemon", "OVSDB JSON-RPC"}
    assert all(v > 0 for v in ov.api_rate.values())
    for system in (rf, ov):
        assert len(system.timings) == 2 and not system.failed_ports
        for t in system.timings:
            assert 0 < t.api <= t.plugged <= t.bound <= t.lease <= t.ping
        assert system.latency_ms["ping"]["p95"] > 0
        assert len(system.flows_per_node) == 2 and all(system.flows_per_node.values())
        assert system.isolated_flows_elsewhere == 0
        assert system.rss_peak_mb and all(v > 0 for v in system.rss_peak_mb.values())
    assert rf.flows_per_port["own_median"] > 0
    assert rf.flows_per_port["same_network_median"] > 0
    assert rf.flows_per_port["elsewhere_total"] == 0
    assert ov.flows_per_port["per_port_on_every_chassis"] > 0
    rows = tenant.result_rows(result)
    assert rows[0][0] == "API port creates/s" and len(rows) > 10

    # Everything made is gone: namespaces and processes.
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = {line.split()[0] for line in left.splitlines() if line.strip()}
    for system in (rf, ov):
        assert system.namespaces and system.pids
        assert not names & set(system.namespaces)
        assert not [pid for pid in system.pids if _alive(pid)]

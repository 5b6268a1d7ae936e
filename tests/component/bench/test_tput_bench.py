"""`routeflow bench tput` at 1 s per path: every path measured, nothing left behind.

A smoke test, not a measurement: every path (plain veth, VM to VM over VXLAN with
security groups, routed, SNAT and floating IP through the gateway node; OVN's same-network
and routed paths when OVN is installed) must give a
positive figure with the MTU it ran at, and every namespace and process the run made
must be gone afterwards. No throughput is asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from routeflow.bench import ovn as ovn_harness
from routeflow.bench import tput

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
    pytest.mark.skipif(shutil.which("udhcpc") is None, reason="needs udhcpc (busybox)"),
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (scripts/setup.sh)"),
]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_tput_bench_smoke(tmp_path) -> None:
    ovn = not ovn_harness.missing_tools()  # setup.sh installs OVN: CI measures its paths
    result = tput.run_tput_bench(1, str(tmp_path), ovn=ovn)
    assert [p.name for p in result.paths] == list(tput.PATHS) + (list(tput.OVN_PATHS) * ovn)
    problems = [(p.name, p.problem) for p in result.paths if p.problem]
    assert problems == [] and result.ok, problems
    for p in result.paths:
        assert p.gbps is not None and p.gbps > 0, p
        assert p.seconds is not None and p.seconds > 0.5, p
        assert p.mtu in (1442, 1450, 1500) and len(p.load) == 2, p
    assert result.path(tput.SAME_NET).mtu == 1450  # the tenant MTU (DHCP) over VXLAN
    rows = tput.result_rows(result)
    assert rows[0][2] == "1.00x" and all(r[2].endswith("x") for r in rows)
    # nothing left: namespaces of either tag, processes, the cloud's run directory
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert len(result.tags) == 2 + ovn
    assert [ns for ns in listed.split() if any(f"-{t}" in ns for t in result.tags)] == []
    assert len(result.pids) > 6  # iperf3 servers, OVS daemons, server, agents
    assert [pid for pid in result.pids if _alive(pid)] == []
    assert not os.path.exists(tmp_path / "cloud")
    if ovn:
        assert result.path(tput.OVN_SAME_NET).mtu == 1442  # Geneve's overhead


def test_repeated_runs_give_their_median() -> None:
    path = tput.PathResult("veth")
    pids: list[int] = []
    with tput.veth_pair("trep", 1450, offload=False) as (a, b):
        tput.iperf(["ip", "netns", "exec", b], ["ip", "netns", "exec", a], "10.99.0.2", 1,
                   path, pids, repeat=3)  # fmt: skip
    assert len(path.runs_gbps) == 3 and all(x > 0 for x in path.runs_gbps)
    assert path.gbps == sorted(path.runs_gbps)[1]
    assert len(pids) == 3 and not any(_alive(pid) for pid in pids)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "-trep" not in listed

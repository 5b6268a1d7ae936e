"""rftest2 with ``control_plane: virtual``: routers talk VM to VM in the virtual switch.

One lab for the whole module: it converges with every lab check stage, its hellos go over
the mirrored links of the virtual switch (never a physical link's punt), a cut physical
link takes the OSPF adjacency down at once and traffic moves, and rfproxy can be away for
longer than OSPF's dead interval without an adjacency noticing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import msgspec
import pytest
from conftest import lab_plan

from routeflow.lab import checks, scenarios
from routeflow.lab.faults import ContinuousPing
from routeflow.lab.runner import LabRun
from routeflow.proxy import openflow as of


@pytest.fixture(scope="module")
def run():
    plan = msgspec.structs.replace(lab_plan("rftest2"), control_plane="virtual")
    base = "/tmp/routeflow-tests"
    os.makedirs(base, mode=0o755, exist_ok=True)
    lab = LabRun(plan, os.path.join(base, f"vcp-{os.getpid()}"))
    try:
        lab.start()
        result = scenarios.CheckResult(lab=plan.name)
        t0 = time.monotonic()
        assert scenarios.converge(lab, result, t0, 120), result.stages
        assert scenarios.pingall_until_full(lab, result, t0, 120), result.stages
        print(f"virtual control plane: 100 % pingall {result.full_pingall_s:.1f} s after start")
        yield lab
    finally:
        lab.stop()
        if not os.environ.get("ROUTEFLOW_KEEP_RUNS"):
            shutil.rmtree(lab.run_dir, ignore_errors=True)


def _vlink_packets(run: LabRun) -> int:
    """Frames the virtual switch carried VM to VM (its mirrored links' flows)."""
    out = run.ovs.ofctl("-O", "OpenFlow13", "dump-flows", run.vs_name)
    return sum(
        int(m.group(1))
        for line in out.splitlines()
        if f"priority={of.PRIO_VLINK}," in line and (m := re.search(r"n_packets=(\d+)", line))
    )


def _link_punts(run: LabRun, switch: str) -> int:
    """OSPF multicast the physical switch punted from its link ports (classic: every hello)."""
    ports = {i.port for i in run.plan.vm(switch).link_ports}
    out = run.ovs.ofctl("-O", "OpenFlow13", "dump-flows", run.bridges[switch])
    total = 0
    for line in out.splitlines():
        port = re.search(r"in_port=(?:\"?\S+?-eth)?(\d+)\b", line)
        if "nw_dst=224.0.0.0/24" in line and port and int(port.group(1)) in ports:
            total += int(re.search(r"n_packets=(\d+)", line).group(1))
    return total


def _neighbours(run: LabRun, switch: str) -> dict[str, int]:
    """OSPF neighbours of ``switch``'s VM that are Full: interface -> up time in ms."""
    data = json.loads(run.vtysh(switch, "show ip ospf neighbor json") or "{}")
    out = {}
    for entries in data.get("neighbors", {}).values():
        for n in entries:
            if str(n.get("nbrState", "")).startswith("Full"):
                out[n["ifaceName"].split(":")[0]] = int(n.get("upTimeInMsec", 0))
    return out


def test_lab_check_stages_pass(run):
    result = scenarios.CheckResult(lab=run.plan.name)
    scenarios.flows_match_routes(run, result)
    assert scenarios.on_shortest_paths(run, result, 30, "switch"), result.stages
    assert result.ok, result.stages


def test_hellos_go_vm_to_vm_not_over_the_physical_links(run):
    # Counted over a window, not since start: until both ends of a link are associated
    # its mirror does not exist and the relay carries the first hellos (a CI run saw one).
    punts_before = {vm.switch: _link_punts(run, vm.switch) for vm in run.plan.vms}
    before = _vlink_packets(run)
    time.sleep(2.5)  # two hellos per link and direction at least
    grown = _vlink_packets(run) - before
    assert grown >= 2 * 2 * len(run.plan.links), grown
    punts = {sw: _link_punts(run, sw) - n for sw, n in punts_before.items()}
    assert punts == dict.fromkeys(punts, 0), punts


def test_a_cut_link_takes_the_adjacency_down_at_once_and_traffic_moves(run):
    port_a_d = next(i.port for i in run.plan.vm("A").interfaces if i.peer == "D")
    assert f"eth{port_a_d}" in _neighbours(run, "A")
    h4 = run.plan.host("h4")
    ping = ContinuousPing(run.host("h1"), h4.address, interval=0.02)
    time.sleep(1)
    try:
        t = time.monotonic()
        run.set_link("A", "D", up=False)
        assert checks.wait_until(lambda: f"eth{port_a_d}" not in _neighbours(run, "A"), 5, 0.02)
        adjacency_down = time.monotonic() - t
        assert checks.wait_until(lambda: checks.ping(run, "h1", h4.address), 20)
        time.sleep(1)
        cut = ping.stop()
        assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)
    finally:
        if ping.proc.poll() is None:
            ping.stop()
        run.set_link("A", "D", up=True)
    print(
        f"virtual control plane, A-D cut: adjacency down after {adjacency_down:.2f} s, "
        f"{cut.lost}/{cut.sent} pings lost, outage {cut.outage_s:.2f} s"
    )
    assert adjacency_down < 1.0
    assert cut.outage_s < 3.0, cut  # generous: the machine is shared
    # The mirror comes back with the link: the adjacency, then the direct path.
    assert checks.wait_until(lambda: f"eth{port_a_d}" in _neighbours(run, "A"), 20)
    result = scenarios.CheckResult(lab=run.plan.name)
    assert scenarios.on_shortest_paths(run, result, 30, "switch"), result.stages


def test_rfproxy_away_longer_than_the_dead_interval_loses_no_adjacency(run):
    away = run.plan.ospf.dead + 2
    full = {vm.switch: _neighbours(run, vm.switch) for vm in run.plan.vms}
    assert sum(len(n) for n in full.values()) == 2 * len(run.plan.links), full
    run.kill("rfproxy")
    time.sleep(away)
    after = {vm.switch: _neighbours(run, vm.switch) for vm in run.plan.vms}
    run.start_proxy_process()
    # Every adjacency is still Full and none was re-formed while rfproxy was away.
    assert {s: set(n) for s, n in after.items()} == {s: set(n) for s, n in full.items()}
    reformed = [(s, i) for s in full for i in full[s] if after[s][i] < full[s][i] + away * 900]
    assert not reformed, (full, after)
    assert checks.wait_until(lambda: (r := checks.pingall(run))[0] == r[1], 30)

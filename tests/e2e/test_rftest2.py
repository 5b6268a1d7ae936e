"""rftest2 and a larger ring: OSPF across switches, pingall on installed flows."""

from __future__ import annotations

import re

import pytest
from conftest import lab_plan

from routeflow.lab import checks, scenarios
from routeflow.lab.runner import LabRun


def _shortest_path_check(run: LabRun, result: scenarios.CheckResult) -> None:
    """h1 (s1) -> h7 (s7): OSPF must use the s1-s7 chord, not either way round the ring."""
    h7 = run.plan.host("h7")
    subnet = "172.31.7.0/24"
    ring = [f"s{i}" for i in range(2, 13) if i != 7]
    before = {sw: checks.settled_flow_packets(run, sw).get(subnet, 0) for sw in ["s1", *ring]}
    out = run.host("h1").cmd(f"ping -c 50 -i 0.02 -q -W 1 {h7.address}")
    received = int(re.search(r"(\d+) received", out).group(1))
    after = {sw: checks.settled_flow_packets(run, sw).get(subnet, 0) for sw in ["s1", *ring]}
    grown = {sw: after[sw] - before[sw] for sw in before}
    ok = received >= 48 and grown["s1"] >= 48 and all(grown[sw] == 0 for sw in ring)
    result.add("h1->h7 takes the s1-s7 chord", ok, 0.0, f"received {received}/50, {grown}")


@pytest.mark.timeout(600)
def test_ring12_converges_and_takes_shortest_paths(run_dir):
    plan = lab_plan("ring12")
    result = scenarios.run_check(plan, run_dir, timeout=180, extra_checks=_shortest_path_check)
    assert result.ok, [s for s in result.stages if not s["ok"]]
    assert any(s["stage"].startswith("h1->h7") for s in result.stages)
    print(f"ring12: 100 % pingall {result.full_pingall_s:.1f} s after bring-up started")


def _each_proxy_owns_its_switches(run: LabRun, result: scenarios.CheckResult) -> None:
    """Switches talk only to the rfproxy of their ct_id (from the lab file)."""
    ok = True
    detail = []
    for ct in run.plan.controllers:
        with open(f"{run.run_dir}/{run.proxy_name(ct.ct_id)}.log") as fh:
            seen = {
                int(m, 16) for m in re.findall(r"INFO switch (0x[0-9a-f]+) connected", fh.read())
            }
        want = {vm.dp_id for vm in run.plan.vms if vm.ct_id == ct.ct_id}
        ok &= seen == want
        detail.append(f"ct {ct.ct_id}: {sorted(seen)}")
    result.add("each controller programs its own switches", ok, 0.0, "; ".join(detail))


def test_rftest2_on_two_controllers(run_dir):
    plan = lab_plan("rftest2-2ct")
    assert len(plan.controllers) == 2
    result = scenarios.run_check(plan, run_dir, extra_checks=_each_proxy_owns_its_switches)
    assert result.ok, [s for s in result.stages if not s["ok"]]

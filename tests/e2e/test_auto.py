"""rfserver --auto on rftest2: from switches, links and hosts alone to a routed network.

One lab: switch D starts dark (no controller). rfserver discovers A, B, C and their links,
starts their VMs with addresses of its own, and h1-h3 ping each other; then D is connected
(a switch added to a running network) and the whole of `lab check`'s stages pass; then
rfserver is restarted and adopts the running VMs without renumbering or restarting any.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time

from conftest import lab_plan

from routeflow.lab import checks, scenarios
from routeflow.lab.poll import poll_until
from routeflow.lab.procs import Tracked
from routeflow.lab.runner import LabRun


def _addresses(run: LabRun) -> dict[str, set[str]]:
    return {vm.switch: checks.vm_addresses(run, vm.switch) for vm in run.plan.vms}


def test_auto_builds_rftest2_and_a_switch_added_is_routed(run_dir):
    plan = lab_plan("rftest2")
    run = LabRun(plan, run_dir, auto=True, held=frozenset({"D"}))
    try:
        run.start()
        t0 = time.monotonic()
        assert not os.path.exists(os.path.join(run_dir, "rfserver.csv"))  # no mapping given
        three = [(a.name, b.address) for a in plan.hosts[:3] for b in plan.hosts[:3] if a is not b]
        got = poll_until(
            lambda: checks.ping_pairs(run, three), lambda ok: len(ok) == len(three), timeout=60
        )
        assert got.ok, f"h1-h3: {len(got.value)}/{len(three)} pairs answer"
        print(f"--auto: h1-h3 pingall 100 % {time.monotonic() - t0:.1f} s after start")
        pool = ipaddress.IPv4Network("10.0.0.0/16")
        for address in checks.vm_addresses(run, "A") - {"172.31.1.1"}:
            assert ipaddress.IPv4Address(address) in pool  # rfserver's, not the lab file's

        t1 = time.monotonic()
        run.connect_switch("D")
        result = scenarios.CheckResult(lab=plan.name)
        assert scenarios.converge(run, result, t1, 60), result.stages
        assert scenarios.pingall_until_full(run, result, t1, 60), result.stages
        print(f"--auto: switch D added, 100 % pingall {result.full_pingall_s:.1f} s later")
        scenarios.flows_match_routes(run, result)
        scenarios.on_shortest_paths(run, result, 30.0, "switch")
        scenarios.pingall_one_round(run, result)
        assert result.ok, result.stages
        auto = checks.server_status(run)["auto"]
        assert sorted(vm["name"] for vm in auto["vms"] if vm["running"]) == [
            "vm-5",
            "vm-6",
            "vm-7",
            "vm-8",
        ]

        before = _addresses(run)
        run.kill("rfserver")
        run.start_server()
        again = poll_until(
            lambda: checks.server_status(run).get("auto", {}), lambda a: a.get("vms"), timeout=20
        ).value
        assert again["counters"]["vm_starts"] == 0, again  # adopted, not restarted
        assert all(vm["running"] for vm in again["vms"])
        assert _addresses(run) == before
        result = scenarios.CheckResult(lab=plan.name)
        assert scenarios.pingall_until_full(run, result, time.monotonic(), 30), result.stages
    finally:
        pids = _recorded_pids(run)
        run.stop()
    left = [pid for pid in pids if Tracked("vm process", pid).alive()]
    assert not left, f"VM processes left running: {left}"


def _recorded_pids(run: LabRun) -> list[int]:
    """The VMs' namespace holders and rfclients, as rfserver's backend recorded them."""
    pids = []
    for name in os.listdir(run.auto_vm_dir) if os.path.isdir(run.auto_vm_dir) else ():
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(run.auto_vm_dir, name, "vm.json")) as fh:
                record = json.load(fh)
            pids += [p for p in (record.get("holder"), record.get("client")) if p]
    return pids

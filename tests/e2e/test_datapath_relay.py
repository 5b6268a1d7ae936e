"""rftest2 with the datapath relay: control frames cross patch ports, not rfproxy."""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgspec
from conftest import lab_plan

from routeflow.lab import checks, scenarios
from routeflow.lab.runner import RELAY_PORT, LabRun


def _relay_packets(run: LabRun, switch: str) -> int:
    """Packets switch ``switch`` sent over its relay link (OVS's own counters)."""
    out = run.ovs.ofctl("-O", "OpenFlow13", "dump-flows", run.bridges[switch])
    return sum(
        int(m.group(1))
        for line in out.splitlines()
        if f"output:{RELAY_PORT}" in line and (m := re.search(r"n_packets=(\d+)", line))
    )


def test_rftest2_converges_and_pings_over_the_datapath_relay(run_dir):
    base = lab_plan("rftest2")
    plan = msgspec.structs.replace(
        base, control=msgspec.structs.replace(base.control, relay="datapath")
    )
    result = scenarios.CheckResult(lab=plan.name)
    run = LabRun(plan, run_dir)
    try:
        run.start()
        t0 = time.monotonic()
        assert scenarios.converge(run, result, t0, 120), result.stages
        assert scenarios.pingall_until_full(run, result, t0, 120), result.stages
        scenarios.flows_match_routes(run, result)
        assert result.ok, result.stages
        print(f"datapath relay: 100 % pingall {result.full_pingall_s:.1f} s after bring-up")
        # OSPF's hellos went over every switch's relay link, not through rfproxy.
        sent = {vm.switch: _relay_packets(run, vm.switch) for vm in plan.vms}
        assert all(n > 0 for n in sent.values()), sent
        log = Path(run_dir, f"{run.proxy_name(1)}.log")
        assert "datapath relay on 4 switches" in log.read_text()
        # A restarted rfproxy finds the relay flows as it wants them: nothing re-added.
        run.stop_proxy_process()
        seen = len(log.read_text())
        run.start_proxy_process()

        def reconciled() -> list[str]:
            return re.findall(r"reconciled switch \S+: flows [^,]*", log.read_text()[seen:])

        assert checks.wait_until(lambda: len(reconciled()) == 4, 60, 0.5), reconciled()
        assert all(" +0 -0 " in line for line in reconciled()), reconciled()
    finally:
        run.stop()

"""What the fault tests share: a healthy-lab gate, flow ages, and a results file.

The figures each case records end up in one JSON file (ROUTEFLOW_FAULT_RESULTS),
which is what the closing notes and the README tables quote.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator

from conftest import lab_plan

from routeflow.lab import checks, scenarios
from routeflow.lab.runner import LabRun

RESULTS = os.environ.get("ROUTEFLOW_FAULT_RESULTS", "/tmp/routeflow-fault-results.json")


def converged_lab(name: str, tag: str) -> Iterator[LabRun]:
    """A module fixture's body: lab ``name`` up, converged and pinging; always torn down."""
    base = "/tmp/routeflow-tests"
    os.makedirs(base, mode=0o755, exist_ok=True)
    run = LabRun(
        lab_plan(name),
        os.path.join(base, f"{tag}-{os.getpid()}"),
        log_level=os.environ.get("ROUTEFLOW_LOG_LEVEL", "INFO"),
    )
    try:
        run.start()
        result = scenarios.CheckResult(lab=name)
        t0 = time.monotonic()
        assert scenarios.converge(run, result, t0, 120), result.stages
        assert scenarios.pingall_until_full(run, result, t0, 120), result.stages
        yield run
    finally:
        run.stop()
        if not os.environ.get("ROUTEFLOW_KEEP_RUNS"):
            shutil.rmtree(run.run_dir, ignore_errors=True)


def record(case: str, **numbers) -> None:
    # Under a lock: test files run side by side (`make test`) and all write this file.
    with open(RESULTS + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(RESULTS) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = {}
        data[case] = numbers
        with open(RESULTS, "w") as fh:
            json.dump(data, fh, indent=1)
    print(f"{case}: {numbers}")


def healthy(run: LabRun, timeout: float = 60) -> None:
    """Pingall passes, flows match routes, and routing has settled.

    Settled means no FIB flow changed in the last few seconds: right after
    bring-up OSPF still re-runs SPF, and a route it re-installs would be
    mistaken for a flow the fault flushed.
    """
    assert checks.wait_until(lambda: checks.pingall(run)[0] == checks.pingall(run)[1], timeout)
    assert checks.wait_until(lambda: checks.check_flows(run).ok, 30), checks.check_flows(run)
    assert checks.wait_until(
        lambda: min((a for ages in all_ages(run).values() for a in ages.values()), default=99) > 5,
        60,
    ), "FIB never settled"


def not_reinstalled(run: LabRun, before: dict[str, dict[str, float]], since: float) -> list[str]:
    """Flows present before that were deleted or re-added (younger than `since` seconds)."""
    bad = []
    for switch, ages in before.items():
        now = checks.flow_ages(run, switch)
        for prefix in ages:
            if prefix not in now or now[prefix] < since:
                bad.append(f"{switch}:{prefix}")
    return bad


def all_ages(run: LabRun) -> dict[str, dict[str, float]]:
    return {vm.switch: checks.flow_ages(run, vm.switch) for vm in run.plan.vms}

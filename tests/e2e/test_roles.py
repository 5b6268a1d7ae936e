"""Controller failover by OpenFlow roles: two rfproxy replicas of one controller.

rftest2-roles: every switch connects to replicas ct1a and ct1b; rfserver makes
ct1a master and ct1b slave. SIGKILL the master (no restart): rfserver promotes
the slave, which asserts the master role on every switch and reconciles
against the full state without touching the flows. Evidence from outside
routeflow: OVS's Controller table (roles), ovs-ofctl (flow ages), ping.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
from conftest import lab_plan
from faultkit import all_ages

from routeflow.lab import checks, scenarios
from routeflow.lab.chaos import kernel_lines
from routeflow.lab.faults import ContinuousPing
from routeflow.lab.runner import LabRun


def roles_are(run: LabRun, master: str, slave: str | None) -> bool:
    roles = checks.controller_roles(run)
    return all(
        r.get(master) == "master" and (slave is None or r.get(slave) == "slave")
        for r in roles.values()
    )


@pytest.mark.timeout(300)
def test_controller_failover_by_roles(run_dir):
    plan = lab_plan("rftest2-roles")
    assert plan.controllers[0].replica_names == ("ct1a", "ct1b")
    run = LabRun(plan, run_dir)
    try:
        run.start()
        result = scenarios.CheckResult(lab=plan.name)
        t0 = time.monotonic()
        assert scenarios.converge(run, result, t0, 120), result.stages
        assert scenarios.pingall_until_full(run, result, t0, 120), result.stages
        ok, total, failed = checks.pingall(run)
        assert ok == total, failed

        # Every switch: ct1a master, ct1b slave (as OVS sees the connections).
        assert checks.wait_until(lambda: roles_are(run, "ct1a", "ct1b"), 10), (
            checks.controller_roles(run)
        )
        # rfserver restarts: the replicas reconnect in any order and the one that
        # holds the master role keeps it, with the same generation (no churn).
        run.kill("rfserver")
        run.start_server()

        def roles_kept() -> bool:
            st = checks.server_status(run).get("controller_roles", {}).get("1", {})
            return st.get("replicas") == {"ct1a": "master", "ct1b": "slave"}

        assert checks.wait_until(roles_kept, 20), checks.server_status(run).get("controller_roles")
        assert checks.server_status(run)["controller_roles"]["1"]["generation"] == 1
        assert roles_are(run, "ct1a", "ct1b"), checks.controller_roles(run)

        # The FIB has settled (OSPF re-runs SPF just after bring-up).
        assert checks.wait_until(
            lambda: (
                min((a for ages in all_ages(run).values() for a in ages.values()), default=0) > 5
            ),
            60,
        ), "FIB never settled"
        assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)
        before = all_ages(run)
        flows_before = {sw: set(checks.fib_flows(run, sw)) for sw in before}
        kernel_before = {sw: kernel_lines(run, sw) for sw in before}

        ping = ContinuousPing(run.host("h1"), plan.host("h4").address, interval=0.02)
        time.sleep(1)
        t_kill = time.monotonic()
        wall_kill = time.time()
        run.kill(run.proxy_name(1, "ct1a"))
        # OVS refreshes the role column of its database lazily (up to its
        # 5 s statistics interval): the switches' own role replies (OpenFlow,
        # logged by ct1b with their generation) time the promotion itself.
        promoted = checks.wait_until(lambda: roles_are(run, "ct1b", None), 10, interval=0.02)
        ovsdb_s = time.monotonic() - t_kill
        assert promoted, checks.controller_roles(run)
        time.sleep(3)  # past the OSPF dead interval (4 s) counted from the kill
        pinged = ping.stop()
        elapsed = time.monotonic() - t_kill

        # Not flushed: no flow is younger than the failover, unless OSPF changed
        # that route in the VM's kernel meanwhile (a real routing change).
        reinstalled = [
            f"{sw}:{prefix}"
            for sw, ages in before.items()
            for prefix, age in checks.flow_ages(run, sw).items()
            if prefix in ages and age < elapsed
        ]
        rerouted = [
            f"{sw}:{prefix}"
            for sw, lines in kernel_before.items()
            for prefix, line in kernel_lines(run, sw).items()
            if lines.get(prefix) != line
        ]
        flushed = sorted(set(reinstalled) - set(rerouted))
        flows_after = {sw: set(checks.fib_flows(run, sw)) for sw in before}
        with open(f"{run.run_dir}/{run.proxy_name(1, 'ct1b')}.log") as fh:
            log_b = fh.read()
        # each line ends in its structured fields (rflib/logs.py: " ct_id=1 dp_id=...")
        reconciled = re.findall(
            r"reconciled switch (0x[0-9a-f]+): (.*?)(?: \w+_id=\S+)*$", log_b, re.M
        )
        replies = re.findall(
            r"^(\S+ \S+) routeflow.proxy INFO switch (0x[0-9a-f]+): replica ct1b is master "
            r"\(generation 2\)",
            log_b,
            re.M,
        )
        assert {int(dp, 16) for _t, dp in replies} == {vm.dp_id for vm in plan.vms}, replies
        promotion_s = (
            max(datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp() for t, _dp in replies)
            - wall_kill
        )
        with open(f"{run.run_dir}/rfserver.log") as fh:
            server_log = fh.read()
        print(
            f"failover: every switch answered ct1b's master role request {promotion_s:.3f} s "
            f"after SIGKILL of ct1a (OVS database showed it after {ovsdb_s:.2f} s); "
            f"ping h1->h4 every 20 ms: {pinged.sent} sent, {pinged.lost} lost, "
            f"longest outage {pinged.outage_s:.2f} s; flows re-installed: {len(reinstalled)} "
            f"(routes OSPF changed meanwhile: {rerouted})"
        )
        assert "replica ct1b promoted to master (generation 2)" in server_log
        assert promotion_s < 2.0, promotion_s
        assert flushed == [], (flushed, rerouted)
        assert flows_after == flows_before
        assert len(reconciled) == len(plan.vms), reconciled
        assert all(
            re.fullmatch(r"flows \+0 -0 =\d+, groups \+0 ~0 -0 =\d+", r) for _dp, r in reconciled
        ), reconciled
        assert pinged.lost <= 5, pinged
        assert roles_are(run, "ct1b", None)
        # The killed replica's connections are gone on every switch.
        assert all(r.get("ct1a") == "" for r in checks.controller_roles(run).values())

        # The new master relays control traffic: past the OSPF dead interval (4 s)
        # since the kill, no adjacency went down.
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t_kill)))
        full, want = checks.ospf_adjacencies(run)
        assert full == want, run.vtysh("A", "show ip ospf neighbor")

        # The new master programs topology changes: cut A-D (h1 -> h4's direct path).
        before_route = checks.kernel_routes(run, "A").get("172.31.4.0/24")
        run.set_link("A", "D", up=False)
        assert checks.wait_until(
            lambda: checks.kernel_routes(run, "A").get("172.31.4.0/24") not in (None, before_route),
            20,
        ), checks.kernel_routes(run, "A")
        assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)
        ages = checks.flow_ages(run, "A")
        assert ages.get("172.31.4.0/24", 99) < time.monotonic() - t_kill  # new since failover
        assert checks.wait_until(lambda: checks.pingall(run)[0] == checks.pingall(run)[1], 20), (
            checks.pingall(run)
        )
    finally:
        run.stop()

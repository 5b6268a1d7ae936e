"""rftest2 dual-stack (labs/rftest2-v6.yaml): IPv6 next to IPv4, end to end.

OSPFv3 in the VMs, their kernels' IPv6 routes and neighbours as flows on the switches,
hosts pinging each other over IPv6 through the switches' fast path, and a cut link
rerouted. One lab serves the module (bring-up is the expensive part); evidence comes
from outside routeflow: ping, ovs-ofctl, the VM kernels, FRR.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator

import pytest
from conftest import lab_plan

from routeflow.lab import checks, scenarios
from routeflow.lab.faults import ContinuousPing
from routeflow.lab.runner import LabRun

pytestmark = pytest.mark.timeout(600)


class Lab:
    def __init__(self, run: LabRun, result: scenarios.CheckResult, t0: float) -> None:
        self.run, self.result, self.t0 = run, result, t0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    base = "/tmp/routeflow-tests"
    os.makedirs(base, mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    run = LabRun(
        lab_plan("rftest2-v6"),
        os.path.join(base, f"ipv6-{os.getpid()}-{secrets.token_hex(2)}"),
        log_level=os.environ.get("ROUTEFLOW_LOG_LEVEL", "INFO"),
    )
    result = scenarios.CheckResult(lab=run.plan.name)
    try:
        t0 = time.monotonic()
        run.start()
        yield Lab(run, result, t0)
    finally:
        run.stop()
        if not os.environ.get("ROUTEFLOW_KEEP_RUNS"):
            shutil.rmtree(run.run_dir, ignore_errors=True)


def _healthy6(run: LabRun, timeout: float = 60) -> None:
    """IPv6 converged on the shortest paths (not just routes that exist: a test run right
    after bring-up saw A's route to h4 still ECMP via B and C), IPv6 and IPv4 pingall at
    100 % and IPv6 flows matching the kernels, or fail."""
    result = scenarios.CheckResult(lab=run.plan.name)
    assert scenarios.converge6(run, result, timeout), result.stages
    assert checks.wait_until(lambda: not checks.pingall(run, family=6)[2], timeout), checks.pingall(
        run, family=6
    )
    assert checks.wait_until(lambda: not checks.pingall(run)[2], timeout), checks.pingall(run)
    assert checks.wait_until(lambda: checks.check_flows6(run).ok, 30), checks.check_flows6(run)


def _vm_rx_packets(run: LabRun) -> int:
    """Packets the VMs' kernels received on their router interfaces (ground truth)."""
    total = 0
    for vm in run.plan.vms:
        for line in run.vm_node(vm.switch).cmd("cat /proc/net/dev").splitlines():
            m = re.match(r"\s*(eth\d+):\s*\d+\s+(\d+)", line)
            if m:
                total += int(m.group(2))
    return total


def _port_to(run: LabRun, switch: str, peer: str) -> int:
    return next(i.port for i in run.plan.vm(switch).link_ports if i.peer == peer)


def _link_local(run: LabRun, switch: str, port: int) -> str:
    out = run.vm_node(switch).cmd(f"ip -6 -o addr show dev eth{port} scope link")
    return re.search(r"inet6 (fe80::\S+)/64", out).group(1)


def test_dual_stack_converges_pings_and_flows_match(lab: Lab) -> None:
    run, result = lab.run, lab.result
    assert scenarios.converge(run, result, lab.t0, 120), result.stages
    assert scenarios.converge6(run, result, 120), result.stages
    scenarios.gateway_pings(run, result)
    scenarios.gateway_pings(run, result, ipv6=True)
    assert scenarios.pingall_until_full(run, result, lab.t0, 120), result.stages
    assert scenarios.pingall_until_full(run, result, lab.t0, 120, ipv6=True), result.stages
    scenarios.flows_match_routes(run, result)
    scenarios.flows_match_routes(run, result, ipv6=True)
    assert result.ok, [s for s in result.stages if not s["ok"]]
    # OSPFv3 itself (not just routes that happen to exist): every link a Full adjacency.
    full, want = checks.ospf6_adjacencies(run)
    assert full == want == 10, run.vtysh("A", "show ipv6 ospf6 neighbor")
    print(
        f"rftest2-v6: 100 % IPv4 pingall {result.full_pingall_s:.1f} s, "
        f"100 % IPv6 pingall {result.full_pingall6_s:.1f} s after bring-up started"
    )


def test_ipv6_transit_stays_on_the_switches(lab: Lab) -> None:
    """300 IPv6 pings h1 -> h4 are forwarded by FIB flows; the VMs never see them."""
    run = lab.run
    _healthy6(run)
    h1, h4 = run.plan.host("h1"), run.plan.host("h4")
    before_a = checks.settled_flow_packets(run, "A", family=6)
    before_d = checks.settled_flow_packets(run, "D", family=6)
    before_rx = _vm_rx_packets(run)
    out = run.host("h1").cmd(f"ping -6 -c 300 -i 0.01 -q -W 1 {h4.address6}")
    received = int(re.search(r"(\d+) received", out).group(1))
    assert received >= 295, out
    grown_rx = _vm_rx_packets(run) - before_rx
    after_a = checks.settled_flow_packets(run, "A", family=6)
    after_d = checks.settled_flow_packets(run, "D", family=6)
    # Echoes leave A on h4's route; replies leave D on h1's.
    assert after_a.get(h4.subnet6, 0) - before_a.get(h4.subnet6, 0) >= 295, (before_a, after_a)
    assert after_d.get(h1.subnet6, 0) - before_d.get(h1.subnet6, 0) >= 295, (before_d, after_d)
    # Hellos (OSPFv2 and v3, about 28 a second over the four VMs) and some ND: punted
    # transit would add >= 600 (300 echoes and 300 replies through a VM at each end).
    assert grown_rx < 250, f"VMs received {grown_rx} packets during 300 transit pings"
    print(f"IPv6 transit: 300 pings, VMs received {grown_rx} packets (their own control traffic)")


def test_ipv6_link_cut_is_rerouted(lab: Lab) -> None:
    """Cut A-D (h1->h4's direct path): OSPFv3 reroutes IPv6 round it, then back."""
    run = lab.run
    _healthy6(run)
    h4 = run.plan.host("h4")
    port_a_d = _port_to(run, "A", "D")
    direct = ((_link_local(run, "D", _port_to(run, "D", "A")), f"eth{port_a_d}"),)
    assert checks.kernel_routes6(run, "A").get(h4.subnet6) == direct
    ping = ContinuousPing(run.host("h1"), h4.address6, interval=0.02)
    time.sleep(1)
    try:
        run.set_link("A", "D", up=False)
        assert checks.wait_until(
            lambda: "state DOWN" in run.vm_node("A").cmd(f"ip -o link show eth{port_a_d}"), 10
        )
        assert checks.wait_until(
            lambda: all(
                dev != f"eth{port_a_d}"
                for _gw, dev in checks.kernel_routes6(run, "A").get(h4.subnet6, (("", ""),))
            ),
            20,
        ), checks.kernel_routes6(run, "A")
        assert checks.wait_until(lambda: checks.ping(run, "h1", h4.address6), 20)
        time.sleep(2)
        down = ping.stop()
        assert checks.wait_until(lambda: checks.check_flows6(run).ok, 20), checks.check_flows6(run)
    finally:
        if ping.proc.poll() is None:
            ping.stop()
        run.set_link("A", "D", up=True)
    print(f"IPv6 link A-D cut: {down.lost} of {down.sent} pings lost, outage {down.outage_s:.2f} s")
    assert down.outage_s < 3.0, down

    # Back on the direct link once OSPFv3 re-forms the adjacency: next hop D's link-local.
    assert checks.wait_until(
        lambda: checks.kernel_routes6(run, "A").get(h4.subnet6) == direct, 30
    ), checks.kernel_routes6(run, "A")
    _healthy6(run)


def test_static_routes_carry_ipv6_too(run_dir) -> None:
    """labs/rftest2-v6-static.yaml: no routing protocol, FRR static routes in both
    families (IPv6 through the peer's global address): converged on shortest paths,
    pingall and flows matching the kernels, IPv4 and IPv6."""
    plan = lab_plan("rftest2-v6-static")
    assert any(":" in r.prefix for vm in plan.vms for r in vm.static_routes)
    result = scenarios.run_check(plan, run_dir, timeout=60)
    failed = [s for s in result.stages if not s["ok"]]
    assert result.ok, f"failed stages: {failed}; logs in {run_dir}"
    names = " | ".join(s["stage"] for s in result.stages)
    assert "IPv6 pingall (one round)" in names and "IPv6 flows match kernel routes" in names

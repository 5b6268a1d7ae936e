"""Faults on a running rftest2: each case measures what it cost the data plane.

The first test (ex test_rftest2.py) checks the lab as brought up: flows match routes,
transit stays on the switches.

One lab serves the whole module (bring-up is the expensive part); every case
starts by checking the lab is healthy and ends by leaving it healthy.
Evidence comes from outside routeflow: ping sequence numbers, ovs-ofctl, the
VM kernels.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import time

import pytest
from faultkit import all_ages, converged_lab, healthy, not_reinstalled, record

from routeflow.lab import checks, scenarios
from routeflow.lab.faults import ContinuousPing
from routeflow.lab.runner import LabRun


@pytest.fixture(scope="module")
def lab():
    yield from converged_lab("rftest2", "faults")


def _vm_rx_packets(run: LabRun) -> int:
    """Packets the VMs' kernels received on their router interfaces (ground truth)."""
    total = 0
    for vm in run.plan.vms:
        out = run.vm_node(vm.switch).cmd("cat /proc/net/dev")
        for line in out.splitlines():
            m = re.match(r"\s*(eth\d+):\s*\d+\s+(\d+)", line)
            if m:
                total += int(m.group(2))
    return total


def test_rftest2_check_and_transit_stays_on_the_switches(lab):
    """rftest2 converged and pings (the fixture); flows match routes, transit stays on the
    switches. First in the module: it runs on the lab as brought up."""
    run = lab
    plan = run.plan
    result = scenarios.CheckResult(lab=plan.name)
    scenarios.flows_match_routes(run, result)
    assert result.ok, result.stages

    # 300 transit pings h1 -> h4 (two switches, one VM hop each way).
    h4 = plan.host("h4")
    before_flows = checks.settled_flow_packets(run, "A")
    before_rx = _vm_rx_packets(run)
    out = run.host("h1").cmd(f"ping -c 300 -i 0.01 -q -W 1 {h4.address}")
    received = int(re.search(r"(\d+) received", out).group(1))
    assert received >= 295, out
    grown_rx = _vm_rx_packets(run) - before_rx
    after_flows = checks.settled_flow_packets(run, "A")
    # Route flows counted the transit packets...
    subnet = "172.31.4.0/24"
    assert after_flows.get(subnet, 0) - before_flows.get(subnet, 0) >= 295
    # ...while the VMs only saw their own control traffic (OSPF hellos, about
    # 14 a second over the four VMs). Punted transit would add >= 600 (300
    # echoes and 300 replies, through a VM at each end).
    assert grown_rx < 150, f"VMs received {grown_rx} packets during 300 transit pings"
    print(f"transit: 300 pings, VMs received {grown_rx} packets (their own hellos)")


def test_rfproxy_sigkill_keeps_forwarding_and_reconciles(lab):
    run = lab
    healthy(run)
    # A default route too: a switch stores its all-zero mask as no field at all,
    # which reconciliation must still see as ours and in sync (not delete it).
    gw = run.plan.vm("B").interface(2).ip
    run.vm_node("A").cmd(f"ip route add default via {gw}")
    assert checks.wait_until(lambda: "0.0.0.0/0" in checks.fib_flows(run, "A"), 20)
    try:
        h4 = run.plan.host("h4")
        before = all_ages(run)
        bridge = run.bridges["A"]
        # Damage the switch behind the controller's back: a stale flow with our
        # cookie appears and a route flow vanishes. Reconciliation must fix both.
        run.ovs.ofctl(
            "-O",
            "OpenFlow13",
            "add-flow",
            bridge,
            "table=1,priority=1024,cookie=0x5246040000000000,ip,nw_dst=198.18.0.0/24,actions=drop",
        )
        run.ovs.ofctl(
            "-O",
            "OpenFlow13",
            "--strict",
            "del-flows",
            bridge,
            "table=1,priority=1024,ip,nw_dst=172.31.2.0/24",
        )
        ping = ContinuousPing(run.host("h1"), h4.address)
        time.sleep(1)
        t_kill = time.monotonic()
        wall_kill = time.time()
        # SIGKILL and an immediate restart, as a supervisor (systemd) would do.
        # The relay of OSPF hellos is down meanwhile: an outage longer than the
        # dead interval (4 s here) would drop adjacencies, by OSPF's own rules.
        run.kill("rfproxy")
        run.start_proxy_process()
        assert checks.wait_until(
            lambda: (
                "198.18.0.0" not in run.ovs.ofctl("-O", "OpenFlow13", "dump-flows", bridge)
                and "172.31.2.0/24" in run.ovs.ofctl("-O", "OpenFlow13", "dump-flows", bridge)
            ),
            30,
        ), "reconciliation did not remove the stale flow and restore the missing one"
        time.sleep(1)
        result = ping.stop()
        elapsed = time.monotonic() - t_kill
        before["A"].pop("172.31.2.0/24", None)  # the one we deleted by hand
        flushed = not_reinstalled(run, before, since=elapsed)
        record(
            "rfproxy SIGKILL + restart",
            sent=result.sent,
            lost=result.lost,
            outage_s=result.outage_s,
            flows_reinstalled=len(flushed),
        )
        dropped = _adjacencies_younger_than(run, elapsed)
        if dropped:
            relay_back = _relay_back_after(run, wall_kill)
            budget = run.plan.ospf.dead - run.plan.ospf.hello
            assert relay_back is None or relay_back > budget, (
                f"OSPF adjacencies {dropped} went down although rfproxy relayed again "
                f"{relay_back:.1f} s after the kill, within the dead interval"
            )
            healthy(run)
            pytest.skip(
                f"machine too loaded for the no-loss check: rfproxy was back only after "
                f"{relay_back} s (dead interval {run.plan.ospf.dead} s), so OSPF dropped "
                f"{dropped} by its own rules (docs/operations.md, known limit); reconciliation "
                f"was checked, the lab healed"
            )
        assert result.lost == 0, result
        assert flushed == [], f"flows re-installed or lost: {flushed}"
        healthy(run)
    finally:
        run.vm_node("A").cmd("ip route del default")


def _adjacencies_younger_than(run: LabRun, seconds: float) -> list[str]:
    """OSPF neighbours (vm>router-id) that came up in the last ``seconds``: dropped since."""
    young = []
    for vm in run.plan.vms:
        out = json.loads(run.vtysh(vm.switch, "show ip ospf neighbor json"))
        for router_id, entries in out.get("neighbors", {}).items():
            if any(e.get("upTimeInMsec", 0) < seconds * 1000 for e in entries):
                young.append(f"{vm.switch}>{router_id}")
    return young


def _relay_back_after(run: LabRun, wall: float) -> float | None:
    """Seconds from ``wall`` to the last switch the restarted rfproxy had connected again
    (its log's clock), or None if the log shows none."""
    last = None
    with open(os.path.join(run.run_dir, "rfproxy.log")) as fh:
        for line in fh:
            if " connected ct_id=" not in line or "switch " not in line:
                continue
            at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= wall:
                last = at
    return None if last is None else round(last - wall, 2)


def test_rfserver_sigkill_loses_nothing(lab):
    run = lab
    healthy(run)
    h4 = run.plan.host("h4")
    assoc_before = checks.server_status(run)["associations"]
    before = all_ages(run)
    ping = ContinuousPing(run.host("h1"), h4.address)
    time.sleep(1)
    t_kill = time.monotonic()
    run.kill("rfserver")
    # A route learned while rfserver is down must arrive after its restart.
    gw = run.plan.vm("B").interface(2).ip  # B's address on the A-B link
    run.vm_node("A").cmd(f"ip route add 198.51.100.0/24 via {gw}")
    time.sleep(2)
    run.start_server()
    assert checks.wait_until(lambda: "198.51.100.0/24" in checks.fib_flows(run, "A"), 40), (
        "route learned during the outage never reached the switch"
    )
    time.sleep(1)
    result = ping.stop()
    elapsed = time.monotonic() - t_kill
    flushed = not_reinstalled(run, before, since=elapsed)
    assoc_after = checks.server_status(run)["associations"]
    record(
        "rfserver SIGKILL + restart",
        sent=result.sent,
        lost=result.lost,
        outage_s=result.outage_s,
        flows_reinstalled=len(flushed),
        associations_lost=len(assoc_before) - len(assoc_after),
    )
    assert result.lost == 0, result
    assert flushed == [], flushed
    key = ("vm_id", "vm_port", "dp_id", "dp_port", "state")
    assert sorted(tuple(a[k] for k in key) for a in assoc_after) == sorted(
        tuple(a[k] for k in key) for a in assoc_before
    )
    run.vm_node("A").cmd("ip route del 198.51.100.0/24")
    assert checks.wait_until(lambda: "198.51.100.0/24" not in checks.fib_flows(run, "A"), 20)
    healthy(run)


def test_rfclient_restart_resyncs_and_removes_what_vanished(lab):
    run = lab
    healthy(run)
    gw = run.plan.vm("B").interface(2).ip
    node = run.vm_node("A")
    node.cmd(f"ip route add 198.51.100.0/24 via {gw}")
    assert checks.wait_until(lambda: "198.51.100.0/24" in checks.fib_flows(run, "A"), 20)
    before = all_ages(run)
    before["A"].pop("198.51.100.0/24")
    ping = ContinuousPing(run.host("h1"), run.plan.host("h4").address)
    t_kill = time.monotonic()
    run.kill("rfclient@A")
    node.cmd("ip route del 198.51.100.0/24")  # withdrawn while the client is down
    time.sleep(2)
    run.start_client(run.plan.vm("A"))
    gone = checks.wait_until(lambda: "198.51.100.0/24" not in checks.fib_flows(run, "A"), 30)
    result = ping.stop()
    flushed = not_reinstalled(run, before, since=time.monotonic() - t_kill)
    record(
        "rfclient SIGKILL + restart",
        sent=result.sent,
        lost=result.lost,
        outage_s=result.outage_s,
        flows_reinstalled=len(flushed),
        stale_removed=gone,
    )
    assert gone, "route withdrawn while rfclient was down is still on the switch"
    assert result.lost == 0, result
    assert flushed == [], flushed
    healthy(run)


def test_switch_leaves_and_rejoins(lab):
    run = lab
    healthy(run)
    bridge = run.bridges["D"]
    dp_id = run.plan.vm("D").dp_id
    controller = f"tcp:127.0.0.1:{run.of_port}"
    run.ovs.vsctl("del-controller", bridge)

    def d_states() -> set[str]:
        return {
            a["state"]
            for a in checks.server_status(run)["associations"]
            if a["vm_id"] == run.plan.vm("D").vm_id
        }

    assert checks.wait_until(lambda: d_states() == {"idle client port"}, 20), d_states()
    assert not any(a["dp_id"] == dp_id for a in checks.server_status(run)["associations"])
    t = time.monotonic()
    run.ovs.vsctl("set-controller", bridge, controller)
    assert checks.wait_until(lambda: d_states() == {"active client-datapath association"}, 30), (
        d_states()
    )
    healthy(run)
    record("switch leaves and rejoins", restored_s=round(time.monotonic() - t, 2))


def test_frr_daemon_restart(lab):
    run = lab
    healthy(run)
    vm = run.plan.vm("B")
    run.kill("ospfd@B", sig=15)
    # B's OSPF routes leave its kernel, then come back with the daemon.
    assert checks.wait_until(
        lambda: not any(gw != "connected" for gw in checks.kernel_routes(run, "B").values()), 20
    )
    assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)
    t = time.monotonic()
    run.start_frr_daemon(vm, "ospfd")
    healthy(run, timeout=90)
    record("FRR ospfd restart", recovered_s=round(time.monotonic() - t, 2))


def test_link_down_and_up_reroutes(lab):
    """Cut A-D (h1->h4's direct path): port status reaches the VMs, OSPF reroutes."""
    run = lab
    healthy(run)
    port_a_d = next(i.port for i in run.plan.vm("A").interfaces if i.peer == "D")
    ping = ContinuousPing(run.host("h1"), run.plan.host("h4").address, interval=0.02)
    time.sleep(1)
    run.set_link("A", "D", up=False)
    # The VM interfaces follow the switch ports...
    assert checks.wait_until(
        lambda: "state DOWN" in run.vm_node("A").cmd(f"ip -o link show eth{port_a_d}"), 10
    ), run.vm_node("A").cmd(f"ip -o link show eth{port_a_d}")
    # ...and traffic takes the other way round.
    assert checks.wait_until(lambda: checks.ping(run, "h1", run.plan.host("h4").address), 20)
    time.sleep(2)
    down = ping.stop()
    assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)

    ping = ContinuousPing(run.host("h1"), run.plan.host("h4").address, interval=0.02)
    time.sleep(1)
    run.set_link("A", "D", up=True)
    assert checks.wait_until(
        lambda: "state UP" in run.vm_node("A").cmd(f"ip -o link show eth{port_a_d}"), 10
    )
    # Back on the direct link once OSPF re-forms the adjacency.
    assert checks.wait_until(
        lambda: (
            checks.kernel_routes(run, "A").get("172.31.4.0/24")
            == run.plan.vm("D")
            .interface(next(i.port for i in run.plan.vm("D").interfaces if i.peer == "A"))
            .ip
        ),
        30,
    )
    time.sleep(2)
    up = ping.stop()
    record(
        "link A-D down, then up",
        down_lost=down.lost,
        down_outage_s=round(down.outage_s, 2),
        up_lost=up.lost,
        up_outage_s=round(up.outage_s, 2),
    )
    assert down.outage_s < 3.0, down
    assert up.lost <= 5, up
    healthy(run)


FUZZ_SENDER = r"""
import random, socket, sys
random.seed(int(sys.argv[3]))
iface, router_mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
src = s.getsockname()[4]
for i in range(int(sys.argv[4])):
    dst = random.choice([router_mac, b"\xff" * 6])
    ethertype = random.choice([0x0806, 0x0800, 0x0A0A, random.randrange(0x10000)])
    body = bytes(random.randrange(256) for _ in range(random.randrange(0, 120)))
    if ethertype == 0x0800 and body and random.random() < 0.5:
        body = bytes([0x45]) + body[1:]  # looks like IPv4, rest is junk
    s.send(dst + src + ethertype.to_bytes(2, "big") + body)
"""


def test_malformed_frames_from_a_host_never_hurt_rfproxy(lab):
    run = lab
    healthy(run)
    h1 = run.plan.host("h1")
    router_mac = run.plan.vm("A").interface(h1.dp_port).mac
    node = run.host("h1")
    intf = node.defaultIntf().name
    script = os.path.join(run.run_dir, "fuzz_sender.py")
    with open(script, "w") as fh:
        fh.write(FUZZ_SENDER)
    out = node.cmd(f"{run.python} {script} {intf} {router_mac} 7 2000; echo rc=$?")
    assert "rc=0" in out, out
    time.sleep(1)
    assert run.proxy is not None and run.proxy.poll() is None, "rfproxy died"
    with open(os.path.join(run.run_dir, "rfproxy.log")) as fh:
        log_text = fh.read()
    record("2000 malformed frames from a host", proxy_handler_errors=log_text.count("; continuing"))
    assert "; continuing" not in log_text, "a handler raised on malformed input"
    healthy(run)


def _silent_failure(run: LabRun, a: str, b: str, drop: bool) -> None:
    """Black-hole the a-b link in both directions while its ports stay up."""
    link = run.link_between(a, b)
    for end in (link.a, link.b):
        match = f"table=0,priority=65000,in_port={end.port}"
        bridge = run.bridges[end.switch]
        if drop:
            run.ovs.ofctl("-O", "OpenFlow13", "add-flow", bridge, f"{match},actions=drop")
        else:
            run.ovs.ofctl("-O", "OpenFlow13", "--strict", "del-flows", bridge, match)


def _measure_silent_failure(run: LabRun) -> float:
    healthy(run)
    h4 = run.plan.host("h4").address
    ping = ContinuousPing(run.host("h1"), h4, interval=0.02)
    time.sleep(1)
    _silent_failure(run, "A", "D", drop=True)
    # Until traffic has gone round the black hole (a ping of its own is answered; 8 s
    # is well past the OSPF dead interval of 4 s), then 2 s more of the continuous
    # ping, whose longest gap is the outage.
    assert checks.wait_until(lambda: checks.ping(run, "h1", h4), 8, 0.05), "never rerouted"
    time.sleep(2)
    result = ping.stop()
    _silent_failure(run, "A", "D", drop=False)
    healthy(run, timeout=90)
    return result.outage_s


def test_silent_link_failure_without_bfd_waits_for_ospf_dead_interval(lab):
    outage = _measure_silent_failure(lab)
    record("silent A-D failure, OSPF only (dead 4 s)", outage_s=round(outage, 2))
    assert outage < 8.0


def test_silent_link_failure_with_bfd_under_a_second(tmp_path):
    import msgspec

    from routeflow.lab.model import load_lab, plan

    base = "/tmp/routeflow-tests"
    lab_file = load_lab(os.path.join(os.path.dirname(__file__), "..", "..", "labs", "rftest2.yaml"))
    lab_file = msgspec.structs.replace(
        lab_file, ospf=msgspec.structs.replace(lab_file.ospf, bfd=True)
    )
    run = LabRun(plan(lab_file), os.path.join(base, f"bfd-{os.getpid()}"))
    try:
        run.start()
        result = scenarios.CheckResult(lab="rftest2+bfd")
        t0 = time.monotonic()
        assert scenarios.converge(run, result, t0, 120), result.stages
        assert checks.wait_until(
            lambda: run.vtysh("A", "show bfd peers").count("Status: up") >= 3, 30
        ), run.vtysh("A", "show bfd peers")
        outage = _measure_silent_failure(run)
        record("silent A-D failure, OSPF + BFD (100 ms x 3)", outage_s=round(outage, 2))
        assert outage < 1.0, f"outage {outage:.2f} s with BFD"
    finally:
        run.stop()
        if not os.environ.get("ROUTEFLOW_KEEP_RUNS"):
            shutil.rmtree(run.run_dir, ignore_errors=True)

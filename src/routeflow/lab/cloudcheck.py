"""`routeflow lab check` for a cloud lab: stages, timings, verdicts (I/O shell).

The stages, in order, each timed as the routeflow lab's are (scenarios.CheckResult):

1. start: nodes, tenant server, node agents (lab/cloudrun.py).
2. bootstrap through the API (openstacksdk): tenants, networks, routers, VM ports.
3. VMs plugged: every port ACTIVE on its node (the agent saw its iface-id).
4. DHCP: every VM's busybox udhcpc gets the port's address, the router, and the
   network's MTU (1450 over VXLAN), which is applied to eth0.
5. same-network ping across nodes (ttl 64: switched); 6. routed ping across nodes
   (ttl 63: one hop, routed on the source node); 7. a 1422-byte don't-fragment ping
   routed across nodes (the MTU holds end to end).
8. isolation: no VM reaches an address only another tenant has; where both tenants
   use an address, a ping to it reaches the own tenant's VM (its MAC).
9. security groups (lab/cloudsg.py): a VM moved to a group allowing tcp/22 from a CIDR
   and ICMP from a remote group accepts exactly those; removing the ICMP rule blocks
   ping while an open tcp/22 connection keeps echoing. The lab is restored after.
10. flows: every node's br-int holds exactly the compiler's output for that node.
11. port delete through the API: the port's flows (its cookie) go from every node,
    the rest equals the compiler's output again, and the VM is unreachable.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from routeflow.lab.cloud import (
    CloudLab,
    isolation_pairs,
    routed_pairs,
    same_network_pairs,
    shared_address_pairs,
)
from routeflow.lab.cloudrun import CloudFailure, CloudRun, Lease
from routeflow.lab.cloudsg import secgroup_stages
from routeflow.lab.ovs import OvsError
from routeflow.lab.poll import poll_until
from routeflow.lab.runner import Terminated
from routeflow.lab.scenarios import CheckResult

__all__ = ["CloudCheckResult", "run_cloud_check"]

log = logging.getLogger("routeflow.lab.cloud")


@dataclass
class CloudCheckResult(CheckResult):
    #: VM name -> seconds busybox udhcpc took to get its lease.
    dhcp_lease_s: dict[str, float] = field(default_factory=dict)
    #: Seconds from the port delete (API) until no node held a flow of the port.
    port_delete_s: float | None = None
    #: The run's tag (in every namespace name) and its processes: name -> pid.
    tag: str = ""
    pids: dict[str, int] = field(default_factory=dict)


def run_cloud_check(
    name: str,
    cloud: CloudLab,
    run_dir: str,
    *,
    timeout: float = 60.0,
    log_level: str = "INFO",
    on_stage: Callable[[dict], None] | None = None,
    extra_checks: Callable[[CloudRun, CheckResult], None] | None = None,
) -> CloudCheckResult:
    """The whole check; the run is torn down at the end whatever happened (the run
    directory goes, but for its logs when a stage failed or the check was stopped)."""
    from openstack.exceptions import SDKException  # the API said no (HTTP 4xx/5xx)

    result = CloudCheckResult(lab=name, run_dir=run_dir, on_stage=on_stage)
    run = CloudRun(cloud, run_dir, log_level=log_level, remove_run_dir=False)
    result.tag = run.tag
    t0 = time.monotonic()
    try:
        try:
            run.start()
        finally:
            for step, seconds in run.timings:
                result.add(f"start: {step}", True, seconds)
        stages(run, result, timeout)
        if extra_checks is not None and result.ok:
            extra_checks(run, result)
    except (CloudFailure, OvsError, OSError, TimeoutError, SDKException) as exc:
        result.add("lab", False, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
    except (Terminated, KeyboardInterrupt):
        result.add("lab", False, time.monotonic() - t0, "interrupted")
        raise
    finally:
        t = time.monotonic()
        result.pids = {p.name: p.pid for p in run.procs.procs}
        run.remove_run_dir = True
        run.keep_logs = not result.ok
        run.stop()
        result.add("teardown", True, time.monotonic() - t)
    return result


def stages(run: CloudRun, result: CloudCheckResult, timeout: float) -> None:
    """Stages 2-10; a failed stage that later ones depend on ends the check."""
    cloud = run.cloud
    t = time.monotonic()
    conn = run.connect()
    ports = run.bootstrap(conn)
    nets = sum(len(x.networks) for x in cloud.tenants)
    routers = sum(len(x.routers) for x in cloud.tenants)
    result.add(
        "bootstrap through the API",
        True,
        time.monotonic() - t,
        f"{len(cloud.tenants)} tenants, {nets} networks, {routers} routers, {len(ports)} ports",
    )
    if not _plug(run, result, conn, ports, timeout):
        return
    leases = _dhcp(run, result)
    if leases is None:
        return
    addresses = {name: lease.ip for name, lease in leases.items()}
    _pings(run, result, "same-network ping across nodes", same_network_pairs(cloud), 64)
    _pings(run, result, "routed ping across nodes", routed_pairs(cloud), 63)
    _mtu_ping(run, result)
    _isolation(run, result, addresses)
    secgroup_stages(run, result, conn, timeout)
    _flows(run, result, "flows equal the compiler's on every node", timeout)
    _port_delete(run, result, conn, timeout)


def _plug(run: CloudRun, result: CheckResult, conn: Any, ports: dict, timeout: float) -> bool:
    t = time.monotonic()
    run.plug_many([(vm.name, vm.node, ports[vm.name]) for x in run.cloud.tenants for vm in x.vms])

    missing = run.wait_active(list(run.vms.values()), conn, timeout)
    result.add(
        "VMs plugged, ports ACTIVE",
        not missing,
        time.monotonic() - t,
        f"{len(run.vms)} VMs on {len(run.nodes)} nodes"
        + (f"; not ACTIVE: {', '.join(missing)}" if missing else ""),
    )
    return not missing


def _dhcp(run: CloudRun, result: CloudCheckResult) -> dict[str, Lease] | None:
    t = time.monotonic()
    leases: dict[str, Lease] = {}
    problems: list[str] = []
    for vm in run.vms.values():
        try:
            lease = run.dhcp(vm)
        except CloudFailure as exc:
            problems.append(str(exc))
            continue
        leases[vm.name] = lease
        link = run.vm_exec(vm, "ip", "-o", "link", "show", "eth0").stdout
        if lease.ip != vm.fixed_ip:
            problems.append(f"{vm.name}: leased {lease.ip}, the port has {vm.fixed_ip}")
        if lease.mtu != run.cloud.mtu or f"mtu {run.cloud.mtu} " not in link:
            problems.append(f"{vm.name}: MTU {lease.mtu} (eth0: {link.strip()[:80]})")
        if lease.router is None:
            problems.append(f"{vm.name}: no router in the lease")
    times = [lease.seconds for lease in leases.values()]
    retried = sum(1 for x in times if x > 1.0)  # udhcpc resends after 1 s (-T 1)
    detail = (
        f"{len(leases)}/{len(run.vms)} leases, MTU {run.cloud.mtu}; udhcpc "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
        + (f", {retried} after a resend (a request lost)" if retried else "")
        if times
        else "no lease"
    )
    result.add(
        f"DHCP lease with MTU {run.cloud.mtu}",
        not problems,
        time.monotonic() - t,
        detail + ("; " + "; ".join(problems[:3]) if problems else ""),
    )
    result.dhcp_lease_s = {name: round(lease.seconds, 3) for name, lease in leases.items()}
    return leases if not problems else None


def _ttl(stdout: str) -> int | None:
    for word in stdout.split():
        if word.startswith("ttl="):
            return int(word[4:])
    return None


def _pings(
    run: CloudRun, result: CheckResult, stage: str, pairs: list[tuple[str, str]], ttl: int
) -> None:
    t = time.monotonic()
    jobs = [(run.vms[a], run.vms[b].fixed_ip) for a, b in pairs]
    answers = run.pings(jobs)
    bad = [
        f"{a}->{b} " + ("no answer" if r.returncode else f"ttl {_ttl(r.stdout)}")
        for (a, b), r in zip(pairs, answers, strict=True)
        if r.returncode != 0 or _ttl(r.stdout) != ttl
    ]
    ok = bool(pairs) and not bad
    what = ", ".join(f"{a}->{b}" for a, b in pairs)
    result.add(
        stage,
        ok,
        time.monotonic() - t,
        (f"{what} (ttl {ttl})" if pairs else "no VM pair in the lab")
        + (f"; {', '.join(bad)}" if bad else ""),
    )


def _mtu_ping(run: CloudRun, result: CheckResult) -> None:
    pairs = routed_pairs(run.cloud)[:1] or same_network_pairs(run.cloud)[:1]
    if not pairs:
        return
    t = time.monotonic()
    a, b = pairs[0]
    size = run.cloud.mtu - 28
    r = run.ping(run.vms[a], run.vms[b].fixed_ip, "-M", "do", "-s", str(size))
    result.add(
        f"{run.cloud.mtu}-byte don't-fragment ping",
        r.returncode == 0,
        time.monotonic() - t,
        f"{a}->{b}, {size} bytes of payload"
        + ("" if r.returncode == 0 else f"; {r.stdout[-200:]}"),
    )


def _isolation(run: CloudRun, result: CheckResult, addresses: dict[str, str]) -> None:
    t = time.monotonic()
    cloud = run.cloud
    blocked = isolation_pairs(cloud, addresses)
    answers = run.pings([(run.vms[a], ip) for a, ip in blocked], wait=1)
    leaks = [f"{a}->{ip}" for (a, ip), r in zip(blocked, answers, strict=True) if r.returncode == 0]
    shared = shared_address_pairs(cloud, addresses)
    answers = run.pings([(run.vms[a], addresses[b]) for a, b, _twin in shared])
    wrong = []
    for (a, b, twin), r in zip(shared, answers, strict=True):
        neigh = run.vm_exec(run.vms[a], "ip", "neigh", "show", addresses[b]).stdout.lower()
        if r.returncode != 0:
            wrong.append(f"{a}->{b} ({addresses[b]}) no answer")
        elif run.vms[b].mac.lower() not in neigh:
            wrong.append(f"{a}->{addresses[b]} answered by {neigh.strip()} (not {b}; {twin}?)")
    ok = bool(blocked) and not leaks and not wrong
    result.add(
        "isolation between tenants",
        ok,
        time.monotonic() - t,
        f"{len(blocked)} pings to other tenants' addresses unanswered, "
        f"{len(shared)} to addresses both tenants use reached the own VM"
        + (f"; LEAKS: {', '.join(leaks)}" if leaks else "")
        + (f"; {', '.join(wrong)}" if wrong else ""),
    )


def _flows(run: CloudRun, result: CheckResult, stage: str, timeout: float) -> bool:
    t = time.monotonic()
    last: dict[str, list[str]] = {}

    def equal() -> bool:
        cloud = run.snapshot()
        last.clear()
        for node in run.nodes:
            problems = run.flow_problems(node, cloud)
            if problems:
                last[node] = problems
        return not last

    got = poll_until(equal, timeout=timeout, interval=0.2)
    counts = {node: len(run.expected_flows(node)) for node in run.nodes}
    detail = ", ".join(f"{n} {c}" for n, c in counts.items()) + " flows"
    if last:
        node, problems = next(iter(last.items()))
        detail += f"; {node}: {len(problems)} differences, e.g. {problems[0][:160]}"
    result.add(stage, bool(got.ok), time.monotonic() - t, detail)
    return bool(got.ok)


def _port_delete(run: CloudRun, result: CloudCheckResult, conn: Any, timeout: float) -> None:
    from routeflow.tenant import pipeline

    pairs = same_network_pairs(run.cloud)
    if not pairs:
        return
    src, victim = run.vms[pairs[0][0]], run.vms[pairs[0][1]]
    port = run.snapshot().ports[victim.port_id]
    cookie = pipeline.cookie_of(pipeline.Kind.PORT, port.key)
    spec = f"cookie={cookie:#x}/{pipeline.OBJECT_MASK:#x}"

    def holders() -> list[str]:
        return [
            name
            for name, node in run.nodes.items()
            if "cookie=" in node.ofctl("--no-stats", "dump-flows", "br-int", spec)
        ]

    before = holders()
    t = time.monotonic()
    conn.network.delete_port(victim.port_id)
    gone = poll_until(lambda: not holders(), timeout=timeout, interval=0.05)
    seconds = time.monotonic() - t
    result.port_delete_s = round(seconds, 3)
    still = holders()
    r = run.ping(src, victim.fixed_ip, wait=1)
    ok = bool(gone.ok) and r.returncode != 0 and len(before) > 1
    result.add(
        "port delete removes its flows everywhere",
        ok,
        seconds,
        f"{victim.name}'s port: flows on {', '.join(before)} before, "
        + (f"still on {', '.join(still)}" if still else "on no node after")
        + ("" if r.returncode else f"; {src.name} still reaches {victim.fixed_ip}"),
    )
    _flows(run, result, "flows equal the compiler's after the delete", timeout)

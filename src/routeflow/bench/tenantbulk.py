"""`routeflow bench tenant --bulk`: every measured port at once, as a cloud at scale sees
them (thin I/O).

The sequential mode brings ports up one at a time; at hundreds of ports per node what
matters is how long a batch takes. Here, for each system in turn: every measured VM's
namespace is made first (untimed: the VMs boot), then from one clock: every port is
created through the system's API (one sequential client, as before), every VM plugged
(each node its own, one after the other; the nodes in parallel), and every VM runs DHCP and
pings its target anchor (``workers`` at a time). Figures: time until every port is
created, until every VM is plugged, until the last lease, until the last first ping;
per-VM lease and ping times from the clock (p50/p95/max); control-plane CPU and RSS.
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from routeflow.bench import tenantplan as tp
from routeflow.bench import vms
from routeflow.bench.tenantplan import Scenario, SystemResult, VmSpec
from routeflow.bench.tenantsys import BenchFailure, System, cpu_seconds, rss_peak_mb
from routeflow.lab.ovsnode import run

WORKERS = 12
_LEASE = re.compile(r"lease of (\S+) obtained")


def _dhcp(ns: str, script: str, tries: int) -> tuple[str, int]:
    argv = [
        "ip", "netns", "exec", ns, "udhcpc", "-i", "eth0", "-n", "-q", "-f",
        "-t", str(tries), "-T", "1", "-s", script,
    ]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=tries + 30)
    m = _LEASE.search(r.stdout + r.stderr)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"no DHCP lease in {ns}: {(r.stdout + r.stderr).strip()[-200:]}")
    return m.group(1), (r.stdout + r.stderr).count("discover")


def _plug(node: Any, ns: str, iface: str, mac: str, tries: int = 3) -> None:
    """vms.plug, tried again when ovs-vsctl gave up waiting (its 10 s) on a loaded host."""
    from routeflow.lab.ovs import OvsError

    run(["ip", "-n", ns, "link", "set", "eth0", "address", mac, "up"])
    dev = vms.dev_of(ns)
    for attempt in range(tries):
        try:
            node.vsctl("--may-exist", "add-port", "br-int", dev, "--", "set", "interface", dev,
                       f"external_ids:iface-id={iface}")  # fmt: skip
            return
        except OvsError:
            if attempt == tries - 1:
                raise


def measure_bulk(
    system: System,
    sc: Scenario,
    script: str,
    result: SystemResult,
    ips: dict[str, str],
    workers: int = WORKERS,
    deadline_s: float = 600.0,
) -> None:
    """All of ``sc.ports`` at once (see the module docstring); figures in ``result.bulk``."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda vm: vms.prepare(system.node(vm.node), system.vm_ns(vm), system.mtu),
                      sc.ports))  # fmt: skip
        pids = system.daemons()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        made: dict[str, tuple[str, str, str]] = {}
        for vm in sc.ports:
            made[vm.name] = system.create_port(vm)
        t_created = time.monotonic() - t0

        def plug_node(node: str) -> None:
            """One node's VMs, one after the other (each hypervisor plugs its own)."""
            for vm in (v for v in sc.ports if v.node == node):
                iface, mac, _ip = made[vm.name]
                _plug(system.node(node), system.vm_ns(vm), iface, mac)

        list(pool.map(plug_node, sc.nodes))
        t_plugged = time.monotonic() - t0

        def up(vm: VmSpec) -> tuple[float, float, int]:
            ns = system.vm_ns(vm)
            _iface, _mac, ip = made[vm.name]
            left = max(10, int(deadline_s - (time.monotonic() - t0)))
            lease, discovers = _dhcp(ns, script, left)
            t_lease = time.monotonic() - t0
            if lease != ip:
                raise BenchFailure(f"{vm.name}: DHCP gave {lease}, the port has {ip}")
            target = ips[sc.target(vm).name]
            wait = max(10.0, deadline_s - (time.monotonic() - t0))
            if not vms.ping_until_reply(ns, target, wait):
                raise BenchFailure(f"{vm.name} ({ip}) got no reply from {target}")
            return t_lease, time.monotonic() - t0, discovers

        futures = {vm.name: pool.submit(up, vm) for vm in sc.ports}
        leases, pings = [], []
        for name, fut in futures.items():
            try:
                t_lease, t_ping, discovers = fut.result()
            except (BenchFailure, RuntimeError, subprocess.SubprocessError) as exc:
                result.failed_ports.append(f"{name}: {exc}")
                continue
            leases.append(t_lease)
            pings.append(t_ping)
            result.dhcp_retried += discovers > 1
        for vm in sc.ports:
            ips[vm.name] = made[vm.name][2]
    result.cpu_s = {n: round(cpu_seconds(pid) - before[n], 2) for n, pid in pids.items()}
    result.rss_peak_mb = {
        n: mb for n, pid in system.daemons().items() if (mb := rss_peak_mb(pid)) is not None
    }
    result.bulk = {
        "created_s": round(t_created, 2),
        "plugged_s": round(t_plugged, 2),
        "all_leased_s": round(max(leases), 2) if leases else None,
        "all_ping_s": round(max(pings), 2) if pings else None,
        "ping_p50_s": _s(tp.percentile(pings, 50)),
        "ping_p95_s": _s(tp.percentile(pings, 95)),
        "up": len(pings),
    }
    if result.failed_ports:
        result.problems.append(
            f"{len(result.failed_ports)} of {len(sc.ports)} ports did not come up: "
            + "; ".join(result.failed_ports[:3])
        )


def _s(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def bulk_rows(rf: SystemResult, ov: SystemResult | None) -> list[tuple[str, str, str, str, str]]:
    """The bulk figures as (figure, routeflow, raw, OVN, ratio) rows."""
    labels = {
        "created_s": "bulk: every port created (API)",
        "plugged_s": "  every VM plugged",
        "all_leased_s": "  every VM leased",
        "all_ping_s": "  every VM pinged, routed, across nodes",
        "ping_p50_s": "  first ping from the clock, p50",
        "ping_p95_s": "  first ping from the clock, p95",
    }
    rows = []
    for key, label in labels.items():
        a: Any = rf.bulk.get(key)
        b: Any = ov.bulk.get(key) if ov else None
        rows.append(
            (
                f"{label} (s)",
                "-" if a is None else f"{a:.2f}",
                "",
                "-" if b is None else f"{b:.2f}",
                "-" if tp.ratio(a, b) is None else f"{tp.ratio(a, b):.2f}x",
            )
        )
    return rows

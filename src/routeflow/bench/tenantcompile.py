"""`routeflow bench tenant-compile`: what a node agent's compiler costs, full and per change.

No switch and no daemon: the compiler alone on a synthetic cloud shaped like `bench
tenant`'s (two networks on one distributed router, Neutron's default security group with
its remote-group rule on every port), ``ports`` VIFs on the measured node and ``remote``
on another. Figures (CPU seconds of this process):

* **full compile**: ``compile_node`` of the whole node, memo cold;
* **per change, full**: what the agent did before incremental compilation, for one port
  coming up at the given size: ``compile_node`` and the set difference against the last
  output, for each of the three deltas a port brings (created; plugged here; bound and
  ACTIVE), averaged over ``changes`` ports;
* **per change, incremental**: ``NodeCompiler.update`` for the same deltas;
* **build, incremental**: every port added one at a time from an empty node (the
  agent's total while a benchmark plugs ``ports`` VMs).

Timings on a shared machine move with its load, which is printed beside them.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from routeflow.tenant import compiler
from routeflow.tenant.compiler import NodeContext, compile_node
from routeflow.tenant.incremental import NodeCompiler
from routeflow.tenant.model import (
    DEVICE_ROUTER_INTERFACE,
    KIND_OF,
    Change,
    Cloud,
    FixedIP,
    Kind,
    Network,
    Node,
    Object,
    Port,
    Router,
    Subnet,
)
from routeflow.tenant.sample import default_group

NODE = "n1"
NETS = ("net1", "net2")


def _mac(key: int) -> str:
    return "fa:16:3e:" + ":".join(f"{(key >> s) & 0xFF:02x}" for s in (16, 8, 0))


def base_objects() -> list[Object]:
    objs: list[Object] = [
        Node(id="n1", tunnel_ip="198.51.100.1"),
        Node(id="n2", tunnel_ip="198.51.100.2"),
        default_group("p", 1),
        Router(id="r1", project_id="p", key=1),
    ]
    for i, net in enumerate(NETS):
        objs.append(Network(id=net, project_id="p", segmentation_id=100 + i))
        objs.append(
            Subnet(
                id=f"s{net}",
                network_id=net,
                project_id="p",
                cidr=f"10.{i + 1}.0.0/16",
                gateway_ip=f"10.{i + 1}.0.1",
            )
        )
        objs.append(
            Port(
                id=f"ri-{net}",
                network_id=net,
                project_id="p",
                mac_address=_mac(0xFF0000 + i),
                fixed_ips=(FixedIP(f"s{net}", f"10.{i + 1}.0.1"),),
                device_id="r1",
                device_owner=DEVICE_ROUTER_INTERFACE,
                key=0xFF0000 + i,
            )
        )
    return objs


def vm_port(k: int, host: str) -> Port:
    """VM port ``k`` (0-based): unbound as the API creates it, or bound and ACTIVE."""
    i = k % 2
    net = NETS[i]
    n = k // 2 + 2
    return Port(
        id=f"p{k:05d}",
        network_id=net,
        project_id="p",
        mac_address=_mac(k + 1),
        fixed_ips=(FixedIP(f"s{net}", f"10.{i + 1}.{n // 250}.{n % 250 + 2}"),),
        device_owner="compute:nova",
        security_groups=("sg-p",),
        key=k + 1,
        binding_host_id=host,
        status="ACTIVE" if host else "DOWN",
    )


def cloud_of(ports: int, remote: int) -> tuple[Cloud, dict[str, int]]:
    objs = base_objects()
    bindings: dict[str, int] = {}
    for k in range(ports + remote):
        host = NODE if k < ports else "n2"
        objs.append(vm_port(k, host))
        if host == NODE:
            bindings[f"p{k:05d}"] = k + 1
    changes = [Change(kind=KIND_OF[type(o)], id=o.id, revision=1, obj=o) for o in objs]
    return Cloud.from_changes(1, changes), bindings


def _clear_memo() -> None:
    compiler._local_port.cache_clear()
    compiler._known_port.cache_clear()


@dataclass
class SizeResult:
    ports: int
    remote: int
    flows: int = 0
    full_compile_s: float = 0.0
    per_change_full_ms: float = 0.0
    per_change_incremental_ms: float = 0.0
    fragments_per_change: float = 0.0
    build_incremental_s: float | None = None
    load: list[float] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        inc = self.per_change_incremental_ms
        return round(self.per_change_full_ms / inc, 1) if inc else 0.0


Step = tuple[Cloud, dict[str, int], Change]


def _port_steps(cloud: Cloud, bindings: dict[str, int], k: int) -> list[Step]:
    """The three deltas of port ``k`` coming up on the node, with the bindings after each:
    created (unbound), its VIF plugged here, bound here and ACTIVE."""
    pid = f"p{k:05d}"
    out = []
    for host, plugged in (("", False), ("", True), (NODE, True)):
        change = Change(kind=Kind.PORT, id=pid, revision=cloud.revision + 1, obj=vm_port(k, host))
        cloud = cloud.apply(change)
        if plugged:
            bindings = {**bindings, pid: k + 1}
        out.append((cloud, bindings, change))
    return out


def measure(ports: int, remote: int, changes: int, build: bool) -> SizeResult:
    res = SizeResult(ports, remote)
    res.load.append(round(os.getloadavg()[0], 1))
    cloud, bindings = cloud_of(ports, remote)
    ctx = NodeContext(NODE, bindings)
    _clear_memo()
    t0 = time.process_time()
    flows = compile_node(cloud, ctx)
    res.full_compile_s = round(time.process_time() - t0, 3)
    res.flows = len(flows)
    # Each measured port comes up on the same cloud of ``ports``: the cost at this size.
    per_port = [_port_steps(cloud, bindings, ports + remote + k) for k in range(changes)]
    t_full = 0.0
    for steps in per_port:
        last = flows
        for new_cloud, new_bindings, _change in steps:
            t0 = time.process_time()
            want = compile_node(new_cloud, NodeContext(NODE, new_bindings))
            _ = want - last, last - want
            t_full += time.process_time() - t0
            last = want
    t_inc, recompiled = 0.0, 0
    for steps in per_port:
        inc = NodeCompiler()
        inc.update(cloud, ctx)  # outside the timing, as the full compile above
        for new_cloud, new_bindings, change in steps:
            t0 = time.process_time()
            inc.update(new_cloud, NodeContext(NODE, new_bindings), {(change.kind, change.id)})
            t_inc += time.process_time() - t0
            recompiled += inc.recompiled
    n = max(1, 3 * changes)
    res.per_change_full_ms = round(1000 * t_full / n, 3)
    res.per_change_incremental_ms = round(1000 * t_inc / n, 3)
    res.fragments_per_change = round(recompiled / n, 1)
    if build:
        _clear_memo()
        node = NodeCompiler()
        now, binds = cloud_of(0, 0)
        node.update(now, NodeContext(NODE, binds))
        t0 = time.process_time()
        for k in range(ports):
            for now, binds, change in _port_steps(now, binds, k):  # noqa: B020
                node.update(now, NodeContext(NODE, binds), {(change.kind, change.id)})
        res.build_incremental_s = round(time.process_time() - t0, 3)
        if node.flows != compile_node(now, NodeContext(NODE, binds)):
            raise AssertionError("the incremental compiler differs from a full compile")
    res.load.append(round(os.getloadavg()[0], 1))
    return res


def run(sizes: list[int], remote: float, changes: int, build: bool) -> list[SizeResult]:
    return [measure(n, int(n * remote), changes, build) for n in sizes]


def print_results(results: list[SizeResult], console: Any) -> None:
    from rich.table import Table

    t = Table(title="bench tenant-compile: one node's compiler, CPU of this process")
    cols = ("local ports (+remote)", "flows", "full compile", "per change: full",
            "per change: incremental", "speed-up", "fragments/change", "build 1 by 1",
            "load")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(
            f"{r.ports} (+{r.remote})",
            f"{r.flows:,}",
            f"{r.full_compile_s:.3f} s",
            f"{r.per_change_full_ms:.2f} ms",
            f"{r.per_change_incremental_ms:.3f} ms",
            f"{r.speedup:.0f}x",
            f"{r.fragments_per_change}",
            "-" if r.build_incremental_s is None else f"{r.build_incremental_s:.2f} s",
            " -> ".join(f"{x:.1f}" for x in r.load),
        )
    console.print(t)
    console.print(
        f"load average on {os.cpu_count()} cores shared with other work: timings are "
        "inflated alike; compare the columns.",
        markup=False,
    )


def to_json(results: list[SizeResult]) -> list[dict[str, Any]]:
    return [{**asdict(r), "speedup": r.speedup} for r in results]

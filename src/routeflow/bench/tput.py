"""`routeflow bench tput`: one TCP flow through the tenant data plane against plain veth.

In one run, each path measured with iperf3 (one TCP stream, ``seconds`` each, one
after the other so they never share the CPU; the figure is what the receiver got):

* ``veth``: two namespaces joined by a plain veth pair set up as a VM's is (MTU 1450,
  checksum offload off, which the userspace datapath needs, so no TSO): the baseline
  every ratio is to.
* ``veth, kernel defaults``: the same pair with MTU 1500 and offloads on (TSO/GSO: 64 KB
  segments through the kernel): what a veth does at its best, for scale.
* ``OVS userspace bridge, one node``: two such veths on one bridge of a private
  ovs-vswitchd on the userspace datapath (``datapath_type=netdev``, as every node's br-int)
  forwarding by ``NORMAL``: what the datapath itself costs, before any tunnel, conntrack
  or tenant pipeline.
* ``VM -> VM, same network, across nodes``: the cloud lab runner (lab/cloudrun.py: tenant
  server, node agents, a private ovs-vswitchd per node on the userspace datapath) with
  two compute nodes and a gateway node; VXLAN between the nodes, both ports in their
  project's ``default`` security group (conntrack in each port's zone on both nodes).
* ``VM -> VM, routed across nodes``: the distributed router (routed on the source node).
* ``VM -> outside through SNAT``: the VM's router has its gateway on an external network
  whose gateway node's external port (br-int ofport 101) is a veth to an "outside"
  namespace (the external subnet's gateway); the packet is routed on the VM's node,
  tunnelled to the gateway node and SNATed there (``ct(nat)``).
* ``outside -> VM through its floating IP``: DNAT on the gateway node, tunnelled to the
  VM's node, its ingress security group there.
* with ``ovn``: OVN's same-network and routed VM to VM paths, across two chassis on the
  userspace datapath with Geneve (bench/tenantsys.py's ``OvnSystem``, the default
  security group as ML2/OVN writes it: ACLs with conntrack).

Every path reports Gbit/s, the sender's retransmits, the ratio to ``veth``, the MTU of
its sender and the load average (1 min) before and after it. Everything started is
stopped by recorded pid and every namespace made is deleted, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "PathResult",
    "TputResult",
    "main_tput",
    "parse_iperf3",
    "result_rows",
    "run_tput_bench",
]

IPERF_PORT = 5201
BASELINE = "veth"
VETH_DEFAULTS = "veth, kernel defaults"
OVS_PLAIN = "OVS userspace bridge, one node (NORMAL, no tunnel, no SG)"
SAME_NET = "VM -> VM, same network, across nodes (VXLAN, SG)"
ROUTED = "VM -> VM, routed across nodes (VXLAN, SG, router)"
SNAT = "VM -> outside through SNAT (gateway node)"
FIP = "outside -> VM through its floating IP (gateway node)"
OVN_SAME_NET = "OVN: VM -> VM, same network, across nodes (Geneve, ACLs)"
OVN_ROUTED = "OVN: VM -> VM, routed across nodes (Geneve, ACLs, router)"
PATHS = (BASELINE, VETH_DEFAULTS, OVS_PLAIN, SAME_NET, ROUTED, SNAT, FIP)
OVN_PATHS = (OVN_SAME_NET, OVN_ROUTED)
OUTSIDE_IP = "203.0.113.1"
EXTERNAL_CIDR = "203.0.113.0/24"


class TputFailure(RuntimeError):
    """A path could not be set up or measured; the message says which and why."""


@dataclass
class PathResult:
    name: str
    gbps: float | None = None
    retransmits: int | None = None
    mtu: int | None = None
    seconds: float | None = None  # iperf3's own measured interval
    #: Every run's figure (``repeat`` of them); ``gbps`` is their median.
    runs_gbps: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # before, after
    problem: str | None = None


@dataclass
class TputResult:
    seconds: float
    #: Runs per path, one after the other; each path's figure is their median.
    repeat: int = 1
    paths: list[PathResult] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-min load: start, end
    cores: int = field(default_factory=lambda: os.cpu_count() or 0)
    tool: str = ""
    run_dir: str = ""
    command: str = ""
    #: Run tags (in every namespace name the run made) and every pid it started.
    tags: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def path(self, name: str) -> PathResult | None:
        return next((p for p in self.paths if p.name == name), None)

    @property
    def ok(self) -> bool:
        return bool(self.paths) and all(p.gbps and p.gbps > 0 for p in self.paths)


# --- pure: iperf3's output and the table ---------------------------------------------------


def parse_iperf3(text: str) -> tuple[float, int | None, float]:
    """(Gbit/s received, the sender's retransmits, seconds) from ``iperf3 -J`` output."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise TputFailure(f"iperf3 wrote no JSON: {text[-200:]!r}") from None
    if doc.get("error"):
        raise TputFailure(f"iperf3: {doc['error']}")
    end = doc.get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if "bits_per_second" not in received:
        raise TputFailure(f"iperf3 reported no received sum: {sorted(end)}")
    retr = sent.get("retransmits")
    return (
        received["bits_per_second"] / 1e9,
        int(retr) if retr is not None else None,
        float(received.get("seconds") or 0.0),
    )


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def result_rows(result: TputResult) -> list[tuple[str, str, str, str, str, str]]:
    """(path, Gbit/s, x veth, retransmits, MTU, load before -> after) per path."""
    base = result.path(BASELINE)
    rows = []
    for p in result.paths:
        r = ratio(p.gbps, base.gbps if base else None)
        figure = f"{p.gbps:.2f}" if p.gbps is not None else f"- ({p.problem})"
        if p.gbps is not None and len(p.runs_gbps) > 1:
            figure += f" ({min(p.runs_gbps):.2f}-{max(p.runs_gbps):.2f})"
        rows.append(
            (
                p.name,
                figure,
                f"{r:.2f}x" if r is not None else "-",
                str(p.retransmits) if p.retransmits is not None else "-",
                str(p.mtu) if p.mtu is not None else "-",
                " -> ".join(f"{x:.1f}" for x in p.load),
            )
        )
    return rows


# --- I/O -------------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float = 30, check: bool = True) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise TputFailure(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    return r.stdout


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _mtu(ns: str, dev: str) -> int:
    out = _run(["ip", "-n", ns, "-o", "link", "show", dev])
    return int(out.split(" mtu ", 1)[1].split()[0])


def iperf(server_ns: list[str], client_ns: list[str], dst: str, seconds: float,
          path: PathResult, pids: list[int], repeat: int = 1) -> None:  # fmt: skip
    """``repeat`` iperf3 tests from ``client_ns`` to a one-off server in ``server_ns`` (argv
    prefixes that enter the namespaces), one after the other; fills ``path`` with the
    median run; every server's pid goes to ``pids``."""
    path.load.append(_load())
    runs = []
    for _ in range(repeat):
        runs.append(_iperf_once(server_ns, client_ns, dst, seconds, pids))
    path.load.append(_load())
    path.runs_gbps = [round(r[0], 3) for r in runs]
    gbps, path.retransmits, path.seconds = sorted(runs)[(len(runs) - 1) // 2]  # the median
    path.gbps = round(gbps, 3)


def _iperf_once(server_ns: list[str], client_ns: list[str], dst: str, seconds: float,
                pids: list[int]) -> tuple[float, int | None, float]:  # fmt: skip
    server = subprocess.Popen(
        [*server_ns, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids.append(server.pid)
    try:
        out = ""
        for _ in range(20):  # until the server listens (its start is not announced)
            r = subprocess.run(
                [*client_ns, "iperf3", "-c", dst, "-p", str(IPERF_PORT), "-t", f"{seconds:g}",
                 "-J", "--connect-timeout", "3000"],
                capture_output=True, text=True, timeout=seconds + 60,
            )  # fmt: skip
            out = r.stdout
            if "Connection refused" not in out:  # (iperf3 -J exits 0 even then)
                break
            time.sleep(0.1)
        return parse_iperf3(out)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


@contextlib.contextmanager
def veth_pair(tag: str, mtu: int | None, offload: bool) -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair, 10.99.0.1/24 and 10.99.0.2/24."""
    a, b = f"tpa-{tag}", f"tpb-{tag}"
    made: list[str] = []
    try:
        for ns in (a, b):
            _run(["ip", "netns", "add", ns])
            made.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0",
              "netns", b])  # fmt: skip
        for ns, ip in ((a, "10.99.0.1/24"), (b, "10.99.0.2/24")):
            if mtu is not None:
                _run(["ip", "-n", ns, "link", "set", "eth0", "mtu", str(mtu)])
            _run(["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            if not offload:
                _run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"], check=False)
        yield a, b
    finally:
        for ns in made:
            _run(["ip", "netns", "delete", ns], check=False)


def measure_veth(result: TputResult, tag: str, mtu: int, offload: bool, name: str) -> None:
    path = PathResult(name)
    result.paths.append(path)
    try:
        with veth_pair(tag, None if offload else mtu, offload) as (a, b):
            path.mtu = _mtu(a, "eth0")
            iperf(["ip", "netns", "exec", b], ["ip", "netns", "exec", a], "10.99.0.2",
                  result.seconds, path, result.pids, result.repeat)  # fmt: skip
    except (TputFailure, OSError, subprocess.SubprocessError) as exc:
        path.problem = str(exc)


def measure_ovs(result: TputResult, tag: str, run_dir: str) -> None:
    """Two VMs (veths as the cloud lab plugs them: MTU 1450, tx offload off) on one
    bridge of a private ovs-vswitchd on the userspace datapath, forwarding by ``NORMAL``:
    what the datapath costs before any tunnel, conntrack or tenant pipeline."""
    from routeflow.lab.ovsnode import OvsNode

    path = PathResult(OVS_PLAIN)
    result.paths.append(path)
    node = OvsNode(f"tpo-{tag}", os.path.join(run_dir, "ovs"))
    try:
        node.start()
        node.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        node.ip("link", "set", "br0", "up")
        a, b = f"tpv1-{tag}", f"tpv2-{tag}"
        node.plug_vm(a, "v1", "02:00:00:00:00:01", "10.99.1.1/24", mtu=1450, bridge="br0")
        node.plug_vm(b, "v2", "02:00:00:00:00:02", "10.99.1.2/24", mtu=1450, bridge="br0")
        _until_pings(["ip", "netns", "exec", a, "ping", "-c", "1", "-W", "1", "10.99.1.2"],
                     "OVS bridge")  # fmt: skip
        path.mtu = _mtu(a, "eth0")
        iperf(["ip", "netns", "exec", b], ["ip", "netns", "exec", a], "10.99.1.2",
              result.seconds, path, result.pids, result.repeat)  # fmt: skip
    except Exception as exc:  # the other paths are still measured
        path.problem = f"{type(exc).__name__}: {exc}"
    finally:
        result.pids += [t.pid for t in node.procs.procs]
        node.stop()  # its daemons, the VMs' namespaces, its own
        shutil.rmtree(os.path.join(run_dir, "ovs"), ignore_errors=True)


def _cloud() -> Any:
    """Two compute nodes and a gateway node; one tenant, two networks on one router."""
    import msgspec

    from routeflow.lab.cloud import CloudSpec, validate_cloud

    spec = msgspec.convert(
        {
            "nodes": [{"name": "c1"}, {"name": "c2"}, {"name": "g1", "gateway": True}],
            "underlay": "198.51.100.0/24",
            "underlay_mtu": 1500,
            "tenants": [
                {
                    "name": "tput",
                    "networks": [
                        {"name": "net1", "cidr": "10.0.1.0/24"},
                        {"name": "net2", "cidr": "10.0.2.0/24"},
                    ],
                    "routers": [{"name": "r1", "networks": ["net1", "net2"]}],
                    "vms": [
                        {"name": "v1", "network": "net1", "node": "c1"},
                        {"name": "v2", "network": "net1", "node": "c2"},
                        {"name": "v3", "network": "net2", "node": "c2"},
                    ],
                }
            ],
        },
        CloudSpec,
    )
    problems: list[str] = []
    cloud = validate_cloud(spec, lambda path, msg: problems.append(f"{path}: {msg}"))
    if cloud is None:
        raise TputFailure("; ".join(problems))
    return cloud


def _external(run: Any, conn: Any, outside: str) -> str:
    """The external network on g1's external port, r1's gateway, ingress rules from
    anywhere, a floating IP for v2. Returns the floating IP."""
    run.nodes["g1"].add_external("eth0", outside)
    _run(["ip", "-n", outside, "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0"])
    pub = conn.network.create_network(name="public", is_router_external=True)
    conn.network.create_subnet(
        network_id=pub.id, name="public-v4", ip_version=4, cidr=EXTERNAL_CIDR,
        gateway_ip=OUTSIDE_IP, enable_dhcp=False,
        allocation_pools=[{"start": "203.0.113.10", "end": "203.0.113.100"}],
    )  # fmt: skip
    router = conn.network.find_router("r1")
    conn.network.update_router(router, external_gateway_info={"network_id": pub.id})
    sg = next(iter(conn.network.security_groups(name="default", project_id="tput")))
    for proto in ("icmp", "tcp"):
        conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", protocol=proto,
            remote_ip_prefix="0.0.0.0/0", ethertype="IPv4",
        )  # fmt: skip
    fip = conn.network.create_ip(floating_network_id=pub.id, port_id=run.vms["v2"].port_id)
    return str(fip.floating_ip_address)


def _until_pings(argv: list[str], what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while subprocess.run([*argv], capture_output=True, timeout=10).returncode != 0:
        if time.monotonic() > end:
            raise TputFailure(f"{what}: no ping answered within {timeout:.0f} s")


def measure_cloud(result: TputResult, run_dir: str, log_level: str,
                  progress: Callable[[str], None]) -> None:  # fmt: skip
    from routeflow.lab.cloudrun import CloudRun

    cloud = _cloud()
    run = CloudRun(cloud, os.path.join(run_dir, "cloud"), log_level=log_level)
    outside = f"out-{run.tag}"
    result.tags.append(run.tag)
    made_outside = False
    names = (SAME_NET, ROUTED, SNAT, FIP)
    paths = {n: PathResult(n) for n in names}
    result.paths.extend(paths.values())
    try:
        progress("cloud: nodes, tenant server, agents")
        run.start()
        conn = run.connect()
        ports = run.bootstrap(conn)
        run.plug_many([(vm.name, vm.node, ports[vm.name]) for vm in cloud.tenants[0].vms])
        missing = run.wait_active(list(run.vms.values()), conn)
        if missing:
            raise TputFailure(f"ports not ACTIVE: {', '.join(missing)}")
        for vm in run.vms.values():
            run.dhcp(vm)
        _run(["ip", "netns", "add", outside])
        made_outside = True
        _run(["ip", "-n", outside, "link", "set", "lo", "up"])
        fip = _external(run, conn, outside)
        v1, v2, v3 = (run.vms[n] for n in ("v1", "v2", "v3"))
        inside = {n: ["ip", "netns", "exec", v.ns] for n, v in run.vms.items()}
        out = ["ip", "netns", "exec", outside]
        _until_pings([*inside["v1"], "ping", "-c", "1", "-W", "1", v2.fixed_ip], "v1 -> v2")
        _until_pings([*inside["v1"], "ping", "-c", "1", "-W", "1", v3.fixed_ip], "v1 -> v3")
        _until_pings([*inside["v1"], "ping", "-c", "1", "-W", "1", OUTSIDE_IP], "v1 -> outside")
        _until_pings([*out, "ping", "-c", "1", "-W", "1", fip], "outside -> v2's floating IP")
        jobs = [
            (SAME_NET, inside["v2"], inside["v1"], v2.fixed_ip, v1.ns),
            (ROUTED, inside["v3"], inside["v1"], v3.fixed_ip, v1.ns),
            (SNAT, out, inside["v1"], OUTSIDE_IP, v1.ns),
            (FIP, inside["v2"], out, fip, outside),
        ]
        for name, server, client, dst, client_ns in jobs:
            progress(name)
            path = paths[name]
            path.mtu = _mtu(client_ns, "eth0")
            try:
                iperf(server, client, dst, result.seconds, path, result.pids, result.repeat)
            except (TputFailure, OSError, subprocess.SubprocessError) as exc:
                path.problem = str(exc)
    except Exception as exc:  # a broken run still reports what it measured
        for p in paths.values():
            if p.gbps is None and p.problem is None:
                p.problem = f"{type(exc).__name__}: {exc}"
    finally:
        if made_outside:
            _run(["ip", "netns", "delete", outside], check=False)
        run.keep_logs = not all(p.gbps for p in paths.values())
        result.pids += [t.pid for t in run.procs.procs]
        run.stop()


def measure_ovn(result: TputResult, run_dir: str, progress: Callable[[str], None]) -> None:
    """The same-network and routed paths through OVN (bench/tenantsys.py's OvnSystem: two
    chassis on the userspace datapath, Geneve, every port in a port group with ML2/OVN's
    default security group ACLs, a distributed logical router, OVN's native DHCP)."""
    from routeflow.bench import tenantplan as tp
    from routeflow.bench import vms
    from routeflow.bench.tenantsys import OvnSystem, bring_up_anchors

    sc = tp.scenario(2, 1, 0)
    system = OvnSystem(sc, os.path.join(run_dir, "ovn"), "geneve")
    result.tags.append(system.tag)
    paths = {n: PathResult(n) for n in OVN_PATHS}
    result.paths.extend(paths.values())
    try:
        progress("OVN: central, chassis")
        system.start()
        ips = bring_up_anchors(system, sc, vms.write_udhcpc_script(run_dir))
        a, b = sc.nodes[0], sc.nodes[1]
        by_name = {vm.name: vm for vm in sc.anchors}
        src = by_name[f"a-{tp.ROUTED[0]}-{a}"]
        jobs = [
            (OVN_SAME_NET, by_name[f"a-{tp.ROUTED[0]}-{b}"]),
            (OVN_ROUTED, by_name[f"a-{tp.ROUTED[1]}-{b}"]),
        ]
        client_ns = system.vm_ns(src)
        for name, dst in jobs:
            progress(name)
            path = paths[name]
            server_ns = system.vm_ns(dst)
            if not vms.ping_until_reply(client_ns, ips[dst.name], 30.0):
                path.problem = f"{src.name} got no ping reply from {dst.name}"
                continue
            path.mtu = _mtu(client_ns, "eth0")
            try:
                iperf(["ip", "netns", "exec", server_ns], ["ip", "netns", "exec", client_ns],
                      ips[dst.name], result.seconds, path, result.pids, result.repeat)  # fmt: skip
            except (TputFailure, OSError, subprocess.SubprocessError) as exc:
                path.problem = str(exc)
    except Exception as exc:  # a broken run still reports what it measured
        for p in paths.values():
            if p.gbps is None and p.problem is None:
                p.problem = f"{type(exc).__name__}: {exc}"
    finally:
        result.pids += [t.pid for t in system.procs.procs]
        system.stop()
        for vm in sc.anchors:  # the VMs' namespaces (their chassis' stop took their ports)
            _run(["ip", "netns", "delete", system.vm_ns(vm)], check=False)


def run_tput_bench(
    seconds: float,
    run_dir: str,
    *,
    repeat: int = 1,
    ovn: bool = False,
    log_level: str = "INFO",
    progress: Callable[[str], None] = lambda text: None,
) -> TputResult:
    if shutil.which("iperf3") is None:
        raise TputFailure("iperf3 is not installed (scripts/setup.sh system installs it)")
    os.makedirs(run_dir, exist_ok=True)
    tool = _run(["iperf3", "--version"]).split("\n")[0]
    result = TputResult(seconds=seconds, repeat=repeat, tool=tool, run_dir=run_dir)
    result.load.append(_load())
    tag = secrets.token_hex(2)
    result.tags.append(tag)
    progress(BASELINE)
    measure_veth(result, tag, 1450, offload=False, name=BASELINE)
    progress(VETH_DEFAULTS)
    measure_veth(result, tag, 1500, offload=True, name=VETH_DEFAULTS)
    progress(OVS_PLAIN)
    measure_ovs(result, tag, run_dir)
    measure_cloud(result, run_dir, log_level, progress)
    if ovn:
        measure_ovn(result, run_dir, progress)
    result.load.append(_load())
    return result


def print_result(result: TputResult, console: Any) -> None:
    from rich.table import Table

    runs = f", median of {result.repeat} runs (min-max)" if result.repeat > 1 else ""
    t = Table(title=f"bench tput: one TCP flow, {result.seconds:g} s per run{runs} ({result.tool})")
    for col in ("path", "Gbit/s", "x veth", "retransmits", "MTU", "load"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for row in result_rows(result):
        t.add_row(*row)
    console.print(t)
    console.print(
        f"load average (1 min) {' -> '.join(f'{x:.1f}' for x in result.load)} on "
        f"{result.cores} cores; the paths ran one after the other: compare ratios.",
        markup=False,
    )
    console.print(f"logs: {result.run_dir}", markup=False)
    console.print("[green]OK[/green]" if result.ok else "[red]FAIL[/red]")


def write_json(result: TputResult, path: str) -> None:
    with open(path, "w") as fh:
        json.dump({**asdict(result), "ok": result.ok}, fh, indent=1)


def main_tput(
    seconds: float,
    json_path: str | None,
    run_dir: str | None,
    console: Any,
    ovn: bool = True,
    repeat: int = 1,
) -> int:
    from routeflow.lab.runner import Terminated
    from routeflow.lab.scenarios import default_run_dir, install_signal_handlers

    run_dir = run_dir or default_run_dir("bench-tput")
    if ovn:
        from routeflow.bench.ovn import missing_tools

        missing = missing_tools()
        if missing:
            console.print(
                f"OVN is not installed ({', '.join(missing)} missing): "
                "apt-get install ovn-central ovn-host, or run with --no-ovn",
                markup=False,
            )
            return 2
    install_signal_handlers()
    try:
        with console.status("bench tput") as status:
            result = run_tput_bench(
                seconds,
                run_dir,
                repeat=repeat,
                ovn=ovn,
                progress=lambda text: status.update(f"bench tput: {text}"),
            )
    except TputFailure as exc:
        console.print(str(exc), markup=False)
        return 2
    except (KeyboardInterrupt, Terminated):
        console.print("interrupted; everything started was stopped", markup=False)
        return 130
    result.command = " ".join(sys.argv)
    print_result(result, console)
    if json_path:
        write_json(result, json_path)
    return 0 if result.ok else 1

"""`routeflow bench tenant`: tenant networks against the raw baseline and OVN, one run.

The job (bench/tenantplan.py) is done twice on this machine, one system after the other
so they never share the CPU: by routeflow (the cloud lab runner: tenant server with its
SQLite store, one node agent next to a private ovs-vswitchd per node, VXLAN) and by OVN
(bench/ovn.py: NB/SB ovsdb-servers, ovn-northd, one ovn-controller next to a private
ovs-vswitchd per chassis, Geneve or VXLAN). Both get the same nodes, networks, router,
VMs (bench/vms.py) and the same steps, and each figure is printed for both, with the
ratio:

1. **API rate**: ``api_ports`` port creates, one after the other, on a network with no
   VM. routeflow: one openstacksdk client against the tenant server (every create is in
   SQLite before it is answered), with its raw baseline, the same client against an HTTP
   stub that stores nothing (bench/apistub.py: the client's own ceiling). OVN: NB writes
   by one ``ovn-nbctl`` per port, by ``ovn-nbctl`` in daemon mode, and by a persistent
   OVSDB JSON-RPC connection (what ovsdbapp / ML2/OVN hold).
2. **Port to ping**: per measured port, from the create call: created (API answered),
   plugged (the VM's veth gets the MAC and joins br-int with the iface-id), bound (the
   API says ACTIVE / the LSP is ``up``, polled every 10 ms), DHCP lease (udhcpc), first
   ping reply from a VM of the other network on the next node (routed). p50/p95/max.
3. **Flows**: per node; routeflow's per port by cookie (own node, other nodes with its
   network, nodes that reach it through the router, anywhere else: must be 0), checked
   against the compiler's ``flows_per_port``; OVN's per port as the growth of every
   chassis' table over the measured ports. And the node with no port of the isolated
   network: its flows for that network (must be 0 for routeflow; shown for OVN).
4. CPU seconds of the control plane during step 2, peak RSS of its daemons.

Timings on a shared 2-core machine are inflated for both systems alike.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from routeflow.bench import tenantplan as tp
from routeflow.bench import vms
from routeflow.bench.tenantplan import PortTiming, Scenario, VmSpec

POLL_S = 0.01  # bound polling, both systems
API_WITH_NODES = "with the node agents"
API_ALONE = "server alone"
OVN_MTU = {"geneve": 1442, "vxlan": 1450}


class BenchFailure(RuntimeError):
    pass


@dataclass
class SystemResult:
    name: str
    setup_s: float | None = None
    #: method -> port creates per second
    api_rate: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    timings: list[PortTiming] = field(default_factory=list)
    failed_ports: list[str] = field(default_factory=list)
    #: measured ports whose first DHCP DISCOVER went unanswered (udhcpc retries after 1 s)
    dhcp_retried: int = 0
    flows_per_node: dict[str, int] = field(default_factory=dict)
    #: routeflow: tenantplan.FlowsPerPort.summary(); OVN: growth per port per chassis
    flows_per_port: dict[str, Any] = field(default_factory=dict)
    #: flows for the isolated network on the node with no port of it
    isolated_flows_elsewhere: int | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: What the run made on the host, all gone at the end (the smoke test checks).
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


@dataclass
class TenantBenchResult:
    nodes: int
    ports: int
    api_ports: int
    ovn_encap: str
    raw_api_rate: float | None = None
    routeflow: SystemResult = field(default_factory=lambda: SystemResult("routeflow"))
    ovn: SystemResult | None = None
    run_dir: str = ""
    command: str = ""
    #: 1-minute load average at the start and at the end (the machine may be shared)
    load: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        systems = [self.routeflow, *([self.ovn] if self.ovn else [])]
        return all(not s.problems and s.timings for s in systems)


# --- common steps ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_peak_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


class System:
    """One system under the benchmark: what differs between routeflow and OVN."""

    name = ""
    mtu = 1450

    def node(self, name: str) -> Any:
        """The node's OvsNode."""
        raise NotImplementedError

    def vm_ns(self, vm: VmSpec) -> str:
        raise NotImplementedError

    def create_port(self, vm: VmSpec) -> tuple[str, str, str]:
        """Create the port through the system's API: (iface-id, MAC, IP)."""
        raise NotImplementedError

    def bound(self, port: str) -> bool:
        raise NotImplementedError

    def daemons(self) -> dict[str, int]:
        return {}

    def record(self, result: SystemResult) -> None:
        """Note the namespaces and pids this system made (before it stops them)."""
        raise NotImplementedError


def bring_up_port(
    system: System, vm: VmSpec, script: str, ping: str | None
) -> tuple[PortTiming, str, int]:
    """One port from the create call to the first ping reply (if ``ping``): its timing,
    its IP and how many DHCP DISCOVERs the VM sent."""
    node = system.node(vm.node)
    ns = system.vm_ns(vm)
    vms.prepare(node, ns, system.mtu)
    t0 = time.monotonic()
    iface, mac, ip = system.create_port(vm)
    t_api = time.monotonic()
    vms.plug(node, ns, iface, mac)
    t_plug = time.monotonic()
    wait_for(lambda: system.bound(iface), 30, f"{vm.name} bound ({system.name})")
    t_bound = time.monotonic()
    lease, discovers = vms.dhcp(ns, script)
    t_lease = time.monotonic()
    if lease != ip:
        raise BenchFailure(f"{vm.name}: DHCP gave {lease}, the port has {ip}")
    if ping is not None and not vms.ping_until_reply(ns, ping):
        raise BenchFailure(f"{vm.name} ({ip}) got no reply from {ping}")
    t_ping = time.monotonic()
    timing = PortTiming(t_api - t0, t_plug - t0, t_bound - t0, t_lease - t0, t_ping - t0)
    return timing, ip, discovers


def bring_up_anchors(system: System, sc: Scenario, script: str) -> dict[str, str]:
    """The anchor VMs, the same way as measured ports but not timed: VM name -> IP."""
    ips: dict[str, str] = {}
    for vm in sc.anchors:
        _, ips[vm.name], _ = bring_up_port(system, vm, script, None)
    return ips


def measure_ports(
    system: System, sc: Scenario, script: str, result: SystemResult, ips: dict[str, str]
) -> None:
    """The measured ports, one at a time, each pinging its target anchor (in ``ips``)."""
    pids = system.daemons()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    for vm in sc.ports:
        try:
            timing, ips[vm.name], discovers = bring_up_port(
                system, vm, script, ips[sc.target(vm).name]
            )
        except (BenchFailure, RuntimeError, subprocess.SubprocessError) as exc:
            result.failed_ports.append(f"{vm.name}: {exc}")
            continue
        result.timings.append(timing)
        result.dhcp_retried += discovers > 1
    result.cpu_s = {n: round(cpu_seconds(pid) - before[n], 2) for n, pid in pids.items()}
    result.rss_peak_mb = {
        n: mb for n, pid in system.daemons().items() if (mb := rss_peak_mb(pid)) is not None
    }
    result.latency_ms = tp.summarize(result.timings)
    if result.failed_ports:
        result.problems.append(
            f"{len(result.failed_ports)} of {len(sc.ports)} ports did not come up: "
            + "; ".join(result.failed_ports[:3])
        )


def metadata_flows(dump: str, key: int) -> int:
    """Flow lines of ``dump`` that match ``metadata=key``."""
    pattern = re.compile(rf"\bmetadata=0x{key:x}\b(?!/)")
    return sum(1 for line in dump.splitlines() if pattern.search(line.split("actions=")[0]))


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# --- the raw baseline: the SDK against a stub -------------------------------------------


def sdk_connect(url: str, token: str) -> Any:
    import openstack

    return openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": url, "token": token},
        network_endpoint_override=url + "/",
        region_name="RegionOne",
    )


def sdk_port_rate(conn: Any, network_id: str, count: int, prefix: str) -> float:
    t0 = time.monotonic()
    for i in range(count):
        conn.network.create_port(network_id=network_id, name=f"{prefix}{i}")
    return rate(count, time.monotonic() - t0)


def raw_api_rate(count: int) -> float:
    """The same openstacksdk client against bench/apistub.py (stores nothing)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "routeflow.bench.apistub", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": _src_path()},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            raise BenchFailure("the API stub did not start")
        conn = sdk_connect(f"http://127.0.0.1:{line[1]}", "raw")
        return sdk_port_rate(conn, "stub-network", count, "raw")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_alone_rate(count: int, run_dir: str) -> float:
    """The same client against ``routeflow tenant server`` with its SQLite store and no
    node connected: the API's own rate, without the changes fanned out to node agents."""
    import socket
    import urllib.request

    os.makedirs(run_dir, exist_ok=True)
    token = secrets.token_hex(16)
    token_file = os.path.join(run_dir, "token")
    with open(token_file, "w") as fh:
        fh.write(token + "\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "routeflow.cli", "tenant", "server", "--listen", f"127.0.0.1:{port}",
        "--store", f"sqlite:{os.path.join(run_dir, 'tenant.db')}", "--token-file", token_file,
        "--log-level", "WARNING",
    ]  # fmt: skip
    with open(os.path.join(run_dir, "tenant-server.log"), "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": _src_path()},
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise BenchFailure(f"the tenant server exited; see {run_dir}/tenant-server.log")
            try:
                urllib.request.urlopen(url + "/", timeout=1).read()
                return True
            except OSError:
                return False

        wait_for(up, 60, "the tenant server")
        conn = sdk_connect(url, token)
        net = conn.network.create_network(name=tp.BULK)
        conn.network.create_subnet(
            network_id=net.id, cidr=tp.CIDRS[tp.BULK], ip_version=4, name=tp.BULK
        )
        return sdk_port_rate(conn, net.id, count, "alone")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _src_path() -> str:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    old = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + old if old else "")


# --- routeflow -------------------------------------------------------------------------


_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


def cookies(dump: str) -> list[int]:
    """The cookie of every flow line of ``ovs-ofctl dump-flows``."""
    return [int(m.group(1), 16) for line in dump.splitlines() if (m := _COOKIE.search(line))]


def count_by_port(
    dumps: dict[str, str], port_keys: dict[int, str]
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(port id -> node -> flows with that port's cookie, node -> tenant flows)."""
    from routeflow.tenant import pipeline as p

    per_port: dict[str, dict[str, int]] = {}
    per_node: dict[str, int] = {}
    for node, text in sorted(dumps.items()):
        for cookie in cookies(text):
            kind = p.cookie_kind(cookie)
            if kind is None:
                continue
            per_node[node] = per_node.get(node, 0) + 1
            if kind[0] is p.Kind.PORT and kind[1] in port_keys:
                per = per_port.setdefault(port_keys[kind[1]], {})
                per[node] = per.get(node, 0) + 1
    return per_port, per_node


class RouteflowSystem(System):
    name = "routeflow"

    def __init__(self, sc: Scenario, run_dir: str, log_level: str) -> None:
        import msgspec

        from routeflow.lab.cloud import CloudSpec, validate_cloud
        from routeflow.lab.cloudrun import CloudRun

        spec = msgspec.convert(
            {"nodes": [{"name": n} for n in sc.nodes], "underlay": "198.51.100.0/24"}, CloudSpec
        )
        errors: list[str] = []
        lab = validate_cloud(spec, lambda path, msg: errors.append(f"{path}: {msg}"))
        if lab is None or errors:
            raise BenchFailure(f"cloud for the benchmark: {'; '.join(errors)}")
        self.sc = sc
        self.run = CloudRun(lab, run_dir, log_level=log_level, remove_run_dir=False)
        self.networks: dict[str, str] = {}
        self.ports: dict[str, str] = {}  # VM name -> port id
        self.conn: Any = None

    def start(self) -> None:
        self.run.start()
        # Every agent holds its switch before the first VIF is plugged: an agent reads the
        # VIFs at start and on port-status events, which only a connected switch sends.
        for name in self.sc.nodes:
            wait_for(functools.partial(self._switch_connected, name), 60, f"{name}'s agent")
        self.conn = self.run.connect()
        net = self.conn.network
        subnets = {}
        for name in (*self.sc.networks(), tp.BULK):
            self.networks[name] = net.create_network(name=name).id
            subnets[name] = net.create_subnet(
                network_id=self.networks[name], cidr=tp.CIDRS[name], ip_version=4, name=name
            ).id
        router = net.create_router(name="r1")
        for name in tp.ROUTED:
            net.add_interface_to_router(router, subnet_id=subnets[name])
        self.mtu = int(net.get_network(self.networks["net1"]).mtu or 1450)

    def _switch_connected(self, node: str) -> bool:
        out = self.node(node).vsctl("--columns=is_connected", "--bare", "list", "controller")
        return out.split() == ["true"]

    def stop(self) -> None:
        self.run.stop()

    def node(self, name: str) -> Any:
        return self.run.nodes[name]

    def vm_ns(self, vm: VmSpec) -> str:
        return f"rv{vm.index}-{self.run.tag}"

    def create_port(self, vm: VmSpec) -> tuple[str, str, str]:
        port = self.conn.network.create_port(network_id=self.networks[vm.network], name=vm.name)
        self.ports[vm.name] = port.id
        return port.id, port.mac_address, port.fixed_ips[0]["ip_address"]

    def bound(self, port: str) -> bool:
        return bool(self.conn.network.get_port(port).status == "ACTIVE")

    def daemons(self) -> dict[str, int]:
        return {
            t.name: t.pid
            for t in self.run.procs.procs
            if t.name.startswith(("agent-", "tenant-server")) and t.alive()
        }

    def record(self, result: SystemResult) -> None:
        result.namespaces = sorted(
            {self.run.underlay.ns, *(n.ns for n in self.run.nodes.values())}
            | {self.vm_ns(vm) for vm in (*self.sc.anchors, *self.sc.ports)}
        )
        result.pids = sorted(t.pid for t in self.run.procs.procs)

    def api_rate(self, count: int) -> float:
        return sdk_port_rate(self.conn, self.networks[tp.BULK], count, "bulk")

    def flows(self, sc: Scenario, result: SystemResult) -> None:
        from routeflow.tenant import compiler
        from routeflow.tenant import pipeline as p

        cloud = self.run.snapshot()
        dumps = {n: self.node(n).dump_flows() for n in sc.nodes}
        keys = {port.key: port.id for port in cloud.ports.values() if port.is_vif}
        seen, result.flows_per_node = count_by_port(dumps, keys)
        contexts = {n: compiler.NodeContext(n, self.node(n).bindings()) for n in sc.nodes}
        want = compiler.flows_per_port(cloud, contexts)
        if seen != want:
            diff = sorted(k for k in set(seen) | set(want) if seen.get(k) != want.get(k))
            result.problems.append(
                f"flows per port on the switches differ from the compiler's for "
                f"{len(diff)} ports, e.g. {diff[0]}: {seen.get(diff[0])} != {want.get(diff[0])}"
            )
        by_id = {pid: vm for vm in (*sc.anchors, *sc.ports) if (pid := self.ports.get(vm.name))}
        vm_of = {pid: by_id[pid] for pid in by_id}
        nodes_with = {net: sc.nodes_of(net) for net in sc.networks()}
        routed = {net: set(tp.ROUTED) - {net} for net in tp.ROUTED}
        summary = tp.flows_per_port(
            seen,
            {pid: v.node for pid, v in vm_of.items()},
            {pid: v.network for pid, v in vm_of.items()},
            nodes_with,
            routed,
        )
        result.flows_per_port = summary.summary()
        if summary.elsewhere:
            result.problems.append(
                f"{summary.elsewhere} port flows on nodes with no port of their network"
            )
        # The node with no port of the isolated network: no flow of it, of any kind.
        last = sc.nodes[-1]
        iso = cloud.networks[self.networks[tp.ISOLATED]]
        iso_keys = {port.key for port in cloud.ports_of(iso.id)}
        iso_cookies = {p.cookie_of(p.Kind.NETWORK, iso.segmentation_id)} | {
            p.cookie_of(p.Kind.PORT, k) for k in iso_keys
        }
        text = dumps[last]
        result.isolated_flows_elsewhere = sum(
            1 for c in cookies(text) if c in iso_cookies
        ) + metadata_flows(text, iso.segmentation_id)
        if result.isolated_flows_elsewhere:
            result.problems.append(
                f"node {last} has {result.isolated_flows_elsewhere} flows for network "
                f"{tp.ISOLATED} but no port of it"
            )


# --- OVN -------------------------------------------------------------------------------


class OvnSystem(System):
    name = "OVN"

    def __init__(self, sc: Scenario, run_dir: str, encap: str) -> None:
        from routeflow.bench import ovn
        from routeflow.lab.ovsnode import Underlay
        from routeflow.lab.procs import ProcessSet

        self.ovn = ovn
        self.sc = sc
        self.encap = encap
        self.mtu = OVN_MTU[encap]
        self.tag = secrets.token_hex(2)
        self.procs = ProcessSet()
        self.central = ovn.OvnCentral(os.path.join(run_dir, "central"), self.procs)
        self.underlay = Underlay(f"ovul-{self.tag}")
        self.chassis = {
            n: ovn.OvnChassis(n, f"ovc-{n}-{self.tag}", os.path.join(run_dir, n), self.procs)
            for n in sc.nodes
        }
        self.switches: dict[str, str] = {}
        self.dhcp: dict[str, str] = {}
        self.rpc: Any = None

    def start(self) -> None:
        ovn = self.ovn
        self.central.start()
        self.underlay.start()
        for i, (_name, ch) in enumerate(self.chassis.items()):
            ch.start(self.underlay, f"198.51.100.{i + 1}/24", self.central, self.encap)
        ovn.wait_chassis(self.central, list(self.chassis))
        # As the cloud lab runner does for routeflow: every peer's tunnel endpoint in each
        # node's OVS tunnel neighbour table (OVS would drop a first packet resolving it).
        nodes = [ch.node for ch in self.chassis.values()]
        macs = [n.ip("-o", "link", "show", "br-ul").split("link/ether ", 1)[1].split()[0]
                for n in nodes]  # fmt: skip
        for i, node in enumerate(nodes):
            for j, mac in enumerate(macs):
                if j != i:
                    node.appctl("tnl/neigh/set", "br-ul", f"198.51.100.{j + 1}", mac)
        nb = self.central.nbctl
        nb("lr-add", "r1")
        for k, name in enumerate((*self.sc.networks(), tp.BULK, "bulk-nbctl", "bulk-daemon")):
            cidr = tp.CIDRS.get(name, tp.CIDRS[tp.BULK])
            nb("ls-add", name, "--", "set", "logical_switch", name, f"other_config:subnet={cidr}")
            self.switches[name] = nb("--bare", "--columns=_uuid", "find", "logical_switch",
                                     f"name={name}").strip()  # fmt: skip
            if name not in self.sc.networks():
                continue
            gw = tp.gateway(name)
            rmac = tp.mac(0xFF0000 + k)
            if name in tp.ROUTED:
                nb("lrp-add", "r1", f"r1-{name}", rmac, f"{gw}/{tp.prefixlen(name)}")
                nb(
                    "lsp-add", name, f"{name}-r1", "--", "lsp-set-type", f"{name}-r1", "router",
                    "--", "lsp-set-addresses", f"{name}-r1", "router",
                    "--", "lsp-set-options", f"{name}-r1", f"router-port=r1-{name}",
                )  # fmt: skip
            uuid = nb("create", "dhcp_options", f"cidr={tp.CIDRS[name]}").strip()
            nb(
                "dhcp-options-set-options", uuid, "lease_time=3600", f"router={gw}",
                f"server_id={gw}", f"server_mac={rmac}", f"mtu={self.mtu}",
            )  # fmt: skip
            self.dhcp[name] = uuid
        self.central.nbctl("--wait=hv", "sync")
        self.rpc = self.central.rpc()

    def stop(self) -> None:
        if self.rpc is not None:
            with contextlib.suppress(OSError):
                self.rpc.close()
        for ch in self.chassis.values():
            with contextlib.suppress(Exception):
                ch.stop()
        with contextlib.suppress(Exception):
            self.underlay.stop()
        with contextlib.suppress(Exception):
            self.central.stop()
        self.procs.stop_all()

    def node(self, name: str) -> Any:
        return self.chassis[name].node

    def vm_ns(self, vm: VmSpec) -> str:
        return f"ovm{vm.index}-{self.tag}"

    def create_port(self, vm: VmSpec) -> tuple[str, str, str]:
        mac, ip = tp.mac(vm.index), tp.address(vm.network, vm.index)
        ops = self.ovn.lsp_insert_ops(
            self.switches[vm.network], vm.name, mac, ip, self.dhcp[vm.network]
        )
        self.rpc.transact("OVN_Northbound", *ops)
        return vm.name, mac, ip

    def bound(self, port: str) -> bool:
        (res,) = self.rpc.transact(
            "OVN_Northbound",
            {
                "op": "select",
                "table": "Logical_Switch_Port",
                "where": [["name", "==", port]],
                "columns": ["up"],
            },
        )
        return bool(res["rows"] and res["rows"][0]["up"] is True)

    def daemons(self) -> dict[str, int]:
        out = dict(self.central.pids())
        out.pop("ovn-nbctl-daemon", None)
        for name, ch in self.chassis.items():
            pid = ch.controller_pid()
            if pid is not None:
                out[f"ovn-controller@{name}"] = pid
        return out

    def record(self, result: SystemResult) -> None:
        result.namespaces = sorted(
            {self.underlay.ns, *(ch.node.ns for ch in self.chassis.values())}
            | {self.vm_ns(vm) for vm in (*self.sc.anchors, *self.sc.ports)}
        )
        result.pids = sorted(t.pid for t in self.procs.procs)

    def api_rates(self, count: int) -> dict[str, float]:
        """NB port creates/s three ways, each on a switch of its own."""
        out: dict[str, float] = {}
        base = 100_000
        t0 = time.monotonic()
        for i in range(count):
            name = f"bn{i}"
            mac, ip = tp.mac(base + i), tp.address(tp.BULK, 1000 + i)
            self.central.nbctl(
                "lsp-add", "bulk-nbctl", name, "--", "lsp-set-addresses", name, f"{mac} {ip}"
            )
        out["one ovn-nbctl per port"] = rate(count, time.monotonic() - t0)
        self.central.start_nbctl_daemon()
        t0 = time.monotonic()
        for i in range(count):
            name = f"bd{i}"
            mac, ip = tp.mac(base + count + i), tp.address(tp.BULK, 1000 + count + i)
            self.central.nbctl(
                "lsp-add", "bulk-daemon", name, "--", "lsp-set-addresses", name, f"{mac} {ip}",
                daemon=True,
            )  # fmt: skip
        out["ovn-nbctl daemon"] = rate(count, time.monotonic() - t0)
        t0 = time.monotonic()
        for i in range(count):
            mac, ip = tp.mac(base + 2 * count + i), tp.address(tp.BULK, 1000 + 2 * count + i)
            ops = self.ovn.lsp_insert_ops(self.switches[tp.BULK], f"bj{i}", mac, ip, None)
            self.rpc.transact("OVN_Northbound", *ops)
        out["OVSDB JSON-RPC"] = rate(count, time.monotonic() - t0)
        return out

    def flows_total(self) -> dict[str, int]:
        return {n: len(ch.flows()) for n, ch in self.chassis.items()}

    def isolated_flows(self, node: str) -> int:
        """Flows on ``node`` matching the isolated switch's datapath (metadata)."""
        uuid = self.switches[tp.ISOLATED]
        out = self.central.sbctl(
            "--bare", "--columns=tunnel_key", "find", "datapath_binding",
            f"external_ids:logical-switch={uuid}",
        ).strip()  # fmt: skip
        if not out:
            return 0
        return metadata_flows("\n".join(self.chassis[node].flows()), int(out))


# --- the run ---------------------------------------------------------------------------


def run_routeflow(sc: Scenario, run_dir: str, script: str, log_level: str) -> SystemResult:
    result = SystemResult("routeflow")
    system: RouteflowSystem | None = None
    t0 = time.monotonic()
    try:
        system = RouteflowSystem(sc, os.path.join(run_dir, "routeflow"), log_level)
        system.start()
        result.setup_s = round(time.monotonic() - t0, 2)
        if sc.api_ports:
            result.api_rate[API_WITH_NODES] = system.api_rate(sc.api_ports)
        ips = bring_up_anchors(system, sc, script)
        measure_ports(system, sc, script, result, ips)
        system.flows(sc, result)
    except Exception as exc:  # a broken run still reports what it measured
        result.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if system is not None:
            system.record(result)
            system.stop()
    return result


def run_ovn(sc: Scenario, run_dir: str, script: str, encap: str) -> SystemResult:
    result = SystemResult("OVN")
    system = OvnSystem(sc, os.path.join(run_dir, "ovn"), encap)
    t0 = time.monotonic()
    try:
        system.start()
        result.setup_s = round(time.monotonic() - t0, 2)
        if sc.api_ports:
            result.api_rate = system.api_rates(sc.api_ports)
            system.central.nbctl("--wait=hv", "sync", timeout=300)
        before = system.flows_total()
        ips = bring_up_anchors(system, sc, script)
        system.central.nbctl("--wait=hv", "sync")
        mid = system.flows_total()  # what the measured ports add to every chassis, below
        measure_ports(system, sc, script, result, ips)
        system.central.nbctl("--wait=hv", "sync")
        after = system.flows_total()
        result.flows_per_node = after
        n = max(1, len(result.timings))
        growth = [(after[c] - mid[c]) / n for c in after]
        result.flows_per_port = {
            "per_port_on_every_chassis": round(sum(growth) / len(growth), 1),
            "before_ports": before,
        }
        result.isolated_flows_elsewhere = system.isolated_flows(sc.nodes[-1])
    except Exception as exc:
        result.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        system.record(result)
        system.stop()
    return result


def run_tenant_bench(
    nodes: int,
    ports: int,
    api_ports: int,
    run_dir: str,
    *,
    ovn: bool = True,
    encap: str = "geneve",
    log_level: str = "INFO",
    progress: Callable[[str], None] = lambda text: None,
) -> TenantBenchResult:
    sc = tp.scenario(nodes, ports, api_ports)
    os.makedirs(run_dir, exist_ok=True)
    result = TenantBenchResult(nodes, ports, api_ports, encap, run_dir=run_dir)
    result.load.append(round(os.getloadavg()[0], 1))
    script = vms.write_udhcpc_script(run_dir)
    if api_ports:
        progress("raw: openstacksdk against a stub")
        result.raw_api_rate = raw_api_rate(api_ports)
    progress("routeflow")
    result.routeflow = run_routeflow(sc, run_dir, script, log_level)
    if api_ports:
        progress("routeflow: the tenant server alone")
        try:
            alone = server_alone_rate(api_ports, os.path.join(run_dir, "server-alone"))
            result.routeflow.api_rate[API_ALONE] = alone
        except (BenchFailure, OSError) as exc:
            result.routeflow.problems.append(f"the tenant server alone: {exc}")
    if ovn:
        progress("OVN")
        result.ovn = run_ovn(sc, run_dir, script, encap)
    result.load.append(round(os.getloadavg()[0], 1))
    return result


# --- output ----------------------------------------------------------------------------


def _fmt(value: float | int | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _pair(d: dict[str, float | None]) -> str:
    return f"{_fmt(d.get('p50'))} / {_fmt(d.get('p95'))}"


def result_rows(result: TenantBenchResult) -> list[tuple[str, str, str, str, str]]:
    """(figure, routeflow, raw baseline, OVN, routeflow / OVN) rows of the table."""
    rf, ov = result.routeflow, result.ovn
    rows: list[tuple[str, str, str, str, str]] = []
    rf_rate = rf.api_rate.get(API_WITH_NODES)
    ov_rates = sorted(ov.api_rate.items(), key=lambda kv: -kv[1]) if ov else []
    first = ("API port creates/s", _fmt(rf_rate), f"{_fmt(result.raw_api_rate)} (stub)")
    if not ov_rates:
        rows.append((*first, "-", "-"))
    for k, (method, value) in enumerate(ov_rates):
        rows.append(
            (
                *(first if k == 0 else ("", "", "")),
                f"{_fmt(value)} {method}",
                _fmt(tp.ratio(rf_rate, value), "x", 2),
            )
        )
    alone = rf.api_rate.get(API_ALONE)
    if alone is not None:
        rows.append(("  routeflow: the server alone, no node", _fmt(alone), "", "", ""))
    labels = {
        "api": "create -> API answered",
        "plugged": "  -> VIF plugged",
        "bound": "  -> bound (ACTIVE / up)",
        "lease": "  -> DHCP lease",
        "ping": "  -> first ping, routed, across nodes",
    }
    for step in tp.STEPS:
        a = rf.latency_ms.get(step, {})
        b = ov.latency_ms.get(step, {}) if ov else {}
        rows.append(
            (
                f"{labels[step]} (p50 / p95 ms)",
                _pair(a),
                "",
                _pair(b) if ov else "-",
                _fmt(tp.ratio(a.get("p95"), b.get("p95")), "x", 2) if ov else "-",
            )
        )
    rows.append(
        (
            "  ports whose first DHCP DISCOVER was lost",
            str(rf.dhcp_retried),
            "",
            str(ov.dhcp_retried) if ov else "-",
            "",
        )
    )
    rows.append(
        (
            "ports that did not come up",
            str(len(rf.failed_ports)),
            "",
            str(len(ov.failed_ports)) if ov else "-",
            "",
        )
    )
    rf_total = sum(rf.flows_per_node.values())
    ov_total = sum(ov.flows_per_node.values()) if ov else None
    rows.append(
        (
            "flows per node",
            " ".join(str(c) for c in rf.flows_per_node.values()),
            "",
            " ".join(str(c) for c in ov.flows_per_node.values()) if ov else "-",
            _fmt(tp.ratio(rf_total, ov_total), "x", 2),
        )
    )
    fp = rf.flows_per_port
    rows.append(
        (
            "flows per port: own node / same-net node",
            f"{_fmt(fp.get('own_median'), '', 0)} / {_fmt(fp.get('same_network_median'), '', 0)}",
            "",
            f"{_fmt(ov.flows_per_port.get('per_port_on_every_chassis'))} on every node"
            if ov
            else "-",
            "",
        )
    )
    rows.append(
        (
            "flows of a net on a node without it",
            f"{_fmt(rf.isolated_flows_elsewhere, '', 0)} (+{fp.get('elsewhere_total', '-')})",
            "",
            _fmt(ov.isolated_flows_elsewhere, "", 0) if ov else "-",
            "",
        )
    )
    rf_cpu, ov_cpu = sum(rf.cpu_s.values()), (sum(ov.cpu_s.values()) if ov else None)
    rows.append(
        (
            "control plane CPU, ports coming up",
            f"{rf_cpu:.2f} s",
            "",
            _fmt(ov_cpu, " s", 2),
            _fmt(tp.ratio(rf_cpu, ov_cpu), "x", 2),
        )
    )
    rf_rss = sum(rf.rss_peak_mb.values())
    ov_rss = sum(ov.rss_peak_mb.values()) if ov else None
    rows.append(
        (
            "control plane peak RSS, all daemons",
            f"{rf_rss:.0f} MB",
            "",
            _fmt(ov_rss, " MB", 0),
            _fmt(tp.ratio(rf_rss, ov_rss), "x", 2),
        )
    )
    rows.append(
        (
            "bring-up: nodes, daemons, networks",
            _fmt(rf.setup_s, " s", 2),
            "",
            _fmt(ov.setup_s if ov else None, " s", 2),
            "",
        )
    )
    return rows


def print_result(result: TenantBenchResult, console: Any) -> None:
    from rich.table import Table

    t = Table(
        title=f"bench tenant: {result.nodes} nodes, {result.ports} ports one at a time, "
        f"{result.api_ports} for the API rate"
        + (f"; OVN with {result.ovn_encap}" if result.ovn else "")
    )
    for col in ("figure", "routeflow", "raw", "OVN", "rf/OVN"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for row in result_rows(result):
        t.add_row(*row)
    console.print(t)
    for s in (result.routeflow, result.ovn):
        if s is None:
            continue
        for name, mb in sorted(s.rss_peak_mb.items()):
            console.print(
                f"  {s.name}: {name} peak RSS {mb:.1f} MB, CPU {s.cpu_s.get(name, 0):.2f} s",
                markup=False,
            )
        for problem in s.problems:
            console.print(f"[red]{s.name}: {problem}[/red]")
    if result.routeflow.dhcp_retried:
        console.print(
            f"routeflow: {result.routeflow.dhcp_retried} VMs lost their first DHCP DISCOVER "
            "(udhcpc retries after 1 s): the port was ACTIVE before its flows were on its "
            "node (OVN sets up only once ovn-controller installed them)",
            markup=False,
        )
    console.print(
        "raw: the same openstacksdk client against an HTTP stub that stores nothing. "
        "Both systems ran one after the other (load average "
        + " -> ".join(f"{x:.1f}" for x in result.load)
        + f" on {os.cpu_count()} cores): compare ratios.",
        markup=False,
    )
    console.print(f"logs: {result.run_dir}", markup=False)
    console.print("[green]OK[/green]" if result.ok else "[red]FAIL[/red]")


def write_json(result: TenantBenchResult, path: str) -> None:
    with open(path, "w") as fh:
        json.dump({**asdict(result), "ok": result.ok}, fh, indent=1)


def main_tenant(
    nodes: int,
    ports: int,
    api_ports: int,
    ovn: bool,
    encap: str,
    json_path: str | None,
    run_dir: str | None,
    log_level: str,
    console: Any,
) -> int:
    from routeflow.lab.scenarios import default_run_dir, install_signal_handlers

    run_dir = run_dir or default_run_dir(f"bench-tenant-{nodes}x{ports}")
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
    from routeflow.lab.runner import Terminated

    install_signal_handlers()
    try:
        with console.status("bench tenant") as status:
            result = run_tenant_bench(
                nodes,
                ports,
                api_ports,
                run_dir,
                ovn=ovn,
                encap=encap,
                log_level=log_level,
                progress=lambda text: status.update(f"bench tenant: {text}"),
            )
    except (KeyboardInterrupt, Terminated):
        console.print("interrupted; everything started was stopped", markup=False)
        return 130
    result.command = " ".join(sys.argv)
    print_result(result, console)
    if json_path:
        write_json(result, json_path)
    return 0 if result.ok else 1

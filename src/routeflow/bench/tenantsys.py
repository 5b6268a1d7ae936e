"""The two systems `routeflow bench tenant` compares, and the steps both go through
(thin I/O).

``RouteflowSystem`` is the cloud lab runner (lab/cloudrun.py) with the benchmark's
networks and router made through the API; ``OvnSystem`` is bench/ovn.py's central and
chassis with the same networks, router and DHCP made through the NB. Both answer the
same few questions (create a port, is it bound, which node, which namespace), so
``bring_up_port`` times them with the same steps and the same VMs (bench/vms.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from typing import Any

from routeflow.bench import tenantplan as tp
from routeflow.bench import vms
from routeflow.bench.tenantplan import (
    PortTiming,
    Scenario,
    SystemResult,
    VmSpec,
    cookies,
    count_by_port,
    metadata_flows,
)

POLL_S = 0.01  # bound polling, both systems
OVN_MTU = {"geneve": 1442, "vxlan": 1450}


class BenchFailure(RuntimeError):
    pass


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


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


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


# --- routeflow -------------------------------------------------------------------------


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
        # The ports' security group, as routeflow's API gives every port its project's default.
        nb("pg-add", ovn.DEFAULT_SG)
        for direction, priority, match, verdict in ovn.DEFAULT_SG_ACLS:
            nb("acl-add", ovn.DEFAULT_SG, direction, priority, match, verdict)
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
            self.switches[vm.network], vm.name, mac, ip, self.dhcp[vm.network], self.ovn.DEFAULT_SG
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

"""A cloud lab brought up for real (thin I/O): nodes, tenant server, node agents, VMs.

``CloudRun`` starts, in order: the underlay (a Linux bridge in its own namespace), one
``OvsNode`` per compute node (private ovsdb-server/ovs-vswitchd, br-ul with the tunnel
address, br-int whose controller is set at creation), the tenant server (SQLite store
and token file in the run directory, node link on a unix socket) and one
``routeflow tenant node`` agent per node inside the node's namespace. ``bootstrap()``
creates the lab file's tenants through the Neutron API with openstacksdk, as any
client would; ``plug()`` boots a "VM" (a namespace whose eth0 is in br-int with
``external_ids:iface-id=<port id>``) and ``dhcp()`` runs busybox udhcpc in it.

Everything started is recorded (pids, namespaces, the run directory) and ``stop()``
undoes exactly that, also after a failure or Ctrl-C (``cloud_up`` is the context
manager). Names carry a per-run tag (lab/cloud.py ``run_names``).

Reusable API (``routeflow bench tenant`` builds on it)::

    with cloud_up(load_lab("labs/cloud.yaml").cloud, bootstrap=False) as run:
        conn = run.connect()                      # openstacksdk, admin token
        net = conn.network.create_network(name="n", project_id="p")
        ...
        port = conn.network.create_port(network_id=net.id, binding_host_id="c1")
        vm = run.plug("vm1", "c1", port)          # namespace + OVS port + iface-id
        run.wait_active([vm], conn)               # the agent bound it (flows are in)
        lease = run.dhcp(vm)                      # udhcpc: address, router, MTU, seconds
        run.ping(vm, "10.0.0.3")
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routeflow.lab.cloud import CloudLab, CloudNode, RunNames, run_names
from routeflow.lab.ovsnode import OvsNode, Underlay
from routeflow.lab.poll import poll_until
from routeflow.lab.procs import ProcessSet

__all__ = ["CloudFailure", "CloudRun", "Lease", "Vm", "cloud_up"]

log = logging.getLogger("routeflow.lab.cloud")

OFP_PORT = 6653  # each node's agent listens in the node's own namespace
SRC = str(Path(__file__).resolve().parents[2])  # the routeflow package's parent directory

#: busybox udhcpc's script: apply the lease as a VM's init would, and keep its options.
UDHCPC_SCRIPT = """#!/bin/sh
# $1 is the event; udhcpc exports interface, ip, mask (prefix length), router, mtu ...
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    env | grep -E '^(interface|ip|mask|router|mtu|dns|domain|serverid|lease)=' \
      > "$LEASE_FILE"
    ;;
esac
exit 0
"""


class CloudFailure(RuntimeError):
    """The cloud could not be brought up or driven; the message says what and where."""


@dataclass
class Vm:
    """A VM namespace plugged for one Neutron port."""

    name: str
    ns: str
    node: str
    port_id: str
    mac: str
    fixed_ip: str  # the port's first fixed IP as the API allocated it
    network_id: str


@dataclass(frozen=True)
class Lease:
    """What udhcpc got and applied (from its script's environment)."""

    ip: str
    prefixlen: int
    router: str | None
    mtu: int | None
    seconds: float  # wall time of the udhcpc run


def parse_lease(text: str, seconds: float) -> Lease:
    """The lease file the udhcpc script writes (``key=value`` lines)."""
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "ip" not in env:
        raise CloudFailure(f"udhcpc wrote no address: {text!r}")
    try:
        return Lease(
            ip=env["ip"],
            prefixlen=int(env.get("mask") or 32),
            router=(env.get("router") or "").split()[0] if env.get("router") else None,
            mtu=int(env["mtu"]) if env.get("mtu") else None,
            seconds=seconds,
        )
    except ValueError:
        raise CloudFailure(f"udhcpc wrote a bad mask or MTU: {text!r}") from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@dataclass
class CloudRun:
    """One cloud lab run; ``start()`` then ``stop()`` (or use ``cloud_up``)."""

    cloud: CloudLab
    run_dir: str
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    log_level: str = "INFO"
    python: str = sys.executable
    #: On stop, the run directory (if this run made it) goes; with ``keep_logs`` only
    #: its ``*.log`` files stay (a failed check's evidence); without either, all stays.
    remove_run_dir: bool = True
    keep_logs: bool = False
    #: More arguments for a node's agent (by node name) and for the tenant server.
    agent_args: dict[str, list[str]] = field(default_factory=dict)
    server_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names: RunNames = run_names(self.cloud, self.tag)
        self.procs = ProcessSet()
        self.underlay = Underlay(self.names.underlay)
        self.nodes: dict[str, OvsNode] = {}
        self.vms: dict[str, Vm] = {}
        self.token = secrets.token_hex(16)
        self.api_port = 0
        self.made_run_dir = False
        self._stopped = False
        self._lock = threading.Lock()
        self._vm_seq = 0
        #: Bring-up steps: (name, seconds), in order.
        self.timings: list[tuple[str, float]] = []

    # --- addresses ----------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def store_path(self) -> str:
        return os.path.join(self.run_dir, "tenant.db")

    @property
    def nodes_sock(self) -> str:
        return os.path.join(self.run_dir, "nodes.sock")

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH", "")
        return {
            **os.environ,
            "PYTHONPATH": SRC + (os.pathsep + path if path else ""),
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Bring everything up; on any failure what was started is stopped again."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _step(self, name: str, t: float) -> float:
        now = time.monotonic()
        self.timings.append((name, now - t))
        return now

    def _start(self) -> None:
        if not os.path.isdir(self.run_dir):
            os.makedirs(self.run_dir)
            self.made_run_dir = True
        t = time.monotonic()
        self.underlay.start()
        self._start_server()  # its imports take a second: it starts while the nodes do
        with ThreadPoolExecutor(len(self.cloud.nodes)) as pool:
            for _ in pool.map(self._start_node, self.cloud.nodes):
                pass
        self._tunnel_neighbours()
        t = self._step("nodes", t)
        # The agents start before br-int exists: OVS would otherwise try their port while
        # they import, back off (1, 2, 4 s; max_backoff did not shorten it) and connect
        # seconds late. br-int is made, with its controller, once its agent listens.
        for node in self.cloud.nodes:
            self._start_agent(node.name, node.tunnel_ip.split("/")[0], node.gateway)
        self._wait_for_api()
        t = self._step("tenant server", t)
        want = {n.name for n in self.cloud.nodes}
        waiting = dict(self.nodes)
        deadline = time.monotonic() + 30
        while waiting:
            for name, ovs in list(waiting.items()):
                if self._listening(ovs):
                    local_ip = self.cloud_node(name).tunnel_ip.split("/")[0]
                    ovs.add_br_int(local_ip=local_ip, controller=f"tcp:127.0.0.1:{OFP_PORT}")
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                self.fail_if_dead()
                raise CloudFailure(f"no agent listens on {', '.join(waiting)} after 30 s")
            time.sleep(0.05 if waiting else 0)
        got = poll_until(lambda: want <= set(self.snapshot().nodes), timeout=30, interval=0.05)
        if not got.ok:
            self.fail_if_dead()
            have = sorted(self.snapshot().nodes)
            raise CloudFailure(f"node agents did not register within 30 s: {have} of {want}")

        def unconnected() -> list[str]:
            # The agent's own word (OVSDB's Controller:is_connected lags by seconds).
            return [name for name in self.nodes if "switch holds" not in self._agent_log(name)]

        if not poll_until(lambda: not unconnected(), timeout=30, interval=0.05).ok:
            self.fail_if_dead()
            raise CloudFailure(f"br-int of {', '.join(unconnected())} has no agent after 30 s")
        self._step("node agents", t)

    def cloud_node(self, name: str) -> CloudNode:
        return next(n for n in self.cloud.nodes if n.name == name)

    def _listening(self, ovs: OvsNode) -> bool:
        out = ovs.exec("ss", "-Hltn", f"sport = :{OFP_PORT}", check=False)
        return bool(out.strip())

    def _start_node(self, node: CloudNode) -> None:
        """One compute node but its br-int (run on a thread per node: each has its own
        ProcessSet, whose daemons are then recorded in the run's too)."""
        ovs = OvsNode(self.names.nodes[node.name], os.path.join(self.run_dir, node.name))
        self.nodes[node.name] = ovs
        try:
            ovs.start()
        finally:
            self.procs.procs.extend(ovs.procs.procs)
        ovs.add_underlay(self.underlay, node.tunnel_ip)

    def _agent_log(self, name: str) -> str:
        try:
            with open(os.path.join(self.run_dir, f"agent-{name}.log")) as fh:
                return fh.read()
        except OSError:
            return ""

    def _tunnel_neighbours(self) -> None:
        """Every peer's tunnel endpoint MAC in each node's OVS tunnel neighbour table.

        OVS learns these only by snooping ARP that reaches ofproto (not ARP a cached
        datapath flow handles), and drops a tunnelled packet while it resolves one: a
        node's first packet to a peer was lost now and then. The lab knows every MAC."""
        macs = {}
        for node in self.cloud.nodes:
            out = self.nodes[node.name].ip("-o", "link", "show", "br-ul")
            macs[node.name] = out.split("link/ether ", 1)[1].split()[0]
        for node in self.cloud.nodes:
            for peer in self.cloud.nodes:
                if peer.name != node.name:
                    ip = peer.tunnel_ip.split("/")[0]
                    self.nodes[node.name].appctl("tnl/neigh/set", "br-ul", ip, macs[peer.name])

    def _start_server(self) -> None:
        token_file = os.path.join(self.run_dir, "token")
        with open(token_file, "w") as fh:
            fh.write(self.token + "\n")
        os.chmod(token_file, 0o600)
        host, _, port = self.cloud.api_listen.rpartition(":")
        self.api_port = self.api_port or int(port) or free_port()  # a restart keeps it
        argv = [
            self.python, "-m", "routeflow.cli", "tenant", "server",
            "--listen", f"{host}:{self.api_port}", "--store", f"sqlite:{self.store_path}",
            "--token-file", token_file, "--nodes-listen", f"unix:{self.nodes_sock}",
            "--log-level", self.log_level, *self.server_args,
        ]  # fmt: skip
        self._daemon("tenant-server", argv)

    def _wait_for_api(self) -> None:
        def up() -> bool:
            try:
                urllib.request.urlopen(self.api_url + "/", timeout=1).read()
                return True
            except OSError:
                self.fail_if_dead()
                return False

        if not poll_until(up, timeout=20, interval=0.05).ok:
            raise CloudFailure(f"the tenant server did not answer on {self.api_url} within 20 s")

    def _start_agent(self, name: str, tunnel_ip: str, gateway: bool) -> None:
        node = self.nodes[name]
        argv = [
            "ip", "netns", "exec", node.ns, self.python, "-m", "routeflow.cli", "tenant",
            "node", "--name", name, "--server", f"unix:{self.nodes_sock}",
            "--tunnel-ip", tunnel_ip, "--ofp-port", str(OFP_PORT),
            "--ovsdb", f"unix:{node.rundir}/db.sock", "--log-level", self.log_level,
        ]  # fmt: skip
        if gateway:
            argv.append("--gateway")
        argv += self.agent_args.get(name, [])
        self._daemon(f"agent-{name}", argv, node.env)

    def _daemon(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(os.path.join(self.run_dir, f"{name}.log"), "ab") as logfile:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=self._env(env),
                start_new_session=True,
            )
        self.procs.add_popen(name, proc)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the daemon recorded as ``name`` (``tenant-server``, ``agent-c1``)
        and, unless it is SIGSTOP/SIGCONT, reap it and forget it (chaos tests)."""
        tracked = next(t for t in self.procs.procs if t.name == name)
        tracked.signal(sig)
        if sig not in (signal.SIGSTOP, signal.SIGCONT):
            if tracked.popen is not None:
                tracked.popen.wait(timeout=10)
            tracked.forget()
            self.procs.procs.remove(tracked)

    def restart_server(self) -> None:
        """Start the tenant server again on the same port and store (after ``kill``)."""
        self._start_server()
        self._wait_for_api()

    def restart_agent(self, name: str) -> None:
        """Start node ``name``'s agent again (after ``kill``); its log grows on."""
        node = self.cloud_node(name)
        self._start_agent(name, node.tunnel_ip.split("/")[0], node.gateway)

    def fail_if_dead(self) -> None:
        dead = [t.name for t in self.procs.dead()]
        if dead:
            raise CloudFailure(
                f"{', '.join(dead)} exited; see {self.run_dir}/{dead[0]}.log"
                if not dead[0].startswith("ovs")
                else f"{', '.join(dead)} exited; see {self.run_dir}"
            )

    def stop(self) -> None:
        """Stop what this run started, by recorded pid; delete its namespaces (idempotent)."""
        if self._stopped:
            self._clean_run_dir()  # a second stop may have been told to keep less
            return
        self._stopped = True
        old = {}
        if threading.current_thread() is threading.main_thread():  # a 2nd Ctrl-C waits
            old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _stop(self) -> None:
        agents = [t for t in self.procs.procs if t.name.startswith(("agent-", "tenant-server"))]
        with contextlib.suppress(Exception):
            self.procs.stop_many(agents)
        for node in self.nodes.values():  # its daemons, VM namespaces, its namespace
            with contextlib.suppress(Exception):
                node.stop()
        with contextlib.suppress(Exception):
            self.underlay.stop()
        with contextlib.suppress(Exception):
            self.procs.stop_all()
        for vm in self.vms.values():  # a VM whose node stop failed
            subprocess.run(["ip", "netns", "delete", vm.ns], capture_output=True, check=False)
        self._clean_run_dir()

    def _clean_run_dir(self) -> None:
        if not self.made_run_dir or not os.path.isdir(self.run_dir):
            return
        if self.keep_logs:
            prune_to_logs(self.run_dir)
        elif self.remove_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- the API ------------------------------------------------------------------------

    def connect(self) -> Any:
        """An openstacksdk connection with the run's static token (``admin_token``)."""
        import openstack

        return openstack.connect(
            auth_type="admin_token",
            auth={"endpoint": self.api_url, "token": self.token},
            network_endpoint_override=self.api_url + "/",
            region_name="RegionOne",
        )

    def clouds_yaml(self) -> str:
        """A clouds.yaml for the `openstack` CLI (``OS_CLOUD=rf``); returns its path."""
        path = os.path.join(self.run_dir, "clouds.yaml")
        with open(path, "w") as fh:
            fh.write(
                "clouds:\n  rf:\n    auth_type: admin_token\n"
                f"    auth: {{endpoint: '{self.api_url}', token: {self.token}}}\n"
                f"    network_endpoint_override: '{self.api_url}/'\n"
                "    region_name: RegionOne\n"
            )
        return path

    def snapshot(self) -> Any:
        """The tenant model as the server stored it (read from its SQLite store)."""
        from routeflow.rflib.store import open_store
        from routeflow.tenant.model import Cloud
        from routeflow.tenant.repo import load

        if not os.path.exists(self.store_path):
            return Cloud()
        store = open_store(f"sqlite:{self.store_path}")
        try:
            return load(store)
        finally:
            store.close()

    def bootstrap(self, conn: Any = None) -> dict[str, Any]:
        """The lab file's tenants through the API: networks, subnets, routers and their
        interfaces, one port per VM bound to its node. Returns VM name -> port."""
        conn = conn or self.connect()
        ports: dict[str, Any] = {}
        for tenant in self.cloud.tenants:
            project = tenant.name
            subnets: dict[str, Any] = {}
            for net in tenant.networks:
                n = conn.network.create_network(name=net.name, project_id=project)
                subnets[net.name] = conn.network.create_subnet(
                    network_id=n.id, name=f"{net.name}-v4", ip_version=4, cidr=net.cidr,
                    gateway_ip=net.gateway_ip, project_id=project,
                )  # fmt: skip
            for r in tenant.routers:
                router = conn.network.create_router(name=r.name, project_id=project)
                for net_name in r.networks:
                    conn.network.add_interface_to_router(router, subnet_id=subnets[net_name].id)
            for vm in tenant.vms:
                sub = subnets[vm.network]
                fixed: dict[str, str] = {"subnet_id": sub.id}
                if vm.ip is not None:
                    fixed["ip_address"] = vm.ip
                ports[vm.name] = conn.network.create_port(
                    network_id=sub.network_id, name=vm.name, fixed_ips=[fixed],
                    binding_host_id=vm.node, project_id=project,
                )  # fmt: skip
        return ports

    # --- VMs ----------------------------------------------------------------------------

    def plug(self, name: str, node: str, port: Any) -> Vm:
        """A VM namespace for ``port`` (an openstacksdk Port) on ``node``'s br-int.

        The address is not configured: the VM gets it with ``dhcp()``."""
        if node not in self.nodes:
            raise CloudFailure(f"no node {node!r} in this cloud")
        with self._lock:
            if name in self.vms:
                raise CloudFailure(f"VM {name!r} is already plugged")
            self._vm_seq += 1
            # Lab file VMs have planned names; others get a number beyond those.
            seq = len(self.names.vms) + self._vm_seq
            ns = self.names.vms.get(name) or f"v{seq}-{self.tag}-{name}"[:14]
            vm = Vm(
                name=name,
                ns=ns,
                node=node,
                port_id=port.id,
                mac=port.mac_address,
                fixed_ip=port.fixed_ips[0]["ip_address"] if port.fixed_ips else "",
                network_id=port.network_id,
            )
            self.vms[name] = vm
        self.nodes[node].plug_vm(ns, port.id, port.mac_address, mtu=1500)
        return vm

    def plug_many(self, vms: list[tuple[str, str, Any]]) -> list[Vm]:
        """``plug`` for several (name, node, port) at once, on threads (each is a dozen
        ip/ovs-vsctl commands)."""
        with ThreadPoolExecutor(min(8, max(1, len(vms)))) as pool:
            return list(pool.map(lambda args: self.plug(*args), vms))

    def wait_active(self, vms: list[Vm], conn: Any = None, timeout: float = 30.0) -> list[str]:
        """Wait until every VM's port is ACTIVE (its node's agent saw the VIF and installed
        its flows first), as Nova waits for network-vif-plugged before booting; DHCP sent
        earlier may be dropped and cost the client's retry. Returns the VMs still not
        ACTIVE after ``timeout`` ([] when all are)."""
        conn = conn or self.connect()

        def down() -> list[str]:
            return [vm.name for vm in vms if conn.network.get_port(vm.port_id).status != "ACTIVE"]

        poll_until(lambda: not down(), timeout=timeout, interval=0.05)
        return down()

    def unplug(self, vm: Vm) -> None:
        self.nodes[vm.node].unplug_vm(vm.ns)
        self.vms.pop(vm.name, None)

    def dhcp(self, vm: Vm, timeout: float = 10.0) -> Lease:
        """busybox udhcpc in the VM: the lease is applied (address, MTU, default route)."""
        script = os.path.join(self.run_dir, "udhcpc.sh")
        if not os.path.exists(script):
            with open(script, "w") as fh:
                fh.write(UDHCPC_SCRIPT)
            os.chmod(script, 0o755)
        lease_file = os.path.join(self.run_dir, f"lease-{vm.name}")
        with contextlib.suppress(FileNotFoundError):
            os.remove(lease_file)
        tries = max(1, math.ceil(timeout))  # each try waits -T 1 s for an offer
        argv = [
            "ip", "netns", "exec", vm.ns, "env", f"LEASE_FILE={lease_file}",
            "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", str(tries), "-T", "1", "-A", "1",
            "-O", "mtu", "-s", script,
        ]  # fmt: skip
        t = time.monotonic()
        try:
            r = _run(argv, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            raise CloudFailure(
                f"{vm.name}: udhcpc got no lease and did not give up in {timeout + 10:.0f} s"
            ) from None
        seconds = time.monotonic() - t
        if r.returncode != 0 or not os.path.exists(lease_file):
            said = (r.stderr or r.stdout)[-300:]
            raise CloudFailure(f"{vm.name}: udhcpc got no lease in {seconds:.1f} s: {said}")
        with open(lease_file) as fh:
            return parse_lease(fh.read(), seconds)

    def vm_exec(self, vm: Vm, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", vm.ns, *argv], timeout=timeout)

    def ping(
        self, vm: Vm, ip: str, *args: str, count: int = 1, wait: float = 2
    ) -> subprocess.CompletedProcess[str]:
        return self.vm_exec(
            vm,
            "ping",
            "-n",
            "-c",
            str(count),
            "-W",
            str(wait),
            *args,
            ip,
            timeout=wait * count + 10,
        )

    def pings(
        self, jobs: list[tuple[Vm, str]], *args: str, wait: float = 2
    ) -> list[subprocess.CompletedProcess[str]]:
        """Several one-packet pings at once (a failing ping costs its whole wait)."""
        procs = [
            subprocess.Popen(
                ["ip", "netns", "exec", vm.ns, "ping", "-n", "-c", "1", "-W", str(wait), *args, ip],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for vm, ip in jobs
        ]
        out = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=wait + 10)
            out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        return out

    # --- flows --------------------------------------------------------------------------

    def expected_flows(self, node: str, cloud: Any = None) -> Any:
        """The compiler's flows for ``node``: the stored model and the node's VIFs (OVSDB)."""
        from routeflow.tenant.compiler import NodeContext, compile_node

        cloud = cloud if cloud is not None else self.snapshot()
        return compile_node(cloud, NodeContext(node, self.bindings(node)))

    def bindings(self, node: str) -> dict[str, int]:
        """iface-id -> ofport on ``node``'s br-int, read as the agent reads them."""
        from routeflow.tenant import vifs

        return dict(vifs.parse(self.nodes[node].vsctl(*vifs.COMMAND)).ports)

    def flow_problems(self, node: str, cloud: Any = None) -> list[str]:
        """How the node's br-int differs from ``expected_flows`` ([] when equal)."""
        from routeflow.tenant import ofmsg

        return ofmsg.same_flows(self.expected_flows(node, cloud), self.nodes[node].dump_flows())


def prune_to_logs(run_dir: str) -> None:
    """Delete everything under ``run_dir`` but ``*.log`` files (and their directories)."""
    for top, dirs, files in os.walk(run_dir, topdown=False):
        for name in files:
            if not name.endswith(".log"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(top, name))
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(top, name))  # only if empty


@contextlib.contextmanager
def cloud_up(
    cloud: CloudLab,
    run_dir: str | None = None,
    *,
    bootstrap: bool = True,
    log_level: str = "INFO",
    keep_run_dir: bool = False,
) -> Iterator[CloudRun]:
    """A running cloud (bootstrapped and VMs plugged unless ``bootstrap=False``; VMs still
    need ``dhcp()``); everything is stopped on exit, whatever happens."""
    import tempfile

    made = run_dir is None
    run_dir = run_dir or tempfile.mkdtemp(prefix="rfcloud-")
    run = CloudRun(cloud, run_dir, log_level=log_level, remove_run_dir=not keep_run_dir)
    if made:
        run.made_run_dir = True
    run.start()
    try:
        if bootstrap:
            ports = run.bootstrap()
            vms = [(vm.name, vm.node, ports[vm.name]) for t in cloud.tenants for vm in t.vms]
            run.plug_many(vms)
        yield run
    finally:
        run.stop()

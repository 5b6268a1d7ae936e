"""Brings a lab plan to life and takes it down again.

What runs, per lab (all under one run directory, all names prefixed with a
random run id so labs never collide):

* a private OVS (see ovs.py) with one userspace bridge per switch of the plan
  and one virtual switch that holds the VM interfaces;
* Mininet hosts; one Mininet node per VM (a network namespace) with eth1..ethN
  wired to the virtual switch, running FRR (zebra + the routing daemon) and
  rfclient;
* rfserver and rfproxy as child processes.

Dual-stack labs (``ipv6: true`` in the lab file) also get their IPv6 addresses, with
duplicate address detection off in every host and VM namespace before any interface
exists: a tentative address (link-local ones included, which OSPFv3 and the hosts' default
routes depend on) cannot be used for a second or more, and no other node can ever claim
a lab's addresses. IPv4 labs are built exactly as before.

FRR's own state (graceful-restart files, bfdd's control socket, log buffers) goes to
directories in each VM's run directory, bind-mounted over /var/run/frr and /var/tmp/frr in
the VM's private mount namespace: a lab writes nothing to FRR's shared directories.

Teardown stops exactly what was started, by pid, and removes the bridges and
namespaces; it runs on normal exit, on exceptions and on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from routeflow.lab import commands, frr
from routeflow.lab.model import LabPlan, VmPlan
from routeflow.lab.ovs import OvsError, OvsInstance
from routeflow.lab.poll import poll_until
from routeflow.lab.procs import ProcessSet
from routeflow.proxy.openflow import DEFAULT_VS_DPID
from routeflow.rflib.auth import write_secret
from routeflow.server.config import dump_config
from routeflow.web.topology import write_topology

log = logging.getLogger("routeflow.lab")

FRR_DIR = "/usr/lib/frr"
#: Datapath relay (control.relay: datapath): each switch's patch port to the virtual
#: switch is OpenFlow port RELAY_PORT on the switch, VS_RELAY_BASE + its index on the vs.
RELAY_PORT = 65000
VS_RELAY_BASE = 60000

#: FRR's shared directories, each replaced in a VM by one of the VM's run directory:
#: mount point -> (directory in the VM's run directory, the mode FRR gives it).
FRR_PRIVATE_DIRS = {"/var/run/frr": ("frr-run", 0o755), "/var/tmp/frr": ("frr-tmp", 0o700)}


class LabFailure(RuntimeError):
    pass


def virtual_links_text(plan: LabPlan, ct_id: int) -> str:
    """rfproxy --virtual-links for controller ``ct_id``: the lab's links between its switches.

    In a lab the lab file's links are the physical topology (there is no discovery yet).
    A link between switches of two controllers is left out: neither rfproxy knows the
    other's mappings, so such a link keeps the relay.
    """
    lines = [f"# {plan.name}: links mirrored in the virtual switch by controller {ct_id}"]
    for link in plan.links:
        a, b = plan.vm(link.a.switch), plan.vm(link.b.switch)
        if a.ct_id == b.ct_id == ct_id:
            lines.append(
                f"{a.dp_id:#x}:{link.a.port} {b.dp_id:#x}:{link.b.port}"
                f"  # {link.a.switch}-{link.b.switch}"
            )
    return "\n".join(lines) + "\n"


class _NoVm:
    """A VM rfserver --auto has not started (yet): it has nothing to say."""

    def cmd(self, text: str, timeout: float = 30.0) -> str:
        return ""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so teardown runs like on Ctrl-C."""


def _popen_session(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, start_new_session=True, **kwargs)


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stage:
    name: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class LabRun:
    plan: LabPlan
    run_dir: str
    run_id: str = field(default_factory=lambda: secrets.token_hex(2))
    python: str = sys.executable
    log_level: str = "INFO"
    start_proxy: bool = True
    #: rfproxy's flow statistics poll in seconds (short, so rfweb's counters move).
    stats_interval: float = 2.0
    #: rfserver --auto: the lab's switches, links and hosts are the physical network; the
    #: VMs, their addresses and the mapping are rfserver's to decide (server/autoconf.py).
    auto: bool = False
    #: Switches built without a controller: dark until connect_switch() (a switch added
    #: to a running network).
    held: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.prefix = f"r{self.run_id}"
        self.procs = ProcessSet()
        self.ovs = OvsInstance(os.path.join(self.run_dir, "ovs"), self.procs)
        self.net = None
        self.nodes: dict[str, object] = {}  # plan name -> Mininet node
        self.bridges: dict[str, str] = {}  # switch name -> bridge name
        # One rfproxy per replica of each controller of the plan, each on its own
        # OpenFlow port (in the lab's private namespace, so fixed numbers cannot
        # collide). of_ports: ct_id -> port of its first replica.
        self.replica_ports: dict[tuple[int, str], int] = {}
        for ct in self.plan.controllers:
            for name in ct.replica_names:
                self.replica_ports[(ct.ct_id, name)] = 6653 + len(self.replica_ports)
        self.of_ports = {
            ct.ct_id: self.replica_ports[(ct.ct_id, ct.replica_names[0])]
            for ct in self.plan.controllers
        }
        self.of_port = next(iter(self.of_ports.values()))
        # One rfserver, or several sharing the lab's etcd cluster (one leads,
        # the others stand by); each has its own socket, status file and web port.
        control = self.plan.control
        self.server_names = (
            ["rfserver"]
            if control.servers == 1
            else [f"rfserver-{chr(ord('a') + i)}" for i in range(control.servers)]
        )
        self.server_socks = {n: os.path.join(self.run_dir, f"{n}.sock") for n in self.server_names}
        self.status_paths = {
            n: os.path.join(self.run_dir, f"{n}-status.json") for n in self.server_names
        }
        self.web_ports = {n: _free_tcp_port() for n in self.server_names}
        self.server_sock = self.server_socks[self.server_names[0]]
        self.web_port = self.web_ports[self.server_names[0]]
        self.etcd = None  # lab.etcd.EtcdCluster when control.store is etcd
        self.secret_file = os.path.join(self.run_dir, "rfprotocol.secret")
        self.topology_path = os.path.join(self.run_dir, "topology.json")
        self.stages: list[Stage] = []
        self.proxy = None
        self.server = None
        self._stopped = False
        #: peak_memory() as it was when stop() began.
        self.memory: dict[str, tuple[int, int]] = {}
        self._manifest_lock = threading.Lock()

    # --- naming -----------------------------------------------------------------

    @property
    def vs_name(self) -> str:
        return "br-rfvs"

    def relay_links(self, ct_id: int) -> str:
        """rfproxy's --relay-links for the switches of ``ct_id`` (datapath relay)."""
        return ",".join(
            f"{vm.dp_id:#x}:{RELAY_PORT}:{VS_RELAY_BASE + i}"
            for i, vm in enumerate(self.plan.vms)
            if vm.ct_id == ct_id
        )

    def vm_dir(self, vm: VmPlan) -> str:
        if self.auto:  # where rfserver's netns backend keeps the VM (server/vmnetns.py)
            return os.path.join(self.auto_vm_dir, f"vm-{vm.dp_id:x}")
        return os.path.join(self.run_dir, "vms", vm.switch)

    @property
    def auto_vm_dir(self) -> str:
        return os.path.join(self.run_dir, "auto-vms")

    def edge_ports_text(self) -> str:
        """rfserver --edge-ports of an --auto lab: each host's switch port and gateway."""
        lines = [f"# {self.plan.name}: the hosts' ports", "dp_id,dp_port,address"]
        for h in self.plan.hosts:
            prefixlen = h.ip.split("/", 1)[1]
            lines.append(f"{self.plan.vm(h.switch).dp_id:#x},{h.dp_port},{h.gateway}/{prefixlen}")
        return "\n".join(lines) + "\n"

    # --- bring-up ---------------------------------------------------------------

    def start(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o755)
        self._check_frr_can_reach_run_dir()
        write_secret(self.secret_file)  # every lab speaks authenticated RFProtocol
        os.environ.update(self.ovs.env)  # ovs-vsctl/ovs-ofctl find the private OVS
        t = time.monotonic()
        self._build_network()
        self._stage("network", t)
        self.write_manifest()
        t = time.monotonic()
        self.ovs.start(popen=self._in_ovs_namespace)
        self._create_bridges()
        self.verify_ports()
        self._stage("ovs", t)
        t = time.monotonic()
        self.start_server()
        self.write_manifest()  # the etcd members' pids
        if self.start_proxy:
            self.start_proxy_process()
        self._stage("rfserver+rfproxy", t)
        if not self.auto:  # --auto: rfserver starts them as switches connect
            t = time.monotonic()
            self._start_vms()
            self._stage("vms (frr+rfclient)", t)
        if self.plan.speakers:
            from routeflow.lab import exabgp

            t = time.monotonic()
            for sp in self.plan.speakers:
                exabgp.start(self, sp)
            self._stage("bgp speakers (exabgp)", t)
        self.write_manifest()

    def write_manifest(self) -> None:
        """What this run started, for tests and for cleaning up after a crash."""
        with self._manifest_lock:  # VMs start side by side, each writing it
            self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {
            "prefix": self.prefix,
            "run_dir": self.run_dir,
            "lab_pid": os.getpid(),
            "bridges": [*sorted(self.bridges.values()), self.vs_name],
            "node_pids": {
                name: getattr(node, "pid", None)
                for name, node in self.nodes.items()
                if getattr(node, "pid", None)
            },
            "processes": {t.name: t.pid for t in self.procs.procs},
            "web_url": self.web_url,
            "web_urls": {n: f"http://127.0.0.1:{p}" for n, p in self.web_ports.items()},
        }
        if self.etcd is not None:
            manifest["etcd"] = {
                "endpoints": self.etcd.endpoints,
                "pids": [self.etcd.pid(i) for i in range(self.plan.control.etcd_members)],
            }
        path = os.path.join(self.run_dir, "manifest.json")
        with open(path + ".tmp", "w") as fh:
            json.dump(manifest, fh, indent=1)
        os.replace(path + ".tmp", path)  # readers never see half a file

    def _check_frr_can_reach_run_dir(self) -> None:
        # FRR daemons drop privileges to user frr; they write pid files and
        # sockets in the run directory, so every parent must be traversable.
        r = subprocess.run(
            ["runuser", "-u", "frr", "--", "test", "-x", self.run_dir], capture_output=True
        )
        if r.returncode != 0:
            raise LabFailure(
                f"run directory {self.run_dir} is not reachable by user frr "
                "(a parent directory is not world-executable); use --run-dir elsewhere"
            )

    def _stage(self, name: str, since: float, ok: bool = True, detail: str = "") -> None:
        self.stages.append(Stage(name, time.monotonic() - since, ok, detail))

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.ovs.env, "PYTHONUNBUFFERED": "1"}

    def _daemon(self, name: str, argv: list[str], popen=None) -> subprocess.Popen:
        logfile = open(os.path.join(self.run_dir, f"{name}.log"), "ab")  # noqa: SIM115
        popen = (popen or _popen_session)(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=self._env(),
        )
        logfile.close()
        self.procs.add_popen(name, popen)
        return popen

    @property
    def server_addresses(self) -> str:
        """What clients and proxies are given: every rfserver, leader or standby."""
        return ",".join(f"unix:{self.server_socks[n]}" for n in self.server_names)

    def server_status(self, name: str | None = None) -> dict:
        """The status file of rfserver ``name`` (default: the leading one); {} if unreadable."""
        path = self.status_path if name is None else self.status_paths[name]
        try:
            with open(path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def leader(self) -> str | None:
        """The rfserver serving now (from the status files), or None."""
        if len(self.server_names) == 1:
            return self.server_names[0]
        best, best_time = None, 0.0
        for name in self.server_names:
            status = self.server_status(name)
            if status.get("role") != "leader" or not self._server_alive(name, status):
                continue
            if status.get("leader_since", 0.0) >= best_time:
                best, best_time = name, status.get("leader_since", 0.0)
        return best

    def _server_alive(self, name: str, status: dict) -> bool:
        return any(t.name == name and t.pid == status.get("pid") for t in self.procs.procs)

    @property
    def status_path(self) -> str:
        """The leading rfserver's status file."""
        return self.status_paths[self.leader() or self.server_names[0]]

    @property
    def web_url(self) -> str:
        """rfweb of the leading rfserver."""
        return f"http://127.0.0.1:{self.web_ports[self.leader() or self.server_names[0]]}"

    def start_server(self, name: str | None = None) -> None:
        """Start every rfserver of the lab (or the one named), and wait until it is up."""
        config_path = os.path.join(self.run_dir, "rfserver.csv")
        if not self.auto:  # --auto: no mapping; rfserver derives it from what it discovers
            with open(config_path, "w") as fh:
                fh.write(dump_config(self.plan.config_entries()))
        write_topology(self.plan, self.topology_path)
        control = self.plan.control
        if control.store == "etcd" and self.etcd is None:
            from routeflow.lab.etcd import EtcdCluster

            t = time.monotonic()
            self.etcd = EtcdCluster(
                os.path.join(self.run_dir, "etcd"),
                members=control.etcd_members,
                name=self.prefix,
            )
            try:
                self.etcd.start()
            except RuntimeError as exc:
                raise LabFailure(f"etcd did not start: {exc}") from exc
            self._stage(f"etcd ({control.etcd_members} members)", t)
        for n in [name] if name else self.server_names:
            self._start_one_server(n, config_path)

    def _start_one_server(self, name: str, config_path: str) -> None:
        sock = self.server_socks[name]
        with contextlib.suppress(FileNotFoundError):
            os.remove(sock)  # left by a killed server; wait for the new one
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.status_paths[name])
        if self.etcd is not None:
            store = [
                "--store",
                self.etcd.url(f"/routeflow/{self.prefix}/"),
                "--name",
                name,
                "--lease-ttl",
                str(self.plan.control.lease_ttl),
            ]
        else:
            store = ["--store", f"sqlite:{os.path.join(self.run_dir, 'rfserver.db')}"]
        popen = self._daemon(
            name,
            [
                self.python,
                "-m",
                "routeflow.server",
                *(self._auto_args() if self.auto else ["--config", config_path]),
                *store,
                "--listen",
                f"unix:{sock}",
                "--status-file",
                self.status_paths[name],
                "--secret-file",
                self.secret_file,
                "--web",
                f"127.0.0.1:{self.web_ports[name]}",
                "--topology",
                self.topology_path,
                "--log-level",
                self.log_level,
            ],
        )
        if name == self.server_names[0] or self.server is None:
            self.server = popen
        # Up means serving (the socket exists) or standing by (its status says so).
        up = poll_until(
            lambda: os.path.exists(sock) or self.server_status(name).get("role") == "standby",
            lambda serving: serving or popen.poll() is not None,
            timeout=15,
            interval=0.05,
        )
        if not up.value:
            raise LabFailure(f"{name} did not start; see {self.run_dir}/{name}.log")

    def _auto_args(self) -> list[str]:
        edge = os.path.join(self.run_dir, "edge-ports.csv")
        with open(edge, "w") as fh:
            fh.write(self.edge_ports_text())
        return [
            "--auto",
            "--edge-ports",
            edge,
            "--vm-dir",
            self.auto_vm_dir,
            "--vs-bridge",
            self.vs_name,
            "--vs-netns",
            f"/proc/{self.nodes['__ovs__'].pid}/ns/net",
            "--auto-grace",
            "30",
            "--vm-starts",
            str(self.VM_START_THREADS),
        ]

    def replicas(self, ct_id: int) -> tuple[str, ...]:
        """Replica names of a controller (see model.Controller.replica_names)."""
        return next(ct.replica_names for ct in self.plan.controllers if ct.ct_id == ct_id)

    def proxy_name(self, ct_id: int, replica: str | None = None) -> str:
        """Process (and log file) name of one rfproxy; default: the controller's first."""
        names = self.replicas(ct_id)
        if len(names) > 1:
            return f"rfproxy-{replica or names[0]}"
        return "rfproxy" if len(self.of_ports) == 1 else f"rfproxy-ct{ct_id}"

    def start_proxy_process(self, ct_id: int | None = None, replica: str | None = None) -> None:
        """Start the rfproxy of one controller (default: of every controller).

        All its replicas, or just ``replica``. When a controller's replicas
        start together, the first is started alone until rfserver has made it
        master, so that the first replica ("a") is master after bring-up.
        """
        for ct in [ct_id] if ct_id is not None else list(self.of_ports):
            names = [replica] if replica is not None else list(self.replicas(ct))
            for i, name in enumerate(names):
                popen = self._start_proxy(ct, name)
                if self.proxy is None or (ct == next(iter(self.of_ports)) and i == 0):
                    self.proxy = popen
                if i == 0 and len(names) > 1:
                    self._wait_for_master(ct, name)

    def _wait_for_master(self, ct_id: int, replica: str, timeout: float = 20.0) -> None:
        def master() -> object:
            try:
                with open(self.status_path) as fh:
                    roles = json.load(fh).get("controller_roles", {})
            except (OSError, ValueError):
                roles = {}
            return roles.get(str(ct_id), {}).get("master")

        if not poll_until(master, lambda m: m == replica, timeout=timeout, interval=0.1):
            log_file = f"{self.run_dir}/{self.proxy_name(ct_id, replica)}.log"
            raise LabFailure(
                f"rfproxy replica {replica} of controller {ct_id} did not become master "
                f"within {timeout:.0f} s; see {log_file}"
            )

    def _start_proxy(self, ct_id: int, replica: str | None = None) -> subprocess.Popen:
        replica = replica or self.replicas(ct_id)[0]
        return self._daemon(
            self.proxy_name(ct_id, replica),
            popen=self._in_ovs_namespace,
            argv=[
                self.python,
                "-m",
                "routeflow.proxy",
                "--server",
                self.server_addresses,
                "--ct-id",
                str(ct_id),
                "--replica",
                replica,
                "--ofp-port",
                str(self.replica_ports[(ct_id, replica)]),
                "--vs-dpid",
                hex(DEFAULT_VS_DPID),
                "--stats-interval",
                str(self.stats_interval),
                "--secret-file",
                self.secret_file,
                "--log-level",
                self.log_level,
                *(
                    ["--relay", "datapath", "--relay-links", self.relay_links(ct_id)]
                    if self.plan.control.relay == "datapath"
                    else []
                ),
                *(
                    [
                        "--virtual-links",
                        "discovered" if self.auto else self._virtual_links_file(ct_id),
                    ]
                    if self.plan.control_plane == "virtual"
                    else []
                ),
            ],
        )

    def _virtual_links_file(self, ct_id: int) -> str:
        path = os.path.join(self.run_dir, f"virtual-links-ct{ct_id}.txt")
        with open(path, "w") as fh:
            fh.write(virtual_links_text(self.plan, ct_id))
        return path

    def stop_proxy_process(self) -> None:
        for t in list(self.procs.procs):
            if t.name.startswith("rfproxy"):
                self.procs.stop_one(t)
        self.proxy = None

    def _in_ovs_namespace(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return self.nodes["__ovs__"].popen(argv, **kwargs)

    def _build_network(self) -> None:
        """Hosts, VMs and one 'OVS namespace' holding every switch-side interface.

        ovs-vswitchd (userspace datapath) and rfproxy run inside that namespace:
        the datapath's own devices, the bridges' and all ports' names are then
        private to this lab, so concurrent labs never collide and the host's
        root namespace is never touched.
        """
        from mininet.link import Link
        from mininet.net import Mininet

        net = Mininet(controller=None, build=False, autoSetMacs=False, autoStaticArp=False)
        self.net = net
        plan = self.plan
        ovsns = net.addHost(f"{self.prefix}o", ip=None)
        self.nodes["__ovs__"] = ovsns
        self._ports: dict[str, list[tuple[str, int]]] = {vm.switch: [] for vm in plan.vms}
        self._ports["__vs__"] = []
        for vm in plan.vms:
            self.bridges[vm.switch] = vm.bridge
        for i, h in enumerate(plan.hosts):
            self.nodes[h.name] = net.addHost(f"{self.prefix}h{i + 1}", ip=h.ip, mac=h.mac)
        for i, vm in enumerate(() if self.auto else plan.vms):
            self.nodes[f"vm:{vm.switch}"] = net.addHost(f"{self.prefix}v{i + 1}", ip=None)
        if plan.ipv6:
            # Before the links: interfaces created from now on inherit "default". The
            # switch ports get no IPv6 at all: their kernel side would otherwise send
            # router solicitations and MLD reports straight down the veth into the VMs
            # and hosts, which would take the switch for an IPv6 neighbour. Addresses
            # must outlive a VM port going down with its switch port (a cut link), as
            # IPv4 ones do: Linux flushes IPv6 addresses on link down unless told not to,
            # and nothing would put them back.
            for name, node in self.nodes.items():
                if name == "__ovs__":
                    node.cmd(
                        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                        "net.ipv6.conf.default.disable_ipv6=1"
                    )
                else:
                    node.cmd(
                        "sysctl -qw net.ipv6.conf.all.accept_dad=0 "
                        "net.ipv6.conf.default.accept_dad=0 "
                        "net.ipv6.conf.all.keep_addr_on_down=1 "
                        "net.ipv6.conf.default.keep_addr_on_down=1"
                    )
        for h in plan.hosts:
            name = self.port_name(h.switch, h.dp_port)
            net.addLink(self.nodes[h.name], ovsns, intfName2=name, cls=Link)
            self._ports[h.switch].append((name, h.dp_port))
        switch_links = []
        for link in plan.links:
            a = self.port_name(link.a.switch, link.a.port)
            b = self.port_name(link.b.switch, link.b.port)
            switch_links.append((a, b))
            self._ports[link.a.switch].append((a, link.a.port))
            self._ports[link.b.switch].append((b, link.b.port))
        vs_port = 1
        for vm in () if self.auto else plan.vms:
            node = self.nodes[f"vm:{vm.switch}"]
            for iface in vm.interfaces:
                name = f"vs-eth{vs_port}"
                net.addLink(
                    node, ovsns, intfName1=iface.ifname, addr1=iface.mac, intfName2=name, cls=Link
                )
                self._ports["__vs__"].append((name, vs_port))
                vs_port += 1
        net.build()
        # Switch-to-switch links have both ends in the OVS namespace. Mininet's
        # teardown cannot delete such links (KeyError in delIntf), so they are
        # made here; they vanish with the namespace.
        if switch_links:
            self._run_script(
                ovsns, "switch-links", ["ip", "-batch"], commands.veth_pairs(switch_links)
            )
        for node in net.hosts:
            names = [i.name for i in node.intfList() if i.name != "lo"]
            names += [n for pair in switch_links for n in pair] if node is ovsns else []
            if names:
                self._run_script(
                    node, f"offload-{node.name}", ["sh", "-e"], commands.tx_offload_off(names)
                )
        for h in plan.hosts:
            self.nodes[h.name].cmd(f"ip route replace default via {h.gateway}")
            if h.ip6 is not None:
                node = self.nodes[h.name]
                intf = node.defaultIntf().name
                node.cmd(
                    f"ip -6 addr replace {h.ip6} dev {intf} nodad && "
                    f"ip -6 route replace default via {h.gateway6} dev {intf}"
                )
                self._ipv6_ready(node, h.name, [h.ip6])

    def port_name(self, switch: str, port: int) -> str:
        """Linux name of a switch port (in the OVS namespace); see model.switch_ifprefixes."""
        return self.plan.vm(switch).port_ifname(port)

    def _run_script(self, node, name: str, interpreter: list[str], lines: list[str]) -> str:
        """Run ``lines`` as one script file in ``node``; raise LabFailure naming what failed.

        Never one long shell line through ``node.cmd``: Mininet talks to its shells through
        a pseudo-terminal, whose line discipline silently cuts input lines at 4095 bytes, so
        a big lab lost the tail of its links. A file has no such limit, the interpreter
        (``sh -e``, ``ip -batch``) stops at the first failing line, and its exit status and
        output reach us through a pipe rather than a terminal.
        """
        script_dir = os.path.join(self.run_dir, "net")
        os.makedirs(script_dir, exist_ok=True)
        path = os.path.join(script_dir, f"{name}.txt")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        proc = node.popen(
            [*interpreter, path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise LabFailure(
                f"{name}: {' '.join(interpreter)} {path} failed (exit {proc.returncode}): "
                f"{out.strip()[-1000:]}"
            )
        return out

    def controller_targets(self, ct_id: int) -> list[str]:
        """OVS controller targets of a controller: one per replica."""
        return [
            f"tcp:127.0.0.1:{port}" for (ct, _r), port in self.replica_ports.items() if ct == ct_id
        ]

    def _relay_patch_ports(self) -> list[str]:
        """ovs-vsctl arguments for every switch's relay link: a patch port pair to the vs."""
        args: list[str] = []
        for i, vm in enumerate(self.plan.vms):
            ends = (
                (self.bridges[vm.switch], f"rl{i}", f"rv{i}", RELAY_PORT),
                (self.vs_name, f"rv{i}", f"rl{i}", VS_RELAY_BASE + i),
            )
            for br, name, peer, ofport in ends:
                args += ["--", "add-port", br, name, "--", "set", "interface", name]
                args += ["type=patch", f"options:peer={peer}", f"ofport_request={ofport}"]
        return args

    def _create_bridges(self) -> None:
        # A switch connects to every replica of its controller; OpenFlow roles
        # (requested by the replicas, decided by rfserver) say which one programs it.
        bridges = [
            (
                vm.switch,
                self.bridges[vm.switch],
                vm.dp_id,
                [] if vm.switch in self.held else self.controller_targets(vm.ct_id),
            )
            for vm in self.plan.vms
        ]
        # The virtual switch holds every VM port: it talks to every controller
        # (every replica, all equal there), and each master relays only the
        # ports of its own switches.
        bridges.append(
            (
                "__vs__",
                self.vs_name,
                DEFAULT_VS_DPID,
                [t for ct in self.of_ports for t in self.controller_targets(ct)],
            )
        )
        # One ovs-vsctl transaction for the whole lab (hundreds of ports): one call per
        # bridge and per controller took seconds on a backbone, each waiting for
        # ovs-vswitchd to reconfigure.
        args: list[str] = []
        for key, br, dpid, controllers in bridges:
            args += [
                "--",
                "add-br",
                br,
                "--",
                "set",
                "bridge",
                br,
                "datapath_type=netdev",
                "fail-mode=secure",
                "protocols=OpenFlow13",
                f"other-config:datapath-id={dpid:016x}",
                "other-config:disable-in-band=true",
            ]
            for name, port in self._ports[key]:
                args += [
                    "--",
                    "add-port",
                    br,
                    name,
                    "--",
                    "set",
                    "interface",
                    name,
                    f"ofport_request={port}",
                ]
            ids = [f"@c{len(args)}_{i}" for i in range(len(controllers))]
            for cid, target in zip(ids, controllers, strict=True):
                args += [
                    "--",
                    f"--id={cid}",
                    "create",
                    "controller",
                    f'target="{target}"',
                    "max_backoff=1000",
                    "inactivity_probe=5000",
                ]
            args += ["--", "set", "bridge", br, f"controller=[{','.join(ids)}]"]
        if self.plan.control.relay == "datapath":
            args += self._relay_patch_ports()
        try:
            self.ovs.vsctl(*args, timeout=60)
        except (OvsError, subprocess.TimeoutExpired) as exc:
            raise LabFailure(f"creating the lab's bridges: {str(exc)[-1500:]}") from exc

    def connect_switch(self, switch: str) -> None:
        """Give a held switch its controllers: to routeflow, a switch that was just added."""
        targets = self.controller_targets(self.plan.vm(switch).ct_id)
        args: list[str] = []
        for i, target in enumerate(targets):
            args += ["--", f"--id=@c{i}", "create", "controller", f'target="{target}"']
            args += ["max_backoff=1000", "inactivity_probe=5000"]
        ids = ",".join(f"@c{i}" for i in range(len(targets)))
        self.ovs.vsctl(*args, "--", "set", "bridge", self.bridges[switch], f"controller=[{ids}]")

    def verify_ports(self, timeout: float = 5.0) -> None:
        """Fail unless every port the plan names is in OVS with its OpenFlow port number.

        ovs-vswitchd opens ports asynchronously: one whose device does not exist gets
        ofport -1 and an error, and nothing else says so until its association never comes
        up. Checked here, a missing port is named seconds after bring-up.
        """
        want = {name: port for ports in self._ports.values() for name, port in ports}

        def wrong_ports() -> dict:
            data = json.loads(
                self.ovs.vsctl("--format=json", "--columns=name,ofport,error", "list", "Interface")
            )["data"]
            have = {row[0]: (row[1], row[2]) for row in data}
            return {
                name: have.get(name)
                for name, port in want.items()
                if name not in have or have[name][0] != port
            }

        wrong = poll_until(wrong_ports, lambda w: not w, timeout=timeout, interval=0.1).value
        if not wrong:
            return
        problems = []
        for name, got in sorted(wrong.items()):
            if got is None:
                problems.append(f"{name} (not in OVS)")
            else:
                error = got[1] if isinstance(got[1], str) else ""
                problems.append(
                    f"{name} (ofport {got[0]}, wanted {want[name]}"
                    + (f": {error}" if error else "")
                    + ")"
                )
        raise LabFailure(
            f"{len(wrong)} of {len(want)} switch ports missing in OVS: "
            + ", ".join(problems[:20])
            + (" ..." if len(problems) > 20 else "")
            + f"; see {self.run_dir}/ovs/ovs-vswitchd.log"
        )

    def link_between(self, a: str, b: str):
        """The plan's link joining switches a and b (the first, if parallel)."""
        for link in self.plan.links:
            if {link.a.switch, link.b.switch} == {a, b}:
                return link
        raise KeyError(f"no link between {a} and {b}")

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Cut or restore the link between switches a and b (both ends' carrier)."""
        link = self.link_between(a, b)
        state = "up" if up else "down"
        self.nodes["__ovs__"].cmd(
            f"ip link set {self.port_name(link.a.switch, link.a.port)} {state}; "
            f"ip link set {self.port_name(link.b.switch, link.b.port)} {state}"
        )

    #: VMs brought up side by side: each start mostly waits (for a daemon to fork and
    #: write its pid file, zebra's socket, mnexec), so a 50-VM lab starts in a third of
    #: the time; more threads than this only queue on the two CPUs.
    VM_START_THREADS = 6

    def _start_vms(self) -> None:
        with ThreadPoolExecutor(self.VM_START_THREADS, thread_name_prefix="vm-start") as pool:
            futures = [pool.submit(self._start_vm, vm) for vm in self.plan.vms]
            for future in futures:
                future.result()  # the first failure, in plan order, is the one reported

    def _start_vm(self, vm: VmPlan) -> None:
        node = self.nodes[f"vm:{vm.switch}"]
        ipv6 = self.plan.ipv6
        self._run_script(
            node, f"sysctl-{vm.switch}", ["sysctl", "-q", "-p"], commands.vm_sysctls(ipv6)
        )
        self._run_script(
            node,
            f"addresses-{vm.switch}",
            ["ip", "-batch"],
            commands.vm_addresses(vm, ipv6, self.plan.bgp.unnumbered),
        )
        if self.plan.ipv6:
            self._ipv6_ready(node, vm.name, [i.address6 for i in vm.interfaces])
        d = self.vm_dir(vm)
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "frr", "frr")
        os.chmod(d, 0o775)
        self._private_frr_dirs(vm)
        conf = os.path.join(d, "frr.conf")
        with open(conf, "w") as fh:
            fh.write(frr.frr_config(self.plan, vm.switch))
        os.chmod(conf, 0o644)
        with open(os.path.join(d, "bfdd.conf"), "w") as fh:
            fh.write(frr.bfd_config(self.plan))
        if "ospf6d" in frr.daemons_for(self.plan, vm.switch):
            with open(os.path.join(d, frr.config_file("ospf6d")), "w") as fh:
                fh.write(frr.ospf6_config(self.plan, vm.switch))
        zebra_conf = os.path.join(d, "zebra.conf")
        with open(zebra_conf, "w") as fh:
            fh.write(f"hostname {vm.name}\n")
        for daemon in frr.daemons_for(self.plan, vm.switch):
            self.start_frr_daemon(vm, daemon)
        self.start_client(vm)

    def _private_frr_dirs(self, vm: VmPlan) -> None:
        """Give the VM's FRR daemons their own /var/run/frr and /var/tmp/frr.

        FRR 8.4 writes state no option of ours can move: ospfd-gr.json, ospf6d-gr.json and
        ospf6d-at-seq-no.dat are absolute paths compiled in (-N/--pathspace leaves them
        where they are), and every daemon keeps log buffers in /var/tmp/frr/<daemon>.<pid>,
        which one killed by SIGKILL never removes. (bfdd.sock could be moved with --bfdctl,
        but lands in the VM's directory this way too.) Shared, those files are read and
        rewritten by every lab's daemons, and no lab can tell which of them are its own to
        remove. The VM node already has a mount namespace of its own (mnexec -n), so bind
        mounts made there are seen by its processes only and go away with them: whatever
        the daemons write lands in the run directory. Making the node's mounts private
        first means a mount can never propagate to the host, whatever Mininet did.
        """
        cmds = ["mount --make-rprivate /"]
        for target, (name, mode) in FRR_PRIVATE_DIRS.items():
            if not os.path.isdir(target):  # FRR's own, as its first daemon would make it
                os.makedirs(target, mode=mode, exist_ok=True)  # VMs start side by side
                shutil.chown(target, "frr", "frr")
            source = os.path.join(self.vm_dir(vm), name)
            os.makedirs(source, exist_ok=True)
            shutil.chown(source, "frr", "frr")
            os.chmod(source, mode)
            cmds.append(f"mount --bind {source} {target}")
        out = self.nodes[f"vm:{vm.switch}"].cmd(" && ".join(cmds) + " && echo mounts-ok")
        if "mounts-ok" not in out:
            raise LabFailure(f"private FRR directories of VM {vm.name}: {out.strip()}")

    def start_frr_daemon(self, vm: VmPlan, daemon: str) -> None:
        node = self.nodes[f"vm:{vm.switch}"]
        d = self.vm_dir(vm)
        cfg = os.path.join(d, frr.config_file(daemon))
        pidfile = os.path.join(d, f"{daemon}.pid")
        with contextlib.suppress(FileNotFoundError):
            os.remove(pidfile)  # a stale one would name a dead (or reused) pid
        out = node.cmd(
            f"{FRR_DIR}/{daemon} -d -i {pidfile} -z {d}/zserv.api --vty_socket {d} "
            f"-f {cfg} --log file:{d}/{daemon}.log 2>&1"
        )
        try:
            self.procs.add_pidfile(f"{daemon}@{vm.switch}", pidfile)
        except RuntimeError as exc:
            raise LabFailure(f"{daemon} in VM {vm.name} did not start: {out.strip()}") from exc
        if daemon == "zebra":
            self._wait_for(os.path.join(d, "zserv.api"), f"zebra of {vm.name}")

    def start_client(self, vm: VmPlan) -> None:
        node = self.nodes[f"vm:{vm.switch}"]
        logfile = open(os.path.join(self.vm_dir(vm), "rfclient.log"), "ab")  # noqa: SIM115
        popen = node.popen(
            [
                self.python,
                "-m",
                "routeflow.client",
                "--vm-id",
                hex(vm.vm_id),
                "--server",
                self.server_addresses,
                "--secret-file",
                self.secret_file,
                "--log-level",
                self.log_level,
            ],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=self._env(),
        )
        logfile.close()
        self.procs.add_popen(f"rfclient@{vm.switch}", popen)
        self.write_manifest()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one process this lab started (by its recorded pid) and forget it."""
        for t in list(self.procs.procs):
            if t.name == name:
                t.signal(sig)
                self.procs.stop_one(t)  # reaps it (and escalates if sig was ignored)
                if name == "rfproxy" or (self.proxy is not None and self.proxy.pid == t.pid):
                    self.proxy = None
                elif self.server is not None and self.server.pid == t.pid:
                    self.server = None
                return
        raise KeyError(f"no running process named {name!r}")

    def _ipv6_ready(self, node, what: str, addresses: list[str], timeout: float = 5.0) -> None:
        """Fail the bring-up unless node has its IPv6 addresses and none is unusable.

        With DAD off nothing should ever be tentative; an address that is (or failed
        DAD), or one that never landed, would silently break OSPFv3 or a host's default
        route later, far from its cause.
        """

        def unusable() -> tuple[list[str], list[str]]:
            out = node.cmd("ip -6 -o addr show")
            missing = [a for a in addresses if f" inet6 {a} " not in out]
            stuck = [ln for ln in out.splitlines() if "tentative" in ln or "dadfailed" in ln]
            return missing, stuck

        got = poll_until(unusable, lambda ms: ms == ([], []), timeout=timeout, interval=0.1)
        if not got:
            missing, stuck = got.value
            raise LabFailure(
                f"IPv6 addresses of {what}: missing {missing}, tentative or failed {stuck}"
            )

    def _wait_for(self, path: str, what: str, timeout: float = 10.0) -> None:
        if not poll_until(lambda: os.path.exists(path), timeout=timeout, interval=0.05):
            raise LabFailure(f"{what} did not come up (no {path})")

    # --- access -----------------------------------------------------------------

    def host(self, name: str):
        return self.nodes[name]

    def vm_node(self, switch: str):
        if self.auto:
            from routeflow.server.vmnetns import NsNode, holder_of

            vm = self.plan.vm(switch)
            pid = holder_of(self.auto_vm_dir, f"vm-{vm.dp_id:x}")
            return NsNode(pid) if pid is not None else _NoVm()
        return self.nodes[f"vm:{switch}"]

    def vtysh(self, switch: str, command: str) -> str:
        vm = self.plan.vm(switch)
        r = subprocess.run(
            ["vtysh", "--vty_socket", self.vm_dir(vm), "-c", command],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return r.stdout + r.stderr

    # --- teardown ---------------------------------------------------------------

    def peak_memory(self) -> dict[str, tuple[int, int]]:
        """Daemon kind ("rfclient", "zebra", "ovs-vswitchd"...) -> (processes, summed peak
        RSS in KiB), from each running process's VmHWM: what the lab costs in memory."""
        out: dict[str, tuple[int, int]] = {}
        for t in self.procs.procs:
            try:
                with open(f"/proc/{t.pid}/status") as fh:
                    kib = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
            except (OSError, StopIteration, ValueError):
                continue
            kind = t.name.split("@", 1)[0]
            n, total = out.get(kind, (0, 0))
            out[kind] = (n + 1, total + kib)
        return out

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.memory = self.peak_memory()  # before anything is stopped
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            # Clients and routing daemons first (they live in namespaces the
            # network teardown removes), then the network, then the rest.
            if self.auto:  # rfserver first (it starts VMs), then the VMs it recorded
                from routeflow.server.vmnetns import stop_all

                self.procs.stop_many([t for t in self.procs.procs if t.name in self.server_names])
                stop_all(self.auto_vm_dir, self.vs_name, self._env())
            self.procs.stop_many(
                [
                    t
                    for t in reversed(self.procs.procs)
                    if "@" in t.name or t.name.startswith("rfproxy") or t.name == "ovs-vswitchd"
                ]
            )
            if self.net is not None:
                # Every node is a namespace held by its shell (Mininet recorded its pid); the
                # namespace, its mounts and its interfaces (both ends of every veth) go with
                # the last process in it. Mininet's net.stop() would first delete each link
                # through a node's shell, one command at a time (seconds for a backbone),
                # and fails on a shell still busy with a command cut short by Ctrl-C.
                for node in self.net.hosts:
                    try:
                        node.terminate()
                    except Exception:
                        log.exception("terminating Mininet node %s", node.name)
            self.procs.stop_all()
            if self.etcd is not None:  # after the rfservers that use it
                self.etcd.stop()
        finally:
            for s, h in old.items():
                signal.signal(s, h)

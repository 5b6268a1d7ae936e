"""The netns VM backend (server/vmbackend.py): a VM is a network + mount namespace.

What the lab runner does for its VMs, done on demand for rfserver --auto: a holder process
(``unshare --net --mount ... sleep infinity``) owns the namespaces; FRR's shared
directories are bind-mounted from the VM's own directory inside them (see lab/runner.py
_private_frr_dirs for why); each interface is a veth pair, the VM end ``eth<N>`` moved into
the VM, the other end a port of the virtual switch (in ``vs_netns``, the namespace of
ovs-vswitchd's ports); zebra, the routing daemon and rfclient run inside through nsenter.

Everything a VM holds is written to ``<vm_dir>/<name>/vm.json`` as soon as it exists (the
spec, the holder's and rfclient's pids, the switch-side port names), so that a restarted
rfserver adopts its running VMs (``running``) and anything else can stop them by pid
(``stop_all``: the lab's teardown). Processes are only ever signalled after checking
that the pid still runs what was recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from routeflow.server.autoconf import IfaceSpec, VmSpec, decode_spec, encode_spec
from routeflow.server.vmbackend import BackendError

__all__ = ["NetnsBackend", "NsNode", "stop_all"]

FRR_DIR = "/usr/lib/frr"
#: FRR's shared directories -> (the VM directory's replacement, its mode); see lab/runner.py.
FRR_PRIVATE_DIRS = {"/var/run/frr": ("frr-run", 0o755), "/var/tmp/frr": ("frr-tmp", 0o700)}
DAEMONS = {"ospf": ["zebra", "ospfd"]}
SYSCTLS = [
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.igmp_max_memberships=1024",  # ospfd joins 224.0.0.5 once per interface
]
RECORD = "vm.json"


def vs_port_name(vm_id: int, port: int) -> str:
    """The switch-side name of a VM interface: short (IFNAMSIZ) and unique per (vm, port)."""
    return "rv" + hashlib.blake2s(f"{vm_id:x}:{port}".encode(), digest_size=6).hexdigest()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int | None, needle: str) -> bool:
    return bool(pid) and needle in _cmdline(pid or 0)


class NsNode:
    """A VM seen from outside: run a command in its namespaces (the lab's checks use it)."""

    def __init__(self, holder: int) -> None:
        self.pid = holder

    def cmd(self, text: str, timeout: float = 30.0) -> str:
        r = subprocess.run(
            ["nsenter", f"--target={self.pid}", "--net", "--mount", "--", "sh", "-c", text],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return r.stdout + r.stderr


class NetnsBackend:
    """See the module docstring; the VmBackend Protocol's calls block (worker threads)."""

    def __init__(
        self,
        vm_dir: str,
        *,
        vs_bridge: str,
        client_argv: list[str],
        vs_netns: str | None = None,
        env: dict[str, str] | None = None,
        frr_dir: str = FRR_DIR,
    ) -> None:
        self.vm_dir = vm_dir
        self.vs_bridge = vs_bridge
        self.vs_netns = vs_netns
        self.client_argv = client_argv
        self.env = env
        self.frr_dir = frr_dir
        self._children: dict[int, subprocess.Popen] = {}
        self._ovs_pending: list[tuple[list[str], threading.Event, list]] = []
        self._ovs_pending_lock = threading.Lock()
        self._ovs_run_lock = threading.Lock()
        #: step -> [calls, seconds]: where starting and changing VMs spends its time.
        self.timings: dict[str, list[float]] = {}
        os.makedirs(vm_dir, exist_ok=True)
        os.chmod(vm_dir, 0o755)

    # --- records -------------------------------------------------------------------------

    def _dir(self, name: str) -> str:
        return os.path.join(self.vm_dir, name)

    def _read(self, name: str) -> dict | None:
        try:
            with open(os.path.join(self._dir(name), RECORD)) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def _write(self, name: str, record: dict) -> None:
        path = os.path.join(self._dir(name), RECORD)
        with open(path + ".tmp", "w") as fh:
            json.dump(record, fh)
        os.replace(path + ".tmp", path)

    def _records(self) -> dict[str, dict]:
        out = {}
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.vm_dir)):
                record = self._read(name)
                if record is not None:
                    out[name] = record
        return out

    # --- the Protocol --------------------------------------------------------------------

    def running(self) -> dict[int, VmSpec]:
        out = {}
        for record in self._records().values():
            try:
                spec = decode_spec(record["spec"].encode())
            except (KeyError, ValueError, TypeError):
                continue
            if _alive(record.get("holder"), "sleep") and _alive(
                record.get("client"), "routeflow.client"
            ):
                out[spec.vm_id] = spec  # a dead or half-started VM is not running:
                # start() clears what is left of it first
        return out

    def start(self, spec: VmSpec) -> None:
        old = self._read(spec.name)
        if old is not None:  # what a dead or half-started VM left
            self._stop(spec.name, old)
        d = self._dir(spec.name)
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "frr", "frr")
        os.chmod(d, 0o775)
        holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._children[holder.pid] = holder
        record = {"spec": encode_spec(spec).decode(), "holder": holder.pid, "ports": {}}
        self._write(spec.name, record)
        self._wait_namespaces(spec, holder.pid)
        lines = ["set -e"]
        for target, (sub, mode) in FRR_PRIVATE_DIRS.items():
            if not os.path.isdir(target):
                os.makedirs(target, mode=mode, exist_ok=True)
                shutil.chown(target, "frr", "frr")
            source = os.path.join(d, sub)
            os.makedirs(source, exist_ok=True)
            shutil.chown(source, "frr", "frr")
            os.chmod(source, mode)
            lines.append(f"mount --bind {source} {target}")
        lines += [f"sysctl -qw {s}" for s in SYSCTLS]
        lines += ["ip link set lo up", f"ip addr replace {spec.router_id}/32 dev lo"]
        lines += self._plug(spec, holder.pid, spec.interfaces, record)
        self._write_config(spec)
        with open(os.path.join(d, "zebra.conf"), "w") as fh:
            fh.write(f"hostname {spec.name}\n")
        for daemon in DAEMONS[spec.routing]:
            lines += self._daemon_lines(spec, daemon)
        # One script for the whole VM side: under load every process started costs
        # (fork, exec, nsenter), and a backbone starts hundreds of them.
        self._vm_sh(spec, holder.pid, "setting up the VM and starting FRR", lines)
        for daemon in DAEMONS[spec.routing]:
            self._wait_daemon(spec, daemon)
        log = open(os.path.join(d, "rfclient.log"), "ab")  # noqa: SIM115
        client = subprocess.Popen(
            [*self._in_vm(holder.pid), *self.client_argv, "--vm-id", hex(spec.vm_id)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
        )
        log.close()
        self._children[client.pid] = client
        record["client"] = client.pid
        self._write(spec.name, record)

    def add_interfaces(self, spec: VmSpec, ifaces: tuple[IfaceSpec, ...]) -> None:
        record = self._read(spec.name)
        if record is None or not _alive(record.get("holder"), "sleep"):
            raise BackendError(f"{spec.name}: not running; cannot add interfaces")
        lines = self._plug(spec, record["holder"], ifaces, record)
        self._vm_sh(spec, record["holder"], "addressing interfaces", ["set -e", *lines])
        self._write_config(spec)
        path = os.path.join(self._dir(spec.name), "add.conf")
        with open(path, "w") as fh:
            fh.write("".join(i.frr for i in ifaces))
        os.chmod(path, 0o644)
        self._vtysh(spec, ["-f", path], "applying the new interfaces' configuration")
        record["spec"] = encode_spec(spec).decode()
        self._write(spec.name, record)

    def remove_interfaces(self, spec: VmSpec, ifaces: tuple[IfaceSpec, ...]) -> None:
        record = self._read(spec.name)
        if record is None:
            return
        names = [record["ports"].pop(str(i.port), None) for i in ifaces]
        names = [n for n in names if n]
        if names:
            args: list[str] = []
            for n in names:
                args += ["--", "--if-exists", "del-port", self.vs_bridge, n]
            self._run(["ovs-vsctl", *args], spec, "removing switch-side ports", check=False)
            self._run(
                [*self._in_vs(), "sh", "-c", "; ".join(f"ip link del {n}" for n in names)],
                spec,
                "deleting veths",
                check=False,
            )
        self._write_config(spec)
        record["spec"] = encode_spec(spec).decode()
        self._write(spec.name, record)

    def stop(self, vm_id: int) -> None:
        for name, record in self._records().items():
            with contextlib.suppress(KeyError, ValueError, TypeError):
                if decode_spec(record["spec"].encode()).vm_id == vm_id:
                    self._stop(name, record)

    def stop_all(self) -> None:
        self._stop_many(self._records())

    # --- steps ---------------------------------------------------------------------------

    def _in_vm(self, holder: int) -> list[str]:
        return ["nsenter", f"--target={holder}", "--net", "--mount", "--"]

    def _in_vs(self) -> list[str]:
        return ["nsenter", f"--net={self.vs_netns}", "--"] if self.vs_netns else []

    def _timed(self, step: str, since: float) -> None:
        t = self.timings.setdefault(step, [0, 0.0])
        t[0] += 1
        t[1] += time.monotonic() - since

    def _run(self, argv: list[str], spec: VmSpec, step: str, check: bool = True) -> str:
        t = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=self.env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{spec.name}: {step}: {exc}") from exc
        finally:
            self._timed(step, t)
        if check and r.returncode != 0:
            why = (r.stderr or r.stdout).strip()[-500:]
            raise BackendError(f"{spec.name}: {step}: {argv[0]} exit {r.returncode}: {why}")
        return r.stdout

    def _vm_sh(self, spec: VmSpec, holder: int, step: str, lines: list[str]) -> None:
        self._run([*self._in_vm(holder), "sh", "-c", "\n".join(lines)], spec, step)

    def _wait_namespaces(self, spec: VmSpec, pid: int, timeout: float = 5.0) -> None:
        """unshare has made the namespaces once it runs sleep in them."""
        mine = os.readlink("/proc/self/ns/net")
        t = time.monotonic()
        deadline = t + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/net") != mine and "sleep" in _cmdline(pid):
                    self._timed("namespaces", t)
                    return
            time.sleep(0.01)
        raise BackendError(f"{spec.name}: the namespace holder (pid {pid}) did not start")

    def _plug(self, spec: VmSpec, holder: int, ifaces, record: dict) -> list[str]:
        """veth pairs: eth<N> in the VM, the other end a port of the virtual switch.

        Returns the VM side's lines (addresses, link up) for the caller's VM script.
        """
        if not ifaces:
            return []
        names = [(vs_port_name(spec.vm_id, i.port), i) for i in ifaces]
        args: list[str] = []
        for vs, i in names:
            args += ["--", "--may-exist", "add-port", self.vs_bridge, vs]
            record["ports"][str(i.port)] = vs
        # One ip per batch (under load every process started costs; a hub has 17 links).
        vs_lines = [
            "set -e",
            *_ip_batch([f"link del {vs}" for vs, _i in names], force=True),
            *_ip_batch(
                [
                    f"link add {vs} type veth peer name {i.ifname} address {i.mac} netns {holder}"
                    for vs, i in names
                ]
                + [f"link set {vs} up" for vs, _i in names]
            ),
            *(f"ethtool -K {vs} tx off >/dev/null" for vs, _i in names),
        ]
        vm_lines = [
            *_ip_batch([f"addr replace {i.address} dev {i.ifname}" for i in ifaces]),
            *(f"ethtool -K {i.ifname} tx off >/dev/null" for i in ifaces),
            *_ip_batch([f"link set {i.ifname} up" for i in ifaces]),
        ]
        self._write(spec.name, record)
        # The VM end comes up last: rfclient sends its mapping packet as soon as it sees
        # the interface, and one sent before the port is on the virtual switch is lost.
        self._run([*self._in_vs(), "sh", "-c", "\n".join(vs_lines)], spec, "creating veths")
        self._ovs_add(spec, args)
        return vm_lines

    def _ovs_add(self, spec: VmSpec, args: list[str]) -> None:
        """ovs-vsctl for these ports, in one transaction with whatever other VMs add now.

        ovs-vsctl waits until ovs-vswitchd has reconfigured, which at a backbone's size
        takes most of a second under load; VMs starting side by side share one.
        """
        done = threading.Event()
        box: list[BackendError | None] = []
        with self._ovs_pending_lock:
            self._ovs_pending.append((args, done, box))
        with self._ovs_run_lock:
            if not done.is_set():
                with self._ovs_pending_lock:
                    batch, self._ovs_pending = self._ovs_pending, []
                error: BackendError | None = None
                try:
                    every = [a for args, _d, _b in batch for a in args]
                    self._run(["ovs-vsctl", "--timeout=30", *every], spec, "adding vs ports")
                except BackendError as exc:
                    error = exc
                for _args, event, result in batch:
                    result.append(error)
                    event.set()
        if box and box[0] is not None:
            raise BackendError(f"{spec.name}: {box[0]}")

    def _write_config(self, spec: VmSpec) -> None:
        path = os.path.join(self._dir(spec.name), "frr.conf")
        with open(path + ".tmp", "w") as fh:
            fh.write(spec.frr_config)
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)

    def _daemon_lines(self, spec: VmSpec, daemon: str) -> list[str]:
        """sh lines starting an FRR daemon in the VM (zebra: and waiting for its socket)."""
        d = self._dir(spec.name)
        pidfile = os.path.join(d, f"{daemon}.pid")
        with contextlib.suppress(FileNotFoundError):
            os.remove(pidfile)  # a stale one would name a dead (or reused) pid
        cfg = os.path.join(d, "zebra.conf" if daemon == "zebra" else "frr.conf")
        lines = [
            f"{self.frr_dir}/{daemon} -d -i {pidfile} -z {d}/zserv.api --vty_socket {d} "
            f"-f {cfg} --log file:{d}/{daemon}.log"
        ]
        if daemon == "zebra":  # its clients need the socket
            lines.append(
                f"i=0; while [ ! -S {d}/zserv.api ]; do i=$((i+1)); "
                f'[ $i -gt 500 ] && {{ echo "zebra: no {d}/zserv.api"; exit 1; }}; '
                "sleep 0.02; done"
            )
        return lines

    def _wait_daemon(self, spec: VmSpec, daemon: str) -> None:
        d = self._dir(spec.name)
        pidfile = os.path.join(d, f"{daemon}.pid")
        t = time.monotonic()
        while not os.path.exists(pidfile):
            if time.monotonic() > t + 10:
                raise BackendError(f"{spec.name}: {daemon} did not come up (see {d}/{daemon}.log)")
            time.sleep(0.02)
        self._timed(f"{daemon} ready", t)

    def _vtysh(self, spec: VmSpec, args: list[str], step: str) -> None:
        self._run(["vtysh", "--vty_socket", self._dir(spec.name), *args], spec, step)

    def _stop(self, name: str, record: dict) -> None:
        self._stop_many({name: record})

    def _stop_many(self, records: dict[str, dict]) -> None:
        """Kill every process of these VMs (SIGKILL: a VM is disposable, its routes are
        rfserver's), wait for them, then take their ports off the virtual switch at once."""
        victims: list[tuple[int | None, str]] = []
        ports: list[str] = []
        for name, record in records.items():
            d = self._dir(name)
            victims.append((record.get("client"), "routeflow.client"))
            for daemon in ("ospfd", "bgpd", "bfdd", "staticd", "zebra"):
                with contextlib.suppress(OSError, ValueError), open(f"{d}/{daemon}.pid") as fh:
                    victims.append((int(fh.read().strip()), daemon))
            victims.append((record.get("holder"), "sleep"))
            ports += list(record.get("ports", {}).values())
        for pid, needle in victims:
            if pid and _alive(pid, needle):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        for pid, needle in victims:
            if not pid:
                continue
            child = self._children.pop(pid, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
            while _alive(pid, needle) and time.monotonic() < deadline:
                time.sleep(0.01)
        if ports:
            args: list[str] = []
            for n in ports:
                args += ["--", "--if-exists", "del-port", self.vs_bridge, n]
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    ["ovs-vsctl", "--timeout=20", *args],
                    capture_output=True,
                    timeout=30,
                    env=self.env,
                )
        for name in records:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self._dir(name), RECORD))


def _ip_batch(commands: list[str], force: bool = False) -> list[str]:
    """sh lines running ``commands`` through one ``ip -batch`` (``force``: errors ignored)."""
    if force:
        return ["ip -force -batch - >/dev/null 2>&1 <<'EOF' || true", *commands, "EOF"]
    return ["ip -batch - <<'EOF'", *commands, "EOF"]


def stop_all(vm_dir: str, vs_bridge: str, env: dict[str, str] | None = None) -> None:
    """Stop every VM recorded under ``vm_dir`` (by pid): for whoever outlives rfserver."""
    if os.path.isdir(vm_dir):
        NetnsBackend(vm_dir, vs_bridge=vs_bridge, client_argv=[], env=env).stop_all()


def holder_of(vm_dir: str, name: str) -> int | None:
    """The namespace holder pid of VM ``name``, if it runs."""
    try:
        with open(os.path.join(vm_dir, name, RECORD)) as fh:
            pid = json.load(fh).get("holder")
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, "sleep") else None

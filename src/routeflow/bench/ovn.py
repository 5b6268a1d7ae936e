"""OVN on this machine, doing the tenant benchmark's job: the peer `routeflow bench tenant`
measures against (thin I/O; Debian's ``ovn-central`` and ``ovn-host`` 23.03).

Everything is private to one run, as notes/tenant-networks.md §5 verified: the NB and SB
ovsdb-servers and ovn-northd run on unix sockets in the run directory; every chassis is
an ``OvsNode`` (a namespace with its own ovsdb-server and ovs-vswitchd, userspace
datapath, the tunnel endpoint on ``br-ul``'s internal port) plus an ovn-controller in the
same namespace with its own ``OVS_RUNDIR`` (it reaches the switch at
``$OVS_RUNDIR/br-int.mgmt``) and ``OVN_RUNDIR``. The system's OVS and OVN are never
touched: every daemon is started here without ``--detach`` and stopped by its pid.

The northbound API is driven three ways, because users do all three: one ``ovn-nbctl``
process per change, ``ovn-nbctl`` in daemon mode (``OVN_NB_DAEMON``), and a persistent
OVSDB JSON-RPC connection (``OvsdbRpc``: one ``transact`` per change, what ovsdbapp and
Neutron's ML2/OVN hold).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

from routeflow.lab.ovs import unix_socket_accepts
from routeflow.lab.ovsnode import OvsNode, Underlay, run
from routeflow.lab.poll import poll_until
from routeflow.lab.procs import ProcessSet, Tracked

NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
TOOLS = ("ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl", "ovsdb-tool")


class OvnError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """The OVN programs not installed (apt-get install ovn-central ovn-host)."""
    return [t for t in TOOLS if shutil.which(t) is None]


# --- OVSDB JSON-RPC ------------------------------------------------------------------


class OvsdbRpc:
    """A persistent JSON-RPC connection to an ovsdb-server (RFC 7047), blocking.

    ovsdb-server sends JSON objects back to back with no delimiter, so replies are cut
    out of the stream with ``raw_decode``; its ``echo`` probes are answered.
    """

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = ""
        self.next_id = 0
        self.decoder = json.JSONDecoder()

    def close(self) -> None:
        self.sock.close()

    def _send(self, obj: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(obj).encode())

    def _read(self) -> dict[str, Any]:
        while True:
            text = self.buf.lstrip()
            if text:
                try:
                    obj, end = self.decoder.raw_decode(text)
                except json.JSONDecodeError:
                    pass
                else:
                    self.buf = text[end:]
                    if isinstance(obj, dict):
                        return obj
                    continue
            data = self.sock.recv(65536)
            if not data:
                raise OvnError("ovsdb-server closed the connection")
            self.buf += data.decode()

    def call(self, method: str, params: list[Any]) -> Any:
        self.next_id += 1
        want = self.next_id
        self._send({"id": want, "method": method, "params": params})
        while True:
            msg = self._read()
            if msg.get("method") == "echo":
                self._send({"id": msg.get("id"), "result": msg.get("params", []), "error": None})
                continue
            if msg.get("id") != want:
                continue
            if msg.get("error") is not None:
                raise OvnError(f"{method}: {msg['error']}")
            return msg.get("result")

    def transact(self, db: str, *ops: dict[str, Any]) -> list[Any]:
        """One transaction; an operation's error raises (naming it)."""
        result = self.call("transact", [db, *ops])
        for op, res in zip(ops, result, strict=False):
            if isinstance(res, dict) and res.get("error"):
                raise OvnError(f"{op.get('op')} {op.get('table')}: {res}")
        if len(result) > len(ops) and result[-1] and result[-1].get("error"):
            raise OvnError(f"transaction: {result[-1]}")
        return list(result)


def lsp_insert_ops(
    switch_uuid: str,
    name: str,
    mac: str,
    ip: str,
    dhcp_uuid: str | None,
    port_group: str | None = None,
) -> list[dict[str, Any]]:
    """The NB operations of ``lsp-add SWITCH NAME -- lsp-set-addresses NAME "MAC IP"
    [-- lsp-set-dhcpv4-options NAME UUID]``, and the port's membership of ``port_group``
    (what ML2/OVN does for a security group) in the same transaction (pure)."""
    row: dict[str, Any] = {"name": name, "addresses": f"{mac} {ip}"}
    if dhcp_uuid is not None:
        row["dhcpv4_options"] = ["uuid", dhcp_uuid]
    ops: list[dict[str, Any]] = [
        {"op": "insert", "table": "Logical_Switch_Port", "row": row, "uuid-name": "lsp"},
        {
            "op": "mutate",
            "table": "Logical_Switch",
            "where": [["_uuid", "==", ["uuid", switch_uuid]]],
            "mutations": [["ports", "insert", ["set", [["named-uuid", "lsp"]]]]],
        },
    ]
    if port_group is not None:
        ops.append(
            {
                "op": "mutate",
                "table": "Port_Group",
                "where": [["name", "==", port_group]],
                "mutations": [["ports", "insert", ["set", [["named-uuid", "lsp"]]]]],
            }
        )
    return ops


#: Neutron's default security group as ML2/OVN writes it: egress allowed, ingress only from
#: members of the group (its address set), replies of allowed connections, the rest dropped.
DEFAULT_SG = "pg_default"
DEFAULT_SG_ACLS = (
    ("from-lport", "1002", f"inport == @{DEFAULT_SG} && ip4", "allow-related"),
    (
        "to-lport",
        "1002",
        f"outport == @{DEFAULT_SG} && ip4 && ip4.src == ${DEFAULT_SG}_ip4",
        "allow-related",
    ),
    ("from-lport", "1001", f"inport == @{DEFAULT_SG} && ip", "drop"),
    ("to-lport", "1001", f"outport == @{DEFAULT_SG} && ip", "drop"),
)


# --- central: NB, SB, northd -----------------------------------------------------------


class OvnCentral:
    """NB and SB ovsdb-servers plus ovn-northd under ``rundir``, stopped by pid."""

    def __init__(self, rundir: str, procs: ProcessSet) -> None:
        self.rundir = rundir
        self.procs = procs
        self.nb_sock = os.path.join(rundir, "nb.sock")
        self.sb_sock = os.path.join(rundir, "sb.sock")
        self.nbctl_daemon: str | None = None  # OVN_NB_DAEMON control socket
        self._mine: list[Tracked] = []

    def _popen(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(os.path.join(self.rundir, f"{name}.out"), "ab")  # noqa: SIM115 (child keeps it)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        log.close()
        self._mine.append(self.procs.add_popen(name, proc))

    def start(self) -> None:
        os.makedirs(self.rundir, exist_ok=True)
        r = self.rundir
        for db, schema, sock in (("nb", NB_SCHEMA, self.nb_sock), ("sb", SB_SCHEMA, self.sb_sock)):
            path = os.path.join(r, f"{db}.db")
            if os.path.exists(path):
                os.remove(path)
            run(["ovsdb-tool", "create", path, schema])
            self._popen(
                f"ovsdb-server-{db}",
                [
                    "ovsdb-server", path, f"--remote=punix:{sock}",
                    f"--pidfile={r}/ovsdb-{db}.pid", f"--unixctl={r}/ovsdb-{db}.ctl",
                    f"--log-file={r}/ovsdb-{db}.log", "-vconsole:off",
                ],
            )  # fmt: skip
            self._wait(sock, f"the {db.upper()} ovsdb-server")
        self.nbctl("--no-wait", "init")
        self._popen(
            "ovn-northd",
            [
                "ovn-northd", f"--ovnnb-db=unix:{self.nb_sock}", f"--ovnsb-db=unix:{self.sb_sock}",
                f"--pidfile={r}/ovn-northd.pid", f"--unixctl={r}/ovn-northd.ctl",
                f"--log-file={r}/ovn-northd.log", "-vconsole:off",
            ],
        )  # fmt: skip
        self._wait(f"{r}/ovn-northd.ctl", "ovn-northd")

    def start_nbctl_daemon(self) -> None:
        """``ovn-nbctl --detach`` without detaching: its control socket is OVN_NB_DAEMON."""
        r = self.rundir
        ctl = f"{r}/ovn-nbctl.ctl"
        self._popen(
            "ovn-nbctl-daemon",
            [
                "ovn-nbctl", f"--db=unix:{self.nb_sock}", f"--unixctl={ctl}",
                f"--pidfile={r}/ovn-nbctl.pid", f"--log-file={r}/ovn-nbctl.log", "-vconsole:off",
                "--detach", "--no-chdir",
            ],
        )  # fmt: skip
        self._wait(ctl, "ovn-nbctl in daemon mode")
        # --detach forks: the daemon is the pidfile's process, the one started exits.
        got = poll_until(lambda: _read_pid(f"{r}/ovn-nbctl.pid"), timeout=10, interval=0.05)
        if got.value is None:
            raise OvnError("ovn-nbctl --detach wrote no pidfile")
        self._mine.append(self.procs.add_pidfile("ovn-nbctl-daemon", f"{r}/ovn-nbctl.pid"))
        self.nbctl_daemon = ctl

    def _wait(self, path: str, what: str, timeout: float = 15.0) -> None:
        if not poll_until(lambda: unix_socket_accepts(path), timeout=timeout, interval=0.02):
            raise OvnError(f"{what} did not start (no listener on {path}); see {self.rundir}/*.log")

    def nbctl(self, *args: str, daemon: bool = False, timeout: float = 60) -> str:
        """``ovn-nbctl`` against this NB: a process of its own, or through the daemon."""
        env = dict(os.environ)
        if daemon:
            if self.nbctl_daemon is None:
                raise OvnError("the ovn-nbctl daemon is not running")
            env["OVN_NB_DAEMON"] = self.nbctl_daemon
            argv = ["ovn-nbctl", *args]
        else:
            env.pop("OVN_NB_DAEMON", None)
            argv = ["ovn-nbctl", f"--db=unix:{self.nb_sock}", *args]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        if r.returncode != 0:
            raise OvnError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
        return r.stdout

    def sbctl(self, *args: str) -> str:
        return run(["ovn-sbctl", f"--db=unix:{self.sb_sock}", *args], timeout=60)

    def rpc(self) -> OvsdbRpc:
        return OvsdbRpc(self.nb_sock)

    def pids(self) -> dict[str, int]:
        return {t.name: t.pid for t in self._mine if t.alive()}

    def stop(self) -> None:
        for t in reversed(self._mine):
            if t in self.procs.procs:
                self.procs.stop_one(t)
        self._mine = []


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


# --- chassis ---------------------------------------------------------------------------


class OvnChassis:
    """One compute node: an ``OvsNode`` with br-int (netdev) and an ovn-controller."""

    def __init__(self, name: str, ns: str, rundir: str, procs: ProcessSet) -> None:
        self.name = name  # the chassis name (system-id)
        self.node = OvsNode(ns, rundir, procs)
        self.procs = procs
        self.controller: Tracked | None = None

    def start(
        self, underlay: Underlay, address: str, central: OvnCentral, encap: str = "geneve"
    ) -> None:
        node = self.node
        node.start()
        node.add_underlay(underlay, address)
        ip = address.split("/")[0]
        node.vsctl(
            "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
            "fail-mode=secure", "other-config:disable-in-band=true",
        )  # fmt: skip
        node.ip("link", "set", "br-int", "up")
        node.vsctl(
            "set", "open_vswitch", ".",
            f"external_ids:system-id={self.name}",
            f"external_ids:ovn-remote=unix:{central.sb_sock}",
            f"external_ids:ovn-encap-type={encap}",
            f"external_ids:ovn-encap-ip={ip}",
            "external_ids:ovn-bridge-datapath-type=netdev",
        )  # fmt: skip
        r = node.rundir
        ovn_rundir = os.path.join(r, "ovn")
        os.makedirs(ovn_rundir, exist_ok=True)
        log = open(os.path.join(r, "ovn-controller.out"), "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                "ip", "netns", "exec", node.ns, "ovn-controller", f"unix:{r}/db.sock",
                f"--pidfile={r}/ovn-controller.pid", f"--log-file={r}/ovn-controller.log",
                "-vconsole:off",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **node.env, "OVN_RUNDIR": ovn_rundir},
        )  # fmt: skip
        log.close()
        self.controller = self.procs.add_popen(f"ovn-controller@{self.name}", proc)

    def controller_pid(self) -> int | None:
        """ovn-controller's own pid (``ip netns exec`` execs it, so it is the Popen's)."""
        return self.controller.pid if self.controller is not None else None

    def flows(self) -> list[str]:
        out = self.node.ofctl("--no-stats", "dump-flows", "br-int")
        return [line for line in out.splitlines() if "actions=" in line]

    def stop(self) -> None:
        if self.controller is not None and self.controller in self.procs.procs:
            self.procs.stop_one(self.controller)
        self.controller = None
        self.node.stop()


def wait_chassis(central: OvnCentral, names: Sequence[str], timeout: float = 60.0) -> None:
    """Until every chassis is registered in the SB with its encap."""

    def registered() -> bool:
        out = central.sbctl("--bare", "--columns=name", "list", "Chassis")
        return set(names) <= set(out.split())

    if not poll_until(registered, timeout=timeout, interval=0.1):
        raise OvnError(f"chassis {', '.join(names)} did not register in {timeout:.0f} s")

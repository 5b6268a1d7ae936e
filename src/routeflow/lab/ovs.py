"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) for one lab run.

Each lab gets its own database and daemons under its run directory, so two
labs (or a lab and the host's own OVS) never see each other's bridges, and
teardown is killing two pids. ovs-vsctl/ovs-ofctl find it through OVS_RUNDIR,
which the lab exports to everything it runs. Bridges use the userspace
datapath (datapath_type=netdev): there is no kernel OVS module here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from routeflow.lab.poll import poll_until
from routeflow.lab.procs import ProcessSet

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class OvsError(RuntimeError):
    pass


def unix_socket_accepts(path: str) -> bool:
    """Whether a unix stream socket accepts a connection. Its file existing is not enough:
    OVS daemons bind (the file appears) before they listen, and a client in between is
    refused (seen on a loaded machine: ``database connection failed (Connection refused)``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def ovs_env(rundir: str) -> dict[str, str]:
    return {
        "OVS_RUNDIR": rundir,
        "OVS_DBDIR": rundir,
        "OVS_LOGDIR": rundir,
        "OVS_SYSCONFDIR": rundir,
    }


class OvsInstance:
    def __init__(self, rundir: str, procs: ProcessSet) -> None:
        self.rundir = rundir
        self.procs = procs
        self.env = ovs_env(rundir)

    def start(self, popen=None) -> None:
        """Start both daemons; ``popen`` runs ovs-vswitchd (e.g. in a namespace)."""
        for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"):
            if shutil.which(tool) is None:
                raise OvsError(f"{tool} not found: install openvswitch-switch (make setup)")
        os.makedirs(self.rundir, exist_ok=True)
        db = os.path.join(self.rundir, "conf.db")
        if os.path.exists(db):
            os.remove(db)
        subprocess.run(["ovsdb-tool", "create", db, SCHEMA], check=True)
        r = self.rundir
        self.procs.add_popen(
            "ovsdb-server",
            subprocess.Popen(
                [
                    "ovsdb-server",
                    db,
                    f"--remote=punix:{r}/db.sock",
                    f"--pidfile={r}/ovsdb-server.pid",
                    f"--unixctl={r}/ovsdb-server.ctl",
                    f"--log-file={r}/ovsdb-server.log",
                    "-vconsole:off",
                ],
                stdin=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            ),
        )
        self._wait_for(f"{r}/db.sock", "ovsdb-server")
        self.vsctl("--no-wait", "init")
        popen = popen or (lambda argv, **kw: subprocess.Popen(argv, start_new_session=True, **kw))
        self.procs.add_popen(
            "ovs-vswitchd",
            popen(
                [
                    "ovs-vswitchd",
                    f"unix:{r}/db.sock",
                    f"--pidfile={r}/ovs-vswitchd.pid",
                    f"--unixctl={r}/ovs-vswitchd.ctl",
                    f"--log-file={r}/ovs-vswitchd.log",
                    "-vconsole:off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **self.env},
            ),
        )
        self._wait_for(f"{r}/ovs-vswitchd.ctl", "ovs-vswitchd")
        self.vsctl("show")

    def _wait_for(self, path: str, what: str, timeout: float = 10.0) -> None:
        if not poll_until(lambda: unix_socket_accepts(path), timeout=timeout, interval=0.05):
            raise OvsError(f"{what} did not start (no listener on {path}); see {self.rundir}/*.log")

    def vsctl(self, *args: str, timeout: int = 10) -> str:
        return self._run("ovs-vsctl", "-t", str(timeout), *args, timeout=timeout + 20)

    def ofctl(self, *args: str) -> str:
        return self._run("ovs-ofctl", *args)

    def _run(self, *cmd: str, timeout: float = 30) -> str:
        r = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **self.env}, timeout=timeout
        )
        if r.returncode != 0:
            raise OvsError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
        return r.stdout

"""A real etcd cluster on loopback, for tests and labs.

Every member listens on free 127.0.0.1 ports (never etcd's default 2379/2380,
which a system etcd may own), keeps its data under the run directory and logs
to ``run_dir/etcd-<i>.log``. Members are started in their own session and
stopped by the pid recorded at start (never by name), like the lab's other
daemons. Raft timings are shortened for a loopback lab (heartbeat 100 ms,
election 500 ms), which also lowers etcd's minimum lease TTL to about 0.75 s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request

from routeflow.lab.poll import poll_until
from routeflow.lab.procs import ProcessSet, Tracked, wait_exited

__all__ = ["ETCD", "EtcdCluster"]

log = logging.getLogger("routeflow.lab")

ETCD = "/usr/bin/etcd"


def _popen_session(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, start_new_session=True, **kwargs)


def _free_tcp_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all bound at once, so no duplicates)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError as err:
        return f"({err})"


class _PortTaken(Exception):
    pass


class EtcdCluster:
    """``members`` etcd processes forming one cluster on 127.0.0.1."""

    def __init__(self, run_dir: str, members: int = 3, name: str = "rf"):
        if members < 1:
            raise ValueError("an etcd cluster needs at least one member")
        self.run_dir = run_dir
        self.members = members
        self.name = name
        self._client_ports: list[int] = []
        self._peer_ports: list[int] = []
        self._procs = ProcessSet()
        self._tracked: list[Tracked | None] = [None] * members

    # --- addresses ------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Client endpoints ``host:port`` of every member (the killed ones too)."""
        return [f"127.0.0.1:{p}" for p in self._client_ports]

    def url(self, prefix: str = "/routeflow/") -> str:
        """A store URL for :func:`routeflow.rflib.store.open_store`."""
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        return f"etcd://{','.join(self.endpoints)}{prefix}"

    def log_path(self, i: int) -> str:
        return os.path.join(self.run_dir, f"etcd-{i}.log")

    def data_dir(self, i: int) -> str:
        return os.path.join(self.run_dir, f"etcd-{i}.data")

    def pid(self, i: int) -> int | None:
        t = self._tracked[i]
        return t.pid if t is not None else None

    def alive(self, i: int) -> bool:
        t = self._tracked[i]
        return t is not None and t.alive()

    def _status(self, i: int) -> dict | None:
        url = f"http://127.0.0.1:{self._client_ports[i]}/v3/maintenance/status"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=1.0) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def leader(self) -> int | None:
        """The index of the member that is raft leader now (None if unknown)."""
        statuses = {i: self._status(i) for i in range(self.members) if self.alive(i)}
        ids = {i: st.get("header", {}).get("member_id") for i, st in statuses.items() if st}
        for st in statuses.values():
            leader = st and st.get("leader")
            for i, member_id in ids.items():
                if leader and member_id == leader:
                    return i
        return None

    # --- life cycle -----------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start every member and wait until each answers ``/health``."""
        os.makedirs(self.run_dir, exist_ok=True)
        for attempt in (1, 2):
            ports = _free_tcp_ports(2 * self.members)
            self._client_ports = ports[: self.members]
            self._peer_ports = ports[self.members :]
            try:
                self._start_members()
                self._wait_healthy(timeout)
                log.info("etcd cluster %s up: %s", self.name, ", ".join(self.endpoints))
                return
            except _PortTaken as err:
                self.stop()
                if attempt == 2:
                    raise RuntimeError(f"etcd cluster {self.name}: {err}") from None
                log.info("etcd cluster %s: %s; retrying with new ports", self.name, err)
            except BaseException:
                self.stop()
                raise

    def _argv(self, i: int) -> list[str]:
        def peer(j: int) -> str:
            return f"http://127.0.0.1:{self._peer_ports[j]}"

        client = f"http://127.0.0.1:{self._client_ports[i]}"
        initial = ",".join(f"{self.name}{j}={peer(j)}" for j in range(self.members))
        token = f"{self.name}-{'-'.join(map(str, self._peer_ports))}"
        return [
            ETCD,
            "--name", f"{self.name}{i}",
            "--data-dir", self.data_dir(i),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer(i),
            "--initial-advertise-peer-urls", peer(i),
            "--initial-cluster", initial,
            "--initial-cluster-token", token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "100",
            "--election-timeout", "500",
            # A replace of a big association table is one transaction.
            "--max-txn-ops", "4096",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip

    def _start_members(self) -> None:
        for i in range(self.members):
            shutil.rmtree(self.data_dir(i), ignore_errors=True)  # ours, from a failed try
            self._spawn(i, self._argv(i))

    def _spawn(self, i: int, argv: list[str]) -> None:
        # The Debian package reads ETCD_* from /etc/default/etcd for its own
        # service; none of that must leak into ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log_path(i), "ab") as logfile:
            popen = _popen_session(
                argv, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env
            )
        self._tracked[i] = self._procs.add_popen(f"etcd-{i}", popen)

    def _healthy(self, i: int) -> bool:
        url = f"http://127.0.0.1:{self._client_ports[i]}/health"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def _wait_healthy(self, timeout: float) -> None:
        pending = set(range(self.members))

        def still_pending() -> set[int]:
            for i in sorted(pending):
                t = self._tracked[i]
                if t is None or not t.alive():
                    tail = _tail(self.log_path(i))
                    if "address already in use" in tail:
                        raise _PortTaken(f"member {i} lost a port race")
                    raise RuntimeError(
                        f"etcd member {i} of {self.name} exited during start-up; "
                        f"{self.log_path(i)} ends with:\n{tail}"
                    )
                if self._healthy(i):
                    pending.discard(i)
            return pending

        if poll_until(still_pending, lambda p: not p, timeout=timeout, interval=0.1):
            return
        i = min(pending)
        raise RuntimeError(
            f"etcd cluster {self.name}: members {sorted(pending)} not healthy after "
            f"{timeout:.0f} s; {self.log_path(i)} ends with:\n{_tail(self.log_path(i))}"
        )

    def kill_member(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Signal member ``i`` by its recorded pid and wait for it to exit."""
        t = self._tracked[i]
        if t is None:
            raise RuntimeError(f"etcd member {i} of {self.name} is not running")
        if t.alive():
            t.signal(sig)
        if t.popen is not None:
            try:
                t.popen.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"etcd member {i} (pid {t.pid}) survived {sig!r}") from None
        self._procs.stop_one(t)  # already gone: only forgets it
        self._tracked[i] = None

    def restart_member(self, i: int, timeout: float = 20.0) -> None:
        """Start member ``i`` again on its ports and data: it rejoins and catches up."""
        if self.alive(i):
            raise RuntimeError(f"etcd member {i} of {self.name} is still running")
        argv = self._argv(i)
        argv[argv.index("--initial-cluster-state") + 1] = "existing"
        self._spawn(i, argv)
        rejoined = poll_until(
            lambda: self._healthy(i),
            lambda healthy: healthy or not self.alive(i),
            timeout=timeout,
            interval=0.1,
        )
        if not rejoined.value:  # timed out, or the member exited
            raise RuntimeError(
                f"etcd member {i} of {self.name} did not rejoin; "
                f"{self.log_path(i)} ends with:\n{_tail(self.log_path(i))}"
            )

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every member still running (SIGTERM, then SIGKILL); idempotent.

        All members are signalled at once and get ``timeout`` seconds: a raft
        leader told to stop tries to hand leadership over first, which never
        completes when its peers are stopping too. The data is throwaway.
        """
        tracked = [t for t in self._procs.procs if t.alive()]
        for t in tracked:
            t.signal(signal.SIGTERM)
        wait_exited(tracked, timeout)
        for t in tracked:
            if t.alive():
                # Expected for the raft leader (see above): not worth a warning.
                log.info("%s (pid %d) still handing over after SIGTERM; killing", t.name, t.pid)
                t.signal(signal.SIGKILL)
        self._procs.stop_all()  # reaps; every process is gone by now
        self._tracked = [None] * self.members

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

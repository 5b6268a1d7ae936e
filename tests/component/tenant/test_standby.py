"""Two tenant servers on a real three-member etcd cluster: one leads, the other stands by
(forwarding the API to the leader) and takes over when the leader is SIGKILLed.

The servers are the real daemon (`routeflow tenant server --store etcd://...`). The
client is openstacksdk pointed at the *standby* with `status_code_retries` (keystoneauth
retries a 503, honouring Retry-After), creating networks back to back. The node is the
agent's own server side: rfproxy's ServerLink (the address list and rotation of
rflib/reconnect.py, standby's address first) feeding a NodeCore, as
`routeflow tenant node` does minus its switch.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from component.tenant.conftest import ROOT, TOKEN, free_port
from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import protocol as p
from routeflow.tenant.nodecore import NodeCore

TTL = 2


def wait(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


class Server:
    def __init__(self, tmp: Path, name: str, store: str) -> None:
        self.name, self.port = name, free_port()
        self.sock = str(tmp / f"{name}.sock")
        self.log = tmp / f"{name}.log"
        argv = [
            sys.executable, "-m", "routeflow.cli", "tenant", "server",
            "--listen", f"127.0.0.1:{self.port}", "--store", store, "--token-file",
            str(tmp / "token"), "--nodes-listen", f"unix:{self.sock}", "--name", name,
            "--lease-ttl", str(TTL),
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def role(self) -> str | None:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                return resp.headers.get("X-Routeflow-Role")
        except OSError:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Node:
    """The agent's server side: ServerLink + NodeCore (no switch: no flows to compile)."""

    def __init__(self, servers: str) -> None:
        self.core: NodeCore[Any] = NodeCore(
            name="c1", tunnel_ip="198.51.100.1", gateway=False, compile=lambda c, v: frozenset()
        )
        self.lock = threading.Lock()
        self.full_states: list[str] = []
        self.link = ServerLink(servers, self._hello, self._message)

    def _hello(self) -> list[p.Message]:
        with self.lock:
            return [self.core.hello()]

    def _message(self, msg: p.Message) -> None:
        if isinstance(msg, p.TenantChanges):
            with self.lock:
                self.core.changes(msg)
                if msg.full:
                    self.full_states.append(str(self.link.addresses[self.link.policy.current]))

    def networks(self) -> set[str]:
        with self.lock:
            return set(self.core.cloud.networks) if self.core.cloud is not None else set()


@pytest.fixture
def pair(etcd3: Any, prefix: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    (tmp_path / "token").write_text(TOKEN + "\n")
    store = etcd3.url(prefix)
    a = Server(tmp_path, "a", store)
    servers = [a]
    try:
        wait(lambda: a.role() == "leader", "a to lead")
        b = Server(tmp_path, "b", store)
        servers.append(b)
        wait(lambda: b.role() == "standby", "b to stand by")
        yield a, b
    finally:
        for s in servers:
            s.stop()


def test_the_standby_forwards_then_takes_over_and_nothing_is_lost(
    pair: tuple[Server, Server],
) -> None:
    import openstack

    a, b = pair
    node = Node(f"unix:{b.sock},unix:{a.sock}")  # the standby first: it must rotate
    node.link.start()
    conn = openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": b.url, "token": TOKEN},
        network_endpoint_override=b.url + "/",
        region_name="RegionOne",
        status_code_retries=30,
    )
    acked: list[tuple[float, str]] = []
    failed: list[str] = []
    stop = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                acked.append((time.monotonic(), conn.network.create_network(name=f"w{i}").id))
            except Exception as exc:  # counted: the test says how many and why
                failed.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)

    writer = threading.Thread(target=client, daemon=True)
    writer.start()
    try:
        wait(lambda: len(acked) >= 10 and node.full_states, "writes through the standby")
        assert node.full_states == [f"unix:{a.sock}"], "the node did not find the leader"
        wait(lambda: {oid for _, oid in acked} <= node.networks(), "the node's deltas")
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        at_kill = len(acked)
        wait(lambda: b.role() == "leader", "b to lead", timeout=TTL + 20)
        took_over = time.monotonic() - killed
        wait(lambda: len(acked) >= at_kill + 10, "writes after the takeover")
        wait(lambda: len(node.full_states) >= 2, "the node to come to b")
        node_back = time.monotonic() - killed
    finally:
        stop.set()
        writer.join(40)
        node.link.stop()
    ids = [oid for _, oid in acked]
    stored = {n.id for n in conn.network.networks()}
    wait(lambda: set(ids) <= node.networks(), "every acknowledged network at the node")
    gap = max(t2 - t1 for (t1, _), (t2, _) in itertools.pairwise(acked))
    print(
        f"\nleader SIGKILL: b leads after {took_over:.1f} s (lease ttl {TTL} s), longest gap "
        f"between acknowledged creates {gap:.1f} s, node on b after {node_back:.1f} s; "
        f"{len(ids)} acknowledged, {len(failed)} failed {failed[:2]}"
    )
    assert node.full_states[-1] == f"unix:{b.sock}"
    assert [oid for oid in ids if oid not in stored] == [], "acknowledged but gone"
    assert failed == [], "the client saw errors through the takeover"

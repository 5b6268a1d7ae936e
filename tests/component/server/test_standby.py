"""Two rfserver processes on one real etcd: one leads, the other stands by and takes over.

The daemons are the real thing (python -m routeflow.server --store etcd://...);
peers are played with the real codec over the real unix sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p
from routeflow.rflib.election import LeaderElection
from routeflow.rflib.etcdstore import EtcdStore

CSV = "vm_id,vm_port,ct_id,dp_id,dp_port\n0x5,1,1,0x5,1\n0x5,2,1,0x5,2\n"
TTL = 2


class HAServer:
    """One rfserver daemon sharing the etcd store under ``prefix``."""

    def __init__(self, tmp_path, name: str, store_url: str):
        self.name = name
        config = tmp_path / "rfserver.csv"
        config.write_text(CSV)
        self.sock = str(tmp_path / f"{name}.sock")
        self.status_path = tmp_path / f"{name}.json"
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "routeflow.server",
                    "--config",
                    str(config),
                    "--store",
                    store_url,
                    "--name",
                    name,
                    "--lease-ttl",
                    str(TTL),
                    "--listen",
                    f"unix:{self.sock}",
                    "--status-file",
                    str(self.status_path),
                    "--resync-wait",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_role(self, role: str, timeout: float = 15.0) -> float:
        """Seconds until the status file says ``role``; fails with the log otherwise."""
        t0 = time.monotonic()
        while self.status().get("role") != role:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() - t0 < timeout, (role, self.status(), self.log.read_text())
            time.sleep(0.02)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def servers(tmp_path):
    started: list[HAServer] = []

    def start(name: str, url: str) -> HAServer:
        s = HAServer(tmp_path, name, url)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def leader_and_standby(url: str, servers) -> tuple[HAServer, HAServer]:
    """Start "a", wait until it leads, then "b", until it stands by."""
    a = servers("a", url)
    a.wait_role("leader")
    b = servers("b", url)
    b.wait_role("standby")
    return a, b


async def associate(address: str) -> list[ipc.Connection]:
    """A controller and a client bring both mapped ports to 'associated'."""
    ct = await ipc.open_connection(address)
    await ct.send(p.ControllerRegister(ct_id=1))
    vm = await ipc.open_connection(address)
    await vm.send(p.ClientHello(vm_id=5, hostname="vm-A"))
    await vm.send_many(
        [
            p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:05:01"),
            p.PortRegister(vm_id=5, vm_port=2, hwaddress="02:00:00:00:05:02"),
        ]
    )
    await ct.send_many(
        [
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1),
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=2),
        ]
    )
    return [ct, vm]


def rows(status: dict) -> set[tuple]:
    return {
        (a["vm_id"], a["vm_port"], a["ct_id"], a["dp_id"], a["dp_port"], a["state"])
        for a in status.get("associations", [])
    }


def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_standby_takes_over_with_every_association(etcd1, prefix, servers):
    a, b = leader_and_standby(etcd1.url(prefix), servers)
    assert b.status()["leader"] == "a"
    assert not os.path.exists(b.sock), "a standby must not listen"

    async def drive() -> None:
        peers = await associate(f"unix:{a.sock}")
        try:
            assert await asyncio.to_thread(wait_for, lambda: len(rows(a.status())) == 2, 10), (
                a.status()
            )
            # The standby sees the leader's writes through its etcd watch.
            assert await asyncio.to_thread(
                wait_for, lambda: b.status().get("mirrored_associations") == 2, 10
            ), b.status()
        finally:
            for conn in peers:
                await conn.close()

    asyncio.run(drive())
    before = rows(a.status())
    assert {r[-1] for r in before} == {"client-datapath association"}, before

    t_kill = time.monotonic()
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    b.wait_role("leader", timeout=TTL + 5)
    takeover = time.monotonic() - t_kill
    print(f"standby took over {takeover:.2f} s after SIGKILL (lease ttl {TTL} s)")
    assert takeover < TTL + 3
    assert wait_for(lambda: os.path.exists(b.sock), 5)
    # The new leader resumed the table from etcd: same rows, same states (the
    # peers are gone now, so they will idle only after the grace period).
    assert rows(b.status()) == before


def test_sigterm_resigns_and_the_standby_leads_at_once(etcd1, prefix, servers):
    a, b = leader_and_standby(etcd1.url(prefix), servers)
    t0 = time.monotonic()
    a.stop()  # SIGTERM: resign, do not make the standby wait for the lease
    b.wait_role("leader", timeout=TTL)
    handover = time.monotonic() - t0
    print(f"handover after SIGTERM: {handover:.2f} s (lease ttl {TTL} s)")
    assert handover < TTL, handover


def test_deposed_leader_stops_serving_and_stands_by(etcd1, prefix, servers):
    url = etcd1.url(prefix)
    a = servers("a", url)
    a.wait_role("leader")
    assert wait_for(lambda: os.path.exists(a.sock), 5)
    store = EtcdStore(etcd1.endpoints, prefix)
    intruder = LeaderElection(store, "intruder", ttl=TTL)

    async def scenario() -> None:
        conn = await ipc.open_connection(f"unix:{a.sock}")
        await conn.send(p.ClientHello(vm_id=5))
        # Someone revokes a's lease (an operator, or etcd after a partition):
        # the key vanishes and the intruder's campaign wins at once.
        key = store.key("leader")
        kv = store.request("/kv/range", {"key": base64.b64encode(key).decode()})["kvs"][0]
        requests.post(
            f"http://{etcd1.endpoints[0]}/v3/lease/revoke",
            json={"ID": kv["lease"]},
            timeout=2,
        ).raise_for_status()
        await asyncio.wait_for(intruder.campaign(), TTL + 2)
        # a notices at its next lease refresh: it drops its peers and stands by.
        got = await asyncio.wait_for(conn.recv(), TTL + 3)
        assert got is None, got  # the session was closed
        assert await asyncio.to_thread(a.wait_role, "standby", TTL + 3)
        assert a.status().get("leader") == "intruder"
        with pytest.raises(OSError):
            await ipc.open_connection(f"unix:{a.sock}", timeout=1)
        # When the intruder resigns, a leads again.
        await intruder.resign()
        await asyncio.to_thread(a.wait_role, "leader", TTL + 3)
        assert await asyncio.to_thread(wait_for, lambda: _accepts(a.sock), 5)

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def _accepts(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def test_losing_the_etcd_majority_leaves_no_leader_then_one(etcd3, prefix, servers):
    """2 of 3 members down: nobody may lead (no split brain); back up: one leads."""
    a, b = leader_and_standby(etcd3.url(prefix), servers)
    survivor = etcd3.leader()
    assert survivor is not None
    for i in range(3):
        if i != survivor:
            etcd3.kill_member(i)
    t0 = time.monotonic()
    # The leader cannot refresh its lease: it stops serving within about the TTL.
    assert wait_for(lambda: not _accepts(a.sock), TTL + 4), a.log.read_text()[-2000:]
    stepped_down = time.monotonic() - t0
    time.sleep(TTL)
    assert not _accepts(a.sock) and not _accepts(b.sock), "someone serves without a majority"
    print(f"leader stopped serving {stepped_down:.2f} s after losing the etcd majority")
    for i in range(3):
        if i != survivor:
            etcd3.restart_member(i)
    t1 = time.monotonic()
    assert wait_for(lambda: _accepts(a.sock) or _accepts(b.sock), 20), (
        a.log.read_text()[-2000:],
        b.log.read_text()[-2000:],
    )
    print(f"a leader serves again {time.monotonic() - t1:.2f} s after the majority is back")
    assert [_accepts(a.sock), _accepts(b.sock)].count(True) == 1

"""rfserver as the arbiter of OpenFlow roles: real RFServer, real IPC, two replicas."""

from __future__ import annotations

import asyncio

import pytest

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.rflib.types import ConfigEntry
from routeflow.server.service import RFServer

CONFIG = [ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1)]


async def until(conn: ipc.Connection, kind: type, timeout: float = 5.0):
    """The next message of type ``kind`` (others are skipped); collected ones too."""
    seen = []
    while True:
        msg = await asyncio.wait_for(conn.recv(), timeout)
        assert msg is not None, f"connection closed while waiting for {kind.__name__}"
        seen.append(msg)
        if isinstance(msg, kind):
            return msg, seen


async def replica(address: str, name: str, role: str = "") -> ipc.Connection:
    conn = await ipc.open_connection(address)
    await conn.send(p.ControllerRegister(ct_id=1, replica=name, ct_role=role))
    return conn


@pytest.fixture
def server(tmp_path):
    store = MemoryStore()
    address = f"unix:{tmp_path}/rfserver.sock"
    return RFServer(CONFIG, store, resync_wait=0.0, role_hold=0.3), store, address


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_master_death_promotes_the_slave_with_full_state(server):
    srv, store, address = server

    async def scenario():
        task = asyncio.ensure_future(srv.serve(address, ready := asyncio.Event()))
        await ready.wait()
        try:
            a = await replica(address, "ct1a")
            role, _ = await until(a, p.ControllerRole)
            assert (role.role, role.generation) == ("master", 1)
            await until(a, p.Resync)  # its full state follows
            b = await replica(address, "ct1b")
            role, _ = await until(b, p.ControllerRole)
            assert (role.role, role.generation) == ("slave", 1)

            # A slave's reports do not reach the association table.
            await b.send(p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1))
            await asyncio.sleep(0.2)
            assert srv.table.by_dp_port(1, 5, 1) is None
            assert srv.counters["rx_ignored_not_master"] == 1

            await a.close()
            role, _ = await until(b, p.ControllerRole)
            assert (role.role, role.generation) == ("master", 2)
            begin, _ = await until(b, p.Resync)
            assert begin.phase == "begin"
            assert srv.proxies[1] is not None
            assert store.kv_get("role-generation/1") == b"2"
            await b.send(p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1))
            await asyncio.sleep(0.2)
            assert srv.table.by_dp_port(1, 5, 1) is not None
            status = srv.status()["controller_roles"]["1"]
            assert status == {"master": "ct1b", "generation": 2, "replicas": {"ct1b": "master"}}
            assert any("replica ct1b promoted to master (generation 2)" in e[2] for e in srv.events)
            await b.close()
        finally:
            task.cancel()

    run(scenario())


def test_restarted_server_keeps_the_reporting_master(server):
    srv, store, address = server
    store.kv_put("role-generation/1", b"7")  # left by the previous rfserver
    srv = RFServer(CONFIG, store, resync_wait=0.0, role_hold=5.0)

    async def scenario():
        task = asyncio.ensure_future(srv.serve(address, ready := asyncio.Event()))
        await ready.wait()
        try:
            b = await replica(address, "ct1b", role="slave")  # waits for the old master
            await asyncio.sleep(0.2)
            assert srv.roles.master(1) is None
            a = await replica(address, "ct1a", role="master")
            role, _ = await until(a, p.ControllerRole)
            assert (role.role, role.generation) == ("master", 7)  # no churn
            role, _ = await until(b, p.ControllerRole)
            assert (role.role, role.generation) == ("slave", 7)
            await a.close()
            await b.close()
        finally:
            task.cancel()

    run(scenario())


def test_hold_expires_and_promotes(server):
    srv, _store, address = server

    async def scenario():
        task = asyncio.ensure_future(srv.serve(address, ready := asyncio.Event()))
        await ready.wait()
        try:
            b = await replica(address, "ct1b", role="slave")
            role, _ = await until(b, p.ControllerRole)  # after role_hold (0.3 s)
            assert (role.role, role.generation) == ("master", 1)
            await b.close()
        finally:
            task.cancel()

    run(scenario())

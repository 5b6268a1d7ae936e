"""rfclient's and rfproxy's session shells against a real RFServer with a secret.

Both shells (rflib.ipc.ReconnectingClient on asyncio, proxy.serverlink.ServerLink
on threads) set up their session with auth.ClientHandshake and reconnect as
reconnect.ReconnectPolicy says; here they meet the real server, in-process.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import ipc
from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.rflib.types import ConfigEntry
from routeflow.server.service import RFServer

SECRET = b"0123456789abcdef0123456789abcdef"
CONFIG = [ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1)]


class Served:
    """An RFServer with ``SECRET`` on its own event loop thread."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = RFServer(CONFIG, MemoryStore(), secret=SECRET, resync_wait=0.0)
        ready = asyncio.Event()
        self.task = asyncio.run_coroutine_threadsafe(self.server.serve(address, ready), self.loop)
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(ready.wait(), 10), self.loop).result(15)

    def wait(self, pred, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.server):
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)

    def stop(self) -> None:
        self.task.cancel()
        time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def served(tmp_path):
    s = Served(f"unix:{tmp_path}/rfserver.sock")
    yield s
    s.stop()


def test_rfclient_shell_authenticates_then_runs_its_session(served):
    async def session(conn: ipc.Connection) -> None:
        await conn.send(p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:05:01"))
        async for _ in conn:
            pass

    async def scenario():
        client = ipc.ReconnectingClient(
            served.address, session, hello=lambda: p.ClientHello(vm_id=5), secret=SECRET
        )
        task = asyncio.ensure_future(client.run())
        try:
            await asyncio.to_thread(served.wait, lambda s: (5, 1) in s.vm_ports)
        finally:
            client.stop()
            await task

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert served.server.counters["auth_failures"] == 0


def test_rfproxy_shell_authenticates_and_sends_its_state(served):
    got: list[p.Message] = []
    link = ServerLink(
        served.address,
        lambda: [
            p.ControllerRegister(ct_id=1, replica="ct1"),
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1, name="s1-eth1"),
        ],
        got.append,
        secret=SECRET,
    )
    link.start()
    try:
        served.wait(lambda s: (1, 5, 1) in s.dp_ports)
        assert link.connected.wait(5)
        served.wait(lambda s: any(isinstance(m, p.ControllerRole) for m in got))
    finally:
        link.stop()
    assert served.server.counters["auth_failures"] == 0


def test_a_refused_peer_retries_ever_more_slowly(served):
    """The server answers a wrong secret at once: without a growing backoff that is 100/s."""
    link = ServerLink(
        served.address,
        lambda: [p.ControllerRegister(ct_id=1, replica="ct1")],
        lambda msg: None,
        secret=b"not-the-secret-0123456789abcdef",
        min_backoff=0.01,
        max_backoff=0.5,
    )
    link.start()
    try:
        time.sleep(1.5)
    finally:
        link.stop()
    refused = served.server.counters["auth_failures"]
    # Delays 0.005-0.01, 0.01-0.02, ... up to 0.25-0.5 s: under ten attempts in 1.5 s.
    assert 3 <= refused <= 15, refused

"""rfweb fixtures: a real RFServer in-process (own loop, unix socket) fed by real IPC peers."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading

import pytest

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.rflib.types import ConfigEntry
from routeflow.server.service import RFServer

VM = 0x5
VM2 = 0x6
VS = 0x7266767372667673
MAC1 = "02:00:00:00:05:01"
MAC2 = "02:00:00:00:05:02"
MAC3 = "02:00:00:00:05:03"
GW_MAC = "02:00:00:00:99:99"
TOKEN = "test-token-123456"

CONFIG = [
    ConfigEntry(vm_id=VM, vm_port=1, ct_id=1, dp_id=5, dp_port=1),  # -> active
    ConfigEntry(vm_id=VM, vm_port=2, ct_id=1, dp_id=5, dp_port=2),  # -> associated
    ConfigEntry(vm_id=VM, vm_port=3, ct_id=1, dp_id=5, dp_port=3),  # -> idle client port
    ConfigEntry(vm_id=VM2, vm_port=1, ct_id=1, dp_id=6, dp_port=1),  # -> nobody: down
]
# dp 5 port 9 registers without a config line: idle datapath port.

TOPOLOGY = {
    "name": "webtest",
    "nodes": [
        {"id": "sw-0x5", "kind": "switch", "label": "A", "dp_id": "0x5"},
        {"id": "sw-0x6", "kind": "switch", "label": "B", "dp_id": "0x6"},
        {"id": "vm-0x5", "kind": "vm", "label": "vm-A", "vm_id": "0x5"},
        {"id": "vm-0x6", "kind": "vm", "label": "vm-B", "vm_id": "0x6"},
        {"id": "host-h1", "kind": "host", "label": "h1", "ip": "172.31.1.100/24"},
    ],
    "edges": [
        {"source": "host-h1", "target": "sw-0x5", "kind": "host", "target_port": 1},
        {
            "source": "sw-0x5",
            "target": "sw-0x6",
            "kind": "link",
            "source_port": 2,
            "target_port": 1,
        },
    ],
}

FLOWS = [
    p.FlowStat(table=0, priority=0, cookie=0, match="", actions="", packets=7, bytes=420),
    p.FlowStat(
        table=1,
        priority=1240,
        cookie=1,
        match="eth_type=2048,ipv4_dst=10.9.0.0/255.255.0.0",
        actions="group:1",
        packets=100,
        bytes=9800,
    ),
    p.FlowStat(
        table=1,
        priority=1280,
        cookie=1,
        match="eth_type=2048,ipv4_dst=172.31.1.0/255.255.255.0",
        actions="output:1",
        packets=5,
        bytes=490,
    ),
]


def rfserver_argv(tmp_path, listen: str, *extra: str) -> list[str]:
    """Run the real rfserver daemon on CONFIG (memory store) listening on ``listen``."""
    from routeflow.server.config import dump_config

    cfg = tmp_path / "rfserver.csv"
    cfg.write_text(dump_config(CONFIG))
    return [
        sys.executable,
        "-m",
        "routeflow.server",
        "--config",
        str(cfg),
        "--store",
        "memory:",
        "--listen",
        listen,
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def feed(address: str) -> list[ipc.Connection]:
    """Play a controller and a client through one association life cycle; keep them open."""
    ct = await ipc.open_connection(address)
    await ct.send(p.ControllerRegister(ct_id=1))
    vm = await ipc.open_connection(address)
    await vm.send(p.ClientHello(vm_id=VM, hostname="vm-A"))
    await vm.send_many(
        [
            p.PortRegister(vm_id=VM, vm_port=1, hwaddress=MAC1, ifname="eth1"),
            p.PortRegister(vm_id=VM, vm_port=2, hwaddress=MAC2, ifname="eth2"),
            p.PortRegister(vm_id=VM, vm_port=3, hwaddress=MAC3, ifname="eth3"),
        ]
    )
    await ct.send_many(
        [
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1, name="s1-eth1"),
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=2, name="s1-eth2"),
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=9, name="s1-eth9"),
        ]
    )
    await asyncio.sleep(0.2)
    await ct.send(p.VirtualPlaneMap(vm_id=VM, vm_port=1, vs_id=VS, vs_port=1))
    await vm.send(
        p.RouteMod(
            mod=p.Mod.ADD,
            vm_id=VM,
            routes=[
                p.Route(
                    prefix="172.31.1.0/24",
                    kind=p.RouteKind.CONNECTED,
                    nexthops=[p.NextHop(vm_port=1)],
                ),
                p.Route(
                    prefix="172.31.1.1/32",
                    kind=p.RouteKind.LOCAL,
                    nexthops=[p.NextHop(vm_port=1)],
                ),
                p.Route(
                    prefix="10.9.0.0/16", nexthops=[p.NextHop(vm_port=1, gateway="172.31.1.2")]
                ),
            ],
        )
    )
    await vm.send(
        p.NeighbourMod(
            mod=p.Mod.ADD,
            vm_id=VM,
            neighbours=[p.Neighbour(vm_port=1, address="172.31.1.2", hwaddress=GW_MAC)],
        )
    )
    await ct.send(
        p.DatapathStats(
            ct_id=1, dp_id=5, flows=FLOWS, relayed_to_vm=11, relayed_to_dp=13, relay_dropped=1
        )
    )
    return [ct, vm]


class ServerThread:
    """An RFServer running in its own event loop thread, like rfserver does in its process."""

    def __init__(self, sock_path: str) -> None:
        self.address = f"unix:{sock_path}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = RFServer(list(CONFIG), MemoryStore())
        self.peers: list[ipc.Connection] = []
        ready = asyncio.Event()
        self._serving = asyncio.run_coroutine_threadsafe(
            self.server.serve(self.address, ready), self.loop
        )
        self.call(asyncio.wait_for(ready.wait(), 10))

    def call(self, coro, timeout: float = 15.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def feed(self) -> None:
        self.peers = self.call(feed(self.address))
        self.wait(lambda s: len(s.stats) == 1 and len(s.routing.installed()) >= 4)

    def wait(self, pred, timeout: float = 10.0) -> None:
        async def poll():
            while not pred(self.server):
                await asyncio.sleep(0.02)

        self.call(asyncio.wait_for(poll(), timeout))

    def stop(self) -> None:
        async def close():
            for c in self.peers:
                await c.close()
            self._serving.cancel()
            await asyncio.sleep(0.05)

        try:
            self.call(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A fed RFServer (see CONFIG for the states each port ends in)."""
    d = tmp_path_factory.mktemp("rfweb")
    st = ServerThread(os.path.join(d, "rfserver.sock"))
    try:
        st.feed()
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="module")
def app(live):
    from routeflow.web.api import create_app

    return create_app(live.server, token=TOKEN, topology=TOPOLOGY)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c

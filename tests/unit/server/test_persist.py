"""rfserver's store writes: a failing store is an event, never a dead session."""

from __future__ import annotations

import asyncio

from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore, StoreClosedError
from routeflow.rflib.types import ConfigEntry
from routeflow.server.service import RFServer

CONFIG = [ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1)]


class FlakyStore(MemoryStore):
    """Association writes fail with the given error while ``failing`` is set."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.failing = False

    def put_association(self, entry) -> None:
        if self.failing:
            raise self.error
        super().put_association(entry)


def register_port(server: RFServer) -> None:
    asyncio.run(
        server._apply(
            server.table.handle(p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:05:01"))
        )
    )


def test_unreachable_store_is_reported_and_the_change_stays_live():
    store = FlakyStore(RuntimeError("no etcd endpoint answered"))
    server = RFServer(CONFIG, store)
    store.failing = True
    register_port(server)  # must not raise
    assert server.table.by_vm_port(5, 1) is not None  # live in memory
    assert store.load_associations() == []  # not persisted
    assert server.counters["store_errors"] >= 1
    assert not server.deposed.is_set()
    assert any("not persisted" in text for _t, kind, text in server.events if kind == "store")


def test_refused_write_deposes_the_server():
    store = FlakyStore(StoreClosedError("this rfserver is no longer the leader"))
    server = RFServer(CONFIG, store)
    store.failing = True
    register_port(server)
    assert server.deposed.is_set()
    assert server.counters["store_refused"] >= 1


def test_working_store_persists():
    store = FlakyStore(RuntimeError("unused"))
    server = RFServer(CONFIG, store)
    register_port(server)
    assert [(e.vm_id, e.vm_port) for e in store.load_associations()] == [(5, 1)]
    assert not server.deposed.is_set() and server.counters["store_errors"] == 0

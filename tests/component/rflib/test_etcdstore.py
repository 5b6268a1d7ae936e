"""EtcdStore against a real etcd: the shared store suite, fencing, watches, failover."""

from __future__ import annotations

import inspect
import socket
import threading
import time

import pytest

from routeflow.rflib.etcdstore import (
    EtcdStore,
    FencedError,
    StoreUnavailableError,
    decode_association,
    decode_config,
)
from routeflow.rflib.store import StoreClosedError, open_store
from routeflow.rflib.types import AssociationEntry
from unit.rflib import test_store as contract

# --- the shared suite of tests/unit/rflib/test_store.py, on etcd ----------------

_SHARED = {
    name: fn
    for name, fn in vars(contract).items()
    if name.startswith("test_")
    and not name.startswith("test_sqlite")
    and "store" in inspect.signature(fn).parameters
}
assert len(_SHARED) >= 15, sorted(_SHARED)
globals().update(_SHARED)


@pytest.fixture
def store(etcd1, prefix):
    s = EtcdStore(etcd1.endpoints, prefix)
    yield s
    s.close()


# --- etcd specifics -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_open_store_url_and_prefix_isolation(etcd1, prefix):
    with open_store(etcd1.url(prefix.rstrip("/"))) as a, open_store(etcd1.url(prefix + "b")) as b:
        assert isinstance(a, EtcdStore)
        assert a.prefix == prefix
        assert b.prefix == prefix + "b/"
        a.kv_put("k", b"a")
        b.kv_put("k", b"b")
        a.put_association(contract.ACTIVE)
        # b's keys live under a's prefix, but in no area a reads.
        assert a.kv_items() == [("k", b"a")]
        assert b.kv_items() == [("k", b"b")]
        assert b.load_associations() == []
        assert a.load_associations() == [contract.ACTIVE]


def test_persists_across_stores(etcd1, prefix, open_stores):
    a = open_stores(etcd1.endpoints, prefix)
    a.replace_config(contract.CONFIG)
    a.put_association(contract.ACTIVE)
    a.kv_put("vm/1", b"\x00\xff")
    a.close()
    b = open_stores(etcd1.endpoints, prefix)
    assert b.load_config() == contract.CONFIG
    assert b.load_associations() == [contract.ACTIVE]
    assert b.kv_get("vm/1") == b"\x00\xff"


def test_unavailable_names_the_endpoints(open_stores, prefix):
    dead = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    s = open_stores(dead, prefix, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        s.kv_get("k")
    elapsed = time.monotonic() - started
    print(f"gave up after {elapsed:.2f} s (budget 0.5 s)")
    assert elapsed < 2.0
    for endpoint in dead:
        assert endpoint in str(info.value)


def test_fails_over_past_a_dead_endpoint(etcd1, prefix, open_stores):
    dead = f"127.0.0.1:{_free_port()}"
    s = open_stores([dead, *etcd1.endpoints], prefix)
    s.kv_put("k", b"v")
    assert s.kv_get("k") == b"v"
    assert s.current_endpoint == etcd1.endpoints[0]


def test_concurrent_writers_keep_keys_unique(etcd1, prefix, open_stores):
    """Two stores racing on colliding rows: the optimistic retry keeps one row per key."""
    a = open_stores(etcd1.endpoints, prefix)
    b = open_stores(etcd1.endpoints, prefix)

    def work(s: EtcdStore, hw: str) -> None:
        for port in range(15):
            s.put_association(AssociationEntry(vm_id=1, vm_port=port, hwaddress=hw))
            s.put_association(AssociationEntry(ct_id=0, dp_id=7, dp_port=port, hwaddress=hw))
            s.put_association(
                AssociationEntry(vm_id=1, vm_port=port, ct_id=0, dp_id=7, dp_port=port)
            )

    threads = [threading.Thread(target=work, args=(s, hw)) for s, hw in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = a.load_associations()
    assert len({r.vm_key for r in rows}) == len(rows) == 15
    assert len({r.dp_key for r in rows}) == 15


def test_fencing(etcd1, prefix, open_stores):
    a = open_stores(etcd1.endpoints, prefix)
    other = open_stores(etcd1.endpoints, prefix)
    other.request("/kv/put", {"key": _b64(a.key("leader")), "value": _b64(b"a")})
    a.fence("leader", b"a")
    a.replace_config(contract.CONFIG)
    a.put_association(contract.IDLE_VM)
    a.kv_put("k", b"1")
    assert other.load_config() == contract.CONFIG

    other.request("/kv/put", {"key": _b64(a.key("leader")), "value": _b64(b"b")})
    before = (other.load_config(), other.load_associations(), other.kv_items())
    writes = [
        lambda: a.replace_config([]),
        lambda: a.replace_associations([]),
        lambda: a.put_association(contract.ACTIVE),
        lambda: a.delete_association(contract.IDLE_VM),
        lambda: a.kv_put("k", b"2"),
        lambda: a.kv_delete("k"),
    ]
    for write in writes:
        with pytest.raises(FencedError, match="no longer the leader"):
            write()
    assert isinstance(FencedError("x"), StoreClosedError)
    assert (other.load_config(), other.load_associations(), other.kv_items()) == before
    assert a.kv_get("k") == b"1"  # reads are not fenced

    other.request("/kv/deleterange", {"key": _b64(a.key("leader"))})
    with pytest.raises(FencedError):  # no leader at all is not us either
        a.kv_put("k", b"3")
    a.fence(None, None)
    a.kv_put("k", b"4")  # unconditional again
    assert other.kv_get("k") == b"4"


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


class Collector:
    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, bytes | None]] = []
        self.cond = threading.Condition()

    def __call__(self, kind: str, key: str, value: bytes | None) -> None:
        with self.cond:
            self.events.append((time.monotonic(), kind, key, value))
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    if pred(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)


def test_watch_sees_the_other_stores_changes(etcd1, prefix, open_stores):
    writer = open_stores(etcd1.endpoints, prefix)
    standby = open_stores(etcd1.endpoints, prefix)
    seen = Collector()
    cancel = standby.watch(seen)

    started = time.monotonic()
    writer.kv_put("nexthop/a", b"1")
    event = seen.wait_for(lambda e: e[1:] == ("kv", "nexthop/a", b"1"), 5.0)
    assert event is not None, seen.events
    print(f"kv put seen after {1000 * (event[0] - started):.1f} ms")
    assert event[0] - started < 1.0

    writer.replace_config(contract.CONFIG)
    writer.put_association(contract.IDLE_VM)
    writer.put_association(contract.ACTIVE)  # replaces IDLE_VM: a delete, then a put
    writer.kv_delete("nexthop/a")
    writer.request("/kv/put", {"key": _b64(writer.key("leader")), "value": _b64(b"x")})
    last = seen.wait_for(lambda e: e[1:] == ("kv", "nexthop/a", None), 5.0)
    assert last is not None, seen.events
    kinds = [(k, key, v is None) for _, k, key, v in seen.events]
    assert kinds == [
        ("kv", "nexthop/a", False),
        ("config", "", False),
        ("assoc", "vm:1:1,dp:-", False),
        ("assoc", "vm:1:1,dp:-", True),
        ("assoc", "vm:1:1,dp:0:99:1", False),
        ("kv", "nexthop/a", True),
    ]  # the leader key is nobody's business here
    assert decode_config(seen.events[1][3]) == contract.CONFIG
    assert decode_association(seen.events[4][3]) == contract.ACTIVE

    cancel()
    cancel()  # idempotent
    writer.kv_put("after", b"cancel")
    time.sleep(0.3)
    assert all(e[2] != "after" for e in seen.events)


def test_close_cancels_watches_and_refuses_work(etcd1, prefix):
    s = EtcdStore(etcd1.endpoints, prefix)
    handle = s.watch(lambda *a: None)
    assert handle.active
    s.close()
    s.close()
    assert not handle.active
    with pytest.raises(StoreClosedError):
        s.watch(lambda *a: None)
    with pytest.raises(StoreClosedError):
        s.revision()


def test_watch_survives_the_loss_of_its_member(etcd3, prefix, open_stores):
    standby = open_stores(etcd3.endpoints, prefix)
    seen = Collector()
    handle = standby.watch(seen)
    deadline = time.monotonic() + 5
    while handle.endpoint is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = etcd3.endpoints.index(handle.endpoint)
    survivors = [e for i, e in enumerate(etcd3.endpoints) if i != victim]
    writer = open_stores(survivors, prefix)
    writer.kv_put("before", b"1")
    assert seen.wait_for(lambda e: e[2] == "before", 5.0)

    etcd3.kill_member(victim)
    started = time.monotonic()
    for i in range(5):
        writer.kv_put(f"after/{i}", str(i).encode())
    event = seen.wait_for(lambda e: e[2] == "after/4", 10.0)
    assert event is not None, seen.events
    print(f"watch moved from {etcd3.endpoints[victim]} to {handle.endpoint}; "
          f"events resumed after {event[0] - started:.2f} s")  # fmt: skip
    assert event[0] - started < 3.0
    assert [e[2] for e in seen.events] == ["before"] + [f"after/{i}" for i in range(5)]
    assert handle.endpoint in survivors


def test_idle_watch_is_recreated_in_place(etcd1, prefix, open_stores):
    standby = open_stores(etcd1.endpoints, prefix)
    standby.watch_idle = 0.3
    seen = Collector()
    handle = standby.watch(seen)
    time.sleep(1.0)  # a few idle re-creations
    open_stores(etcd1.endpoints, prefix).kv_put("late", b"1")
    assert seen.wait_for(lambda e: e[2] == "late", 3.0)
    assert [e[2] for e in seen.events] == ["late"]
    started = time.monotonic()
    handle()
    print(f"cancel took {1000 * (time.monotonic() - started):.0f} ms")
    assert not handle.active
    assert time.monotonic() - started < 1.0

"""Tests for routeflow.rflib.store: one suite for every backend, plus SQLite durability."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routeflow.rflib import store as store_mod
from routeflow.rflib.store import (
    SCHEMA_VERSION,
    MemoryStore,
    SQLiteStore,
    StateStore,
    StoreClosedError,
    StoreError,
    open_store,
)
from routeflow.rflib.types import AssociationEntry, ConfigEntry, EntryState

U64_MAX = 2**64 - 1

CONFIG = [
    ConfigEntry(vm_id=0x12A0A0A0A0A0, vm_port=1, ct_id=0, dp_id=0x99, dp_port=1),
    ConfigEntry(vm_id=0x12A0A0A0A0A0, vm_port=2, ct_id=0, dp_id=0x99, dp_port=2),
    ConfigEntry(vm_id=0x12B0B0B0B0B0, vm_port=1, ct_id=0, dp_id=U64_MAX, dp_port=3),
]

IDLE_VM = AssociationEntry(vm_id=1, vm_port=1, hwaddress="02:00:00:00:01:01")
IDLE_DP = AssociationEntry(ct_id=0, dp_id=0x99, dp_port=1)
ASSOCIATED = AssociationEntry(
    vm_id=1, vm_port=1, ct_id=0, dp_id=0x99, dp_port=1, hwaddress="02:00:00:00:01:01"
)
ACTIVE = AssociationEntry(
    vm_id=1,
    vm_port=1,
    ct_id=0,
    dp_id=0x99,
    dp_port=1,
    vs_id=0x7A0000000001,
    vs_port=1,
    hwaddress="02:00:00:00:01:01",
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        s: StateStore = MemoryStore()
    else:
        s = SQLiteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


# --- the shared suite -----------------------------------------------------
# tests/component/rflib/test_etcdstore.py runs every test of this section (the
# ones taking the ``store`` fixture) against a real etcd as well.


def test_empty(store):
    assert store.load_config() == []
    assert store.load_associations() == []
    assert store.kv_items() == []
    assert store.kv_get("missing") is None


def test_config_replace_is_whole(store):
    store.replace_config(CONFIG)
    assert store.load_config() == CONFIG
    store.replace_config(CONFIG[:1])
    assert store.load_config() == CONFIG[:1]
    store.replace_config([])
    assert store.load_config() == []


@pytest.mark.parametrize(
    "bad",
    [
        [CONFIG[0], CONFIG[0]],
        [CONFIG[0], ConfigEntry(vm_id=5, vm_port=5, ct_id=0, dp_id=0x99, dp_port=1)],  # dp dup
        [ConfigEntry(vm_id=-1, vm_port=1, ct_id=0, dp_id=1, dp_port=1)],
        [ConfigEntry(vm_id=2**64, vm_port=1, ct_id=0, dp_id=1, dp_port=1)],
    ],
)
def test_bad_config_is_rejected_and_nothing_changes(store, bad):
    store.replace_config(CONFIG)
    with pytest.raises(ValueError):
        store.replace_config(bad)
    assert store.load_config() == CONFIG


def test_config_type_errors(store):
    with pytest.raises(TypeError):
        store.replace_config([ConfigEntry(vm_id="1", vm_port=1, ct_id=0, dp_id=1, dp_port=1)])


def test_association_lifecycle(store):
    """An idle client port becomes an association, then active, then idle again."""
    store.put_association(IDLE_VM)
    store.put_association(IDLE_DP)
    assert store.load_associations() == [IDLE_VM, IDLE_DP]

    store.put_association(ASSOCIATED)  # collides with both idle rows
    assert store.load_associations() == [ASSOCIATED]
    assert store.load_associations()[0].state is EntryState.ASSOCIATED

    store.put_association(ACTIVE)
    assert store.load_associations() == [ACTIVE]

    # The VM goes away: the datapath side stays, idle.
    store.put_association(IDLE_DP)
    assert store.load_associations() == [IDLE_DP]

    assert store.delete_association(IDLE_DP) == 1
    assert store.load_associations() == []
    assert store.delete_association(IDLE_DP) == 0


def test_put_replaces_only_colliding_rows(store):
    other_vm = AssociationEntry(vm_id=2, vm_port=1)
    other_dp = AssociationEntry(ct_id=0, dp_id=0x99, dp_port=2)
    same_vm_other_port = AssociationEntry(vm_id=1, vm_port=2)
    store.replace_associations([IDLE_VM, other_vm, other_dp, same_vm_other_port])
    store.put_association(ASSOCIATED)
    assert store.load_associations() == [other_vm, other_dp, same_vm_other_port, ASSOCIATED]


def test_many_idle_rows_without_the_other_side(store):
    rows = [AssociationEntry(vm_id=1, vm_port=p) for p in range(5)]
    rows += [AssociationEntry(ct_id=0, dp_id=9, dp_port=p) for p in range(5)]
    for row in rows:
        store.put_association(row)
    assert store.load_associations() == rows


def test_delete_matches_either_key(store):
    store.replace_associations([IDLE_VM, IDLE_DP, AssociationEntry(vm_id=3, vm_port=3)])
    assert store.delete_association(ASSOCIATED) == 2
    assert store.load_associations() == [AssociationEntry(vm_id=3, vm_port=3)]


def test_incomplete_keys_do_not_match(store):
    # vm_port missing: only the dp key identifies this row.
    half = AssociationEntry(vm_id=1, ct_id=0, dp_id=0x99, dp_port=1)
    store.put_association(IDLE_VM)
    store.put_association(half)
    assert store.load_associations() == [IDLE_VM, half]


def test_entry_without_any_key_is_rejected(store):
    for entry in (AssociationEntry(), AssociationEntry(vm_id=1), AssociationEntry(vs_id=1)):
        with pytest.raises(ValueError):
            store.put_association(entry)
        with pytest.raises(ValueError):
            store.delete_association(entry)


def test_replace_associations(store):
    store.put_association(IDLE_VM)
    store.replace_associations([IDLE_DP, AssociationEntry(vm_id=2, vm_port=2)])
    assert store.load_associations() == [IDLE_DP, AssociationEntry(vm_id=2, vm_port=2)]
    with pytest.raises(ValueError):
        store.replace_associations([IDLE_VM, ASSOCIATED])  # same VM port twice
    with pytest.raises(ValueError):
        store.replace_associations([IDLE_DP, ASSOCIATED])  # same switch port twice
    assert store.load_associations() == [IDLE_DP, AssociationEntry(vm_id=2, vm_port=2)]
    store.replace_associations([])
    assert store.load_associations() == []


def test_full_64_bit_identifiers(store):
    big = AssociationEntry(
        vm_id=U64_MAX,
        vm_port=2**63,
        ct_id=2**63 - 1,
        dp_id=U64_MAX - 1,
        dp_port=0,
        vs_id=2**63 + 5,
        vs_port=U64_MAX,
        hwaddress="",
    )
    store.put_association(big)
    assert store.load_associations() == [big]
    # 2**64 - 1 and -1 would share a SQLite value; -1 is simply not allowed.
    with pytest.raises(ValueError):
        store.put_association(AssociationEntry(vm_id=-1, vm_port=2**63))
    with pytest.raises(ValueError):
        store.put_association(AssociationEntry(vm_id=2**64, vm_port=1))
    assert store.delete_association(AssociationEntry(vm_id=U64_MAX, vm_port=2**63)) == 1


def test_kv(store):
    store.kv_put("a", b"1")
    store.kv_put("a", bytearray(b"2"))
    assert store.kv_get("a") == b"2"
    assert type(store.kv_get("a")) is bytes
    store.kv_put("empty", b"")
    assert store.kv_get("empty") == b""
    store.kv_delete("a")
    store.kv_delete("a")  # absent: no error
    assert store.kv_get("a") is None
    with pytest.raises(TypeError):
        store.kv_put("x", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.kv_put("x", 3)  # type: ignore[arg-type]


def test_kv_prefix_listing(store):
    items = {
        "vm/1/name": b"rfvm1",
        "vm/1/port/1": b"up",
        "vm/10/name": b"rfvm10",
        "vm/2/name": b"rfvm2",
        "vm0": b"not under vm/",
        "dp/99": b"switch",
        "vm/\u00e9t\u00e9": b"unicode",
        "vm/\U0001f600": b"astral",
    }
    for key, value in items.items():
        store.kv_put(key, value)
    assert store.kv_items("vm/1/") == [("vm/1/name", b"rfvm1"), ("vm/1/port/1", b"up")]
    assert [k for k, _ in store.kv_items("vm/")] == sorted(k for k in items if k.startswith("vm/"))
    assert store.kv_items("") == sorted(items.items())
    assert store.kv_items("zzz") == []
    assert store.kv_items("%") == []  # no LIKE/GLOB surprises
    store.kv_put("a%b", b"x")
    store.kv_put("a_b", b"y")
    assert store.kv_items("a%") == [("a%b", b"x")]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "del"]), st.text(max_size=4), st.binary(max_size=4)),
        max_size=20,
    ),
    prefix=st.text(max_size=2),
)
def test_kv_matches_a_dict(store, ops, prefix):
    for key, _ in store.kv_items():
        store.kv_delete(key)
    model: dict[str, bytes] = {}
    for op, key, value in ops:
        if op == "put":
            store.kv_put(key, value)
            model[key] = value
        else:
            store.kv_delete(key)
            model.pop(key, None)
    expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
    assert store.kv_items(prefix) == expected
    for key in model:
        assert store.kv_get(key) == model[key]


def test_closed_store_refuses_work(store):
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        store.load_config()
    with pytest.raises(StoreClosedError):
        store.kv_put("a", b"1")


def test_context_manager(tmp_path):
    with open_store(f"sqlite:{tmp_path}/ctx.db") as s:
        s.kv_put("k", b"v")
    with pytest.raises(StoreClosedError):
        s.kv_get("k")


# --- SQLite specifics -----------------------------------------------------


def test_sqlite_persists_across_reopen(tmp_path):
    path = str(tmp_path / "state.db")
    s = SQLiteStore(path)
    s.replace_config(CONFIG)
    s.put_association(ACTIVE)
    s.put_association(AssociationEntry(ct_id=0, dp_id=U64_MAX, dp_port=3))
    s.kv_put("vm/1", b"\x00\xff")
    s.close()

    s = SQLiteStore(path)
    assert s.load_config() == CONFIG
    assert s.load_associations() == [ACTIVE, AssociationEntry(ct_id=0, dp_id=U64_MAX, dp_port=3)]
    assert s.kv_get("vm/1") == b"\x00\xff"
    s.close()


def test_sqlite_visible_without_close(tmp_path):
    """Crash smoke test: a second handle sees committed data the first never closed."""
    path = str(tmp_path / "state.db")
    writer = SQLiteStore(path)
    writer.replace_config(CONFIG)
    writer.put_association(ASSOCIATED)
    writer.kv_put("k", b"v")
    reader = SQLiteStore(path)  # as a restarted rfserver would
    assert reader.load_config() == CONFIG
    assert reader.load_associations() == [ASSOCIATED]
    assert reader.kv_get("k") == b"v"
    reader.put_association(ACTIVE)
    assert writer.load_associations() == [ACTIVE]
    reader.close()
    writer.close()


def test_sqlite_wal_and_columns(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteStore(str(path)) as s:
        s.put_association(ACTIVE)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    columns = [row[1] for row in raw.execute("PRAGMA table_info(association)")]
    assert columns == ["id", *AssociationEntry.__struct_fields__]
    row = raw.execute("SELECT vm_id, dp_id, hwaddress FROM association").fetchone()
    assert row == (1, 0x99, "02:00:00:00:01:01")  # readable in the sqlite3 shell
    raw.close()


def test_sqlite_rejects_newer_schema(tmp_path):
    path = tmp_path / "state.db"
    SQLiteStore(str(path)).close()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(str(path))


def test_sqlite_rejects_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable state store"):
        SQLiteStore(str(path))


def test_every_store_failure_is_a_store_error():
    """So rfserver can catch store failures exactly, and let bugs (RuntimeError) through."""
    from routeflow.rflib import etcdstore

    for error in (
        StoreClosedError,
        etcdstore.FencedError,
        etcdstore.StoreUnavailableError,
        etcdstore.EtcdError,
    ):
        assert issubclass(error, StoreError), error
    assert not issubclass(RuntimeError, StoreError)


def test_sqlite_failed_transaction_rolls_back(tmp_path, monkeypatch):
    s = SQLiteStore(str(tmp_path / "state.db"))
    s.replace_associations([IDLE_VM, IDLE_DP])

    def broken_row(entry):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_mod, "_assoc_row", broken_row)
    with pytest.raises(RuntimeError):
        s.replace_associations([ACTIVE])  # the DELETE ran, then the insert failed
    monkeypatch.undo()
    assert s.load_associations() == [IDLE_VM, IDLE_DP]
    s.put_association(ACTIVE)  # and the connection is still usable
    assert s.load_associations() == [ACTIVE]
    s.close()


def test_sqlite_threads(tmp_path):
    s = SQLiteStore(str(tmp_path / "state.db"))

    def work(n: int) -> None:
        for i in range(50):
            s.kv_put(f"t{n}/{i}", b"x")
            s.put_association(AssociationEntry(vm_id=n, vm_port=i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(s.kv_items("t")) == 200
    assert len(s.load_associations()) == 200
    s.close()


# --- open_store -------------------------------------------------------------


def test_open_store(tmp_path):
    s = open_store("memory:")
    assert isinstance(s, MemoryStore)
    s.close()
    s = open_store(f"sqlite:{tmp_path}/a.db")
    assert isinstance(s, SQLiteStore)
    s.close()
    assert (tmp_path / "a.db").exists()


def test_open_store_etcd_url_without_traffic():
    """The etcd backend is imported lazily and connects only when used."""
    from routeflow.rflib.etcdstore import DEFAULT_PREFIX, EtcdStore

    s = open_store("etcd://127.0.0.1:1,[::1]:2/lab/a")
    assert isinstance(s, EtcdStore)
    assert s.endpoints == ["127.0.0.1:1", "[::1]:2"]
    assert s.prefix == "/lab/a/"
    s.close()
    for url in ("etcd://127.0.0.1:1", "etcd://127.0.0.1:1/"):
        with open_store(url) as s:
            assert s.prefix == DEFAULT_PREFIX


@pytest.mark.parametrize(
    "url",
    [
        "",
        "memory",
        "memory:/x",
        "sqlite:",
        "/tmp/state.db",
        "etcd:",
        "etcd:127.0.0.1:2379",
        "etcd://",
        "etcd:///prefix",
        "etcd://127.0.0.1",
        "etcd://127.0.0.1:port",
        "etcd://127.0.0.1:1,",
    ],
)
def test_open_store_errors(url):
    with pytest.raises(ValueError):
        open_store(url)

"""Durable state for rfserver: the operator's config, the association table, and a kv area.

rfserver is the only component that knows which VM port is which switch port;
if it is killed and restarted it must come back with that knowledge instead of
waiting for every client and datapath to re-register. The state therefore
lives behind a small interface with an embedded SQLite backend (one file, WAL,
no daemon to run), and the same interface can later front a replicated store
(etcd) without touching the server.

etcd is the replicated backend (``routeflow.rflib.etcdstore``, opened with
``etcd://host:port,host:port/prefix``): the same interface on an etcd
cluster, plus what a standby rfserver needs on top of it: watches that report
every change under the prefix, and fenced writes that stop as soon as another
rfserver holds the leader key (``routeflow.rflib.election``).

Association rows are stored as columns, not blobs, so the file can be
inspected with the ``sqlite3`` shell when debugging a deployment. Identifiers
are unsigned 64-bit (datapath ids use all 64 bits), which SQLite's signed
INTEGER cannot hold directly: they are stored in two's complement and mapped
back on load, which keeps equality (and so the unique indexes) exact.
"""

from __future__ import annotations

import abc
import itertools
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from routeflow.rflib.types import AssociationEntry, ConfigEntry

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "SQLiteStore",
    "StateStore",
    "StoreClosedError",
    "StoreError",
    "open_store",
]

log = logging.getLogger("routeflow.store")

SCHEMA_VERSION = 1

_U64 = 1 << 64
_I64 = 1 << 63

_CONFIG_COLUMNS: tuple[str, ...] = ("vm_id", "vm_port", "ct_id", "dp_id", "dp_port")
_ASSOC_COLUMNS: tuple[str, ...] = (
    "vm_id",
    "vm_port",
    "ct_id",
    "dp_id",
    "dp_port",
    "vs_id",
    "vs_port",
    "hwaddress",
)
_ASSOC_INT_COLUMNS = tuple(c for c in _ASSOC_COLUMNS if c != "hwaddress")


# --- validation shared by every backend -----------------------------------


def _check_id(name: str, value: object) -> None:
    if type(value) is not int:  # bool is not an identifier either
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < _U64:
        raise ValueError(f"{name}={value} is outside the unsigned 64-bit range")


def _check_config(entries: Sequence[ConfigEntry]) -> list[ConfigEntry]:
    entries = list(entries)
    vm_keys: set[tuple[int, int]] = set()
    dp_keys: set[tuple[int, int, int]] = set()
    for entry in entries:
        for name in _CONFIG_COLUMNS:
            _check_id(name, getattr(entry, name))
        if entry.vm_key in vm_keys:
            raise ValueError(f"config maps VM port {entry.vm_key} twice")
        if entry.dp_key in dp_keys:
            raise ValueError(f"config maps datapath port {entry.dp_key} twice")
        vm_keys.add(entry.vm_key)
        dp_keys.add(entry.dp_key)
    return entries


def _check_association(entry: AssociationEntry) -> None:
    for name in _ASSOC_INT_COLUMNS:
        value = getattr(entry, name)
        if value is not None:
            _check_id(name, value)
    if entry.hwaddress is not None and not isinstance(entry.hwaddress, str):
        raise TypeError(f"hwaddress must be a str, not {type(entry.hwaddress).__name__}")
    if entry.vm_key is None and entry.dp_key is None:
        raise ValueError(f"association entry has neither a VM nor a datapath key: {entry}")


def _check_associations(entries: Sequence[AssociationEntry]) -> list[AssociationEntry]:
    entries = list(entries)
    vm_keys: set[tuple[int, int]] = set()
    dp_keys: set[tuple[int, int, int]] = set()
    for entry in entries:
        _check_association(entry)
        if entry.vm_key is not None:
            if entry.vm_key in vm_keys:
                raise ValueError(f"two association entries for VM port {entry.vm_key}")
            vm_keys.add(entry.vm_key)
        if entry.dp_key is not None:
            if entry.dp_key in dp_keys:
                raise ValueError(f"two association entries for datapath port {entry.dp_key}")
            dp_keys.add(entry.dp_key)
    return entries


def _check_kv(key: str, value: object = b"") -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"kv key must be a str, not {type(key).__name__}")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"kv value must be bytes, not {type(value).__name__}")
    return bytes(value)


def _check_writes(writes: Mapping[str, bytes | None]) -> dict[str, bytes | None]:
    checked: dict[str, bytes | None] = {}
    for key, value in writes.items():
        _check_kv(key)
        checked[key] = None if value is None else _check_kv(key, value)
    return checked


def _collides(row: AssociationEntry, entry: AssociationEntry) -> bool:
    """Whether ``row`` and ``entry`` describe the same VM port or the same switch port."""
    vm_key, dp_key = entry.vm_key, entry.dp_key
    return (vm_key is not None and row.vm_key == vm_key) or (
        dp_key is not None and row.dp_key == dp_key
    )


class StoreError(RuntimeError):
    """Base of every state store failure: closed, unusable, unreachable, refused, fenced.

    Catch this to tell a store failure from a bug. It stays a RuntimeError for callers
    written before it existed.
    """


class StoreClosedError(StoreError):
    """The store was closed (or, for etcd, fenced: another rfserver leads)."""


class StateStore(abc.ABC):
    """What rfserver persists. Every method is atomic on its own.

    Associations are identified by their keys: the VM side ``(vm_id, vm_port)``
    and the datapath side ``(ct_id, dp_id, dp_port)``, each used only when
    complete. No two rows ever share a key; writing an entry replaces every
    row it collides with on either side, which is how an idle client port row
    turns into an association (and back).
    """

    @abc.abstractmethod
    def load_config(self) -> list[ConfigEntry]:
        """The config entries, in the order they were written."""

    @abc.abstractmethod
    def replace_config(self, entries: Sequence[ConfigEntry]) -> None:
        """Atomically swap the whole config (ValueError on duplicate keys)."""

    @abc.abstractmethod
    def load_associations(self) -> list[AssociationEntry]:
        """Every association row, oldest write first."""

    @abc.abstractmethod
    def replace_associations(self, entries: Sequence[AssociationEntry]) -> None:
        """Atomically swap the whole table (ValueError on duplicate keys)."""

    @abc.abstractmethod
    def put_association(self, entry: AssociationEntry) -> None:
        """Insert ``entry``, first removing every row that shares a key with it."""

    @abc.abstractmethod
    def delete_association(self, entry: AssociationEntry) -> int:
        """Remove every row sharing a key with ``entry``; return how many."""

    @abc.abstractmethod
    def kv_get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def kv_put(self, key: str, value: bytes) -> None: ...

    @abc.abstractmethod
    def kv_delete(self, key: str) -> None:
        """Remove ``key``; no error if it is absent."""

    @abc.abstractmethod
    def kv_items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        """Pairs whose key starts with ``prefix``, sorted by key."""

    def kv_put_many(self, writes: Mapping[str, bytes | None]) -> None:
        """Put (or, for None, delete) several keys as one atomic write.

        Backends override this with a real transaction; this fallback is not atomic.
        """
        for key, value in writes.items():
            if value is None:
                self.kv_delete(key)
            else:
                self.kv_put(key, value)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend; idempotent. Other methods fail afterwards."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryStore(StateStore):
    """Plain dicts: for tests and for running without persistence."""

    def __init__(self) -> None:
        self._config: list[ConfigEntry] = []
        self._assoc: dict[int, AssociationEntry] = {}
        self._ids = itertools.count(1)
        self._kv: dict[str, bytes] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("state store is closed")

    def load_config(self) -> list[ConfigEntry]:
        self._check_open()
        return list(self._config)

    def replace_config(self, entries: Sequence[ConfigEntry]) -> None:
        self._check_open()
        self._config = _check_config(entries)

    def load_associations(self) -> list[AssociationEntry]:
        self._check_open()
        return list(self._assoc.values())

    def replace_associations(self, entries: Sequence[AssociationEntry]) -> None:
        self._check_open()
        entries = _check_associations(entries)
        self._assoc = {next(self._ids): entry for entry in entries}

    def put_association(self, entry: AssociationEntry) -> None:
        self._check_open()
        _check_association(entry)
        self._remove_colliding(entry)
        self._assoc[next(self._ids)] = entry

    def delete_association(self, entry: AssociationEntry) -> int:
        self._check_open()
        _check_association(entry)
        return self._remove_colliding(entry)

    def _remove_colliding(self, entry: AssociationEntry) -> int:
        doomed = [i for i, row in self._assoc.items() if _collides(row, entry)]
        for i in doomed:
            del self._assoc[i]
        return len(doomed)

    def kv_get(self, key: str) -> bytes | None:
        self._check_open()
        _check_kv(key)
        return self._kv.get(key)

    def kv_put(self, key: str, value: bytes) -> None:
        self._check_open()
        self._kv[key] = _check_kv(key, value)

    def kv_delete(self, key: str) -> None:
        self._check_open()
        _check_kv(key)
        self._kv.pop(key, None)

    def kv_put_many(self, writes: Mapping[str, bytes | None]) -> None:
        self._check_open()
        checked = _check_writes(writes)
        for key, value in checked.items():
            if value is None:
                self._kv.pop(key, None)
            else:
                self._kv[key] = value

    def kv_items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        self._check_open()
        _check_kv(prefix)
        return sorted((k, v) for k, v in self._kv.items() if k.startswith(prefix))

    def close(self) -> None:
        self._closed = True


# --- SQLite ---------------------------------------------------------------


def _to_sql(value: int | None) -> int | None:
    """Unsigned 64-bit -> signed 64-bit (two's complement); None stays None."""
    if value is not None and value >= _I64:
        return value - _U64
    return value


def _from_sql(value: int | None) -> int | None:
    if value is not None and value < 0:
        return value + _U64
    return value


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id INTEGER NOT NULL,
    vm_port INTEGER NOT NULL,
    ct_id INTEGER NOT NULL,
    dp_id INTEGER NOT NULL,
    dp_port INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS association (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id INTEGER,
    vm_port INTEGER,
    ct_id INTEGER,
    dp_id INTEGER,
    dp_port INTEGER,
    vs_id INTEGER,
    vs_port INTEGER,
    hwaddress TEXT
);
-- NULLs are distinct in unique indexes: any number of rows may lack a side.
CREATE UNIQUE INDEX IF NOT EXISTS association_vm ON association (vm_id, vm_port);
CREATE UNIQUE INDEX IF NOT EXISTS association_dp ON association (ct_id, dp_id, dp_port);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION});
"""

_CONFIG_INSERT = (
    f"INSERT INTO config ({', '.join(_CONFIG_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_CONFIG_COLUMNS))})"
)
_ASSOC_INSERT = (
    f"INSERT INTO association ({', '.join(_ASSOC_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ASSOC_COLUMNS))})"
)
_ASSOC_DELETE = (
    "DELETE FROM association WHERE (vm_id = ? AND vm_port = ?)"
    " OR (ct_id = ? AND dp_id = ? AND dp_port = ?)"
)


def _config_row(entry: ConfigEntry) -> tuple[int | None, ...]:
    return tuple(_to_sql(getattr(entry, c)) for c in _CONFIG_COLUMNS)


def _assoc_row(entry: AssociationEntry) -> tuple[object, ...]:
    return (*(_to_sql(getattr(entry, c)) for c in _ASSOC_INT_COLUMNS), entry.hwaddress)


def _assoc_keys(entry: AssociationEntry) -> tuple[int | None, ...]:
    # An incomplete key becomes NULLs, and NULL = anything is never true in SQL.
    vm = entry.vm_key or (None, None)
    dp = entry.dp_key or (None, None, None)
    return tuple(_to_sql(v) for v in (*vm, *dp))


class SQLiteStore(StateStore):
    """One SQLite file in WAL mode; safe to share between threads (one lock).

    ``synchronous=NORMAL`` with WAL keeps every committed transaction across a
    process crash; only an OS crash or power loss can drop the last commits,
    which the clients and datapaths re-register anyway.
    """

    def __init__(self, path: str, *, timeout: float = 5.0):
        self.path = path
        self._lock = threading.RLock()
        try:
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise StoreError(f"cannot open state store {path!r}: {err}") from err
        self._conn: sqlite3.Connection | None = conn
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal" and path != ":memory:":
                log.warning("%s: journal_mode is %s, not wal", path, mode)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._init_schema()
        except sqlite3.DatabaseError as err:
            conn.close()
            self._conn = None
            raise StoreError(f"{path!r} is not a usable state store: {err}") from err
        except BaseException:
            conn.close()
            self._conn = None
            raise

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """An explicit write transaction; the write lock is taken at BEGIN."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"state store {self.path!r} is closed")
        return self._conn

    def _init_schema(self) -> None:
        with self._tx() as conn:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                # Not executescript(): it would COMMIT our transaction halfway.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                return
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
        if len(rows) != 1:
            raise StoreError(f"{self.path!r}: corrupt schema_version table ({len(rows)} rows)")
        version = rows[0][0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path!r} has state store schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this routeflow understands: upgrade routeflow, "
                f"or move the file away to start from empty state"
            )
        if version < 1:
            raise StoreError(f"{self.path!r}: invalid schema version {version}")

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def load_config(self) -> list[ConfigEntry]:
        rows = self._query(f"SELECT {', '.join(_CONFIG_COLUMNS)} FROM config ORDER BY id")
        return [
            ConfigEntry(**{c: _from_sql(v) for c, v in zip(_CONFIG_COLUMNS, row, strict=True)})
            for row in rows
        ]

    def replace_config(self, entries: Sequence[ConfigEntry]) -> None:
        entries = _check_config(entries)
        with self._tx() as conn:
            conn.execute("DELETE FROM config")
            conn.executemany(_CONFIG_INSERT, [_config_row(e) for e in entries])

    def load_associations(self) -> list[AssociationEntry]:
        rows = self._query(f"SELECT {', '.join(_ASSOC_COLUMNS)} FROM association ORDER BY id")
        entries = []
        for row in rows:
            fields = dict(zip(_ASSOC_INT_COLUMNS, map(_from_sql, row[:-1]), strict=True))
            entries.append(AssociationEntry(**fields, hwaddress=row[-1]))
        return entries

    def replace_associations(self, entries: Sequence[AssociationEntry]) -> None:
        entries = _check_associations(entries)
        with self._tx() as conn:
            conn.execute("DELETE FROM association")
            conn.executemany(_ASSOC_INSERT, [_assoc_row(e) for e in entries])

    def put_association(self, entry: AssociationEntry) -> None:
        _check_association(entry)
        with self._tx() as conn:
            conn.execute(_ASSOC_DELETE, _assoc_keys(entry))
            conn.execute(_ASSOC_INSERT, _assoc_row(entry))

    def delete_association(self, entry: AssociationEntry) -> int:
        _check_association(entry)
        with self._tx() as conn:
            return conn.execute(_ASSOC_DELETE, _assoc_keys(entry)).rowcount

    def kv_get(self, key: str) -> bytes | None:
        _check_kv(key)
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def kv_put(self, key: str, value: bytes) -> None:
        value = _check_kv(key, value)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def kv_delete(self, key: str) -> None:
        _check_kv(key)
        with self._tx() as conn:
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))

    def kv_put_many(self, writes: Mapping[str, bytes | None]) -> None:
        checked = _check_writes(writes)
        with self._tx() as conn:
            for key, value in checked.items():
                if value is None:
                    conn.execute("DELETE FROM kv WHERE key = ?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO kv (key, value) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )

    def kv_items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        _check_kv(prefix)
        # Text compares as UTF-8 bytes, i.e. by code point like Python, so the
        # prefix is a contiguous range starting at ``prefix``: scan it with the index.
        out: list[tuple[str, bytes]] = []
        with self._lock:
            cursor = self._connection().execute(
                "SELECT key, value FROM kv WHERE key >= ? ORDER BY key", (prefix,)
            )
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                out.append((key, bytes(value)))
            cursor.close()
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def open_store(url: str) -> StateStore:
    """``sqlite:/path/to/state.db``, ``memory:``, or ``etcd://host:port[,host:port...][/prefix]``.

    The etcd prefix defaults to ``/routeflow/default/`` and always ends in a slash.
    """
    scheme, sep, rest = url.partition(":")
    if sep and scheme == "etcd":
        return _open_etcd(url, rest)
    if sep and scheme == "sqlite":
        if not rest:
            raise ValueError(f"bad store URL {url!r}: expected sqlite:/path/to/state.db")
        return SQLiteStore(rest)
    if sep and scheme == "memory":
        if rest:
            raise ValueError(f"bad store URL {url!r}: 'memory:' takes no path")
        return MemoryStore()
    raise ValueError(
        f"unsupported store URL {url!r}: expected 'sqlite:/path/file.db', 'memory:' "
        f"or 'etcd://host:port[,host:port...][/prefix]'"
    )


def _open_etcd(url: str, rest: str) -> StateStore:
    from routeflow.rflib.etcdstore import DEFAULT_PREFIX, EtcdStore, _parse_endpoint

    if not rest.startswith("//"):
        raise ValueError(f"bad store URL {url!r}: expected etcd://host:port[,host:port...]")
    hosts, slash, path = rest[2:].partition("/")
    endpoints = hosts.split(",")
    for endpoint in endpoints:
        _parse_endpoint(endpoint)  # ValueError on a malformed one, before any traffic
    prefix = f"/{path}" if slash and path else DEFAULT_PREFIX
    if not prefix.endswith("/"):
        prefix += "/"
    return EtcdStore(endpoints, prefix)

"""The replicated backend of the state store: etcd, through its v3 JSON gateway.

Layout under the prefix (``/routeflow/default/`` unless told otherwise)::

    config            the whole config, one msgpack list: replace_config is one put
    assoc/<row key>   one association row each, msgpack ``[seq, entry]``; the row key
                      names the row's complete sides, e.g. ``vm:12a0:1,dp:0:99:1``
    kv/<key>          the kv area, values as given

Every write is one etcd transaction. Writes that depend on what is stored
(``put_association`` must remove the rows it collides with) read the rows,
then commit only if no association key changed since that read (a compare
on the mod revision of the whole ``assoc/`` range), and retry otherwise.
Rows are loaded oldest write first: by mod revision, then by their position
in the ``replace_associations`` that wrote them together.

Fencing: after ``fence(key, value)`` every write also compares
``value(prefix + key) == value`` and raises :class:`FencedError` when that
fails, so a leader that lost its lease cannot overwrite its successor's state.

Identifiers stay exact over their whole unsigned 64-bit range: they travel
inside msgpack values, never as JSON numbers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec
import requests
from urllib3.exceptions import ReadTimeoutError

with warnings.catch_warnings():
    # etcd3gw -> futurist imports eventlet if installed (os-ken needs it), which
    # warns about its own deprecation on import; nothing here uses eventlet.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from etcd3gw.client import Etcd3Client

from routeflow.rflib.store import (
    StateStore,
    StoreClosedError,
    StoreError,
    _check_association,
    _check_associations,
    _check_config,
    _check_kv,
    _collides,
)
from routeflow.rflib.types import AssociationEntry, ConfigEntry

__all__ = [
    "DEFAULT_PREFIX",
    "EtcdError",
    "EtcdStore",
    "FencedError",
    "StoreUnavailableError",
    "WatchHandle",
    "decode_association",
    "decode_config",
]

log = logging.getLogger("routeflow.store")

DEFAULT_PREFIX = "/routeflow/default/"

#: gRPC gateway statuses worth another endpoint: unavailable (no leader,
#: request timed out, member stopping), deadline exceeded, internal.
_RETRY_STATUS = frozenset({408, 500, 502, 503, 504})

_encoder = msgspec.msgpack.Encoder()
_config_decoder = msgspec.msgpack.Decoder(list[ConfigEntry])
_row_decoder = msgspec.msgpack.Decoder(tuple[int, AssociationEntry])


class StoreUnavailableError(StoreError):
    """No etcd endpoint answered within the time budget."""


class FencedError(StoreClosedError):
    """A fenced write found the fence key changed: another rfserver leads now."""


class EtcdError(StoreError):
    """etcd refused a request (not a connectivity problem: retrying will not help)."""

    def __init__(self, message: str, status: int = 0, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


def decode_config(value: bytes) -> list[ConfigEntry]:
    """The config from the value of the ``config`` key (as a watch reports it)."""
    return _config_decoder.decode(value)


def decode_association(value: bytes) -> AssociationEntry:
    """The row from the value of an ``assoc/`` key (as a watch reports it)."""
    return _row_decoder.decode(value)[1]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key starting with ``prefix`` (etcd's range_end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"  # the whole keyspace
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _row_key(entry: AssociationEntry) -> str:
    vm, dp = entry.vm_key, entry.dp_key
    vm_part = "-" if vm is None else f"{vm[0]:x}:{vm[1]}"
    dp_part = "-" if dp is None else f"{dp[0]}:{dp[1]:x}:{dp[2]}"
    return f"vm:{vm_part},dp:{dp_part}"


def _parse_endpoint(endpoint: str) -> tuple[str, int]:
    rest = endpoint.strip()
    for scheme in ("http://", "etcd://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
    host, sep, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad etcd endpoint {endpoint!r}: expected host:port")
    return host, int(port)


class _Endpoint:
    def __init__(self, endpoint: str):
        self.host, self.port = _parse_endpoint(endpoint)
        self.name = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        # etcd >= 3.4 serves the v3 gateway at /v3/; naming it saves the
        # version probe etcd3gw would otherwise make on first use.
        self.client = Etcd3Client(host=self.host, port=self.port, api_path="/v3/")

    def url(self, path: str) -> str:
        return self.client.get_url(path)


def _error_text(resp: requests.Response) -> tuple[str, int | None]:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200] or resp.reason, None
    if not isinstance(body, dict):
        return str(body)[:200], None
    return str(body.get("message") or body.get("error") or body), body.get("code")


class EtcdStore(StateStore):
    """The state store on an etcd cluster; thread-safe.

    ``timeout`` is the budget of one operation across every endpoint.
    """

    #: A watch stream with no traffic for this long is re-created (from the
    #: next revision, so nothing is missed): it catches half-open connections.
    watch_idle = 15.0

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = 2.0,
    ):
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        if not prefix.endswith("/"):
            prefix += "/"
        # etcd3gw's client talks to exactly one host and has no notion of a
        # cluster, so failover is done here: one client per endpoint, requests
        # go to the last one that answered and move on when it does not.
        self._endpoints = [_Endpoint(e) for e in endpoints]
        self._current = 0
        self.prefix = prefix
        self.timeout = timeout
        self._prefix = prefix.encode()
        self._closed = False
        self._fence: tuple[bytes, bytes] | None = None
        self._watches: set[WatchHandle] = set()
        self._lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [e.name for e in self._endpoints]

    @property
    def current_endpoint(self) -> str:
        """The endpoint requests go to first (the last one that answered)."""
        return self._endpoints[self._current].name

    def key(self, rel: str) -> bytes:
        """The full etcd key of ``rel`` under this store's prefix."""
        return self._prefix + rel.encode()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"state store etcd {self.prefix!r} is closed")

    def request(self, path: str, payload: dict[str, Any], *, timeout: float | None = None) -> dict:
        """POST one v3 gateway call, failing over between endpoints.

        Raises StoreUnavailableError when no endpoint answers within the
        budget, EtcdError when etcd answers with a non-retryable error.
        """
        self._check_open()
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        n = len(self._endpoints)
        per_try = max(budget / n, min(budget, 0.5))
        start = self._current
        errors: dict[str, str] = {}
        attempt = 0
        while True:
            i = (start + attempt) % n
            ep = self._endpoints[i]
            remaining = deadline - time.monotonic()
            try:
                resp = ep.client.session.post(
                    ep.url(path), json=payload, timeout=max(0.05, min(per_try, remaining))
                )
            except requests.exceptions.RequestException as err:
                errors[ep.name] = type(err).__name__
            else:
                if resp.status_code == 200:
                    try:
                        answer = resp.json()
                    except ValueError:  # cut short: the member went away mid-answer
                        answer = None
                    if isinstance(answer, dict):
                        self._current = i
                        return answer
                text, code = _error_text(resp)
                if resp.status_code not in _RETRY_STATUS | {200}:
                    raise EtcdError(f"etcd {ep.name}: {path}: {text}", resp.status_code, code)
                errors[ep.name] = f"HTTP {resp.status_code} {text}"
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tried = "; ".join(f"{name}: {err}" for name, err in errors.items())
                raise StoreUnavailableError(
                    f"no etcd endpoint answered {path} within {budget:.1f} s ({tried})"
                )
            self._check_open()
            if attempt % n == 0:  # a whole round failed: give the cluster a moment
                time.sleep(min(0.05 * (attempt // n), 0.25, remaining))

    def _range(self, key: bytes, *, prefix: bool = False, **extra: Any) -> dict:
        payload: dict[str, Any] = {"key": _b64(key), **extra}
        if prefix:
            payload["range_end"] = _b64(_prefix_end(key))
        return self.request("/kv/range", payload)

    def revision(self) -> int:
        """The cluster's current revision."""
        result = self._range(self.key("config"), count_only=True)
        return int(result["header"]["revision"])

    def fence(self, key: str | None, value: bytes | None) -> None:
        """Make every later write conditional on ``value(prefix + key) == value``."""
        if key is None:
            self._fence = None
            return
        if value is None:
            raise ValueError("fence needs a value to compare with")
        self._fence = (self.key(key), bytes(value))

    def txn(
        self,
        compare: Sequence[dict],
        success: Sequence[dict],
        failure: Sequence[dict] = (),
        *,
        timeout: float | None = None,
    ) -> tuple[bool, list[dict]]:
        """One etcd transaction, fenced if :meth:`fence` was called.

        Returns whether it succeeded and the responses of the branch that ran
        (the fence's own check left out). Raises FencedError if the fence failed.
        """
        fence = self._fence
        compare, failure = list(compare), list(failure)
        if fence is not None:
            fkey = _b64(fence[0])
            compare.insert(
                0, {"key": fkey, "target": "VALUE", "result": "EQUAL", "value": _b64(fence[1])}
            )
            failure.insert(0, {"request_range": {"key": fkey}})
        result = self.request(
            "/kv/txn",
            {"compare": compare, "success": list(success), "failure": failure},
            timeout=timeout,
        )
        responses = result.get("responses", [])
        if result.get("succeeded"):
            return True, responses
        if fence is not None:
            kvs = responses[0].get("response_range", {}).get("kvs", [])
            if not kvs or _unb64(kvs[0].get("value")) != fence[1]:
                raise FencedError(
                    "this rfserver is no longer the leader "
                    f"({fence[0].decode(errors='replace')} changed): write refused"
                )
            responses = responses[1:]
        return False, responses

    # --- config -----------------------------------------------------------------

    def load_config(self) -> list[ConfigEntry]:
        kvs = self._range(self.key("config")).get("kvs", [])
        return decode_config(_unb64(kvs[0].get("value"))) if kvs else []

    def replace_config(self, entries: Sequence[ConfigEntry]) -> None:
        entries = _check_config(entries)
        put = {"key": _b64(self.key("config")), "value": _b64(_encoder.encode(entries))}
        self.txn([], [{"request_put": put}])

    # --- associations -----------------------------------------------------------

    def _assoc_rows(self) -> tuple[list[tuple[bytes, AssociationEntry]], int]:
        """Rows oldest write first, with their keys, and the revision read at."""
        result = self._range(self.key("assoc/"), prefix=True)
        rows = []
        for kv in result.get("kvs", []):
            seq, entry = _row_decoder.decode(_unb64(kv.get("value")))
            rows.append((int(kv["mod_revision"]), seq, _unb64(kv["key"]), entry))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [(key, entry) for _, _, key, entry in rows], int(result["header"]["revision"])

    def _assoc_unchanged_since(self, revision: int) -> dict:
        start = self.key("assoc/")
        return {
            "key": _b64(start),
            "range_end": _b64(_prefix_end(start)),
            "target": "MOD",
            "result": "LESS",
            "mod_revision": revision + 1,
        }

    def _assoc_write(
        self, plan: Callable[[list[tuple[bytes, AssociationEntry]]], list[dict]]
    ) -> list[dict]:
        """Read the rows, write what ``plan`` makes of them if they did not change since."""
        for _ in range(100):
            rows, revision = self._assoc_rows()
            ok, responses = self.txn([self._assoc_unchanged_since(revision)], plan(rows))
            if ok:
                return responses
        raise StoreUnavailableError("association table kept changing under 100 attempts")

    def _put_op(self, entry: AssociationEntry, seq: int = 0) -> dict:
        key = self.key("assoc/" + _row_key(entry))
        value = _encoder.encode((seq, entry))
        return {"request_put": {"key": _b64(key), "value": _b64(value)}}

    def load_associations(self) -> list[AssociationEntry]:
        return [entry for _, entry in self._assoc_rows()[0]]

    def replace_associations(self, entries: Sequence[AssociationEntry]) -> None:
        entries = _check_associations(entries)
        new_keys = {self.key("assoc/" + _row_key(e)) for e in entries}
        puts = [self._put_op(e, seq) for seq, e in enumerate(entries)]

        def plan(rows: list[tuple[bytes, AssociationEntry]]) -> list[dict]:
            # Not one delete of the whole range: etcd refuses a transaction
            # that deletes a range and puts a key inside it.
            stale = [k for k, _ in rows if k not in new_keys]
            return [{"request_delete_range": {"key": _b64(k)}} for k in stale] + puts

        self._assoc_write(plan)

    def put_association(self, entry: AssociationEntry) -> None:
        _check_association(entry)
        put = self._put_op(entry)
        new_key = self.key("assoc/" + _row_key(entry))

        def plan(rows: list[tuple[bytes, AssociationEntry]]) -> list[dict]:
            doomed = [k for k, row in rows if k != new_key and _collides(row, entry)]
            return [{"request_delete_range": {"key": _b64(k)}} for k in doomed] + [put]

        self._assoc_write(plan)

    def delete_association(self, entry: AssociationEntry) -> int:
        _check_association(entry)

        def plan(rows: list[tuple[bytes, AssociationEntry]]) -> list[dict]:
            doomed = [k for k, row in rows if _collides(row, entry)]
            return [{"request_delete_range": {"key": _b64(k)}} for k in doomed]

        responses = self._assoc_write(plan)
        return sum(int(r["response_delete_range"].get("deleted", 0)) for r in responses)

    # --- kv -------------------------------------------------------------------------

    def kv_get(self, key: str) -> bytes | None:
        _check_kv(key)
        kvs = self._range(self.key("kv/" + key)).get("kvs", [])
        return _unb64(kvs[0].get("value")) if kvs else None

    def kv_put(self, key: str, value: bytes) -> None:
        value = _check_kv(key, value)
        put = {"key": _b64(self.key("kv/" + key)), "value": _b64(value)}
        self.txn([], [{"request_put": put}])

    def kv_delete(self, key: str) -> None:
        _check_kv(key)
        self.txn([], [{"request_delete_range": {"key": _b64(self.key("kv/" + key))}}])

    def kv_put_many(self, writes: Mapping[str, bytes | None]) -> None:
        ops: list[dict] = []
        for key, value in writes.items():
            if value is None:
                _check_kv(key)
                ops.append({"request_delete_range": {"key": _b64(self.key("kv/" + key))}})
            else:
                value = _check_kv(key, value)
                put = {"key": _b64(self.key("kv/" + key)), "value": _b64(value)}
                ops.append({"request_put": put})
        if ops:
            self.txn([], ops)

    def kv_items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        _check_kv(prefix)
        area = len(self.key("kv/"))
        # etcd sorts keys as bytes; UTF-8 bytes sort like Python sorts str.
        kvs = self._range(self.key("kv/" + prefix), prefix=True).get("kvs", [])
        return [(_unb64(kv["key"])[area:].decode(), _unb64(kv.get("value"))) for kv in kvs]

    # --- watches ----------------------------------------------------------------

    def watch(self, callback: Callable[[str, str, bytes | None], None]) -> WatchHandle:
        """Call ``callback(kind, key, value)`` for every later change under the prefix.

        ``kind`` is ``"config"`` (key ``""``), ``"assoc"`` (the row key) or
        ``"kv"``; ``value`` is None for a deletion. Calls come from a
        background thread, in revision order. Returns the cancel function.
        """
        start = self.revision() + 1
        handle = WatchHandle(self, callback, start)
        with self._lock:
            self._check_open()
            self._watches.add(handle)
        handle.start()
        return handle

    def _dispatch(self, callback: Callable, key: bytes, value: bytes | None) -> None:
        rel = key[len(self._prefix) :].decode(errors="replace")
        if rel == "config":
            kind, name = "config", ""
        elif rel.startswith(("assoc/", "kv/")):
            kind, _, name = rel.partition("/")
        else:
            return  # the leader key, or anything else sharing the prefix
        try:
            callback(kind, name, value)
        except Exception:
            log.exception("state store watch callback failed on %s %r", kind, name)

    def watch_stream(
        self,
        endpoint: int,
        create: dict[str, Any],
        read_timeout: float,
        holder: _StreamHolder | None = None,
    ) -> Iterator[dict]:
        """The messages of one watch stream on one endpoint (a generator).

        Ends when the stream ends; raises requests' exceptions on errors or
        after ``read_timeout`` seconds without a message.
        """
        ep = self._endpoints[endpoint]
        session = requests.Session()
        try:
            resp = session.post(
                ep.url("/watch"),
                json={"create_request": create},
                stream=True,
                timeout=(min(self.timeout, 2.0), read_timeout),
            )
            try:
                if holder is not None and not holder.hold(resp):
                    return
                if resp.status_code != 200:
                    raise requests.exceptions.ConnectionError(
                        f"watch on {ep.name}: HTTP {resp.status_code} {_error_text(resp)[0]}"
                    )
                buffer = b""
                for chunk in resp.iter_content(chunk_size=None):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
            finally:
                if holder is not None:
                    holder.release()
                resp.close()
        finally:
            session.close()

    def wait_for_delete(self, rel: str, start_revision: int, timeout: float) -> bool:
        """Block until key ``rel`` is deleted at or after ``start_revision``.

        True on a deletion, False after ``timeout`` seconds or on a connection
        problem (callers re-check and call again).
        """
        self._check_open()
        create = {
            "key": _b64(self.key(rel)),
            "start_revision": start_revision,
            "filters": ["NOPUT"],
        }
        deadline = time.monotonic() + timeout
        try:
            for message in self.watch_stream(self._current, create, max(timeout, 0.1)):
                result = message.get("result", {})
                if result.get("canceled") or "error" in message:
                    return False
                if result.get("events"):
                    return True
                if time.monotonic() > deadline:
                    return False
        except (requests.exceptions.RequestException, ValueError):
            pass
        return False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches = list(self._watches)
            self._watches.clear()
        for handle in watches:
            handle()
        for ep in self._endpoints:
            ep.client.session.close()


class _StreamHolder:
    """The response a watch thread is reading, so another thread can cut it short."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resp: requests.Response | None = None
        self.cancelled = False

    def hold(self, resp: requests.Response) -> bool:
        with self._lock:
            if self.cancelled:
                return False
            self._resp = resp
            return True

    def release(self) -> None:
        with self._lock:
            self._resp = None

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            resp, self._resp = self._resp, None
            if resp is None:
                return
            # Closing the response from this thread does not wake a reader
            # blocked in recv(); shutting the socket down does. Under the lock,
            # so the descriptor cannot have been closed and reused meanwhile.
            with contextlib.suppress(Exception):
                sock = socket.socket(fileno=resp.raw._fp.fileno())  # type: ignore[union-attr]
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.detach()


class WatchHandle:
    """A running watch of an EtcdStore prefix; call it to cancel."""

    def __init__(self, store: EtcdStore, callback: Callable, start_revision: int):
        self._store = store
        self._callback = callback
        self.next_revision = start_revision
        self.endpoint: str | None = None  # the endpoint streaming to us right now
        self._holder = _StreamHolder()
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def __call__(self) -> None:
        self._holder.cancel()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=5.0)
        with self._store._lock:
            self._store._watches.discard(self)

    @property
    def active(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        store = self._store
        n = len(store._endpoints)
        index = store._current
        failures = 0
        start_key = store._prefix
        while not self._holder.cancelled:
            create = {
                "key": _b64(start_key),
                "range_end": _b64(_prefix_end(start_key)),
                "start_revision": self.next_revision,
            }
            ep = store._endpoints[index]
            try:
                for message in store.watch_stream(index, create, store.watch_idle, self._holder):
                    if "error" in message:
                        raise requests.exceptions.ConnectionError(str(message["error"]))
                    result = message.get("result", {})
                    if result.get("created"):
                        self.endpoint = ep.name
                        failures = 0
                    if result.get("canceled"):
                        compacted = int(result.get("compact_revision", 0))
                        if compacted > self.next_revision:
                            log.error(
                                "etcd compacted revisions %d..%d before this watch saw "
                                "them: changes in between are lost to it",
                                self.next_revision,
                                compacted - 1,
                            )
                            self.next_revision = compacted
                        raise requests.exceptions.ConnectionError(
                            f"watch canceled: {result.get('cancel_reason', 'compacted')}"
                        )
                    for event in result.get("events", []):
                        kv = event["kv"]
                        value = None if event.get("type") == "DELETE" else _unb64(kv.get("value"))
                        store._dispatch(self._callback, _unb64(kv["key"]), value)
                        self.next_revision = int(kv["mod_revision"]) + 1
                reason = "stream ended"  # the member went away
            except (requests.exceptions.RequestException, ValueError, KeyError) as err:
                if self.endpoint is not None and isinstance(
                    err.args[0] if err.args else None, ReadTimeoutError
                ):
                    # Created, then idle for watch_idle seconds: re-create it there.
                    self.endpoint = None
                    continue
                reason = f"{type(err).__name__}: {err}"
            if self._holder.cancelled:
                break
            failures += 1
            log.info(
                "state store watch on %s: %s; resuming at revision %d",
                ep.name,
                reason[:200],
                self.next_revision,
            )
            self.endpoint = None
            index = (index + 1) % n
            if failures >= n:
                time.sleep(min(0.1 * (failures // n), 1.0))

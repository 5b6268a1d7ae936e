"""The tenant repository: the model's durable store, and the one place changes come from.

Objects live in the rflib store's kv area as `tenant/<kind>/<id>` (msgpack of the model
struct) next to `tenant/revision`. A commit writes every touched key and the new global
revision in one store transaction, and only then updates the in-memory `Cloud` and
tells subscribers: a change is durable before anyone (API client or node) hears of it.
Not thread-safe by design: the server calls it from its one event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import msgspec

from routeflow.rflib.store import StateStore
from routeflow.tenant import schedule
from routeflow.tenant.model import (
    KIND_OF,
    Change,
    Cloud,
    Kind,
    Node,
    Object,
    Port,
    Router,
    decode_object,
    encode,
)

log = logging.getLogger(__name__)

PREFIX = "tenant/"
REVISION_KEY = "tenant/revision"

Delete = tuple[Kind, str]


class NotFound(KeyError):
    """An unknown object id; `str()` says which."""

    def __init__(self, kind: Kind, oid: str):
        super().__init__(f"{kind} {oid} not found")
        self.kind = kind
        self.oid = oid

    def __str__(self) -> str:
        return str(self.args[0])


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_key(kind: Kind, oid: str) -> str:
    return f"{PREFIX}{kind}/{oid}"


def load(store: StateStore) -> Cloud:
    """The snapshot stored in `store` (empty if nothing is)."""
    raw = store.kv_get(REVISION_KEY)
    revision = int(raw.decode()) if raw else 0
    tables: dict[Kind, dict[str, Object]] = {kind: {} for kind in Kind}
    for key, value in store.kv_items(PREFIX):
        if key == REVISION_KEY:
            continue
        kind_name, _, oid = key[len(PREFIX) :].partition("/")
        try:
            kind = Kind(kind_name)
            tables[kind][oid] = decode_object(kind, value)
        except (ValueError, msgspec.DecodeError) as err:
            log.warning("tenant store: skipping unreadable %s: %s", key, err)
    return Cloud(
        revision=revision,
        networks=tables[Kind.NETWORK],  # type: ignore[arg-type]
        subnets=tables[Kind.SUBNET],  # type: ignore[arg-type]
        ports=tables[Kind.PORT],  # type: ignore[arg-type]
        routers=tables[Kind.ROUTER],  # type: ignore[arg-type]
        nodes=tables[Kind.NODE],  # type: ignore[arg-type]
        security_groups=tables[Kind.SECURITY_GROUP],  # type: ignore[arg-type]
        floatingips=tables[Kind.FLOATINGIP],  # type: ignore[arg-type]
    )


class Repository:
    """Current state plus durable commits and change subscriptions."""

    def __init__(self, store: StateStore, clock: Callable[[], str] = utc_now):
        self.store = store
        self.clock = clock
        self._cloud = load(store)
        self._subscribers: list[Callable[[Change], None]] = []

    def snapshot(self) -> Cloud:
        return self._cloud

    def subscribe(self, fn: Callable[[Change], None]) -> Callable[[], None]:
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def get(self, kind: Kind, oid: str) -> Object:
        obj = self._cloud.table(kind).get(oid)
        if obj is None:
            raise NotFound(kind, oid)
        return obj

    def commit(self, puts: Sequence[Object] = (), deletes: Sequence[Delete] = ()) -> list[Change]:
        """Store `puts` (stamped: revision_number + 1, timestamps) and `deletes` atomically.

        Returns the changes, in revision order, after subscribers have seen them. The
        gateway node records of routers that the commit calls for (tenant/schedule.py)
        are part of it, after what called for them.
        """
        puts = self._scheduled(puts, deletes)
        now = self.clock()
        revision = self._cloud.revision
        changes: list[Change] = []
        writes: dict[str, bytes | None] = {}
        for obj in puts:
            kind = KIND_OF[type(obj)]
            old = self._cloud.table(kind).get(obj.id)
            stamped = msgspec.structs.replace(
                obj,
                created_at=old.created_at if old is not None else (obj.created_at or now),
                updated_at=now,
                revision_number=(old.revision_number + 1) if old is not None else 1,
            )
            revision += 1
            changes.append(Change(kind=kind, id=obj.id, revision=revision, obj=stamped))
            writes[object_key(kind, obj.id)] = encode(stamped)
        for kind, oid in deletes:
            revision += 1
            changes.append(Change(kind=kind, id=oid, revision=revision, obj=None))
            writes[object_key(kind, oid)] = None
        if not changes:
            return []
        writes[REVISION_KEY] = str(revision).encode()
        self.store.kv_put_many(writes)  # durable from here on
        cloud = self._cloud
        for change in changes:
            cloud = cloud.apply(change)
        self._cloud = cloud
        for change in changes:
            for fn in list(self._subscribers):
                try:
                    fn(change)
                except Exception:  # a subscriber's bug must not undo a durable commit
                    log.exception("tenant change subscriber failed")
        return changes

    def _scheduled(self, puts: Sequence[Object], deletes: Sequence[Delete]) -> list[Object]:
        """``puts`` with the router records the commit calls for: a router in ``puts``
        gets its record in place, the others follow (nodes that apply the commit in
        order reach the record's node by the fallback first: no router flaps)."""
        out = list(puts)
        touched = {KIND_OF[type(o)] for o in out} | {kind for kind, _ in deletes}
        if not touched & {Kind.ROUTER, Kind.NODE}:
            return out  # nothing scheduling reads changes
        preview, revision = self._cloud, self._cloud.revision
        for obj in out:
            revision += 1
            kind = KIND_OF[type(obj)]
            preview = preview.apply(Change(kind=kind, id=obj.id, revision=revision, obj=obj))
        for kind, oid in deletes:
            revision += 1
            preview = preview.apply(Change(kind=kind, id=oid, revision=revision))
        moves = schedule.reschedule(preview)
        for i, obj in enumerate(out):
            if isinstance(obj, Router) and obj.id in moves:
                out[i] = msgspec.structs.replace(obj, gateway_node=moves.pop(obj.id))
        for rid, node in sorted(moves.items()):
            out.append(msgspec.structs.replace(preview.routers[rid], gateway_node=node))
        return out

    # The node side's interface (tenant.nodelink).

    def register_node(self, node: Node) -> None:
        """Upsert a compute node (by its name, the id)."""
        self.commit([node])

    def bind_port(self, port_id: str, host: str, active: bool) -> None:
        """Record where a port's VIF is plugged: binding:host_id and ACTIVE/DOWN."""
        port = self._cloud.ports.get(port_id)
        if port is None:
            raise NotFound(Kind.PORT, port_id)
        status = "ACTIVE" if active else "DOWN"
        if port.binding_host_id == host and port.status == status:
            return
        self.commit([msgspec.structs.replace(port, binding_host_id=host, status=status)])

    def ports(self) -> list[Port]:
        return list(self._cloud.ports.values())

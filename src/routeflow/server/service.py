"""rfserver: the asyncio shell around the association table and the routing table.

It only moves messages: peers' messages go through their session objects
(server.sessions) to the pure cores (association, routing, roles, links), and
the actions that come back become messages to peers and writes to the state
store.
A killed server restarts from the store with its associations intact; peers
reconnect and resend their full state, and the diff (not a flush) reaches the
switches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import sqlite3
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from routeflow.rflib import auth, ipc, logs
from routeflow.rflib import protocol as p
from routeflow.rflib.store import StateStore, StoreClosedError
from routeflow.rflib.types import AssociationEntry, ConfigEntry, EntryState
from routeflow.server import discovered
from routeflow.server.association import (
    AssociationTable,
    ClientDown,
    ConfigReplaced,
    EntryChanged,
    Notice,
    data_plane_map,
)
from routeflow.server.autorun import AutoRunner, directed_links
from routeflow.server.config import ConfigError, load_config
from routeflow.server.links import LinkChanged, LinkStates
from routeflow.server.roles import MASTER, Assign, Generation, Hold, RoleArbiter
from routeflow.server.routing import Binding, NextHopKey, RoutingTable
from routeflow.server.sessions import (
    AddRoutes,
    ClientSession,
    ControllerSession,
    DatapathLeft,
    DeleteNeighbours,
    DeleteRoutes,
    DpPortSeen,
    LinkReport,
    NotMaster,
    Refused,
    ReplaceVm,
    Resynced,
    SetNeighbours,
    StatsSeen,
    TopologyReport,
    ToTable,
    VmPortSeen,
    awaiting_resync,
)
from routeflow.server.view import operator_view, status_document

NEXTHOP_PREFIX = "nexthop/"
#: Per controller: the OpenFlow role generation of its latest master (see server.roles).
ROLE_GENERATION_PREFIX = "role-generation/"

log = logging.getLogger("routeflow.server")


def _nexthop_store_key(key: NextHopKey) -> str:
    ct, dp, vm, members = key
    return NEXTHOP_PREFIX + json.dumps([ct, dp, vm, [list(m) for m in members]])


def _load_nexthop_ids(store: StateStore) -> dict[NextHopKey, int]:
    hints: dict[NextHopKey, int] = {}
    for name, value in store.kv_items(NEXTHOP_PREFIX):
        try:
            ct, dp, vm, members = json.loads(name[len(NEXTHOP_PREFIX) :])
            key = (ct, dp, vm, tuple((int(port), str(g), int(w)) for port, g, w in members))
            hints[key] = int(value)
        except (ValueError, TypeError):
            log.warning("ignoring unreadable next-hop id record %r", name)
    return hints


def _load_role_generations(store: StateStore) -> dict[int, int]:
    out: dict[int, int] = {}
    for name, value in store.kv_items(ROLE_GENERATION_PREFIX):
        try:
            out[int(name[len(ROLE_GENERATION_PREFIX) :])] = int(value)
        except ValueError:
            log.warning("ignoring unreadable role generation record %r", name)
    return out


def _binding(entry: AssociationEntry | None) -> Binding | None:
    if entry is None or entry.state not in (EntryState.ASSOCIATED, EntryState.ACTIVE):
        return None
    return Binding(entry.ct_id, entry.dp_id, entry.dp_port, entry.hwaddress or "")


class RFServer:
    """rfserver: peers' sessions in, the cores' actions out (see the module docstring).

    ``ha`` holds the leader-election facts a leader shows in its status
    (role, identity); empty for a server without a standby.
    """

    def __init__(
        self,
        config: list[ConfigEntry],
        store: StateStore,
        *,
        status_path: str | None = None,
        client_grace: float = 30.0,
        resync_wait: float = 10.0,
        config_path: str | None = None,
        secret: bytes | None = None,
        role_hold: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        ha: dict | None = None,
    ) -> None:
        self.secret = secret
        self.ssl_context = ssl_context
        self.store = store
        self.config_path = config_path
        self.resync_wait = resync_wait
        self._resynced_vms: set[int] = set()
        #: Set (and replaced) whenever a VM resyncs or the table changes:
        #: what a full-state dump waiting for VMs' resyncs waits on.
        self._news = asyncio.Event()
        self.links = LinkStates()
        #: Switch-to-switch links rfproxy discovered (server.discovered), kept in the store.
        stored, unreadable = discovered.from_records(store.kv_items(discovered.RECORD_PREFIX))
        for name in unreadable:
            log.warning("ignoring unreadable discovered link record %r", name)
        self.topology = discovered.Topology(stored)
        self._background: set[asyncio.Future] = set()
        #: rfserver --auto: the planner's shell (server/autorun.py), set by main before serve().
        self.auto: AutoRunner | None = None
        self.status_path = status_path
        self.client_grace = client_grace
        persisted = store.load_associations()
        self.table, actions = AssociationTable.resume(config, persisted)
        store.replace_config(config)
        self.routing = RoutingTable(id_hints=_load_nexthop_ids(store))
        for entry in self.table.entries():
            b = _binding(entry)
            if b is not None:
                self.routing.bind(entry.vm_id, entry.vm_port, b)
        self.clients: dict[int, ipc.Connection] = {}
        #: ct_id -> the session that programs its switches: its master replica's.
        self.proxies: dict[int, ipc.Connection] = {}
        #: ct_id -> replica name -> session, masters and slaves (see server.roles).
        self.replicas: dict[int, dict[str, ipc.Connection]] = {}
        self.roles = RoleArbiter(_load_role_generations(store), hold=role_hold)
        self._dump_tasks: dict[tuple[int, str], asyncio.Future] = {}
        self._grace_timers: dict[int, asyncio.TimerHandle] = {}
        self._pending = actions
        self.counters: dict[str, int] = defaultdict(int)
        #: Recent notable events (time, kind, text), newest last, for operators.
        self.events: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=500)
        #: Latest DatapathStats per (ct_id, dp_id), with the time it arrived.
        self.stats: dict[tuple[int, int], tuple[float, p.DatapathStats]] = {}
        self.started = time.time()
        self.ha: dict = dict(ha or {})
        #: Set when the store refuses our writes for good (another rfserver
        #: leads: etcd fencing, or the store was closed): stop serving.
        self.deposed = asyncio.Event()
        #: For the web view (routeflow.web): what each port said about itself, and
        #: how many sessions each peer opened (("client" | "controller", id) -> n).
        self.vm_ports: dict[tuple[int, int], p.PortRegister] = {}
        self.dp_ports: dict[tuple[int, int, int], p.DatapathPortRegister] = {}
        self.sessions: dict[tuple[str, int], int] = defaultdict(int)
        self._status_at = 0.0
        self._status_timer: asyncio.TimerHandle | None = None
        self._session_handlers: dict[type, Callable[..., Awaitable[None]]] = {
            AddRoutes: self._add_routes,
            DeleteRoutes: self._delete_routes,
            SetNeighbours: self._set_neighbours,
            DeleteNeighbours: self._delete_neighbours,
            ReplaceVm: self._replace_vm,
            Resynced: self._resynced,
            ToTable: self._to_table,
            VmPortSeen: self._vm_port_seen,
            DpPortSeen: self._dp_port_seen,
            DatapathLeft: self._datapath_left,
            StatsSeen: self._stats_seen,
            LinkReport: self._link_report,
            TopologyReport: self._topology_report,
            NotMaster: self._not_master,
            Refused: self._refused,
        }
        if persisted:
            log.info("resumed %d association rows from the state store", len(persisted))

    def event(self, kind: str, text: str, level: int = logging.INFO, **ids: int | None) -> None:
        """Log a notable event (with the ids it concerns) and keep it for the status API."""
        log.log(level, "%s", text, extra=logs.ids(**ids))
        self.events.append((time.time(), kind, text))

    # --- lifecycle -------------------------------------------------------------

    async def serve(self, address: str, ready: asyncio.Event | None = None) -> None:
        server = await ipc.serve(address, self._handle, ssl=self.ssl_context)
        log.info("rfserver listening on %s", address)
        await self._apply(self._pending)
        self._pending = []
        if self.auto is not None:
            await self.auto.start()
        self._write_status()
        if ready is not None:
            ready.set()
        retry = asyncio.ensure_future(self._retry_mappings())
        try:
            async with server:
                await server.serve_forever()
        finally:
            retry.cancel()

    #: A lost mapping packet (sent before the virtual switch was connected to
    #: rfproxy, say) would leave its association waiting forever: rfserver asks
    #: the client again for every association still unmapped this long after.
    MAPPING_RETRY_S = 3.0

    async def _retry_mappings(self) -> None:
        waiting: set[tuple[int, int]] = set()
        while True:
            await asyncio.sleep(self.MAPPING_RETRY_S)
            waiting, again = self.table.unmapped_again(waiting, self.clients)
            if again:
                self.counters["mapping_retries"] += len(again)
                log.warning(
                    "no mapping packet arrived for %s; asking the client again",
                    ", ".join(f"vm {m.vm_id:#x} port {m.vm_port}" for m in again),
                )
                await self._apply(again)

    def _persist(self, what: str, write, *args) -> bool:
        """One store write; a failure is an event, never a dead session.

        A refused write (fenced: another rfserver leads) deposes this server;
        an unreachable store leaves the change live but unpersisted, which
        the operator must hear about (the next leader would not know it).
        """
        try:
            write(*args)
            return True
        except StoreClosedError as exc:
            self.counters["store_refused"] += 1
            if not self.deposed.is_set():
                self.event("store", f"state store refused {what}: {exc}", logging.ERROR)
                self.deposed.set()
        except (RuntimeError, OSError, sqlite3.Error) as exc:
            self.counters["store_errors"] += 1
            self.event(
                "store",
                f"state store write failed ({what}): {exc}; the change is live but not persisted",
                logging.ERROR,
            )
        return False

    async def close_sessions(self) -> None:
        """Drop every peer (we are no longer the leader): they reconnect to whoever is."""
        for timer in self._grace_timers.values():
            timer.cancel()
        self._grace_timers.clear()
        for task in list(self._background):
            task.cancel()
        conns = {*self.clients.values(), *self.proxies.values()}
        conns.update(c for peers in self.replicas.values() for c in peers.values())
        for conn in conns:
            with contextlib.suppress(ConnectionError, OSError):
                await conn.close()
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None

    # --- sessions --------------------------------------------------------------

    async def _handle(self, conn: ipc.Connection) -> None:
        first = await conn.recv()
        is_hello = isinstance(first, p.ClientHello | p.ControllerRegister)
        if is_hello and self.secret is not None and not await self._authenticate(conn, first):
            return
        if isinstance(first, p.ClientHello):
            await self._client_session(conn, first.vm_id)
        elif isinstance(first, p.ControllerRegister):
            await self._proxy_session(conn, first)
        elif first is not None:
            log.warning("%s: first message was %s, not a hello", conn.peer, type(first).__name__)
            await conn.send(
                p.Error(code="no-hello", detail="send ClientHello or ControllerRegister")
            )

    async def _authenticate(self, conn: ipc.Connection, hello: p.Message) -> bool:
        who = auth.identity(hello)
        nonce = auth.new_nonce()
        await conn.send(p.AuthChallenge(nonce=nonce))
        try:
            reply = await asyncio.wait_for(conn.recv(), timeout=5.0)
        except TimeoutError:
            reply = None
        if isinstance(reply, p.AuthResponse) and auth.check(self.secret, nonce, who, reply.mac):
            return True
        why = (
            "no answer"
            if reply is None
            else ("wrong secret" if isinstance(reply, p.AuthResponse) else type(reply).__name__)
        )
        self.counters["auth_failures"] += 1
        self.event("auth", f"refused {who} from {conn.peer}: {why}", logging.WARNING)
        self._write_status()
        await conn.refuse(p.Error(code="auth-failed", detail="authentication failed"))
        return False

    async def _client_session(self, conn: ipc.Connection, vm_id: int) -> None:
        timer = self._grace_timers.pop(vm_id, None)
        if timer is not None:
            timer.cancel()
        old = self.clients.get(vm_id)
        if old is not None:
            log.warning(
                "vm %#x connected again; dropping its previous session",
                vm_id,
                extra=logs.ids(vm_id=vm_id),
            )
            await old.close()
        self.clients[vm_id] = conn
        self.sessions[("client", vm_id)] += 1
        self.event("client", f"rfclient vm {vm_id:#x} connected from {conn.peer}", vm_id=vm_id)
        session = ClientSession(vm_id)
        try:
            async for msg in conn:
                self.counters[f"rx_{type(msg).__name__}"] += 1
                await self._carry_out(session.handle(msg))
        finally:
            if self.clients.get(vm_id) is conn:
                del self.clients[vm_id]
                self.event(
                    "client",
                    f"rfclient vm {vm_id:#x} disconnected; keeping its routes for "
                    f"{self.client_grace:.0f} s",
                    logging.WARNING,
                    vm_id=vm_id,
                )
                loop = asyncio.get_running_loop()
                self._grace_timers[vm_id] = loop.call_later(
                    self.client_grace, lambda: asyncio.ensure_future(self._client_gone(vm_id))
                )

    async def _client_gone(self, vm_id: int) -> None:
        self._grace_timers.pop(vm_id, None)
        if vm_id in self.clients:
            return
        self.event(
            "client",
            f"vm {vm_id:#x} did not come back; withdrawing its routes and ports",
            logging.WARNING,
            vm_id=vm_id,
        )
        await self._apply(self.routing.forget_vm(vm_id))
        await self._apply(self.table.handle(ClientDown(vm_id)))

    async def _proxy_session(self, conn: ipc.Connection, hello: p.ControllerRegister) -> None:
        ct_id = hello.ct_id
        name = hello.replica or f"ct{ct_id}"
        peers = self.replicas.setdefault(ct_id, {})
        old = peers.get(name)
        peers[name] = conn  # before closing the old one: its end must not look like a death
        if old is not None:
            log.warning(
                "controller %d replica %s connected again; dropping its previous session",
                ct_id,
                name,
            )
            await old.close()
        self.sessions[("controller", ct_id)] += 1
        self.event(
            "controller",
            f"rfproxy ct_id {ct_id} replica {name} connected from {conn.peer}"
            f" (holds {hello.ct_role or 'no role'})",
            ct_id=ct_id,
        )
        await self._apply_roles(self.roles.connect(ct_id, name, hello.ct_role))
        session = ControllerSession(ct_id, name)
        try:
            async for msg in conn:
                self.counters[f"rx_{type(msg).__name__}"] += 1
                is_master = self.proxies.get(ct_id) is conn
                await self._carry_out(session.handle(msg, is_master=is_master))
        finally:
            if peers.get(name) is conn:
                del peers[name]
                task = self._dump_tasks.pop((ct_id, name), None)
                if task is not None:
                    task.cancel()
                if self.proxies.get(ct_id) is conn:
                    del self.proxies[ct_id]
                self.event(
                    "controller",
                    f"rfproxy ct_id {ct_id} replica {name} disconnected",
                    logging.WARNING,
                    ct_id=ct_id,
                )
                await self._apply_roles(self.roles.disconnect(ct_id, name))

    # --- session actions (see server.sessions) --------------------------------

    async def _carry_out(self, actions: list) -> None:
        for action in actions:
            await self._session_handlers[type(action)](action)

    async def _add_routes(self, a: AddRoutes) -> None:
        await self._apply(self.routing.add_routes(a.vm_id, a.routes))

    async def _delete_routes(self, a: DeleteRoutes) -> None:
        await self._apply(self.routing.delete_routes(a.vm_id, a.prefixes))

    async def _set_neighbours(self, a: SetNeighbours) -> None:
        await self._apply(self.routing.set_neighbours(a.vm_id, a.neighbours))

    async def _delete_neighbours(self, a: DeleteNeighbours) -> None:
        await self._apply(self.routing.delete_neighbours(a.vm_id, a.neighbours))

    async def _replace_vm(self, a: ReplaceVm) -> None:
        log.info(
            "vm %#x resync: %d routes, %d neighbours",
            a.vm_id,
            len(a.routes),
            len(a.neighbours),
            extra=logs.ids(vm_id=a.vm_id),
        )
        await self._apply(self.routing.replace_vm(a.vm_id, a.routes, a.neighbours))

    async def _resynced(self, a: Resynced) -> None:
        self._resynced_vms.add(a.vm_id)
        self._tell_news()
        await self._apply(self.links.for_vm(a.vm_id, self.table))

    async def _to_table(self, a: ToTable) -> None:
        await self._apply(self.table.handle(a.event))

    async def _vm_port_seen(self, a: VmPortSeen) -> None:
        self.vm_ports[(a.port.vm_id, a.port.vm_port)] = a.port

    async def _dp_port_seen(self, a: DpPortSeen) -> None:
        self.dp_ports[(a.port.ct_id, a.port.dp_id, a.port.dp_port)] = a.port
        if self.auto is not None:
            self.auto.switch_up(a.port.ct_id, a.port.dp_id)

    async def _datapath_left(self, a: DatapathLeft) -> None:
        for key in [k for k in self.dp_ports if k[:2] == (a.ct_id, a.dp_id)]:
            del self.dp_ports[key]
        self.stats.pop((a.ct_id, a.dp_id), None)
        self.event(
            "switch",
            f"switch {a.dp_id:#x} left controller {a.ct_id}",
            logging.WARNING,
            ct_id=a.ct_id,
            dp_id=a.dp_id,
        )
        self._topology_changed(self.topology.switch_left(a.ct_id, a.dp_id))
        if self.auto is not None:
            self.auto.switch_down(a.dp_id)

    async def _stats_seen(self, a: StatsSeen) -> None:
        self.stats[(a.stats.ct_id, a.stats.dp_id)] = (time.time(), a.stats)
        self._write_status()

    async def _link_report(self, a: LinkReport) -> None:
        await self._apply(self.links.update(a.status, self.table))

    async def _topology_report(self, a: TopologyReport) -> None:
        r = a.report
        now = time.time()
        if isinstance(r, p.DatapathLink):
            self._topology_changed(self.topology.link(r, now))
        else:
            self._topology_changed(self.topology.table(r, now))

    #: More link changes than this at once are one event, not one each.
    LINK_EVENTS_MAX = 8

    def _topology_changed(self, actions: list[discovered.Action]) -> None:
        """Persist the discovered topology's changes; tell the operator."""
        if not actions:
            return
        self._persist("discovered links", self.store.kv_put_many, discovered.records(actions))
        if self.auto is not None:
            self.auto.links(directed_links(self.topology.links()))
        added = sum(1 for a in actions if isinstance(a, discovered.LinkAdded))
        self.counters["links_added"] += added
        self.counters["links_removed"] += len(actions) - added
        if len(actions) > self.LINK_EVENTS_MAX:
            self.event(
                "topology",
                f"discovered links: {added} up, {len(actions) - added} down; "
                f"{len(self.topology)} known",
            )
        for a in actions if len(actions) <= self.LINK_EVENTS_MAX else ():
            e = a.link.ends
            text = (
                f"link {e.src_dp_id:#x}:{e.src_port} -> {e.dst_dp_id:#x}:{e.dst_port} "
                f"(controller {a.link.ct_id}) "
            )
            if isinstance(a, discovered.LinkAdded):
                self.event("topology", text + "up")
            else:
                self.event("topology", text + f"down: {a.reason}", logging.WARNING)
        self._write_status()

    async def _not_master(self, a: NotMaster) -> None:
        self.counters["rx_ignored_not_master"] += 1
        log.debug("ct %d replica %s (not master): ignored %s", a.ct_id, a.replica, a.message)

    async def _refused(self, a: Refused) -> None:
        log.warning("%s", a.reason)

    def _tell_news(self) -> None:
        self._news.set()
        self._news = asyncio.Event()

    async def _apply_roles(self, actions: list) -> None:
        """Execute the role arbiter's decisions (see server.roles)."""
        for action in actions:
            if isinstance(action, Generation):
                self._persist(
                    f"role generation of controller {action.ct_id}",
                    self.store.kv_put,
                    f"{ROLE_GENERATION_PREFIX}{action.ct_id}",
                    str(action.generation).encode(),
                )
            elif isinstance(action, Hold):
                self.event(
                    "controller",
                    f"controller ct {action.ct_id}: no master; waiting {action.seconds:g} s "
                    "for the previous master to come back",
                )
                asyncio.get_running_loop().call_later(
                    action.seconds, self._hold_over, action.ct_id, action.token
                )
            elif isinstance(action, Assign):
                await self._assign(action)
        self._write_status()

    def _hold_over(self, ct_id: int, token: int) -> None:
        actions = self.roles.expire(ct_id, token)
        if actions:
            self._background.add(task := asyncio.ensure_future(self._apply_roles(actions)))
            task.add_done_callback(self._background.discard)

    async def _assign(self, a: Assign) -> None:
        conn = self.replicas.get(a.ct_id, {}).get(a.replica)
        if conn is None:
            return
        key = (a.ct_id, a.replica)
        old_task = self._dump_tasks.pop(key, None)
        if old_task is not None:
            old_task.cancel()
        if a.role == MASTER:
            self.proxies[a.ct_id] = conn
            how = "promoted to master" if a.promoted else "is master"
            self.event(
                "controller",
                f"controller ct {a.ct_id}: replica {a.replica} {how} (generation {a.generation})",
                logging.WARNING if a.promoted and a.generation > 1 else logging.INFO,
            )
        else:
            if self.proxies.get(a.ct_id) is conn:
                del self.proxies[a.ct_id]
            self.event(
                "controller",
                f"controller ct {a.ct_id}: replica {a.replica} is slave "
                f"(generation {a.generation})",
            )
        try:
            await conn.send(p.ControllerRole(ct_id=a.ct_id, role=a.role, generation=a.generation))
        except (ConnectionError, OSError) as exc:
            log.warning("sending its role to ct %d replica %s failed: %s", a.ct_id, a.replica, exc)
            return
        self.counters["tx_ControllerRole"] += 1
        if a.role == MASTER:
            self._dump_tasks[key] = asyncio.ensure_future(self._send_full_state(a.ct_id, conn))

    async def _send_full_state(self, ct_id: int, conn: ipc.Connection) -> None:
        """Give a (re)connected proxy the whole desired state, bracketed by Resync.

        The proxy reconciles its switches against it, so the state must be
        complete: after a server restart, wait (bounded) until the VMs behind
        this controller have resent their routes, or the proxy would remove
        flows of routes we simply had not heard again yet.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resync_wait
        while waiting := awaiting_resync(self.table, ct_id, self._resynced_vms):
            left = deadline - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)
        if waiting:
            self.event(
                "controller",
                f"sending controller {ct_id} its state without VMs "
                + ", ".join(f"{v:#x}" for v in sorted(waiting))
                + f" (no resync within {self.resync_wait:.0f} s)",
                logging.WARNING,
            )
        # Streamed: each chunk is made from the live table and written at once
        # (no await in between), then the proxy must take it before the next
        # one is made. Changes made meanwhile reach the proxy between chunks
        # (_apply writes them before awaiting), which dump_chunks allows for.
        head: list[p.Message] = [p.Resync(phase="begin")]
        head.extend(
            data_plane_map(entry)
            for entry in self.table.entries()
            if entry.state == EntryState.ACTIVE and entry.ct_id == ct_id
        )
        conn.write_many(head)
        sent = len(head)
        del head
        await conn.drain()
        for chunk in self.routing.dump_chunks(ct_id):
            conn.write_many(chunk)
            sent += len(chunk)
            del chunk
            await conn.drain()
        await conn.send_many([p.Resync(phase="end")])
        sent += 1
        self.event("controller", f"controller {ct_id} has the full state ({sent} messages)")

    def reload_config(self, path: str | None = None) -> list[str]:
        """Re-read the mapping CSV; on any error keep the running config and say why."""
        path = path or self.config_path
        if path is None:
            return ["no config file to reload"]
        if self.auto is not None:
            return ["--auto: the mapping CSV is read at start only (restart to change it)"]
        try:
            config = load_config(path)
            actions = self.table.handle(ConfigReplaced(tuple(config)))
        except (ConfigError, ValueError) as exc:  # bad file, or duplicate mappings
            self.event(
                "config", f"config reload refused, keeping the old one: {exc}", logging.ERROR
            )
            return list(exc.errors) if isinstance(exc, ConfigError) else [str(exc)]
        self._persist("the reloaded config", self.store.replace_config, config)
        self.event("config", f"config reloaded from {path}: {len(config)} mappings")
        self._write_status()
        self._background.add(task := asyncio.ensure_future(self._apply(actions)))
        task.add_done_callback(self._background.discard)
        return []

    def apply_auto_mapping(self, entries: tuple[ConfigEntry, ...]) -> None:
        """rfserver --auto: the planner's mapping replaces the association table's config."""
        try:
            actions = self.table.handle(ConfigReplaced(tuple(entries)))
        except ValueError as exc:  # duplicates: a planner bug or a CSV clashing with it
            self.event("auto", f"automatic mapping refused: {exc}", logging.ERROR)
            return
        self._persist("the automatic mapping", self.store.replace_config, list(entries))
        self._background.add(task := asyncio.ensure_future(self._apply(actions)))
        task.add_done_callback(self._background.discard)

    # --- actions ---------------------------------------------------------------

    async def _apply(self, actions: list) -> None:
        """Execute core actions in order: store writes, routing follow-ups, sends."""
        out: dict[tuple[str, int], list[p.Message]] = defaultdict(list)
        queue = list(actions)
        changed = False
        while queue:
            action = queue.pop(0)
            if isinstance(action, EntryChanged):
                changed = True
                if action.before is not None:
                    self._persist("an association", self.store.delete_association, action.before)
                if action.after is not None:
                    self._persist("an association", self.store.put_association, action.after)
                before, after = action.before, action.after
                for entry in (before, after):
                    if entry is not None and entry.vm_key is not None:
                        key = entry.vm_key
                        current = self.table.by_vm_port(*key)
                        queue.extend(self.routing.bind(key[0], key[1], _binding(current)))
                if after is not None and after.state == EntryState.ACTIVE:
                    self.event(
                        "association",
                        f"association active: vm {after.vm_id:#x} port {after.vm_port} "
                        f"<-> dp {after.dp_id:#x} port {after.dp_port}",
                        vm_id=after.vm_id,
                        vm_port=after.vm_port,
                        ct_id=after.ct_id,
                        dp_id=after.dp_id,
                        dp_port=after.dp_port,
                    )
            elif isinstance(action, Notice):
                log.info("%s: %s", action.code.value, action.detail)
            elif isinstance(action, LinkChanged):
                self.event(
                    "link",
                    f"switch {action.dp_id:#x} port {action.dp_port} link "
                    f"{'up' if action.up else 'down'}",
                    logging.INFO if action.up else logging.WARNING,
                    ct_id=action.ct_id,
                    dp_id=action.dp_id,
                    dp_port=action.dp_port,
                )
            elif isinstance(action, p.PortConfig):
                out[("vm", action.vm_id)].append(action)
            elif isinstance(action, p.DataPlaneMap | p.DataPlaneUnmap | p.NextHopMod | p.FibMod):
                out[("ct", action.ct_id)].append(action)
            else:
                log.error("unknown action %r", action)
        for key, nh_id in self.routing.take_allocation_changes().items():
            name = _nexthop_store_key(key)
            if nh_id is None:
                self._persist("a next-hop id", self.store.kv_delete, name)
            else:
                self._persist("a next-hop id", self.store.kv_put, name, str(nh_id).encode())
        # Every message is written before the first await: a full state being
        # streamed to a proxy meanwhile (_send_full_state) reads the routing
        # table live, so what this change did must reach the proxy before the
        # next chunk of it (RoutingTable.dump_chunks).
        written: list[tuple[str, int, ipc.Connection]] = []
        for (kind, ident), msgs in out.items():
            conn = (self.clients if kind == "vm" else self.proxies).get(ident)
            if conn is None:
                continue  # delivered as part of the full state on (re)connect
            try:
                conn.write_many(msgs)
            except (ConnectionError, OSError) as exc:
                log.warning("sending to %s %#x failed: %s", kind, ident, exc)
            else:
                written.append((kind, ident, conn))
                for m in msgs:
                    self.counters[f"tx_{type(m).__name__}"] += 1
        for kind, ident, conn in written:
            try:
                await conn.drain()
            except (ConnectionError, OSError) as exc:
                log.warning("sending to %s %#x failed: %s", kind, ident, exc)
        if changed:
            self._tell_news()
        if changed or out:
            self._write_status()

    # --- status ----------------------------------------------------------------

    def status(self) -> dict:
        """The status file's document (see server.view, which rfweb renders too)."""
        doc = status_document(operator_view(self))
        if self.auto is not None:
            doc["auto"] = self.auto.view()
        return doc

    #: A full table arrives as a hundred batches a second: the status file is
    #: rewritten at most this often, and always once more after the last change.
    STATUS_MIN_INTERVAL = 0.2

    def _write_status(self) -> None:
        if not self.status_path:
            return
        wait = self._status_at + self.STATUS_MIN_INTERVAL - time.monotonic()
        if wait > 0:
            if self._status_timer is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
                else:
                    self._status_timer = loop.call_later(wait, self._write_status_now)
                    return
            else:
                return
        self._write_status_now()

    def _write_status_now(self) -> None:
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None
        self._status_at = time.monotonic()
        write_status_file(self.status_path, self.status())


def write_status_file(path: str, status: dict) -> None:
    """Replace the JSON status file at once: a reader never sees half of it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(status, fh, indent=1)
    os.replace(tmp, path)

"""The tenant server's link to its node agents (asyncio shell around ``sessions``).

``serve_nodes(repo, listen, secret)`` listens on the rflib IPC (unix or TCP,
the HMAC challenge as rfserver does it) and, per node: checks its hello,
subscribes to the Repository's changes *before* taking the snapshot (so no
change falls between the two), sends the full state, then the deltas, and
turns the node's binding reports into ``repo.bind_port``. A node that connects
again under the same name replaces its previous session.

A gateway node whose session is lost and not back within ``gateway_grace`` seconds
is registered again with ``up=False``: the routers scheduled on it move to the other
gateway nodes (tenant/schedule.py, recorded in the same commit), whose agents take over
their NAT and, in bgp mode, their announcements. Its next hello registers it up again;
routers stay where they are (sticky: a move loses NAT state), it gets new routers and
those of nodes that go down later. Compute nodes stay registered: their ports' tunnels
keep working headless while an agent restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import msgspec

from routeflow.rflib import auth, ipc
from routeflow.rflib import protocol as p
from routeflow.tenant.model import Change, Cloud, Node
from routeflow.tenant.sessions import Action, BindPort, NodeSession, Refused, RegisterNode, Send

__all__ = ["NodeRepository", "NodeServer", "serve_nodes"]

log = logging.getLogger("routeflow.tenant.nodelink")

#: How long a new connection may take to say hello, and to answer the challenge.
HELLO_TIMEOUT = 10.0


class NodeRepository(Protocol):
    """What the link needs from the tenant server's Repository."""

    def snapshot(self) -> Cloud: ...

    def subscribe(self, fn: Callable[[Change], None]) -> Callable[[], None]: ...

    def register_node(self, node: Node) -> object: ...

    def bind_port(self, port_id: str, host: str, active: bool) -> object: ...


class NodeServer:
    """The listening link: ``close()`` then ``await wait_closed()`` ends every session."""

    def __init__(
        self, repo: NodeRepository, secret: bytes | None, gateway_grace: float = 5.0
    ) -> None:
        self.repo = repo
        self.secret = secret
        self.gateway_grace = gateway_grace
        #: Gateway nodes whose session was lost: name -> the timer marking them down.
        self._going_down: dict[str, asyncio.TimerHandle] = {}
        self.server: asyncio.AbstractServer | None = None
        #: Node name -> its connection (for operators: who is connected).
        self.nodes: dict[str, ipc.Connection] = {}
        self.counters: dict[str, int] = {
            "sessions": 0,
            "auth_failures": 0,
            "refused": 0,
            "bind_errors": 0,
        }

    @property
    def address(self) -> str:
        assert self.server is not None
        return ipc.server_address(self.server)

    def close(self) -> None:
        """Stop listening; ``wait_closed()`` then drops the node sessions."""
        if self.server is not None:
            self.server.close()

    async def wait_closed(self) -> None:
        for timer in self._going_down.values():
            timer.cancel()
        self._going_down.clear()
        for conn in list(self.nodes.values()):
            await conn.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def handle(self, conn: ipc.Connection) -> None:
        try:
            first = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT)
        except TimeoutError:
            return
        if not isinstance(first, p.NodeHello):
            if first is not None:
                await conn.send(p.Error(code="no-hello", detail="send NodeHello first"))
            return
        if self.secret is not None and not await self._authenticate(conn, first):
            return
        try:
            session = NodeSession(first)
        except ValueError as exc:
            log.warning("%s: bad node hello: %s", conn.peer, exc)
            await conn.send(p.Error(code="bad-hello", detail=str(exc)))
            return
        await self._run(conn, session)

    async def _authenticate(self, conn: ipc.Connection, hello: p.NodeHello) -> bool:
        assert self.secret is not None
        who = auth.identity(hello)
        nonce = auth.new_nonce()
        await conn.send(p.AuthChallenge(nonce=nonce))
        try:
            reply = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT)
        except TimeoutError:
            reply = None
        if isinstance(reply, p.AuthResponse) and auth.check(self.secret, nonce, who, reply.mac):
            return True
        self.counters["auth_failures"] += 1
        log.warning("refused %s from %s: authentication failed", who, conn.peer)
        await conn.refuse(p.Error(code="auth-failed", detail="authentication failed"))
        return False

    async def _run(self, conn: ipc.Connection, session: NodeSession) -> None:
        old = self.nodes.get(session.name)
        if old is not None:
            log.warning("node %s connected again; dropping its previous session", session.name)
            await old.close()
        self.nodes[session.name] = conn
        self.counters["sessions"] += 1
        pending = self._going_down.pop(session.name, None)
        if pending is not None:
            pending.cancel()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Change] = asyncio.Queue()

        def on_change(change: Change) -> None:  # the Repository may call from another thread
            loop.call_soon_threadsafe(queue.put_nowait, change)

        unsubscribe = self.repo.subscribe(on_change)
        pump: asyncio.Task[None] | None = None
        try:
            await self._carry_out(conn, session, session.start(self.repo.snapshot()))
            node = session.node
            log.info("node %s (%s) connected from %s", node.id, node.tunnel_ip, conn.peer)

            async def pump_changes() -> None:
                while True:
                    change = await queue.get()
                    await self._carry_out(conn, session, session.change(change))

            pump = asyncio.ensure_future(pump_changes())
            async for msg in conn:
                await self._carry_out(conn, session, session.receive(msg))
                if pump.done():
                    break
        finally:
            unsubscribe()
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if self.nodes.get(session.name) is conn:
                del self.nodes[session.name]
                if session.node.gateway:
                    self._going_down[session.name] = loop.call_later(
                        self.gateway_grace, self._mark_down, session.node
                    )
            log.info("node %s disconnected", session.name)

    def _mark_down(self, node: Node) -> None:
        self._going_down.pop(node.id, None)
        if node.id in self.nodes:
            return
        log.warning("gateway node %s is down: its routers move", node.id)
        self.counters["gateways_down"] = self.counters.get("gateways_down", 0) + 1
        self.repo.register_node(msgspec.structs.replace(node, up=False))

    async def _carry_out(
        self, conn: ipc.Connection, session: NodeSession, actions: list[Action]
    ) -> None:
        for action in actions:
            if isinstance(action, Send):
                await conn.send(action.msg)  # type: ignore[arg-type]
            elif isinstance(action, RegisterNode):
                self.repo.register_node(action.node)
            elif isinstance(action, BindPort):
                try:
                    self.repo.bind_port(action.port_id, action.host, action.active)
                except Exception as exc:  # an unknown port must not drop the node
                    self.counters["bind_errors"] += 1
                    log.info("node %s: cannot bind %s: %s", session.name, action.port_id, exc)
            elif isinstance(action, Refused):
                self.counters["refused"] += 1
                log.warning("node %s: %s", session.name, action.reason)


async def serve_nodes(
    repo: NodeRepository, listen: str, secret: bytes | None = None, gateway_grace: float = 5.0
) -> NodeServer:
    """Listen for node agents on ``listen`` (``tcp:HOST:PORT`` or ``unix:PATH``)."""
    link = NodeServer(repo, secret, gateway_grace)
    link.server = await ipc.serve(listen, link.handle)
    return link

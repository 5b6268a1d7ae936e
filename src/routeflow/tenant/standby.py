"""A standby tenant server: rfserver's leader lease on etcd, and a proxy to the leader.

Two or more `routeflow tenant server` processes share one etcd store. They campaign
for one key (`tenant-leader`) with rflib.election, the code rfserver's standby uses;
the key's value names the holder as ``NAME@URL`` (its advertised API URL). The leader
loads the model from etcd, fences its writes with the key (a deposed leader's late
commit fails instead of overwriting the new leader's), serves the API and listens for
node agents. A standby does not listen for nodes (agents are given every server's
address and rotate until one answers, rflib/reconnect.py) and forwards each API request
to the leader, answering 503 with ``Retry-After: 1`` while there is no reachable leader.

Why a proxy and not a 503 or a redirect alone: openstacksdk (keystoneauth) takes one
endpoint per service. A 307 to the leader is followed (same method and body), but a
standby keeps naming a dead leader until its lease runs out, and a client that followed
it meets a refused connection, which keystoneauth's retries do not repair (they retry
the dead address). Through the proxy the client only ever sees the leader's answer or a
503, and keystoneauth retries 503 (honouring Retry-After) when
``status_code_retries`` is set (clouds.yaml ``network_status_code_retries: 10``): any
server's address is then a working endpoint, through a takeover. A load balancer's
health check can still tell the leader by ``GET /`` answering with the
``X-Routeflow-Role`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from routeflow.rflib.election import LeaderElection
from routeflow.rflib.store import StoreError

__all__ = ["LEADER_KEY", "Dispatch", "StandbyProxy", "identity", "leader_url", "run_ha"]

log = logging.getLogger("routeflow.tenant.standby")

LEADER_KEY = "tenant-leader"
#: Hop-by-hop headers (RFC 9110 7.6.1) and those the answer recomputes.
_HOP = {
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"content-length",
}  # fmt: skip

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


def identity(name: str, url: str) -> str:
    """The candidate's identity in the leader key: its name and advertised API URL."""
    return f"{name}@{url}"


def leader_url(holder: str | None) -> str | None:
    """The advertised URL in a leader identity (None: no leader, or none advertised)."""
    if not holder or "@" not in holder:
        return None
    return holder.partition("@")[2].rstrip("/") or None


class Dispatch:
    """The one ASGI app uvicorn serves; ``app`` is the leader's API or the standby proxy,
    switched on a change of role without closing the listening socket."""

    def __init__(self, app: ASGIApp, role: str = "standby") -> None:
        self.app = app
        self.role = role

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        role = self.role.encode()

        async def tagged(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-routeflow-role", role)]}  # fmt: skip
            await send(message)

        await self.app(scope, receive, tagged)


async def _unavailable(send: Callable, why: str) -> None:
    body = json.dumps(
        {"NeutronError": {"type": "ServiceUnavailable", "message": why, "detail": ""}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", b"1"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class StandbyProxy:
    """Forwards each request to ``leader`` (an API URL); 503 when there is none or it
    does not answer. ``leader`` is kept fresh by ``follow``."""

    def __init__(self, own_url: str, timeout: float = 30.0) -> None:
        self.own_url = own_url.rstrip("/")
        self.leader: str | None = None
        self.client = httpx2.AsyncClient(timeout=timeout)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        target = self.leader
        if target is None or target == self.own_url:
            await _unavailable(send, "No tenant server leads right now; retry shortly.")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = target + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        # Host is kept: the leader's version document then links back to this address.
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        try:
            resp = await self.client.request(scope["method"], url, headers=headers, content=body)
        except httpx2.HTTPError as exc:
            log.info("leader %s did not answer: %s", target, exc)
            await _unavailable(send, "The leading tenant server did not answer; retry shortly.")
            return
        out = [(k, v) for k, v in resp.headers.raw if k.lower() not in _HOP | {b"x-routeflow-role"}]
        out.append((b"content-length", str(len(resp.content)).encode()))
        await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
        await send({"type": "http.response.body", "body": resp.content})

    async def follow(self, election: LeaderElection, every: float = 0.5) -> None:
        """Keep ``leader`` set from the leader key (read on a thread: etcd is blocking)."""
        while True:
            try:
                self.leader = leader_url(await asyncio.to_thread(election.leader))
            except Exception as exc:  # etcd briefly unreachable: keep the last answer
                log.debug("reading the leader key failed: %s", exc)
            await asyncio.sleep(every)

    async def close(self) -> None:
        await self.client.aclose()


async def run_ha(
    *,
    store: Any,
    election: LeaderElection,
    dispatch: Dispatch,
    proxy: StandbyProxy,
    lead: Callable[[], Awaitable[Callable[[], Awaitable[None]]]],
) -> None:
    """Stand by (proxying) until we hold the lease, then ``lead()`` (it loads the model,
    points ``dispatch`` at the API, starts the node link and returns its own undo) until
    the lease is lost; then back to standby. Runs until cancelled; resigns on the way out."""
    try:
        while True:
            dispatch.app, dispatch.role = proxy, "standby"
            follower = asyncio.ensure_future(proxy.follow(election))
            try:
                await election.campaign()
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            store.fence(election.key, election.fence_value)
            try:
                undo = await lead()
            except StoreError as exc:  # etcd unreachable since we won: stand by again
                log.error("%s won the lease but cannot load the model: %s", election.identity, exc)
                with contextlib.suppress(Exception):
                    await election.resign()
                store.fence(None, None)
                await asyncio.sleep(1.0)
                continue
            dispatch.role = "leader"
            log.warning("%s leads (lease ttl %d s): serving", election.identity, election.ttl)
            try:
                await election.hold()
            finally:
                dispatch.app, dispatch.role = proxy, "standby"
                await undo()
            log.error("%s lost the leader lease: standing by", election.identity)
            with contextlib.suppress(Exception):
                await election.resign()
            store.fence(None, None)
    finally:
        with contextlib.suppress(Exception):
            await election.resign()
        await proxy.close()

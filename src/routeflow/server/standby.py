"""A standby rfserver: wait for the leader lease, watching what the leader writes.

Two or more rfserver processes share one etcd store; the one holding the
leader lease serves RFProtocol, the others do not even listen (clients and
proxies are given every address and stay with the one that answers). A
standby keeps a live count of the leader's association table through an etcd
watch, so an operator can see it is in step before it is ever needed, and its
status file says who leads.

When the leader stops refreshing its lease (killed, hung, cut off from etcd),
the key expires after the lease TTL and one standby takes over: it fences its
store writes with the leader key (a deposed leader's late writes fail instead
of corrupting the table), builds an RFServer from the stored state, and listens.
If it loses the lease later it closes every session and goes back to standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable

from routeflow.rflib.election import LeaderElection
from routeflow.rflib.store import StoreError
from routeflow.server.service import RFServer, write_status_file

log = logging.getLogger("routeflow.server.standby")


class StandbyView:
    """What a standby shows about the leader while it waits (status file, log)."""

    def __init__(self, store, election: LeaderElection, identity: str, status_path: str | None):
        self.store = store
        self.election = election
        self.identity = identity
        self.status_path = status_path
        self.associations = 0
        self._recount: asyncio.Future | None = None
        #: A row changed while a recount was reading: its count may miss it.
        self._recount_again = False
        self.changes = 0
        self.last_change: float | None = None
        self.since = time.time()
        #: The leader's identity as last read from etcd (by a thread, never the loop).
        self.leader: str | None = None
        self.error: str | None = None
        self._cancel: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Blocking (etcd reads): run it in a thread."""
        self._loop = loop
        self.since = time.time()
        self.associations = len(self.store.load_associations())
        self._cancel = self.store.watch(self._on_change)
        self.refresh_leader()
        self.write_status()
        log.info(
            "standby %s: leader is %s; %d association rows in the store",
            self.identity,
            self.leader or "nobody",
            self.associations,
        )

    def refresh_leader(self) -> None:
        """Blocking (one etcd read): run it in a thread."""
        try:
            self.leader, self.error = self.election.leader(), None
        except Exception as exc:  # etcd unreachable right now: say so, keep waiting
            self.error = str(exc)

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if self._recount is not None:
            self._recount.cancel()
            self._recount = None

    def _on_change(self, kind: str, key: str, value: bytes | None) -> None:
        """Called on the watch thread: hand over to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop shutting down
                loop.call_soon_threadsafe(self._changed, kind)

    def _changed(self, kind: str) -> None:
        self.changes += 1
        self.last_change = time.time()
        if kind != "assoc":
            self.write_status()
        elif self._recount is None:
            # A burst of row writes is one recount, a moment later.
            self._recount = asyncio.ensure_future(self._count_later())
        else:
            self._recount_again = True

    async def _count_later(self) -> None:
        try:
            await asyncio.sleep(0.2)
            while True:
                self._recount_again = False
                self.associations = len(await asyncio.to_thread(self.store.load_associations))
                if not self._recount_again:  # else a write came during the read: again
                    break
        except Exception as exc:  # etcd briefly unreachable: the next change recounts
            log.debug("standby recount failed: %s", exc)
        finally:
            self._recount = None
        self.write_status()

    def status(self) -> dict:
        status = {
            "pid": os.getpid(),
            "time": time.time(),
            "role": "standby",
            "identity": self.identity,
            "leader": self.leader,
            "standby_since": self.since,
            "mirrored_associations": self.associations,
            "changes_seen": self.changes,
            "last_change": self.last_change,
        }
        if self.error is not None:
            status["error"] = self.error
        return status

    def write_status(self) -> None:
        if self.status_path:
            write_status_file(self.status_path, self.status())


async def run_with_standby(
    *,
    store,
    identity: str,
    ttl: int,
    status_path: str | None,
    make_server: Callable[[dict], RFServer],
    serve: Callable[[RFServer], Awaitable[None]],
) -> None:
    """Alternate between standby and leader until cancelled (SIGTERM: resign first)."""
    election = LeaderElection(store, identity, ttl=ttl)
    view = StandbyView(store, election, identity, status_path)
    try:
        while True:
            waited = time.monotonic()
            await _wait_for_lease(view, election)
            took = time.monotonic()
            store.fence(election.key, election.fence_value)
            ha = {
                "role": "leader",
                "identity": identity,
                "leader_since": time.time(),
                "standby_waited_s": round(took - waited, 3),
            }
            try:
                server = make_server(ha)  # reads the table from etcd
            except StoreError as exc:  # etcd unreachable since we won: try again later
                log.error("%s won the lease but cannot load the state: %s", identity, exc)
                with contextlib.suppress(Exception):
                    await election.resign()
                store.fence(None, None)
                await asyncio.sleep(1.0)
                continue
            server.event(
                "leader",
                f"{identity} holds the leader lease (ttl {ttl} s); serving "
                f"({len(server.table.entries())} association rows from the store)",
                logging.WARNING,
            )
            serving = asyncio.ensure_future(serve(server))
            holding = asyncio.ensure_future(election.hold())
            fenced = asyncio.ensure_future(server.deposed.wait())
            tasks = (serving, holding, fenced)
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await server.close_sessions()
            error = serving.exception() if serving in done else None
            if error is not None:
                raise error
            why = "the store refused its writes" if fenced in done else "it lost the leader lease"
            log.error("%s stops serving (%s): sessions closed, back to standby", identity, why)
            with contextlib.suppress(Exception):  # etcd may be unreachable right now
                await election.resign()
            store.fence(None, None)
    finally:
        with contextlib.suppress(Exception):
            await election.resign()


async def _wait_for_lease(view: StandbyView, election: LeaderElection) -> None:
    """Campaign until we lead; an etcd outage is logged and retried, not fatal."""
    while True:
        heartbeat = None
        try:
            await asyncio.to_thread(view.start, asyncio.get_running_loop())
            heartbeat = asyncio.ensure_future(_refresh(view))
            await election.campaign()
            return
        except (OSError, RuntimeError) as exc:  # StoreUnavailableError is a RuntimeError
            log.warning("standby %s: etcd not usable (%s); retrying", view.identity, exc)
            await asyncio.sleep(1.0)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            view.stop()


async def _refresh(view: StandbyView, every: float = 2.0) -> None:
    """Keep the standby's status (leader identity) fresh while it waits."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(view.refresh_leader)
        view.write_status()

"""Leader election on etcd: one key, held under a lease, names the leader.

Each candidate (an rfserver) campaigns by creating the key, under its store's
prefix, with its identity as the value and attached to a fresh lease; the
creation is a transaction that succeeds only if the key does not exist. The
others watch the key and try again the moment it is deleted, which happens
when the leader resigns or when its lease expires (it stopped refreshing it:
killed, hung or cut off from etcd) about ``ttl`` seconds later.

A leader must not trust its own clock alone: it hands ``fence_value`` to
``EtcdStore.fence`` so that its writes fail once the key holds someone else.
The key's value is the identity plus a token of this process's own: a
restarted candidate with the same identity does not inherit the dead
process's term (it waits for that lease to expire, like any standby), and a
hung old process that wakes up is fenced even though it has the same name.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from routeflow.rflib.etcdstore import (
    EtcdError,
    EtcdStore,
    StoreUnavailableError,
    _b64,
    _unb64,
)

__all__ = ["LeaderElection"]

log = logging.getLogger("routeflow.election")


class LeaderElection:
    """One candidate. The leader key holds the candidate's identity, attached to a lease."""

    def __init__(self, store: EtcdStore, identity: str, *, key: str = "leader", ttl: int = 2):
        if not identity:
            raise ValueError("a candidate needs a non-empty identity")
        if type(ttl) is not int or ttl < 1:
            raise ValueError(f"ttl must be a whole number of seconds >= 1, not {ttl!r}")
        self.store = store
        self.identity = identity
        self.key = key
        self.ttl = ttl
        # The key holds our identity plus a token of this process's own: a
        # restarted rfserver with the same name (or a hung old one that wakes
        # up) is a different candidate, and fencing tells them apart.
        self._value = f"{identity}#{secrets.token_hex(8)}".encode()
        self._lease: int | None = None
        self._granted_at = 0.0

    @property
    def fence_value(self) -> bytes:
        """Pass to ``store.fence(key, value)``: writes then stop once we no longer lead."""
        return self._value

    @property
    def lease_id(self) -> int | None:
        """The lease our key is attached to while we lead, else None."""
        return self._lease

    # --- blocking etcd calls (run in a thread) ------------------------------------

    def _key(self) -> str:
        return _b64(self.store.key(self.key))

    def _is_mine(self) -> dict:
        return {
            "key": self._key(),
            "target": "VALUE",
            "result": "EQUAL",
            "value": _b64(self._value),
        }

    def _call_timeout(self) -> float:
        return max(self.ttl / 3, 0.5)

    def leader(self) -> str | None:
        """The current leader's identity, read from etcd (None if there is none)."""
        result = self.store.request("/kv/range", {"key": self._key()})
        kvs = result.get("kvs", [])
        if not kvs:
            return None
        return _unb64(kvs[0].get("value")).decode(errors="replace").rpartition("#")[0] or None

    def _revoke(self, lease: int) -> None:
        try:
            self.store.request("/lease/revoke", {"ID": lease}, timeout=self._call_timeout())
        except EtcdError as err:
            if err.status != 404:  # 404: already expired or revoked
                raise

    def _try_acquire(self) -> tuple[bool, int]:
        """One attempt: (won, revision the key was seen at)."""
        asked = time.monotonic()
        granted = self.store.request("/lease/grant", {"TTL": self.ttl, "ID": 0})
        lease = int(granted["ID"])
        put = {"request_put": {"key": self._key(), "value": _b64(self._value), "lease": lease}}
        result = self.store.request(
            "/kv/txn",
            {
                "compare": [
                    {"key": self._key(), "target": "VERSION", "result": "EQUAL", "version": 0}
                ],
                "success": [put],
                "failure": [{"request_range": {"key": self._key()}}],
            },
        )
        if not result.get("succeeded"):
            kvs = result["responses"][0]["response_range"].get("kvs", [])
            if kvs and _unb64(kvs[0].get("value")) == self._value:
                # Ours already: a create whose answer was lost, or a term we
                # stopped refreshing. Move it to the fresh lease.
                result = self.store.request(
                    "/kv/txn", {"compare": [self._is_mine()], "success": [put], "failure": []}
                )
        if result.get("succeeded"):
            self._lease = lease
            self._granted_at = asked
            return True, int(result["header"]["revision"])
        try:
            self._revoke(lease)
        except (StoreUnavailableError, EtcdError) as err:
            log.debug("could not revoke unused lease %x: %s", lease, err)  # it expires anyway
        return False, int(result["header"]["revision"])

    def _refresh(self, lease: int) -> tuple[int, bytes | None]:
        """Keep ``lease`` alive: (TTL left, -1 if expired; value of the key now)."""
        timeout = self._call_timeout()
        answer = self.store.request("/lease/keepalive", {"ID": lease}, timeout=timeout)
        if "error" in answer:
            raise EtcdError(f"lease keepalive: {answer['error']}")
        ttl = int(answer.get("result", {}).get("TTL", -1))
        result = self.store.request("/kv/range", {"key": self._key()}, timeout=timeout)
        kvs = result.get("kvs", [])
        return ttl, (_unb64(kvs[0].get("value")) if kvs else None)

    def _release(self) -> None:
        self.store.request(
            "/kv/txn",
            {
                "compare": [self._is_mine()],
                "success": [{"request_delete_range": {"key": self._key()}}],
            },
        )
        lease, self._lease = self._lease, None
        if lease is not None:
            self._revoke(lease)

    # --- the asyncio face -------------------------------------------------------------

    async def campaign(self) -> None:
        """Return once we are the leader (waiting as long as someone else is)."""
        while True:
            try:
                won, revision = await asyncio.to_thread(self._try_acquire)
            except StoreUnavailableError as err:
                log.warning("%s: campaign: %s; retrying", self.identity, err)
                await asyncio.sleep(self.ttl / 2)
                continue
            if won:
                log.info("%s: leader (lease %x, ttl %d s)", self.identity, self._lease, self.ttl)
                return
            # Wait for the key's deletion (a watch: prompt); every ttl/2 try
            # again anyway in case a watch event was lost.
            started = time.monotonic()
            deleted = await asyncio.to_thread(
                self.store.wait_for_delete, self.key, revision + 1, self.ttl / 2
            )
            if not deleted and time.monotonic() - started < 0.05:
                await asyncio.sleep(0.1)  # the watch failed at once: do not spin

    async def hold(self) -> None:
        """Keep leading; return (never raise) when leadership is lost, saying why."""
        lease = self._lease
        if lease is None:
            log.warning("%s: hold() without leadership: campaign first", self.identity)
            return
        interval = self.ttl / 3
        last_refresh = self._granted_at  # etcd counts the ttl from about then
        while True:
            sent = time.monotonic()
            try:
                ttl, holder = await asyncio.to_thread(self._refresh, lease)
            except (StoreUnavailableError, EtcdError) as err:
                if self._lease != lease:
                    return  # resigned meanwhile
                silent = time.monotonic() - last_refresh
                if silent > self.ttl:
                    log.warning(
                        "%s: leadership lost: lease not refreshed for %.1f s (ttl %d s): %s",
                        self.identity,
                        silent,
                        self.ttl,
                        err,
                    )
                    self._lease = None
                    return
                log.info("%s: lease refresh failed (%s); retrying", self.identity, err)
                await asyncio.sleep(min(0.1, interval))
                continue
            if self._lease != lease:
                log.info("%s: resigned; no longer holding", self.identity)
                return
            if ttl <= 0:
                log.warning("%s: leadership lost: lease %x expired", self.identity, lease)
                self._lease = None
                return
            if holder != self._value:
                who = (
                    holder.decode(errors="replace").rpartition("#")[0] or "someone"
                    if holder is not None
                    else "nobody"
                )
                log.warning("%s: leadership lost: %s holds the key now", self.identity, who)
                self._lease = None
                return
            last_refresh = sent
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))

    async def resign(self) -> None:
        """Give leadership up now: delete the key if ours, revoke the lease. Idempotent.

        Best effort: if etcd cannot be reached the lease expires on its own.
        """
        try:
            await asyncio.to_thread(self._release)
            log.info("%s: resigned", self.identity)
        except (StoreUnavailableError, EtcdError) as err:
            self._lease = None
            log.warning("%s: resign: %s (the lease will expire on its own)", self.identity, err)

"""LeaderElection against a real etcd: takeover on lease expiry, resign, member loss."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from routeflow.rflib.election import LeaderElection
from routeflow.rflib.etcdstore import FencedError

TTL = 2


async def _wait_done(task: asyncio.Task, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout)
    return task.done()


def _deletion_clock(store, key: str) -> dict:
    """Record (in a thread) when ``key`` is next deleted, as etcd reports it."""
    seen: dict = {}
    start = store.revision() + 1

    def run() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if store.wait_for_delete(key, start, 1.0):
                seen["at"] = time.monotonic()
                return

    seen["thread"] = threading.Thread(target=run, daemon=True)
    seen["thread"].start()
    return seen


def test_takeover_after_the_leader_stops_refreshing(etcd1, prefix, open_stores):
    async def main() -> None:
        sa = open_stores(etcd1.endpoints, prefix)
        sb = open_stores(etcd1.endpoints, prefix)
        a = LeaderElection(sa, "rfserver-a", ttl=TTL)
        b = LeaderElection(sb, "rfserver-b", ttl=TTL)

        await asyncio.wait_for(a.campaign(), 5)
        assert a.leader() == b.leader() == "rfserver-a"
        sa.fence("leader", a.fence_value)
        sa.kv_put("owner", b"a")

        hold_a = asyncio.create_task(a.hold())
        campaign_b = asyncio.create_task(b.campaign())
        assert not await _wait_done(campaign_b, TTL + 0.5)  # a keeps its lease alive
        assert not hold_a.done()

        # "SIGKILL" a: its refreshes stop, nothing is resigned.
        deletion = _deletion_clock(sb, "leader")
        killed = time.monotonic()
        hold_a.cancel()
        assert await _wait_done(campaign_b, TTL + 5), "b never became leader"
        took_over = time.monotonic()
        deletion["thread"].join(5)
        print(
            f"takeover {took_over - killed:.2f} s after a stopped refreshing (ttl {TTL} s); "
            f"campaign returned {1000 * (took_over - deletion['at']):.0f} ms after the "
            f"lease expiry deleted the key"
        )
        assert took_over - killed < TTL + 2
        assert took_over - deletion["at"] < 0.5
        assert a.leader() == "rfserver-b"

        with pytest.raises(FencedError):
            sa.kv_put("owner", b"a again")  # the old leader cannot write any more
        assert sb.kv_get("owner") == b"a"
        sb.fence("leader", b.fence_value)
        sb.kv_put("owner", b"b")
        await b.resign()

    asyncio.run(main())


def test_hold_returns_when_the_key_is_taken(etcd1, prefix, open_stores):
    async def main() -> None:
        s = open_stores(etcd1.endpoints, prefix)
        a = LeaderElection(s, "a", ttl=TTL)
        await a.campaign()
        hold = asyncio.create_task(a.hold())
        await asyncio.sleep(0.2)
        s.request("/kv/deleterange", {"key": _b64(s.key("leader"))})
        assert await _wait_done(hold, TTL), "hold did not notice"
        assert hold.result() is None
        assert a.lease_id is None

    asyncio.run(main())


def test_resign_hands_over_at_once(etcd1, prefix, open_stores):
    async def main() -> None:
        a = LeaderElection(open_stores(etcd1.endpoints, prefix), "a", ttl=TTL)
        b = LeaderElection(open_stores(etcd1.endpoints, prefix), "b", ttl=TTL)
        await a.campaign()
        hold_a = asyncio.create_task(a.hold())
        campaign_b = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.3)
        assert not campaign_b.done()

        resigned = time.monotonic()
        await a.resign()
        await a.resign()  # idempotent
        assert await _wait_done(campaign_b, 3.0)
        print(f"handover after resign: {1000 * (time.monotonic() - resigned):.0f} ms")
        assert time.monotonic() - resigned < 1.5
        assert b.leader() == "b"
        # a's hold notices it is not the leader any more.
        assert await _wait_done(hold_a, TTL)
        await b.resign()
        assert b.leader() is None

    asyncio.run(main())


def test_losing_an_etcd_member_loses_neither_leadership_nor_writes(etcd3, prefix, open_stores):
    async def main() -> None:
        # The hardest member to lose: the raft leader, which a's store talks to.
        # etcd keeps the lease across its re-election, but hold() gives up if no
        # refresh got through for ttl seconds; re-election plus up to ttl/3 since
        # the last refresh is ~2 s on a loaded 2-core machine: hence ttl 3 here.
        ttl = TTL + 1
        victim = etcd3.leader()
        assert victim is not None
        endpoints = etcd3.endpoints[victim:] + etcd3.endpoints[:victim]
        s = open_stores(endpoints, prefix)
        a = LeaderElection(s, "a", ttl=ttl)
        b = LeaderElection(open_stores(etcd3.endpoints, prefix), "b", ttl=ttl)
        await a.campaign()
        assert s.current_endpoint == etcd3.endpoints[victim]
        s.fence("leader", a.fence_value)
        hold = asyncio.create_task(a.hold())
        rival = asyncio.create_task(b.campaign())
        await asyncio.sleep(0.2)

        etcd3.kill_member(victim)
        started = time.monotonic()
        slowest = 0.0
        n = 0
        while time.monotonic() - started < 4.0:
            t = time.monotonic()
            await asyncio.to_thread(s.kv_put, f"w/{n:04d}", b"x")
            slowest = max(slowest, time.monotonic() - t)
            n += 1
            await asyncio.sleep(0.05)
        print(
            f"{n} fenced writes after killing member {victim} (raft leader, new one: "
            f"{etcd3.leader()}); slowest write {slowest:.2f} s"
        )
        assert not hold.done(), "leadership lost"
        assert not rival.done()
        assert a.leader() == "a"
        assert len(s.kv_items("w/")) == n
        rival.cancel()
        hold.cancel()
        await a.resign()

    asyncio.run(main())


def test_ttl_is_whole_seconds(etcd1, prefix, open_stores):
    s = open_stores(etcd1.endpoints, prefix)
    for bad in (0, 1.5, -1):
        with pytest.raises(ValueError):
            LeaderElection(s, "x", ttl=bad)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_a_restarted_candidate_with_the_same_name_does_not_inherit_the_term(
    etcd1, prefix, open_stores
):
    """The old process may be hung, not dead: the new one waits for its lease to
    expire, and the old one's writes are fenced once the new one leads."""

    async def main() -> None:
        s_old = open_stores(etcd1.endpoints, prefix)
        s_new = open_stores(etcd1.endpoints, prefix)
        old = LeaderElection(s_old, "rfserver-a", ttl=TTL)
        await asyncio.wait_for(old.campaign(), 5)
        s_old.fence("leader", old.fence_value)
        s_old.kv_put("owner", b"old")
        stopped = time.monotonic()  # "killed": no refresh, no resign
        new = LeaderElection(s_new, "rfserver-a", ttl=TTL)
        campaign = asyncio.create_task(new.campaign())
        assert not await _wait_done(campaign, TTL / 2), "took over a live lease by name"
        assert await _wait_done(campaign, TTL + 5)
        waited = time.monotonic() - stopped
        print(f"same-name candidate led {waited:.2f} s after the old one stopped (ttl {TTL} s)")
        assert waited > TTL / 2
        assert new.leader() == "rfserver-a"
        with pytest.raises(FencedError):
            s_old.kv_put("owner", b"old again")
        await new.resign()

    asyncio.run(main())

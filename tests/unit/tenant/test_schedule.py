"""Sticky scheduling of routers on gateway nodes (tenant/schedule.py through the Repository).

Any sequence of gateway nodes coming up and going down, routers created and deleted,
gateways set and cleared: a router never leaves a live gateway node; one whose node is
down moves to a live one in the same commit; the node agents, applying a commit's
changes one by one, see each router go from its old node to its new one directly.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.store import MemoryStore
from routeflow.tenant import nat, schedule
from routeflow.tenant.model import Change, Cloud, GatewayInfo, Node, Router
from routeflow.tenant.repo import Repository

NODES = ("g0", "g1", "g2")
ROUTERS = ("r0", "r1", "r2", "r3", "r4")


def node(name: str, up: bool = True) -> Node:
    return Node(id=name, name=name, tunnel_ip=f"198.51.100.{NODES.index(name) + 1}",
                gateway=True, up=up)  # fmt: skip


def router(rid: str, gateway: bool = True) -> Router:
    info = GatewayInfo(network_id="ext") if gateway else None
    return Router(id=rid, key=ROUTERS.index(rid) + 1, external_gateway_info=info)


def served_by(cloud: Cloud) -> dict[str, str | None]:
    """Router id -> the node that NATs for it, as every node agent computes it."""
    out = {}
    for r in cloud.routers.values():
        if r.external_gateway_info is not None:
            n = nat.gateway_node(cloud, r)
            out[r.id] = n.id if n is not None else None
    return out


def test_a_node_that_comes_back_takes_no_router_from_a_live_one() -> None:
    repo = Repository(MemoryStore())
    repo.register_node(node("g0"))
    repo.register_node(node("g1"))
    repo.commit([router("r0"), router("r1")])  # keys 1, 2: modulo 2 -> g1, g0
    assert served_by(repo.snapshot()) == {"r0": "g1", "r1": "g0"}
    assert {r.id: r.gateway_node for r in repo.snapshot().routers.values()} == served_by(
        repo.snapshot()
    )
    repo.register_node(node("g1", up=False))  # g1 down: r0 moves to g0 in that commit
    assert served_by(repo.snapshot()) == {"r0": "g0", "r1": "g0"}
    repo.register_node(node("g1"))  # g1 back: nothing moves back (it would lose NAT state)
    assert served_by(repo.snapshot()) == {"r0": "g0", "r1": "g0"}
    repo.commit([router("r2")])  # a new router goes by the rule: key 3 modulo 2 -> g1
    assert served_by(repo.snapshot())["r2"] == "g1"
    # A gateway cleared loses its record; set again, it is scheduled afresh.
    cleared = msgspec.structs.replace(repo.snapshot().routers["r0"], external_gateway_info=None)
    repo.commit([cleared])
    assert repo.snapshot().routers["r0"].gateway_node == ""
    # g0 down: r1 goes to g1; then g1 down too: with no live gateway node a router
    # keeps its record (nothing to move to) ...
    repo.register_node(node("g0", up=False))
    assert repo.snapshot().routers["r1"].gateway_node == "g1"
    repo.register_node(node("g1", up=False))
    assert repo.snapshot().routers["r1"].gateway_node == "g1"
    assert served_by(repo.snapshot())["r1"] is None
    repo.register_node(node("g1"))  # ... so its own node coming back first serves it again
    assert served_by(repo.snapshot())["r1"] == "g1"
    repo.register_node(node("g0"))
    assert served_by(repo.snapshot())["r1"] == "g1"


def test_reschedule_is_empty_once_applied() -> None:
    repo = Repository(MemoryStore())
    repo.commit([node("g0"), node("g1"), router("r0"), router("r1", gateway=False)])
    assert schedule.reschedule(repo.snapshot()) == {}
    assert repo.snapshot().routers["r1"].gateway_node == ""


EVENTS = st.one_of(
    st.tuples(st.just("node"), st.sampled_from(NODES), st.booleans()),
    st.tuples(st.just("router"), st.sampled_from(ROUTERS), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(ROUTERS), st.just(False)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENTS, min_size=1, max_size=25))
def test_a_router_never_leaves_a_live_gateway_node(events: list[tuple[str, str, bool]]) -> None:
    repo = Repository(MemoryStore())
    commits: list[list[Change]] = []
    repo_commit = repo.commit

    def commit(puts=(), deletes=()):  # type: ignore[no-untyped-def]
        changes = repo_commit(puts, deletes)
        commits.append(changes)
        return changes

    for kind, name, flag in events:
        before = repo.snapshot()
        commits.clear()
        if kind == "node":
            commit([node(name, up=flag)])
        elif kind == "router":
            old = before.routers.get(name)
            info = GatewayInfo(network_id="ext") if flag else None
            new = (
                router(name, flag)
                if old is None
                else msgspec.structs.replace(old, external_gateway_info=info)
            )
            commit([new])
        elif name in before.routers:
            from routeflow.tenant.model import Kind

            commit(deletes=[(Kind.ROUTER, name)])
        after = repo.snapshot()
        was, now = served_by(before), served_by(after)
        live = {n.id for n in nat.gateway_nodes(after)}
        for rid, where in now.items():
            # Sticky: on a live node before and that node still live -> still there.
            if was.get(rid) in live:
                assert where == was[rid], (events, rid)
            # Scheduled on a live node whenever there is one, and recorded there.
            if live:
                assert where in live and after.routers[rid].gateway_node == where
        for r in after.routers.values():
            if r.external_gateway_info is None:
                assert r.gateway_node == ""
        # A node agent applying the commit's changes one by one: old node, then new, once.
        view = before
        seen: dict[str, list[str | None]] = {rid: [was.get(rid)] for rid in now}
        for changes in commits:
            for change in changes:
                view = view.apply(change)
                for rid, where in served_by(view).items():
                    if rid in seen and seen[rid][-1] != where:
                        seen[rid].append(where)
        for rid, path in seen.items():
            if rid in was and rid in before.routers and before.routers[rid].external_gateway_info:
                assert path[-1] == now[rid] and len(path) <= 2, (events, rid, path)

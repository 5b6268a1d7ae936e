"""RoutingTable: VM routes + bindings -> next hops and FIB entries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.protocol import (
    FibMod,
    Mod,
    Neighbour,
    NextHop,
    NextHopMod,
    Route,
    RouteKind,
)
from routeflow.server.routing import Binding, RoutingTable

VM = 0x5
CT = 1
DP = 0x99
MAC1 = "02:00:00:00:00:01"
MAC2 = "02:00:00:00:00:02"
GW_MAC = "aa:bb:cc:dd:ee:01"


def bound_table() -> RoutingTable:
    t = RoutingTable()
    t.bind(VM, 1, Binding(CT, DP, 1, MAC1))
    t.bind(VM, 2, Binding(CT, DP, 2, MAC2))
    return t


def via(prefix: str, port: int, gw: str) -> Route:
    return Route(
        prefix=prefix, kind=RouteKind.UNICAST, nexthops=[NextHop(vm_port=port, gateway=gw)]
    )


def fib_of(msgs) -> list[tuple[Mod, str, int]]:
    return [
        (m.mod, e.prefix, e.nexthop_id) for m in msgs if isinstance(m, FibMod) for e in m.entries
    ]


def test_route_before_binding_is_kept_and_installed_on_bind():
    t = RoutingTable()
    assert t.add_routes(VM, [via("10.1.0.0/16", 1, "172.31.1.2")]) == []
    msgs = t.bind(VM, 1, Binding(CT, DP, 1, MAC1))
    kinds = [type(m) for m in msgs]
    assert kinds == [NextHopMod, FibMod], "group must precede the flow that uses it"
    nh = msgs[0]
    assert nh.buckets == [], "gateway MAC unknown yet: group punts to the controller"
    assert fib_of(msgs) == [(Mod.ADD, "10.1.0.0/16", nh.nexthop_id)]


def test_neighbour_resolution_is_one_group_mod_for_all_routes():
    t = bound_table()
    routes = [via(f"10.{i}.0.0/16", 1, "172.31.1.2") for i in range(100)]
    msgs = t.add_routes(VM, routes)
    nh_ids = {e.nexthop_id for m in msgs if isinstance(m, FibMod) for e in m.entries}
    assert len(nh_ids) == 1
    msgs = t.set_neighbours(VM, [Neighbour(vm_port=1, address="172.31.1.2", hwaddress=GW_MAC)])
    nh_mods = [m for m in msgs if isinstance(m, NextHopMod)]
    assert len(nh_mods) == 1
    (b,) = nh_mods[0].buckets
    assert (b.dp_port, b.src_hwaddress, b.dst_hwaddress) == (1, MAC1, GW_MAC)
    # plus the neighbour's own /32 host route, sharing the same group
    assert fib_of(msgs) == [(Mod.ADD, "172.31.1.2/32", nh_mods[0].nexthop_id)]


def test_ecmp_uses_all_next_hops():
    t = bound_table()
    t.set_neighbours(
        VM,
        [
            Neighbour(vm_port=1, address="10.0.0.2", hwaddress=GW_MAC),
            Neighbour(vm_port=2, address="10.0.1.2", hwaddress="aa:bb:cc:dd:ee:02"),
        ],
    )
    r = Route(
        prefix="192.0.2.0/24",
        nexthops=[NextHop(vm_port=1, gateway="10.0.0.2"), NextHop(vm_port=2, gateway="10.0.1.2")],
    )
    msgs = t.add_routes(VM, [r])
    nh = [m for m in msgs if isinstance(m, NextHopMod)]
    assert len(nh) == 1 and len(nh[0].buckets) == 2


def test_delete_route_releases_group_after_flow():
    t = bound_table()
    t.add_routes(VM, [via("10.1.0.0/16", 1, "172.31.1.2")])
    msgs = t.delete_routes(VM, ["10.1.0.0/16"])
    assert [type(m) for m in msgs] == [FibMod, NextHopMod]
    assert msgs[0].mod == Mod.DELETE and msgs[1].mod == Mod.DELETE
    assert t.nexthop_count() == 0


def test_local_and_connected_follow_their_port():
    t = bound_table()
    msgs = t.add_routes(
        VM,
        [
            Route(prefix="172.31.1.1/32", kind=RouteKind.LOCAL, nexthops=[NextHop(vm_port=1)]),
            Route(prefix="172.31.1.0/24", kind=RouteKind.CONNECTED, nexthops=[NextHop(vm_port=1)]),
        ],
    )
    entries = [e for m in msgs for e in m.entries]
    assert {(e.prefix, e.kind, e.dp_port) for e in entries} == {
        ("172.31.1.1/32", RouteKind.LOCAL, 1),
        ("172.31.1.0/24", RouteKind.CONNECTED, 1),
    }


def test_unbind_withdraws_and_rebind_restores():
    t = bound_table()
    t.add_routes(VM, [via("10.1.0.0/16", 1, "172.31.1.2")])
    gone = t.bind(VM, 1, None)
    assert fib_of(gone)[0][:2] == (Mod.DELETE, "10.1.0.0/16")
    assert t.installed() == []
    back = t.bind(VM, 1, Binding(CT, DP, 1, MAC1))
    assert fib_of(back)[0][:2] == (Mod.ADD, "10.1.0.0/16")


def test_resync_removes_what_the_client_no_longer_has():
    t = bound_table()
    t.add_routes(VM, [via("10.1.0.0/16", 1, "172.31.1.2"), via("10.2.0.0/16", 1, "172.31.1.2")])
    msgs = t.replace_vm(VM, [via("10.2.0.0/16", 1, "172.31.1.2")], [])
    assert fib_of(msgs) == [(Mod.DELETE, "10.1.0.0/16", fib_of(msgs)[0][2])]
    assert [e.prefix for _c, _d, e in t.installed()] == ["10.2.0.0/16"]


def _replay(msgs, fib: dict, groups: dict) -> None:
    """A model switch: checks no flow ever points at a missing group."""
    for m in msgs:
        if isinstance(m, NextHopMod):
            if m.mod == Mod.ADD:
                groups[m.nexthop_id] = m.buckets
            else:
                assert not any(nh == m.nexthop_id for nh in fib.values()), "group in use"
                groups.pop(m.nexthop_id)
        else:
            for e in m.entries:
                if m.mod == Mod.ADD:
                    if e.kind == RouteKind.UNICAST:
                        assert e.nexthop_id in groups, "flow before its group"
                    fib[e.prefix] = e.nexthop_id
                else:
                    fib.pop(e.prefix, None)


prefixes = st.sampled_from([f"10.{i}.0.0/16" for i in range(6)])
gateways = st.sampled_from([(1, "172.31.1.2"), (1, "172.31.1.3"), (2, "172.31.2.2")])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), prefixes, gateways),
        st.tuples(
            st.just("batch"),
            st.just(""),
            st.lists(st.tuples(prefixes, gateways), min_size=2, max_size=6),
        ),
        st.tuples(st.just("del"), prefixes, gateways),
        st.tuples(st.just("neigh"), st.just(""), gateways),
        st.tuples(st.just("unbind"), st.just(""), st.sampled_from([1, 2])),
        st.tuples(st.just("bind"), st.just(""), st.sampled_from([1, 2])),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_switch_state_always_equals_a_fresh_computation(sequence):
    t = bound_table()
    fib: dict = {}
    groups: dict = {}
    for op, prefix, arg in sequence:
        if op == "add":
            msgs = t.add_routes(VM, [via(prefix, *arg)])
        elif op == "batch":
            # Many routes changing next hop at once (an SPF run): ids freed and
            # taken within one batch must never collide.
            msgs = t.add_routes(VM, [via(pfx, *gw) for pfx, gw in arg])
        elif op == "del":
            msgs = t.delete_routes(VM, [prefix])
        elif op == "neigh":
            port, ip = arg
            msgs = t.set_neighbours(VM, [Neighbour(vm_port=port, address=ip, hwaddress=GW_MAC)])
        elif op == "unbind":
            msgs = t.bind(VM, arg, None)
        else:
            msgs = t.bind(VM, arg, Binding(CT, DP, arg, MAC1 if arg == 1 else MAC2))
        _replay(msgs, fib, groups)
    # A fresh table fed the final state must produce the same switch content.
    fresh = RoutingTable()
    for key, b in t.bindings.items():
        fresh.bind(*key, b)
    f_fib: dict = {}
    f_groups: dict = {}
    _replay(
        fresh.replace_vm(
            VM,
            list(t.routes[VM].values()),
            [
                Neighbour(vm_port=port, address=ip, hwaddress=mac)
                for ip, (port, mac) in t.neighbours[VM].items()
            ],
        ),
        f_fib,
        f_groups,
    )
    assert set(fib) == set(f_fib)
    assert sorted(map(repr, (groups[fib[p]] for p in fib if fib[p]))) == sorted(
        map(repr, (f_groups[f_fib[p]] for p in f_fib if f_fib[p]))
    )
    assert len(groups) == t.nexthop_count()


def test_restart_with_id_hints_reproduces_the_same_groups():
    """A restarted server must describe the switch as it already is (no renumbering)."""
    first = bound_table()
    routes = [via(f"10.{i}.0.0/16", 1 + i % 2, f"172.31.{1 + i % 2}.{2 + i % 3}") for i in range(9)]
    first.add_routes(VM, routes)
    first.delete_routes(VM, ["10.0.0.0/16", "10.4.0.0/16"])  # free some ids
    hints = {k: v for k, v in first.take_allocation_changes().items() if v is not None}
    before = {e.prefix: e.nexthop_id for _c, _d, e in first.installed()}

    second = RoutingTable(id_hints=hints)
    # Routes arrive in another order after the restart.
    second.add_routes(VM, list(reversed([r for r in routes if r.prefix in before])))
    second.bind(VM, 2, Binding(CT, DP, 2, MAC2))
    second.bind(VM, 1, Binding(CT, DP, 1, MAC1))
    after = {e.prefix: e.nexthop_id for _c, _d, e in second.installed()}
    assert after == before

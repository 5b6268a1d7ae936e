"""The prefix index behind paged /api/routes and /api/fib: always the sorted keys."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import protocol as p
from routeflow.server.routing import Binding, RoutingTable

GW = ["10.0.0.2", "10.0.0.3", "10.0.0.9"]  # .9 never resolves: its routes stay off the FIB


def _table() -> RoutingTable:
    rt = RoutingTable()
    rt.bind(1, 1, Binding(1, 1, 1, "02:00:00:00:00:01"))
    rt.set_neighbours(
        1,
        [p.Neighbour(vm_port=1, address=a, hwaddress="02:aa:00:00:00:02") for a in GW[:2]],
    )
    return rt


def _check(rt: RoutingTable) -> None:
    index = rt.prefix_index(1)
    assert list(index.routes()) == sorted(rt.routes[1])
    assert list(index.fib()) == sorted(rt.installed_prefixes(1))


step = st.one_of(
    st.tuples(
        st.just("add"),
        st.lists(
            st.tuples(st.integers(0, 40), st.integers(8, 32), st.sampled_from(GW)), max_size=8
        ),
    ),
    st.tuples(st.just("del"), st.lists(st.integers(0, 40), max_size=8)),
    st.tuples(st.just("read"), st.none()),
    st.tuples(st.just("replace"), st.integers(0, 5)),
    st.tuples(st.just("unbind"), st.booleans()),
)


def _prefix(i: int, plen: int = 24) -> str:
    net = (20 << 24) | (i << 8)
    net &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return f"{net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.{net & 255}/{plen}"


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=25))
def test_index_follows_every_change(steps):
    rt = _table()
    _check(rt)  # watching from the start
    known: dict[int, str] = {}
    for kind, arg in steps:
        if kind == "add":
            routes = []
            for i, plen, gw in arg:
                known[i] = _prefix(i, plen)
                routes.append(p.Route(prefix=known[i], nexthops=[p.NextHop(vm_port=1, gateway=gw)]))
            rt.add_routes(1, routes)
        elif kind == "del":
            rt.delete_routes(1, [known[i] for i in arg if i in known])
        elif kind == "replace":
            rt.replace_vm(
                1,
                [
                    p.Route(prefix=_prefix(i), nexthops=[p.NextHop(vm_port=1, gateway=GW[0])])
                    for i in range(arg)
                ],
                [p.Neighbour(vm_port=1, address=GW[0], hwaddress="02:aa:00:00:00:02")],
            )
        elif kind == "unbind":
            rt.bind(1, 1, None if arg else Binding(1, 1, 1, "02:00:00:00:00:01"))
        else:
            _check(rt)
    _check(rt)


def test_a_small_change_updates_instead_of_sorting_again():
    rt = _table()
    gw = [p.NextHop(vm_port=1, gateway=GW[0])]
    rt.add_routes(1, [p.Route(prefix=_prefix(i), nexthops=gw) for i in range(3000)])
    index = rt.prefix_index(1)
    assert len(index.fib()) == 3002 and index.rebuilds == 1  # + the neighbours
    rt.delete_routes(1, [_prefix(5)])
    rt.add_routes(1, [p.Route(prefix="30.0.0.0/8", nexthops=gw)])
    assert index.fib()[-1] == "30.0.0.0/8" and _prefix(5) not in index.fib()
    assert index.rebuilds == 1
    # A burst larger than a quarter of the table: sorting again is cheaper.
    rt.delete_routes(1, [_prefix(i) for i in range(2000)])
    _check(rt)
    assert index.rebuilds == 2

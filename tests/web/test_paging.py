"""Paging of /api/routes and /api/fib: any page is exactly that slice of the whole list."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.server.routing import Binding
from routeflow.server.service import RFServer
from routeflow.web import views


def _server() -> RFServer:
    """Three VMs on three switches, 25 routes each (some via an unresolved gateway),
    and one VM whose port is not associated (its 5 routes are on no switch)."""
    server = RFServer([], MemoryStore())
    rt = server.routing
    for vm in (7, 5, 6):
        rt.bind(vm, 1, Binding(1, vm, 1, f"02:00:00:00:{vm:02x}:01"))
        rt.set_neighbours(
            vm, [p.Neighbour(vm_port=1, address="10.0.0.2", hwaddress="02:aa:00:00:00:02")]
        )
        rt.add_routes(
            vm,
            [
                p.Route(
                    prefix=f"10.{vm}.{i}.0/24",
                    nexthops=[p.NextHop(vm_port=1, gateway="10.0.0.2" if i % 3 else "10.0.0.9")],
                )
                for i in range(25)
            ],
        )
    rt.add_routes(
        8, [p.Route(prefix=f"10.8.{i}.0/24", nexthops=[p.NextHop(vm_port=1)]) for i in range(5)]
    )
    return server


SERVER = _server()
ALL_ROUTES, ROUTE_TOTAL = views.routes(SERVER)
ALL_FIB, FIB_TOTAL = views.fib(SERVER)


def test_whole_lists_are_ordered_and_counted():
    assert ROUTE_TOTAL == len(ALL_ROUTES) == 80
    keys = [(int(r["vm_id"], 16), r["prefix"]) for r in ALL_ROUTES]
    assert keys == sorted(keys)
    installed = {r["prefix"] for r in ALL_ROUTES if r["installed"]}
    assert len(installed) == 75 and not any(x.startswith("10.8.") for x in installed)
    assert FIB_TOTAL == len(ALL_FIB) == sum(n for n in SERVER.routing.fib_counts().values())
    fib_keys = [(int(r["dp_id"], 16), r["prefix"]) for r in ALL_FIB]
    assert fib_keys == sorted(fib_keys)


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(1, 100), offset=st.integers(0, 120))
def test_any_page_is_a_slice(limit, offset):
    rows, total = views.routes(SERVER, limit=limit, offset=offset)
    assert (rows, total) == (ALL_ROUTES[offset : offset + limit], ROUTE_TOTAL)
    rows, total = views.fib(SERVER, limit=limit, offset=offset)
    assert (rows, total) == (ALL_FIB[offset : offset + limit], FIB_TOTAL)


def test_filters_page_within_their_switch_or_vm():
    rows, total = views.fib(SERVER, dp_id=6, limit=5, offset=3)
    mine = [r for r in ALL_FIB if r["dp_id"] == "0x6"]
    assert total == len(mine) and rows == mine[3:8]
    rows, total = views.routes(SERVER, vm_id=7, offset=20)
    mine = [r for r in ALL_ROUTES if r["vm_id"] == "0x7"]
    assert total == 25 and rows == mine[20:]

"""The per-shape fast paths of RoutingTable say exactly what the general path says.

``Reference`` feeds every route through ``_refresh`` (the general, per-prefix
computation); the real table takes its shortcuts for new and repeated routes
and for deletions. Random sequences of route, neighbour and binding changes
must produce the same messages, the same installed FIB and the same counts.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.protocol import Neighbour, NextHop, Route, RouteKind
from routeflow.server.routing import Binding, RoutingTable, _normalise

VM = 0x5
CT = 1


class Reference(RoutingTable):
    def add_routes(self, vm_id, routes):
        from routeflow.server.routing import _Batch

        batch = _Batch()
        for route in routes:
            prefix = _normalise(route.prefix)
            self.routes[vm_id][prefix] = route
            self._refresh(batch, vm_id, prefix)
        return self._finish(batch)

    def delete_routes(self, vm_id, prefixes):
        from routeflow.server.routing import _Batch

        batch = _Batch()
        for raw in prefixes:
            prefix = _normalise(raw)
            self.routes[vm_id].pop(prefix, None)
            self._refresh(batch, vm_id, prefix)
        return self._finish(batch)


PREFIXES = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "172.31.1.2/32",
    "172.31.2.0/24",
    "0.0.0.0/0",
    "10.1.2.3/32",
]
GATEWAYS = ["172.31.1.2", "172.31.2.2", "10.1.2.3"]

nexthops = st.builds(
    lambda port, gw, weight: NextHop(vm_port=port, gateway=gw, weight=weight),
    st.integers(1, 3),
    st.sampled_from([*GATEWAYS, None]),
    st.integers(0, 2),
)
routes = st.builds(
    lambda prefix, kind, nhs: Route(prefix=prefix, kind=kind, nexthops=nhs),
    st.sampled_from([*PREFIXES, "10.1.2.3/8"]),  # the last one is not canonical
    st.sampled_from(list(RouteKind)),
    st.lists(nexthops, max_size=3),
)
neighbours = st.builds(
    lambda port, ip, mac: Neighbour(vm_port=port, address=ip, hwaddress=mac),
    st.integers(1, 3),
    st.sampled_from(GATEWAYS),
    st.sampled_from([None, "aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"]),
)
bindings = st.one_of(
    st.none(),
    st.builds(
        lambda dp, port, mac: Binding(CT, dp, port, mac),
        st.sampled_from([0x99, 0x98]),
        st.integers(1, 3),
        st.sampled_from(["02:00:00:00:00:01", "02:00:00:00:00:02"]),
    ),
)
operations = st.one_of(
    st.tuples(st.just("add"), st.lists(routes, max_size=5)),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(PREFIXES), max_size=4)),
    st.tuples(st.just("neigh"), st.lists(neighbours, max_size=3)),
    st.tuples(st.just("bind"), st.tuples(st.integers(1, 3), bindings)),
    st.tuples(st.just("replace"), st.tuples(st.lists(routes, max_size=4), st.lists(neighbours))),
)


def routes_of(table: RoutingTable) -> dict:
    # The fast path stores routes under (and with) their canonical prefix.
    return {
        (vm, prefix): (r.kind, r.nexthops)
        for vm, routes in table.routes.items()
        for prefix, r in routes.items()
    }


def apply(table: RoutingTable, op, arg):
    if op == "add":
        return table.add_routes(VM, arg)
    if op == "delete":
        return table.delete_routes(VM, arg)
    if op == "neigh":
        return table.set_neighbours(VM, arg)
    if op == "bind":
        return table.bind(VM, arg[0], arg[1])
    return table.replace_vm(VM, arg[0], arg[1])


@settings(max_examples=400, deadline=None)
@given(st.lists(operations, max_size=12))
def test_fast_paths_match_the_general_path(ops):
    fast, ref = RoutingTable(), Reference()
    for op, arg in ops:
        assert apply(fast, op, arg) == apply(ref, op, arg), op
        assert sorted(fast.installed(), key=repr) == sorted(ref.installed(), key=repr)
        assert routes_of(fast) == routes_of(ref)
        counts: dict = {}
        for ct, dp, _e in ref.installed():
            counts[(ct, dp)] = counts.get((ct, dp), 0) + 1
        assert fast.fib_counts() == counts
    assert fast.dump(CT) == ref.dump(CT)


def test_routes_through_one_next_hop_share_their_records():
    t = RoutingTable()
    t.bind(VM, 1, Binding(CT, 0x99, 1, "02:00:00:00:00:01"))
    nhs = [NextHop(vm_port=1, gateway="172.31.1.2")]
    t.add_routes(VM, [Route(prefix=f"100.0.{i}.0/24", nexthops=list(nhs)) for i in range(50)])
    stored = list(t.routes[VM].values())
    assert len({id(r.nexthops) for r in stored}) == 1
    assert len({id(i) for i in t._installed[VM].values()}) == 1
    assert t.fib_counts() == {(CT, 0x99): 50}


def test_normalise():
    assert _normalise("10.1.2.0/24") == "10.1.2.0/24"
    assert _normalise("10.1.2.3/24") == "10.1.2.0/24"
    assert _normalise("10.1.2.3") == "10.1.2.3/32"
    assert _normalise("10.1.2.3/32") == "10.1.2.3/32"


def test_a_full_table_is_sent_in_bounded_fibmods():
    from routeflow.rflib import codec
    from routeflow.rflib.protocol import FibMod
    from routeflow.server.routing import FIB_CHUNK

    n = FIB_CHUNK * 2 + 5
    routes = [
        Route(prefix=f"{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24",
              nexthops=[NextHop(vm_port=1, gateway="172.31.1.2")])
        for i in range(n)
    ]  # fmt: skip
    t = RoutingTable()
    t.bind(VM, 1, Binding(CT, 0x99, 1, "02:00:00:00:00:01"))
    for msgs in (t.replace_vm(VM, routes, []), t.dump(CT)):
        mods = [m for m in msgs if isinstance(m, FibMod)]
        assert [len(m.entries) for m in mods] == [FIB_CHUNK, FIB_CHUNK, 5]
        assert all(len(codec.encode(m)) < codec.DEFAULT_MAX_FRAME // 4 for m in mods)


_OCTET = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(0, 999).map(lambda n: f"0{n}"),  # leading zeros
    st.integers(256, 99999).map(str),
    st.sampled_from(["", " 1", "1 ", "0x1", "+1", "-1", "1\x00", "\u0661"]),
)


@given(
    st.lists(_OCTET, min_size=3, max_size=5).map(".".join),
    st.one_of(st.integers(0, 40).map(str), st.sampled_from(["", "024", "+8", " 8", "8 "])),
    st.booleans(),
)
@settings(max_examples=3000, deadline=None)
def test_normalise_agrees_with_ipaddress_on_any_text(addr, plen, slash):
    """The fast path (inet_pton alone) accepts exactly what ipaddress calls canonical."""
    import ipaddress

    prefix = f"{addr}/{plen}" if slash else addr
    try:
        want: str | type = str(ipaddress.IPv4Network(prefix, strict=False))
    except ValueError:
        want = ValueError
    try:
        got: str | type = _normalise(prefix)
    except ValueError:
        got = ValueError
    assert got == want

"""RoutingTable with IPv6 next to IPv4 (the dual-stack contract).

Link-local gateways are resolved per port (the same fe80:: address may be on
every link) and never become host routes; global IPv6 neighbours get a /128
as IPv4 ones get a /32; prefixes of both families are normalised.
"""

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
from routeflow.server.routing import Binding, RoutingTable, _normalise

from .test_routing import CT, DP, MAC1, MAC2, VM, _replay, bound_table
from .test_routing_fastpath import Reference, apply, routes_of

LL = "fe80::1"
LL_MAC1 = "aa:bb:cc:00:01:01"
LL_MAC2 = "aa:bb:cc:00:02:01"


def via(prefix: str, *hops: tuple[int, str]) -> Route:
    return Route(
        prefix=prefix,
        kind=RouteKind.UNICAST,
        nexthops=[NextHop(vm_port=p, gateway=g) for p, g in hops],
    )


def fib(t: RoutingTable) -> dict[str, FibMod]:
    return {e.prefix: e for _c, _d, e in t.installed()}


def groups_of(msgs) -> list[NextHopMod]:
    return [m for m in msgs if isinstance(m, NextHopMod)]


def test_normalise_both_families():
    assert _normalise("10.1.2.3/24") == "10.1.2.0/24"
    assert _normalise("2001:db8:1::/64") == "2001:db8:1::/64"
    assert _normalise("2001:DB8:1::5/64") == "2001:db8:1::/64"
    assert _normalise("2001:db8:0:0:0:0:0:1/128") == "2001:db8::1/128"
    assert _normalise("2001:db8::1") == "2001:db8::1/128"
    assert _normalise("::/0") == "::/0"
    # inet_ntop's embedded IPv4 is not Python's text: the contract's form wins.
    assert _normalise("::ffff:1.2.3.4/128") == "::ffff:102:304/128"
    assert _normalise("::ffff:0:0/96") == "::ffff:0:0/96"


def test_link_local_gateway_resolves_the_group_without_a_host_route():
    t = bound_table()
    msgs = t.add_routes(VM, [via("2001:db8:10::/48", (1, LL))])
    (nh,) = groups_of(msgs)
    assert nh.buckets == []  # punts until the neighbour is known
    msgs = t.set_neighbours(VM, [Neighbour(vm_port=1, address=LL, hwaddress=LL_MAC1)])
    (update,) = groups_of(msgs)
    (b,) = update.buckets
    assert (update.nexthop_id, b.dp_port, b.src_hwaddress, b.dst_hwaddress) == (
        nh.nexthop_id,
        1,
        MAC1,
        LL_MAC1,
    )
    assert not [m for m in msgs if isinstance(m, FibMod)], "no host route for fe80::"
    assert sorted(fib(t)) == ["2001:db8:10::/48"]


def test_one_link_local_address_on_two_ports_is_two_neighbours():
    t = bound_table()
    t.add_routes(VM, [via("2001:db8:20::/48", (1, LL), (2, LL))])
    t.set_neighbours(
        VM,
        [
            Neighbour(vm_port=1, address=LL, hwaddress=LL_MAC1),
            Neighbour(vm_port=2, address=LL, hwaddress=LL_MAC2),
        ],
    )
    (nh,) = t._nexthops.values()
    assert sorted((b.dp_port, b.dst_hwaddress) for b in nh.buckets) == [
        (1, LL_MAC1),
        (2, LL_MAC2),
    ]
    # Losing it on port 1 leaves port 2 resolved.
    msgs = t.delete_neighbours(VM, [Neighbour(vm_port=1, address=LL)])
    (update,) = groups_of(msgs)
    assert [(b.dp_port, b.dst_hwaddress) for b in update.buckets] == [(2, LL_MAC2)]


def test_rfc5549_an_ipv4_route_through_link_local_neighbours_of_either_family():
    """BGP unnumbered, both ways FRR installs it: ``via inet6 fe80::1`` (RTA_VIA) and
    ``via 169.254.0.1 onlink`` with that neighbour on every such link. Either resolves
    per port, and neither is a host route."""
    for gw in (LL, "169.254.0.1"):
        t = bound_table()
        t.add_routes(VM, [via("10.20.0.0/16", (1, gw), (2, gw))])
        msgs = t.set_neighbours(
            VM,
            [
                Neighbour(vm_port=1, address=gw, hwaddress=LL_MAC1),
                Neighbour(vm_port=2, address=gw, hwaddress=LL_MAC2),
            ],
        )
        assert not [m for m in msgs if isinstance(m, FibMod)], f"no host route for {gw}"
        (nh,) = t._nexthops.values()
        assert sorted((b.dp_port, b.dst_hwaddress) for b in nh.buckets) == [
            (1, LL_MAC1),
            (2, LL_MAC2),
        ]
        assert sorted(fib(t)) == ["10.20.0.0/16"]


def test_global_neighbour_gets_a_host_route_and_loses_it():
    t = bound_table()
    n = Neighbour(vm_port=1, address="2001:db8:1::2", hwaddress="aa:bb:cc:dd:ee:01")
    msgs = t.set_neighbours(VM, [n])
    (nh,) = groups_of(msgs)
    (entry,) = fib(t).values()
    assert (entry.prefix, entry.kind, entry.nexthop_id) == (
        "2001:db8:1::2/128",
        RouteKind.UNICAST,
        nh.nexthop_id,
    )
    msgs = t.delete_neighbours(VM, [n])
    assert [(m.mod, [e.prefix for e in m.entries]) for m in msgs if isinstance(m, FibMod)] == [
        (Mod.DELETE, ["2001:db8:1::2/128"])
    ]
    assert t.installed() == [] and t.nexthop_count() == 0


def test_an_ipv6_slash_32_is_not_a_host_route():
    # "/32" is a host route only for IPv4: 2001:db8::/32 must not fall back to
    # the neighbour 2001:db8:: when its route goes.
    t = bound_table()
    t.set_neighbours(VM, [Neighbour(vm_port=1, address="2001:db8::", hwaddress=LL_MAC1)])
    t.add_routes(VM, [via("2001:db8::/32", (2, "2001:db8:2::2"))])
    assert sorted(fib(t)) == ["2001:db8::/128", "2001:db8::/32"]
    t.delete_routes(VM, ["2001:db8::/32"])
    assert sorted(fib(t)) == ["2001:db8::/128"]


def test_local_link_local_address_and_a_route_to_the_same_host_prefix():
    t = bound_table()
    own = Route(
        prefix="fe80::200:ff:fe00:1/128", kind=RouteKind.LOCAL, nexthops=[NextHop(vm_port=1)]
    )
    t.add_routes(VM, [own])
    t.set_neighbours(VM, [Neighbour(vm_port=1, address="fe80::200:ff:fe00:1", hwaddress=MAC1)])
    assert fib(t)["fe80::200:ff:fe00:1/128"].kind == RouteKind.LOCAL
    # The address goes: a link-local neighbour of that address gives no host route.
    t.delete_routes(VM, ["fe80::200:ff:fe00:1/128"])
    assert fib(t) == {}


def test_resync_and_rebind_follow_ipv6_neighbours():
    t = bound_table()
    g = Neighbour(vm_port=2, address="2001:db8:2::2", hwaddress="aa:bb:cc:dd:ee:02")
    ll = Neighbour(vm_port=1, address=LL, hwaddress=LL_MAC1)
    routes = [via("::/0", (1, LL))]
    t.replace_vm(VM, routes, [g, ll])
    assert sorted(fib(t)) == ["2001:db8:2::2/128", "::/0"]
    t.bind(VM, 2, None)
    assert sorted(fib(t)) == ["::/0"]
    t.bind(VM, 2, Binding(CT, DP, 2, MAC2))
    assert sorted(fib(t)) == ["2001:db8:2::2/128", "::/0"]
    # The client comes back without the global neighbour and with ll moved MAC.
    moved = Neighbour(vm_port=1, address=LL, hwaddress=LL_MAC2)
    msgs = t.replace_vm(VM, routes, [moved])
    assert sorted(fib(t)) == ["::/0"]
    default_group = fib(t)["::/0"].nexthop_id
    (update,) = [m for m in groups_of(msgs) if m.nexthop_id == default_group]
    assert [b.dst_hwaddress for b in update.buckets] == [LL_MAC2]


# --- properties -------------------------------------------------------------------

PREFIXES = ["10.1.0.0/16", "2001:db8:10::/48", "2001:db8::/32", "::/0", "2001:db8:1::2/128"]
GATEWAYS = [(1, "10.0.1.2"), (1, LL), (2, LL), (1, "2001:db8:1::2"), (2, "fe80::2")]
prefixes = st.sampled_from(PREFIXES)
gateways = st.sampled_from(GATEWAYS)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), prefixes, st.lists(gateways, min_size=1, max_size=2)),
        st.tuples(st.just("del"), prefixes, st.just(None)),
        st.tuples(
            st.just("neigh"),
            gateways,
            st.sampled_from([None, LL_MAC1, LL_MAC2]),
        ),
        st.tuples(st.just("bind"), st.sampled_from([1, 2]), st.booleans()),
    ),
    max_size=40,
)


def _neighbours(t: RoutingTable) -> list[Neighbour]:
    return [
        Neighbour(vm_port=port, address=key.partition("%")[0], hwaddress=mac)
        for key, (port, mac) in t.neighbours[VM].items()
    ]


@settings(max_examples=200, deadline=None)
@given(ops)
def test_dual_stack_switch_state_equals_a_fresh_computation(sequence):
    t = bound_table()
    switch_fib: dict = {}
    switch_groups: dict = {}
    for op, a, b in sequence:
        if op == "add":
            msgs = t.add_routes(VM, [via(a, *sorted(set(b)))])
        elif op == "del":
            msgs = t.delete_routes(VM, [a])
        elif op == "neigh":
            msgs = t.set_neighbours(VM, [Neighbour(vm_port=a[0], address=a[1], hwaddress=b)])
        else:
            binding = Binding(CT, DP, a, MAC1 if a == 1 else MAC2) if b else None
            msgs = t.bind(VM, a, binding)
        _replay(msgs, switch_fib, switch_groups)
    # Host routes exist exactly for resolved, bound, global neighbours without a route.
    for _port, ip in GATEWAYS:
        host = f"{ip}/128" if ":" in ip else f"{ip}/32"
        if ip.startswith("fe80"):
            assert host not in switch_fib
            continue
        resolved = t.neighbours[VM].get(ip)
        if host not in t.routes[VM] and resolved and (VM, resolved[0]) in t.bindings:
            assert host in switch_fib
    fresh = RoutingTable()
    for key, binding in t.bindings.items():
        fresh.bind(*key, binding)
    f_fib: dict = {}
    f_groups: dict = {}
    _replay(fresh.replace_vm(VM, list(t.routes[VM].values()), _neighbours(t)), f_fib, f_groups)
    assert set(switch_fib) == set(f_fib)
    assert sorted(repr(switch_groups[switch_fib[p]]) for p in switch_fib if switch_fib[p]) == (
        sorted(repr(f_groups[f_fib[p]]) for p in f_fib if f_fib[p])
    )
    assert len(switch_groups) == t.nexthop_count()


routes6 = st.builds(
    lambda prefix, kind, hops: Route(
        prefix=prefix, kind=kind, nexthops=[NextHop(vm_port=p, gateway=g) for p, g in hops]
    ),
    st.sampled_from([*PREFIXES, "2001:db8:10::1/48"]),  # the last one is not canonical
    st.sampled_from(list(RouteKind)),
    st.lists(gateways, max_size=2),
)
neighbours6 = st.builds(
    lambda gw, mac: Neighbour(vm_port=gw[0], address=gw[1], hwaddress=mac),
    gateways,
    st.sampled_from([None, LL_MAC1, LL_MAC2]),
)
operations6 = st.one_of(
    st.tuples(st.just("add"), st.lists(routes6, max_size=4)),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(PREFIXES), max_size=3)),
    st.tuples(st.just("neigh"), st.lists(neighbours6, max_size=3)),
    st.tuples(
        st.just("bind"),
        st.tuples(st.sampled_from([1, 2]), st.sampled_from([None, Binding(CT, DP, 1, MAC1)])),
    ),
    st.tuples(st.just("replace"), st.tuples(st.lists(routes6, max_size=3), st.lists(neighbours6))),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(operations6, max_size=10))
def test_ipv6_fast_paths_match_the_general_path(ops):
    fast, ref = RoutingTable(), Reference()
    for op, arg in ops:
        assert apply(fast, op, arg) == apply(ref, op, arg), op
        assert sorted(fast.installed(), key=repr) == sorted(ref.installed(), key=repr)
        assert routes_of(fast) == routes_of(ref)
    assert fast.dump(CT) == ref.dump(CT)

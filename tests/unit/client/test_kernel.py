"""KernelView driven by real pyroute2 messages (encoded, then parsed back), no kernel."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from routeflow.client.kernel import (
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_REACHABLE,
    NUD_STALE,
    KernelView,
    vm_port_of,
)
from routeflow.client.netlink import RtnlMarshal, nhmsg, rtmsg_nh
from routeflow.rflib.protocol import (
    Mod,
    Neighbour,
    NeighbourMod,
    NextHop,
    PortRegister,
    Route,
    RouteKind,
    RouteMod,
)

VM = 0x42
UP = 0x1 | 0x40 | 0x10000  # IFF_UP | IFF_RUNNING | IFF_LOWER_UP
LO, ETH1, ETH2, MGMT = 1, 2, 3, 4
MACS = {LO: "00:00:00:00:00:00", ETH1: "02:00:00:00:00:01", ETH2: "02:00:00:00:00:02"}
MACS[MGMT] = "02:00:00:00:00:99"
NAMES = {LO: "lo", ETH1: "eth1", ETH2: "eth2", MGMT: "mgmt0"}

_marshal = RtnlMarshal()


def cached(fn):
    """Memoise message builders (hypothesis calls them a lot); lists become tuples."""
    memo = functools.lru_cache(maxsize=None)(fn)

    def frozen(value):
        return tuple(frozen(v) for v in value) if isinstance(value, list | tuple) else value

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return memo(*map(frozen, args), **{k: frozen(v) for k, v in kwargs.items()})

    return wrapper


def _parsed(msg, mtype):
    msg["header"]["type"] = mtype
    msg.encode()
    (out,) = _marshal.parse(msg.data)
    return out


@cached
def link(index, name=None, mac=None, *, up=True, delete=False, family=0):
    m = ifinfmsg()
    m["family"] = family
    m["index"] = index
    m["flags"] = UP if up else 0
    m["attrs"] = [
        ("IFLA_IFNAME", name or NAMES[index]),
        ("IFLA_ADDRESS", mac or MACS[index]),
    ]
    return _parsed(m, 17 if delete else 16)


@cached
def route(
    prefix,
    gw=None,
    oif=ETH1,
    *,
    table=254,
    rtype=1,
    priority=0,
    multipath=None,
    nhid=None,
    family=2,
    delete=False,
):
    dst, plen = prefix.split("/")
    m = rtmsg_nh()
    m["family"] = family
    m["dst_len"] = int(plen)
    m["table"] = table if table < 256 else 252
    m["type"] = rtype
    attrs = [("RTA_TABLE", table), ("RTA_DST", dst)]
    if priority:
        attrs.append(("RTA_PRIORITY", priority))
    if nhid is not None:
        attrs.append(("RTA_NH_ID", nhid))
    if multipath is not None:
        attrs.append(
            (
                "RTA_MULTIPATH",
                [
                    {"oif": o, "hops": w - 1, "attrs": [("RTA_GATEWAY", g)]}
                    for (o, g, w) in multipath
                ],
            )
        )
    elif nhid is None:
        attrs.append(("RTA_OIF", oif))
        if gw is not None:
            attrs.append(("RTA_GATEWAY", gw))
    m["attrs"] = attrs
    return _parsed(m, 25 if delete else 24)


@cached
def nexthop(nhid, gw=None, oif=ETH1, *, group=None, delete=False, blackhole=False):
    m = nhmsg()
    attrs = [("NHA_ID", nhid)]
    if group is not None:
        attrs.append(("NHA_GROUP", [{"id": i, "weight": w} for i, w in group]))
    elif blackhole:
        m["family"] = 2
        attrs.append(("NHA_BLACKHOLE", True))
    else:
        m["family"] = 2
        attrs.append(("NHA_OIF", oif))
        if gw is not None:
            attrs.append(("NHA_GATEWAY", gw))
    m["attrs"] = attrs
    return _parsed(m, 105 if delete else 104)


@cached
def neigh(ip, mac=None, ifindex=ETH1, *, state=NUD_REACHABLE, delete=False, flags=0):
    m = ndmsg()
    m["family"] = 2
    m["ifindex"] = ifindex
    m["state"] = state
    m["flags"] = flags
    attrs = [("NDA_DST", ip)]
    if mac is not None:
        attrs.append(("NDA_LLADDR", mac))
    m["attrs"] = attrs
    return _parsed(m, 29 if delete else 28)


def base_view() -> KernelView:
    view = KernelView(VM)
    view.feed_many(link(i) for i in (LO, ETH1, ETH2, MGMT))
    view.drain()
    return view


def uni(prefix, *hops):
    return Route(
        prefix=prefix,
        kind=RouteKind.UNICAST,
        nexthops=[NextHop(vm_port=p, gateway=g, weight=w) for p, g, w in hops],
    )


def route_adds(msgs):
    return [r for m in msgs if isinstance(m, RouteMod) and m.mod == Mod.ADD for r in m.routes]


def route_dels(msgs):
    return [
        r.prefix for m in msgs if isinstance(m, RouteMod) and m.mod == Mod.DELETE for r in m.routes
    ]


def neigh_adds(msgs):
    return [
        n for m in msgs if isinstance(m, NeighbourMod) and m.mod == Mod.ADD for n in m.neighbours
    ]


def neigh_dels(msgs):
    return [
        (n.vm_port, n.address)
        for m in msgs
        if isinstance(m, NeighbourMod) and m.mod == Mod.DELETE
        for n in m.neighbours
    ]


# --- ports -----------------------------------------------------------------------


def test_vm_port_of():
    assert vm_port_of("eth0") == 0
    assert vm_port_of("eth12") == 12
    for name in ("lo", "eth", "eth1.100", "veth1", "eth1a", None, ""):
        assert vm_port_of(name) is None


def test_ports_registered_for_ethN_only():
    view = KernelView(VM)
    view.feed_many(link(i) for i in (LO, ETH1, ETH2, MGMT))
    assert view.drain() == [
        PortRegister(vm_id=VM, vm_port=1, hwaddress=MACS[ETH1], ifname="eth1"),
        PortRegister(vm_id=VM, vm_port=2, hwaddress=MACS[ETH2], ifname="eth2"),
    ]
    view.feed(link(ETH1))  # same again: nothing to say
    view.feed(link(ETH1, up=False))  # state changes are not port registrations
    assert view.drain() == []
    view.feed(link(ETH1, mac="02:00:00:00:00:aa"))
    assert view.drain() == [
        PortRegister(vm_id=VM, vm_port=1, hwaddress="02:00:00:00:00:aa", ifname="eth1")
    ]


def test_port_that_comes_back_is_registered_again():
    view = base_view()
    view.feed(link(ETH2, delete=True))
    assert view.drain() == []
    view.feed(link(7, "eth2", "02:00:00:00:00:77"))
    assert view.drain() == [
        PortRegister(vm_id=VM, vm_port=2, hwaddress="02:00:00:00:00:77", ifname="eth2")
    ]


def test_bridge_family_link_messages_are_ignored():
    view = base_view()
    view.feed(route("10.0.1.0/24", oif=ETH1))
    view.drain()
    view.feed(link(ETH1, delete=True, family=7))  # AF_BRIDGE: a bridge port left, not the link
    assert view.drain() == []
    assert "10.0.1.0/24" in view.routes


# --- routes ----------------------------------------------------------------------


def test_connected_local_and_unicast_routes():
    view = base_view()
    view.feed(route("10.0.1.0/24", oif=ETH1))
    view.feed(route("10.0.1.1/32", oif=ETH1, table=255, rtype=2))
    view.feed(route("10.0.1.255/32", oif=ETH1, table=255, rtype=3))  # broadcast
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(route("0.0.0.0/0", "10.0.2.2", ETH2))
    assert route_adds(view.drain()) == [
        Route(prefix="10.0.1.0/24", kind=RouteKind.CONNECTED, nexthops=[NextHop(vm_port=1)]),
        Route(prefix="10.0.1.1/32", kind=RouteKind.LOCAL, nexthops=[NextHop(vm_port=1)]),
        uni("10.5.0.0/16", (1, "10.0.1.2", 1)),
        uni("0.0.0.0/0", (2, "10.0.2.2", 1)),
    ]


@pytest.mark.parametrize(
    "msg",
    [
        route("10.9.0.0/24", "192.168.0.1", MGMT),  # not a router port
        route("127.0.0.0/8", oif=LO, table=255, rtype=2),  # local, but on lo
        route("10.9.0.0/24", "10.0.1.2", ETH1, table=100),  # other table
        route("224.0.0.0/4", oif=ETH1, rtype=5),  # multicast
        route("10.9.0.0/24", oif=ETH1, rtype=6),  # blackhole
        route("10.0.1.255/32", oif=ETH1, table=255, rtype=3),  # broadcast
        route("10.9.0.0/24", "10.0.1.2", ETH1, table=255, rtype=1),  # unicast in local table
        route("10.9.0.0/24", oif=ETH1, rtype=2),  # local type in the main table
        route("10.9.0.0/24", multipath=[(MGMT, "192.168.0.1", 1), (LO, "127.0.0.2", 1)]),
    ],
)
def test_routes_the_switch_cannot_use_are_ignored(msg):
    view = base_view()
    view.feed(msg)
    assert view.drain() == []
    assert view.routes == {}


def test_ipv6_on_link_subnet_is_connected():
    # IPv6 is in scope (tests/unit/client/test_kernel_ipv6.py has the rest).
    view = base_view()
    m = rtmsg_nh()
    m["family"] = 10
    m["dst_len"] = 64
    m["table"] = 254
    m["type"] = 1
    m["attrs"] = [("RTA_DST", "2001:db8::"), ("RTA_OIF", ETH1)]
    view.feed(_parsed(m, 24))
    assert route_adds(view.drain()) == [
        Route(prefix="2001:db8::/64", kind=RouteKind.CONNECTED, nexthops=[NextHop(vm_port=1)])
    ]


def test_multipath_keeps_every_usable_hop_with_weights():
    view = base_view()
    view.feed(
        route(
            "10.7.0.0/24",
            multipath=[(ETH2, "10.0.2.2", 1), (ETH1, "10.0.1.2", 3), (MGMT, "192.168.0.1", 1)],
        )
    )
    assert route_adds(view.drain()) == [uni("10.7.0.0/24", (1, "10.0.1.2", 3), (2, "10.0.2.2", 1))]


def test_replace_with_other_content_is_readded_same_content_is_not():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.drain()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    assert view.drain() == []
    view.feed(route("10.5.0.0/16", "10.0.2.2", ETH2))
    msgs = view.drain()
    assert msgs == [
        RouteMod(mod=Mod.ADD, vm_id=VM, routes=[uni("10.5.0.0/16", (2, "10.0.2.2", 1))])
    ]


def test_replace_with_blackhole_withdraws_the_route():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.drain()
    view.feed(route("10.5.0.0/16", oif=ETH1, rtype=6))
    assert route_dels(view.drain()) == ["10.5.0.0/16"]


def test_delete_carries_the_prefix():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.drain()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1, delete=True))
    assert view.drain() == [
        RouteMod(
            mod=Mod.DELETE,
            vm_id=VM,
            routes=[Route(prefix="10.5.0.0/16", kind=RouteKind.UNICAST, nexthops=[])],
        )
    ]
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1, delete=True))  # unknown: no-op
    assert view.drain() == []


def test_deleting_a_broadcast_route_leaves_the_local_route_alone():
    view = base_view()
    view.feed(route("10.0.1.1/32", oif=ETH1, table=255, rtype=2))
    view.drain()
    view.feed(route("10.0.1.1/32", oif=ETH1, table=255, rtype=3, delete=True))
    assert view.drain() == []
    assert "10.0.1.1/32" in view.routes


def test_lowest_metric_wins_and_the_next_one_takes_over():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.2.2", ETH2, priority=200))
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1, priority=20))
    assert route_adds(view.drain()) == [uni("10.5.0.0/16", (1, "10.0.1.2", 1))]
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1, priority=20, delete=True))
    assert route_adds(view.drain()) == [uni("10.5.0.0/16", (2, "10.0.2.2", 1))]


# --- nexthop objects -------------------------------------------------------------


def test_nhid_route_after_its_nexthop():
    view = base_view()
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(route("10.9.0.0/24", nhid=10))
    assert route_adds(view.drain()) == [uni("10.9.0.0/24", (1, "10.0.1.2", 1))]


def test_nhid_route_before_its_nexthop_waits_for_it():
    view = base_view()
    view.feed(route("10.9.0.0/24", nhid=10))
    view.feed(route("10.8.0.0/24", nhid=12))
    assert view.drain() == []
    assert view.pending_routes == 2
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    assert route_adds(view.drain()) == [uni("10.9.0.0/24", (1, "10.0.1.2", 1))]
    view.feed(nexthop(12, group=[(10, 1), (11, 3)]))  # member 11 still unknown
    assert view.drain() == []
    view.feed(nexthop(11, "10.0.2.2", ETH2))
    assert route_adds(view.drain()) == [uni("10.8.0.0/24", (1, "10.0.1.2", 1), (2, "10.0.2.2", 3))]
    assert view.pending_routes == 0


def test_nexthop_change_reemits_the_routes_using_it():
    view = base_view()
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(nexthop(11, "10.0.2.2", ETH2))
    view.feed(nexthop(12, group=[(10, 1), (11, 1)]))
    view.feed(route("10.9.0.0/24", nhid=10))
    view.feed(route("10.8.0.0/24", nhid=12))
    view.feed(route("10.7.0.0/24", nhid=11))
    view.drain()
    view.feed(nexthop(10, "10.0.1.3", ETH1))
    assert sorted(route_adds(view.drain()), key=lambda r: r.prefix) == [
        uni("10.8.0.0/24", (1, "10.0.1.3", 1), (2, "10.0.2.2", 1)),
        uni("10.9.0.0/24", (1, "10.0.1.3", 1)),
    ]
    view.feed(nexthop(12, group=[(10, 2), (11, 1)]))
    assert route_adds(view.drain()) == [uni("10.8.0.0/24", (1, "10.0.1.3", 2), (2, "10.0.2.2", 1))]


def test_nexthop_deletion_takes_its_routes_and_shrinks_groups():
    view = base_view()
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(nexthop(11, "10.0.2.2", ETH2))
    view.feed(nexthop(12, group=[(10, 1), (11, 1)]))
    view.feed(route("10.9.0.0/24", nhid=10))
    view.feed(route("10.8.0.0/24", nhid=12))
    view.drain()
    assert not view.take_reconcile_hint()
    view.feed(nexthop(10, delete=True))
    msgs = view.drain()
    assert route_dels(msgs) == ["10.9.0.0/24"]
    assert route_adds(msgs) == [uni("10.8.0.0/24", (2, "10.0.2.2", 1))]
    assert view.take_reconcile_hint()
    view.feed(nexthop(11, delete=True))  # the group empties and goes too
    assert route_dels(view.drain()) == ["10.8.0.0/24"]
    assert view.routes == {}


def test_unused_nexthop_deletion_needs_no_reconcile():
    view = base_view()
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(nexthop(10, delete=True))
    assert not view.take_reconcile_hint()


def test_blackhole_nexthop_gives_no_route():
    view = base_view()
    view.feed(nexthop(13, blackhole=True))
    view.feed(route("10.9.0.0/24", nhid=13))
    assert view.drain() == []
    assert view.pending_routes == 0


# --- links going down or away ----------------------------------------------------


def test_link_down_flushes_what_the_kernel_flushes_silently():
    view = base_view()
    view.feed(route("10.0.1.0/24", oif=ETH1))
    view.feed(route("10.0.1.1/32", oif=ETH1, table=255, rtype=2))
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(route("10.7.0.0/24", multipath=[(ETH1, "10.0.1.2", 1), (ETH2, "10.0.2.2", 1)]))
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(route("10.9.0.0/24", nhid=10))
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    view.drain()
    view.feed(link(ETH1, up=False))
    msgs = view.drain()
    assert sorted(route_dels(msgs)) == ["10.0.1.0/24", "10.5.0.0/16", "10.9.0.0/24"]
    assert route_adds(msgs) == [uni("10.7.0.0/24", (2, "10.0.2.2", 1))]
    assert neigh_dels(msgs) == [(1, "10.0.1.2")]
    assert "10.0.1.1/32" in view.routes  # local addresses stay
    assert view.take_reconcile_hint()
    # Back up: the kernel revives the multipath hop silently; the rest comes by netlink.
    view.feed(link(ETH1))
    assert route_adds(view.drain()) == [uni("10.7.0.0/24", (1, "10.0.1.2", 1), (2, "10.0.2.2", 1))]


def test_replayed_notifications_for_a_down_link_are_dropped():
    # After a dump, older queued notifications are replayed; the kernel cannot hold
    # a route or nexthop on a down link, so they must not come back when it is up.
    view = base_view()
    view.feed(link(ETH1, up=False))
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(route("10.9.0.0/24", nhid=10))
    view.feed(route("10.7.0.0/24", multipath=[(ETH1, "10.0.1.2", 1), (ETH2, "10.0.2.2", 1)]))
    view.feed(link(ETH1))
    assert route_adds(view.drain()) == [uni("10.7.0.0/24", (1, "10.0.1.2", 1), (2, "10.0.2.2", 1))]
    assert view.pending_routes == 1  # 10.9.0.0/24 waits for a nexthop 10 that is gone


def test_carrier_loss_flushes_nexthop_objects_only():
    view = base_view()
    view.feed(route("10.0.1.0/24", oif=ETH1))
    view.feed(nexthop(10, "10.0.1.2", ETH1))
    view.feed(route("10.9.0.0/24", nhid=10))
    view.drain()
    m = ifinfmsg()
    m["index"] = ETH1
    m["flags"] = 0x1  # IFF_UP, no carrier
    m["attrs"] = [("IFLA_IFNAME", "eth1"), ("IFLA_ADDRESS", MACS[ETH1])]
    view.feed(_parsed(m, 16))
    assert route_dels(view.drain()) == ["10.9.0.0/24"]
    assert "10.0.1.0/24" in view.routes


def test_link_removal_flushes_every_route_touching_it():
    view = base_view()
    view.feed(route("10.0.1.1/32", oif=ETH1, table=255, rtype=2))
    view.feed(route("10.7.0.0/24", multipath=[(ETH1, "10.0.1.2", 1), (ETH2, "10.0.2.2", 1)]))
    view.feed(route("10.6.0.0/24", "10.0.2.3", ETH2))
    view.drain()
    view.feed(link(ETH1, delete=True))
    msgs = view.drain()
    assert sorted(route_dels(msgs)) == ["10.0.1.1/32", "10.7.0.0/24"]
    assert list(view.routes) == ["10.6.0.0/24"]


def test_renamed_interface_moves_routes_and_neighbours_to_the_new_port():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    view.drain()
    view.feed(link(ETH1, "eth5"))
    msgs = view.drain()
    assert msgs[0] == PortRegister(vm_id=VM, vm_port=5, hwaddress=MACS[ETH1], ifname="eth5")
    assert neigh_adds(msgs) == [
        Neighbour(vm_port=5, address="10.0.1.2", hwaddress="02:00:00:00:01:02")
    ]
    assert neigh_dels(msgs) == [(1, "10.0.1.2")]
    assert route_adds(msgs) == [uni("10.5.0.0/16", (5, "10.0.1.2", 1))]


def test_link_appearing_after_its_routes_enables_them():
    view = KernelView(VM)
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    assert route_adds(view.drain()) == []
    view.feed(link(ETH1))
    assert route_adds(view.drain()) == [uni("10.5.0.0/16", (1, "10.0.1.2", 1))]


# --- neighbours -------------------------------------------------------------------


def test_neighbour_state_transitions():
    view = base_view()
    mac = "02:00:00:00:01:02"
    n = Neighbour(vm_port=1, address="10.0.1.2", hwaddress=mac)
    view.feed(neigh("10.0.1.2", state=NUD_INCOMPLETE))
    assert view.drain() == []
    view.feed(neigh("10.0.1.2", mac, state=NUD_REACHABLE))
    assert view.drain() == [NeighbourMod(mod=Mod.ADD, vm_id=VM, neighbours=[n])]
    view.feed(neigh("10.0.1.2", mac, state=NUD_STALE))
    view.feed(neigh("10.0.1.2", mac, state=NUD_REACHABLE))
    assert view.drain() == []
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:03", state=NUD_STALE))
    assert neigh_adds(view.drain()) == [
        Neighbour(vm_port=1, address="10.0.1.2", hwaddress="02:00:00:00:01:03")
    ]
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:03", state=NUD_FAILED))
    assert view.drain() == [
        NeighbourMod(
            mod=Mod.DELETE, vm_id=VM, neighbours=[Neighbour(vm_port=1, address="10.0.1.2")]
        )
    ]
    view.feed(neigh("10.0.1.2", mac, state=NUD_PERMANENT))
    view.drain()
    view.feed(neigh("10.0.1.2", mac, delete=True))
    assert neigh_dels(view.drain()) == [(1, "10.0.1.2")]


@pytest.mark.parametrize(
    "msg",
    [
        neigh("192.168.0.1", "02:00:00:00:09:09", ifindex=MGMT),
        neigh("224.0.0.5", "01:00:5e:00:00:05", state=NUD_NOARP),
        neigh("10.0.1.9", "02:00:00:00:09:09", flags=0x08),  # NTF_PROXY
    ],
)
def test_neighbours_that_are_not_next_hops_are_ignored(msg):
    view = base_view()
    view.feed(msg)
    assert view.drain() == []


def test_unresolved_gateways():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(route("10.6.0.0/16", "10.0.1.2", ETH1))
    view.feed(route("10.7.0.0/24", multipath=[(ETH1, "10.0.1.3", 1), (ETH2, "10.0.2.2", 1)]))
    view.feed(route("10.0.1.0/24", oif=ETH1))
    assert view.unresolved_gateways() == {(1, "10.0.1.2"), (1, "10.0.1.3"), (2, "10.0.2.2")}
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    view.feed(neigh("10.0.2.2", "02:00:00:00:02:02", ifindex=ETH2, state=NUD_STALE))
    assert view.unresolved_gateways() == {(1, "10.0.1.3")}
    view.feed(route("10.7.0.0/24", delete=True, multipath=[(ETH1, "10.0.1.3", 1)]))
    assert view.unresolved_gateways() == set()


# --- coalescing and snapshots -------------------------------------------------------


def test_add_then_delete_in_one_batch_cancels_out():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1, delete=True))
    view.feed(neigh("10.0.1.2", delete=True))
    assert view.drain() == []


def test_delete_then_readd_of_a_known_route_is_no_change():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.drain()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1, delete=True))
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    assert view.drain() == []


def test_a_burst_becomes_one_message_per_kind():
    view = base_view()
    for i in range(200):
        view.feed(route(f"10.{i}.0.0/16", "10.0.1.2", ETH1))
    view.drain()
    for i in range(100):
        view.feed(route(f"10.{i}.0.0/16", "10.0.1.2", ETH1, delete=True))
    for i in range(100, 150):
        view.feed(route(f"10.{i}.0.0/16", "10.0.2.2", ETH2))
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    msgs = view.drain()
    assert [(type(m).__name__, m.mod) for m in msgs] == [
        ("NeighbourMod", Mod.ADD),
        ("RouteMod", Mod.DELETE),
        ("RouteMod", Mod.ADD),
    ]
    assert len(msgs[1].routes) == 100
    assert len(msgs[2].routes) == 50


def test_batches_are_split_at_max_batch():
    view = base_view()
    for i in range(25):
        view.feed(route(f"10.{i}.0.0/16", "10.0.1.2", ETH1))
    msgs = view.drain(max_batch=10)
    assert [len(m.routes) for m in msgs] == [10, 10, 5]
    assert len(view.snapshot(max_batch=10)) == 2 + 1 + 3


def test_snapshot_is_the_full_state_and_drops_pending_deltas():
    view = base_view()
    view.feed(route("10.0.1.0/24", oif=ETH1))
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    snap = view.snapshot()
    assert snap == [
        PortRegister(vm_id=VM, vm_port=1, hwaddress=MACS[ETH1], ifname="eth1"),
        PortRegister(vm_id=VM, vm_port=2, hwaddress=MACS[ETH2], ifname="eth2"),
        NeighbourMod(
            mod=Mod.ADD,
            vm_id=VM,
            neighbours=[Neighbour(vm_port=1, address="10.0.1.2", hwaddress="02:00:00:00:01:02")],
        ),
        RouteMod(
            mod=Mod.ADD,
            vm_id=VM,
            routes=[
                Route(
                    prefix="10.0.1.0/24", kind=RouteKind.CONNECTED, nexthops=[NextHop(vm_port=1)]
                ),
                uni("10.5.0.0/16", (1, "10.0.1.2", 1)),
            ],
        ),
    ]
    assert view.drain() == []
    assert view.snapshot() == snap


def test_snapshot_of_an_empty_view_still_has_both_mods():
    assert KernelView(VM).snapshot() == [
        NeighbourMod(mod=Mod.ADD, vm_id=VM, neighbours=[]),
        RouteMod(mod=Mod.ADD, vm_id=VM, routes=[]),
    ]


def test_reset_reports_the_difference_from_the_previous_state():
    view = base_view()
    view.feed(route("10.5.0.0/16", "10.0.1.2", ETH1))
    view.feed(route("10.6.0.0/16", "10.0.1.2", ETH1))
    view.feed(neigh("10.0.1.2", "02:00:00:00:01:02"))
    view.drain()
    dump = [link(i) for i in (LO, ETH1, ETH2)]
    dump += [route("10.6.0.0/16", "10.0.1.2", ETH1), route("10.7.0.0/16", "10.0.2.2", ETH2)]
    view.reset(dump)
    msgs = view.drain()
    assert route_dels(msgs) == ["10.5.0.0/16"]
    assert route_adds(msgs) == [uni("10.7.0.0/16", (2, "10.0.2.2", 1))]
    assert neigh_dels(msgs) == [(1, "10.0.1.2")]
    assert not any(isinstance(m, PortRegister) for m in msgs)


# --- properties -------------------------------------------------------------------

PREFIXES = [f"10.{i}.0.0/16" for i in range(6)]
GATEWAYS = {ETH1: ["10.0.1.2", "10.0.1.3"], ETH2: ["10.0.2.2"], MGMT: ["192.168.0.1"]}
hop = st.sampled_from([(o, g) for o, gws in GATEWAYS.items() for g in gws])

route_op = st.builds(
    lambda prefix, prio, how, h, h2, w, nhid: (
        "route",
        prefix,
        prio,
        {
            "single": lambda: route(prefix, h[1], h[0], priority=prio),
            "connected": lambda: route(prefix, oif=h[0], priority=prio),
            "multipath": lambda: route(
                prefix, priority=prio, multipath=[(h[0], h[1], w), (h2[0], h2[1], 1)]
            ),
            "nhid": lambda: route(prefix, priority=prio, nhid=nhid),
        }[how](),
    ),
    st.sampled_from(PREFIXES),
    st.sampled_from([0, 0, 20]),
    st.sampled_from(["single", "connected", "multipath", "nhid"]),
    hop,
    hop,
    st.integers(1, 3),
    st.sampled_from([10, 11, 12]),
)
delete_op = st.builds(
    lambda prefix, prio: ("delete", prefix, prio, route(prefix, priority=prio, delete=True)),
    st.sampled_from(PREFIXES),
    st.sampled_from([0, 0, 20]),
)
nexthop_op = st.one_of(
    st.builds(
        lambda i, h: ("nexthop", i, None, nexthop(i, h[1], h[0])),
        st.sampled_from([10, 11]),
        hop,
    ),
    st.builds(
        lambda members: ("nexthop", 12, None, nexthop(12, group=tuple(members))),
        st.lists(
            st.tuples(st.sampled_from([10, 11]), st.integers(1, 3)),
            min_size=1,
            max_size=2,
            unique_by=lambda m: m[0],
        ),
    ),
)
ops = st.lists(
    st.one_of(
        route_op,
        delete_op,
        nexthop_op,
        st.just(("drain", None, None, None)),
        st.just(("reconnect", None, None, None)),
    ),
    max_size=60,
)


def apply_to_server(server: dict[str, Route], msgs, *, strict: bool) -> None:
    for m in msgs:
        if not isinstance(m, RouteMod):
            continue
        for r in m.routes:
            if m.mod == Mod.ADD:
                if strict:  # coalesced deltas never repeat what the server has
                    assert server.get(r.prefix) != r
                server[r.prefix] = r
            else:
                if strict:
                    assert r.prefix in server
                del server[r.prefix]


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 4))
def test_deltas_drained_anywhere_rebuild_the_kernel_routes(operations, max_batch):
    view = base_view()
    server: dict[str, Route] = {}
    kernel_routes: dict[tuple[str, int], object] = {}
    kernel_nexthops: dict[int, object] = {}
    for kind, key, prio, msg in operations:
        if kind == "drain":
            apply_to_server(server, view.drain(max_batch=max_batch), strict=True)
            continue
        if kind == "reconnect":
            server = {}
            apply_to_server(server, view.snapshot(max_batch=max_batch), strict=False)
            continue
        view.feed(msg)
        if kind == "route":
            kernel_routes[(key, prio)] = msg
        elif kind == "delete":
            kernel_routes.pop((key, prio), None)
        else:
            kernel_nexthops[key] = msg
    apply_to_server(server, view.drain(max_batch=max_batch), strict=True)
    assert server == view.routes
    # Nothing lost, nothing stale: the same as loading the final kernel state at once.
    fresh = KernelView(VM)
    fresh.feed_many(link(i) for i in (LO, ETH1, ETH2, MGMT))
    fresh.feed_many(kernel_nexthops.values())
    fresh.feed_many(kernel_routes.values())
    assert server == fresh.routes


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PREFIXES),
            st.one_of(st.none(), hop),  # None: delete
            st.booleans(),  # drain afterwards
        ),
        max_size=40,
    )
)
def test_single_table_routes_match_a_plain_dict_model(steps):
    view = base_view()
    server: dict[str, Route] = {}
    model: dict[str, tuple[int, str]] = {}
    for prefix, h, drain in steps:
        if h is None:
            view.feed(route(prefix, delete=True))
            model.pop(prefix, None)
        else:
            view.feed(route(prefix, h[1], h[0]))
            model[prefix] = h
        if drain:
            apply_to_server(server, view.drain(), strict=True)
    apply_to_server(server, view.drain(), strict=True)
    expected = {p: uni(p, (vm_port_of(NAMES[o]), g, 1)) for p, (o, g) in model.items() if o != MGMT}
    assert server == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["10.0.1.2", "10.0.1.3"]),
            st.sampled_from([ETH1, ETH2]),
            st.sampled_from([None, "02:00:00:00:00:0a", "02:00:00:00:00:0b"]),
            st.sampled_from([NUD_REACHABLE, NUD_STALE, NUD_FAILED, NUD_PERMANENT]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_neighbour_deltas_rebuild_the_kernel_table(steps):
    view = base_view()
    server: dict[tuple[int, str], str] = {}
    kernel: dict[tuple[int, str], str] = {}
    for ip, ifindex, mac, state, drain in steps:
        view.feed(neigh(ip, mac, ifindex, state=state, delete=mac is None))
        if mac is None or state == NUD_FAILED:
            kernel.pop((ifindex, ip), None)
        else:
            kernel[(ifindex, ip)] = mac
        if drain:
            for m in view.drain():
                for n in m.neighbours:
                    key = (n.vm_port, n.address)
                    if m.mod == Mod.ADD:
                        assert server.get(key) != n.hwaddress
                        server[key] = n.hwaddress
                    else:
                        del server[key]
    for m in view.drain():
        for n in m.neighbours:
            if m.mod == Mod.ADD:
                server[(n.vm_port, n.address)] = n.hwaddress
            else:
                del server[(n.vm_port, n.address)]
    assert server == {(vm_port_of(NAMES[i]), ip): mac for (i, ip), mac in kernel.items()}

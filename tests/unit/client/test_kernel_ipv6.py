"""KernelView with IPv6: real pyroute2 messages as the kernel (Linux 6.18) sends them.

The kernel behaviours encoded here were observed with ``ip monitor`` in a
network namespace (see the module doc of kernel.py); the component test
tests/component/client/test_netlink_ipv6.py checks them against the kernel.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from routeflow.client.kernel import NUD_NOARP, NUD_REACHABLE, KernelView
from routeflow.client.netlink import nhmsg, rtmsg_nh
from routeflow.rflib.protocol import Neighbour, NextHop, Route, RouteKind

from .test_kernel import (
    ETH1,
    ETH2,
    LO,
    MACS,
    MGMT,
    NAMES,
    VM,
    _parsed,
    apply_to_server,
    base_view,
    cached,
    link,
    neigh_adds,
    neigh_dels,
    route,
    route_adds,
    route_dels,
    uni,
)

NLM_F_REPLACE = 0x100
LL1 = "fe80::1"  # a neighbour's link-local address, on either link
LL2 = "fe80::2"


@cached
def route6(
    prefix,
    gw=None,
    oif=ETH1,
    *,
    table=254,
    rtype=1,
    metric=1024,
    multipath=None,
    nhid=None,
    delete=False,
    replace=False,
):
    """An IPv6 route message; ``multipath`` hops are (oif, gateway, weight)."""
    dst, plen = prefix.split("/")
    m = rtmsg_nh()
    m["family"] = 10
    m["dst_len"] = int(plen)
    m["table"] = table
    m["type"] = rtype
    if replace:
        m["header"]["flags"] = NLM_F_REPLACE
    attrs = [("RTA_TABLE", table), ("RTA_DST", dst), ("RTA_PRIORITY", metric)]
    if nhid is not None:
        attrs.append(("RTA_NH_ID", nhid))
    if multipath is not None:
        hops = [{"oif": o, "hops": w - 1, "attrs": [("RTA_GATEWAY", g)]} for o, g, w in multipath]
        attrs.append(("RTA_MULTIPATH", hops))
    else:
        attrs.append(("RTA_OIF", oif))
        if gw is not None:
            attrs.append(("RTA_GATEWAY", gw))
    m["attrs"] = attrs
    return _parsed(m, 25 if delete else 24)


def local6(addr, oif=ETH1, *, delete=False):
    return route6(f"{addr}/128", oif=oif, table=255, rtype=2, metric=0, delete=delete)


@cached
def neigh6(ip, mac=None, ifindex=ETH1, *, state=NUD_REACHABLE, delete=False):
    m = ndmsg()
    m["family"] = 10
    m["ifindex"] = ifindex
    m["state"] = state
    attrs = [("NDA_DST", ip)]
    if mac is not None:
        attrs.append(("NDA_LLADDR", mac))
    m["attrs"] = attrs
    return _parsed(m, 29 if delete else 28)


@cached
def nexthop6(nhid, gw, oif=ETH1):
    m = nhmsg()
    m["family"] = 10
    m["attrs"] = [("NHA_ID", nhid), ("NHA_OIF", oif), ("NHA_GATEWAY", gw)]
    return _parsed(m, 104)


def carrier_lost(index):
    m = ifinfmsg()
    m["index"] = index
    m["flags"] = 0x1  # IFF_UP, no carrier
    m["attrs"] = [("IFLA_IFNAME", NAMES[index]), ("IFLA_ADDRESS", MACS[index])]
    return _parsed(m, 16)


def connected(prefix, port):
    return Route(prefix=prefix, kind=RouteKind.CONNECTED, nexthops=[NextHop(vm_port=port)])


def local(addr, port):
    return Route(prefix=f"{addr}/128", kind=RouteKind.LOCAL, nexthops=[NextHop(vm_port=port)])


# --- what is reported -------------------------------------------------------------


def test_connected_local_and_link_local_gateway_routes():
    view = base_view()
    view.feed_many(
        [
            route6("2001:db8:1::/64", oif=ETH1, metric=256),
            route6("fe80::/64", oif=ETH1, metric=256),  # on every link: never a route
            local6("2001:db8:1::1"),
            local6("fe80::200:ff:fe00:1"),  # link-local addresses are LOCAL too
            local6("::1", oif=LO),
            route6("2001:db8:1::/128", oif=ETH1, table=255, rtype=4, metric=0),  # anycast
            route6("ff00::/8", oif=ETH1, table=255, rtype=5, metric=256),  # multicast
            route6("ff02::/16", oif=ETH1),  # a unicast route to multicast space
            route6("2001:db8:10::/48", LL1, ETH1),
            route6("::/0", LL2, ETH2),
            route6("2001:db8:30::/48", LL1, MGMT),  # not a VM port
            route6("2001:db8:40::/48", rtype=6),  # prohibit
        ]
    )
    assert view.routes == {
        "2001:db8:1::/64": connected("2001:db8:1::/64", 1),
        "2001:db8:1::1/128": local("2001:db8:1::1", 1),
        "fe80::200:ff:fe00:1/128": local("fe80::200:ff:fe00:1", 1),
        "2001:db8:10::/48": uni("2001:db8:10::/48", (1, LL1, 1)),
        "::/0": uni("::/0", (2, LL2, 1)),
    }
    assert view.unresolved_gateways() == {(1, LL1), (2, LL2)}


def test_addresses_are_reported_in_the_contracts_canonical_text():
    view = base_view()
    # pyroute2 hands over inet_ntop's text, which writes embedded IPv4.
    view.feed(route6("::ffff:10.0.0.0/104", "::ffff:10.0.0.1", ETH1))
    view.feed(
        {"event": "RTM_NEWROUTE", "family": 10, "dst_len": 48, "table": 254, "type": 1}
        | {"RTA_DST": "2001:DB8:0:0::", "RTA_OIF": ETH1, "RTA_GATEWAY": "FE80:0::1"}
    )
    assert view.routes == {
        "::ffff:a00:0/104": uni("::ffff:a00:0/104", (1, "::ffff:a00:1", 1)),
        "2001:db8::/48": uni("2001:db8::/48", (1, LL1, 1)),
    }


def test_ipv4_routes_through_ipv6_gateways_go_through_the_ipv6_neighbour():
    """RFC 5549 (BGP unnumbered): the IPv6 neighbour is the IPv4 route's next hop."""
    view = base_view()
    view.feed(route("10.5.0.0/16", multipath=[(ETH1, "10.0.1.2", 1)]))
    view.feed(nexthop6(7, LL1, ETH2))
    view.feed(route("10.6.0.0/16", nhid=7))  # RFC 5549 through an IPv6 nexthop object
    view.feed(route6("2001:db8:6::/48", nhid=7))
    assert view.routes == {
        "10.5.0.0/16": uni("10.5.0.0/16", (1, "10.0.1.2", 1)),
        "10.6.0.0/16": uni("10.6.0.0/16", (2, LL1, 1)),
        "2001:db8:6::/48": uni("2001:db8:6::/48", (2, LL1, 1)),
    }
    assert view.take_refusals() == {}


def test_neighbours_link_local_and_global_but_not_multicast():
    view = base_view()
    view.feed_many(
        [
            neigh6(LL1, "02:00:00:00:01:01", ETH1),
            neigh6(LL1, "02:00:00:00:02:01", ETH2),  # the same address on another link
            neigh6("2001:db8:1::2", "02:00:00:00:01:02", ETH1),
            neigh6("ff02::16", "33:33:00:00:00:16", ETH1, state=NUD_NOARP),
            neigh6("fe80::9", "02:00:00:00:09:09", MGMT),
        ]
    )
    assert sorted(view.neighbours) == [(1, "2001:db8:1::2"), (1, LL1), (2, LL1)]
    view.drain()
    view.feed(neigh6(LL1, ifindex=ETH1, delete=True))
    msgs = view.drain()
    assert neigh_dels(msgs) == [(1, LL1)]
    assert neigh_adds(msgs) == []
    assert view.neighbours[(2, LL1)] == Neighbour(
        vm_port=2, address=LL1, hwaddress="02:00:00:00:02:01"
    )


# --- the IPv6 FIB's own rules -----------------------------------------------------


def test_ecmp_append_sends_the_whole_route_and_delete_names_one_hop():
    view = base_view()
    view.feed(route6("2001:db8:20::/48", LL1, ETH1))
    # ip -6 route append ... via fe80::2 dev eth2 weight 3: the whole route comes.
    view.feed(route6("2001:db8:20::/48", multipath=[(ETH1, LL1, 1), (ETH2, LL2, 3)]))
    assert view.routes["2001:db8:20::/48"] == uni("2001:db8:20::/48", (1, LL1, 1), (2, LL2, 3))
    view.drain()
    # ip -6 route del ... via fe80::1 dev eth1: a message naming only that hop.
    view.feed(route6("2001:db8:20::/48", LL1, ETH1, delete=True))
    # A dump now shows the lone hop without a weight.
    assert route_adds(view.drain()) == [uni("2001:db8:20::/48", (2, LL2, 1))]
    # A hop the route does not have changes nothing.
    view.feed(route6("2001:db8:20::/48", LL1, ETH1, delete=True))
    assert view.drain() == []
    view.feed(route6("2001:db8:20::/48", LL2, ETH2, delete=True))
    assert route_dels(view.drain()) == ["2001:db8:20::/48"]


def test_deleting_the_whole_ecmp_route():
    view = base_view()
    hops = [(ETH1, LL1, 1), (ETH2, LL2, 1)]
    view.feed(route6("2001:db8:20::/48", multipath=hops))
    view.drain()
    view.feed(route6("2001:db8:20::/48", multipath=list(reversed(hops)), delete=True))
    assert route_dels(view.drain()) == ["2001:db8:20::/48"]
    assert view.routes == {}


def test_routes_without_gateway_on_two_devices_coexist():
    view = base_view()
    view.feed(route6("2001:db8:9::/64", oif=ETH1, metric=256))
    view.feed(route6("2001:db8:9::/64", oif=ETH2, metric=256))
    assert view.routes["2001:db8:9::/64"] == connected("2001:db8:9::/64", 1)
    view.drain()
    view.feed(route6("2001:db8:9::/64", oif=ETH1, metric=256, delete=True))
    assert route_adds(view.drain()) == [connected("2001:db8:9::/64", 2)]
    # A route with a gateway is a third one (the ECMP slot), deleted on its own.
    view.feed(route6("2001:db8:9::/64", LL1, ETH1, metric=256))
    assert route_adds(view.drain()) == [uni("2001:db8:9::/64", (1, LL1, 1))]
    view.feed(route6("2001:db8:9::/64", LL1, ETH1, metric=256, delete=True))
    assert route_adds(view.drain()) == [connected("2001:db8:9::/64", 2)]


def test_replace_takes_the_place_of_the_route_the_kernel_replaced():
    view = base_view()
    view.feed(nexthop6(7, LL1, ETH1))
    view.feed(route6("2001:db8:a1::/64", oif=ETH1))
    # ip -6 route replace ... nhid 7: a nexthop-object route is no ECMP route, so
    # it replaces the route without a gateway.
    view.feed(route6("2001:db8:a1::/64", nhid=7, replace=True))
    view.feed(route6("2001:db8:a1::/64", nhid=7, delete=True))
    assert "2001:db8:a1::/64" not in view.routes
    # With none of its kind, a replace takes the first route of the metric.
    view.feed(route6("2001:db8:a2::/64", oif=ETH1))
    view.feed(route6("2001:db8:a2::/64", LL2, ETH2, replace=True))
    view.feed(route6("2001:db8:a2::/64", LL2, ETH2, delete=True))
    assert "2001:db8:a2::/64" not in view.routes
    # Other metrics are other routes.
    view.feed(route6("2001:db8:a3::/64", oif=ETH1, metric=10))
    view.feed(route6("2001:db8:a3::/64", LL2, ETH2, replace=True))
    assert view.routes["2001:db8:a3::/64"] == connected("2001:db8:a3::/64", 1)
    assert not view.take_reconcile_hint()


def test_ambiguous_replace_asks_for_a_dump():
    view = base_view()
    view.feed(route6("2001:db8:a1::/64", oif=ETH1))
    view.feed(route6("2001:db8:a1::/64", oif=ETH2))
    view.take_reconcile_hint()
    # The kernel replaced the first of the two, which the view cannot know.
    view.feed(route6("2001:db8:a1::/64", oif=ETH2, replace=True))
    assert view.take_reconcile_hint()


def test_replace_with_an_unwanted_type_withdraws_and_a_plain_add_does_not():
    view = base_view()
    view.feed(route6("2001:db8:b::/64", LL1, ETH1))
    view.feed(route6("2001:db8:b::/64", oif=LO, rtype=6))  # prohibit, appended
    assert "2001:db8:b::/64" in view.routes
    view.feed(route6("2001:db8:b::/64", oif=LO, rtype=6, replace=True))
    assert "2001:db8:b::/64" not in view.routes


# --- links ------------------------------------------------------------------------


def test_link_down_flushes_ipv6_routes_even_without_notifications():
    # net.ipv6.route.skip_notify_on_dev_down=1: the kernel deletes silently.
    view = base_view()
    view.feed_many(
        [
            route("10.0.1.1/32", oif=ETH1, table=255, rtype=2),
            route6("2001:db8:1::/64", oif=ETH1, metric=256),
            local6("2001:db8:1::1"),
            local6("fe80::200:ff:fe00:1"),
            route6("2001:db8:10::/48", LL1, ETH1),
            route6("2001:db8:30::/48", multipath=[(ETH1, LL1, 1), (ETH2, LL2, 1)]),
            nexthop6(7, LL1, ETH1),
            route6("2001:db8:7::/48", nhid=7),
            neigh6(LL1, "02:00:00:00:01:01", ETH1),
        ]
    )
    view.drain()
    view.feed(link(ETH1, up=False))
    msgs = view.drain()
    assert sorted(route_dels(msgs)) == [
        "2001:db8:10::/48",
        "2001:db8:1::/64",
        "2001:db8:1::1/128",
        "2001:db8:7::/48",
        "fe80::200:ff:fe00:1/128",
    ]
    assert route_adds(msgs) == [uni("2001:db8:30::/48", (2, LL2, 1))]
    assert neigh_dels(msgs) == [(1, LL1)]
    assert "10.0.1.1/32" in view.routes  # IPv4 local addresses stay
    # By default the kernel also says so: nothing more changes.
    view.feed_many(
        [
            route6("2001:db8:1::/64", oif=ETH1, metric=256, delete=True),
            local6("2001:db8:1::1", delete=True),
            route6("2001:db8:10::/48", LL1, ETH1, delete=True),
            route6("2001:db8:7::/48", nhid=7, delete=True),
            neigh6(LL1, ifindex=ETH1, delete=True),
        ]
    )
    assert view.drain() == []
    # Up again: the dead ECMP hop revives silently; addresses come back by netlink.
    view.feed(link(ETH1))
    assert route_adds(view.drain()) == [
        uni("2001:db8:30::/48", (1, LL1, 1), (2, LL2, 1)),
    ]


def test_carrier_loss_keeps_ipv6_routes():
    view = base_view()
    view.feed(route6("2001:db8:1::/64", oif=ETH1, metric=256))
    view.feed(route6("2001:db8:10::/48", LL1, ETH1))
    view.feed(local6("2001:db8:1::1"))
    before = view.routes
    view.feed(carrier_lost(ETH1))
    assert view.routes == before


def test_replayed_ipv6_notifications_for_a_down_link():
    view = base_view()
    view.feed(link(ETH1, up=False))
    # The kernel refuses routes on a down link: a stale notification.
    view.feed(route6("2001:db8:10::/48", LL1, ETH1))
    # ...but installs the local route of an address added without DAD.
    view.feed(local6("2001:db8:1::1"))
    assert list(view.routes) == ["2001:db8:1::1/128"]


# --- properties -------------------------------------------------------------------

PREFIXES6 = ["2001:db8:1::/64", "::/0"]
HOPS6 = [(ETH1, LL1), (ETH1, LL2), (ETH2, LL1), (MGMT, LL2)]


class KernelModel:
    """The kernel's IPv6 FIB as observed: per (prefix, metric) one ECMP route
    (hops with a gateway) and routes without one, one per device."""

    def __init__(self) -> None:
        self.down: set[int] = set()
        self.ecmp: dict[tuple[str, int], dict[tuple[int, str], int]] = {}
        self.plain: dict[tuple[str, int], list[int]] = {}
        self.local: dict[str, int] = {}

    def ecmp_msg(self, key, *, delete=False, hops=None):
        hops = self.ecmp[key] if hops is None else hops
        prefix, metric = key
        if len(hops) == 1:
            ((oif, gw),) = hops
            return route6(prefix, gw, oif, metric=metric, delete=delete)
        mp = [(o, g, w) for (o, g), w in hops.items()]
        return route6(prefix, metric=metric, multipath=mp, delete=delete)

    def dump(self) -> list:
        out = [link(i, up=i not in self.down) for i in (LO, ETH1, ETH2, MGMT)]
        out += [self.ecmp_msg(k) for k in self.ecmp]
        out += [route6(p, oif=o, metric=m) for (p, m), oifs in self.plain.items() for o in oifs]
        out += [local6(a, oif=o) for a, o in self.local.items()]
        return out

    def link_down(self, oif, notify) -> list:
        self.down.add(oif)
        out = [link(oif, up=False)]
        for key, hops in list(self.ecmp.items()):
            if all(o in self.down for o, _g in hops):
                out.append(self.ecmp_msg(key, delete=True))
                del self.ecmp[key]
        for (prefix, metric), oifs in list(self.plain.items()):
            if oif in oifs:
                oifs.remove(oif)
                out.append(route6(prefix, oif=oif, metric=metric, delete=True))
                if not oifs:
                    del self.plain[(prefix, metric)]
        for addr, o in list(self.local.items()):
            if o == oif:
                del self.local[addr]
                out.append(local6(addr, oif=oif, delete=True))
        return out if notify else out[:1]


def _step(model: KernelModel, op) -> list:
    """What the kernel sends for one operation (nothing if it refuses it)."""
    kind, prefix, metric, arg = op
    key = (prefix, metric)
    if kind == "append":
        (oif, gw), weight = arg
        hops = model.ecmp.setdefault(key, {})
        if oif in model.down or (oif, gw) in hops:
            if not hops:
                del model.ecmp[key]
            return []
        hops[(oif, gw)] = weight
        return [model.ecmp_msg(key)]
    if kind == "delhop":  # arg: which of the route's hops
        hops = model.ecmp.get(key, {})
        if not hops:
            return []
        hop = list(hops)[arg % len(hops)]
        del hops[hop]
        if not hops:
            del model.ecmp[key]
        return [route6(prefix, hop[1], hop[0], metric=metric, delete=True)]
    if kind == "delall":
        if key not in model.ecmp:
            return []
        msg = model.ecmp_msg(key, delete=True)
        del model.ecmp[key]
        return [msg]
    if kind == "plain":
        oifs = model.plain.setdefault(key, [])
        if arg in model.down or arg in oifs:
            if not oifs:
                del model.plain[key]
            return []
        oifs.append(arg)
        return [route6(prefix, oif=arg, metric=metric)]
    if kind == "unplain":
        oifs = model.plain.get(key, [])
        if arg not in oifs:
            return []
        oifs.remove(arg)
        if not oifs:
            del model.plain[key]
        return [route6(prefix, oif=arg, metric=metric, delete=True)]
    if kind == "replace":  # by an ECMP route of one hop, when unambiguous
        (oif, gw), weight = arg
        if oif in model.down:
            return []
        if key not in model.ecmp:
            plain = model.plain.get(key, [])
            if len(plain) > 1:
                return []  # the view could only guess (and asks for a dump)
            if plain:
                del model.plain[key]
        model.ecmp[key] = {(oif, gw): weight}
        return [route6(prefix, gw, oif, metric=metric, replace=True)]
    if kind == "local":
        addr, oif = arg
        if addr in model.local:
            return []
        model.local[addr] = oif  # with nodad, even on a down link
        return [local6(addr, oif=oif)]
    if kind == "down":
        return [] if arg[0] in model.down else model.link_down(arg[0], notify=arg[1])
    model.down.discard(arg)
    return [link(arg)]


hops6 = st.tuples(st.sampled_from(HOPS6), st.integers(1, 3))
ops6 = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["append", "append", "replace"]),
            st.sampled_from(PREFIXES6),
            st.sampled_from([1024, 1024, 20]),
            hops6,
        ),
        st.tuples(
            st.just("delhop"),
            st.sampled_from(PREFIXES6),
            st.sampled_from([1024, 1024, 20]),
            st.integers(0, 3),
        ),
        st.tuples(
            st.just("delall"),
            st.sampled_from(PREFIXES6),
            st.sampled_from([1024, 1024, 20]),
            st.none(),
        ),
        st.tuples(
            st.sampled_from(["plain", "unplain"]),
            st.sampled_from(PREFIXES6),
            st.sampled_from([1024, 1024, 20]),
            st.sampled_from([ETH1, ETH2]),
        ),
        st.tuples(
            st.just("local"),
            st.none(),
            st.none(),
            st.tuples(
                st.sampled_from(["2001:db8:1::1", "fe80::1:1"]), st.sampled_from([ETH1, ETH2])
            ),
        ),
        st.tuples(st.just("down"), st.none(), st.none(), st.tuples(st.just(ETH1), st.booleans())),
        st.tuples(st.just("up"), st.none(), st.none(), st.just(ETH1)),
        st.tuples(st.just("drain"), st.none(), st.none(), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops6)
def test_ipv6_view_always_equals_a_fresh_dump(operations):
    """Whatever the order of route changes and link flaps, with or without the
    kernel's notifications of the routes a link takes down, the deltas
    rebuild exactly what a fresh dump of the final kernel gives."""
    model = KernelModel()
    view = KernelView(VM)
    view.feed_many(model.dump())
    server: dict[str, Route] = {}
    apply_to_server(server, view.snapshot(), strict=False)
    for op in operations:
        if op[0] == "drain":
            apply_to_server(server, view.drain(), strict=True)
            continue
        view.feed_many(_step(model, op))
    apply_to_server(server, view.drain(), strict=True)
    fresh = KernelView(VM)
    fresh.feed_many(model.dump())
    assert view.routes == fresh.routes
    assert server == fresh.routes

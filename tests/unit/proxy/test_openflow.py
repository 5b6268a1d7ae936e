"""The pure pipeline: what each intent becomes on the switch."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from routeflow.proxy import openflow as of
from routeflow.rflib.protocol import Bucket, FibEntry, Mod, NextHopMod, RouteKind

MAC = "02:00:00:00:00:01"


def test_router_port_admits_only_its_mac_and_punts_control():
    flows = of.router_port_flows(3, MAC.upper())
    admit = [f for f in flows if f.actions == (of.Goto(of.TABLE_FIB),)]
    assert len(admit) == 1
    assert dict(admit[0].match) == {"in_port": 3, "eth_dst": MAC}
    punts = [f for f in flows if f.actions == (of.ToController(),)]
    assert all(f.priority > admit[0].priority for f in punts)
    # ARP is punted only when addressed to the router's MAC (replies), never broadcast.
    arp = [f for f in punts if dict(f.match).get("eth_type") == of.ETH_TYPE_ARP]
    assert [dict(f.match)["eth_dst"] for f in arp] == [MAC]


def test_longer_prefix_wins_and_local_beats_routes():
    p8 = of.fib_flows(FibEntry(prefix="10.0.0.0/8", kind=RouteKind.UNICAST, nexthop_id=1))[0]
    p24 = of.fib_flows(FibEntry(prefix="10.1.2.0/24", kind=RouteKind.UNICAST, nexthop_id=2))[0]
    p32 = of.fib_flows(FibEntry(prefix="10.1.2.3/32", kind=RouteKind.UNICAST, nexthop_id=3))[0]
    local = of.fib_flows(FibEntry(prefix="10.1.2.4/32", kind=RouteKind.LOCAL, dp_port=1))
    assert p8.priority < p24.priority < p32.priority < local[0].priority
    assert p24.actions == (of.Group(of.route_group(2, "10.1.2.0/24")),)
    assert dict(p24.match)["ipv4_dst"] == ("10.1.2.0", "255.255.255.0")
    assert dict(p32.match)["ipv4_dst"] == "10.1.2.3"


def test_local_address_answers_arp_only_on_its_port():
    flows = of.fib_flows(FibEntry(prefix="172.31.1.1/32", kind=RouteKind.LOCAL, dp_port=4))
    arp = [f for f in flows if f.table == of.TABLE_CLASSIFIER]
    assert len(arp) == 1
    assert dict(arp[0].match) == {
        "in_port": 4,
        "eth_type": of.ETH_TYPE_ARP,
        "arp_tpa": "172.31.1.1",
    }


def test_groups_indirect_select_and_unresolved():
    b1 = Bucket(dp_port=1, src_hwaddress=MAC, dst_hwaddress="AA:BB:CC:DD:EE:FF")
    b2 = Bucket(dp_port=2, src_hwaddress=MAC, dst_hwaddress="aa:bb:cc:dd:ee:00", weight=2)
    one = of.nexthop_group(NextHopMod(mod=Mod.ADD, ct_id=1, dp_id=1, nexthop_id=7, buckets=[b1]))
    assert not one.select
    assert one.buckets[0][0] == (
        of.SetEthSrc(MAC),
        of.SetEthDst("aa:bb:cc:dd:ee:ff"),
        of.DecTtl(),
        of.Output(1),
    )
    two = of.nexthop_group(
        NextHopMod(mod=Mod.ADD, ct_id=1, dp_id=1, nexthop_id=8, buckets=[b1, b2])
    )
    assert two.select and [w for _a, w in two.buckets] == [1, 2]
    none = of.nexthop_group(NextHopMod(mod=Mod.ADD, ct_id=1, dp_id=1, nexthop_id=9))
    assert none.buckets == (((of.ToController(),), 1),)


def test_cookies_carry_kind():
    for f in of.base_flows():
        assert f.cookie & of.COOKIE_MASK_KIND == of.cookie(of.Kind.BASE)


# --- IPv6 -------------------------------------------------------------------------------------


def _old_ipv4_fib_flows(entry: FibEntry) -> list[of.FlowSpec]:
    """fib_flows as it was before IPv6 (verbatim logic): IPv4 must not change at all."""
    net = ipaddress.IPv4Network(entry.prefix, strict=False)
    if net.prefixlen == 0:
        match: tuple = (("eth_type", 0x0800),)
    elif net.prefixlen == 32:
        match = (("eth_type", 0x0800), ("ipv4_dst", str(net.network_address)))
    else:
        match = (("eth_type", 0x0800), ("ipv4_dst", (str(net.network_address), str(net.netmask))))
    if entry.kind == RouteKind.LOCAL:
        c = of.cookie(of.Kind.LOCAL, entry.dp_port)
        arp = (("in_port", entry.dp_port), ("eth_type", 0x0806), ("arp_tpa", str(net[0])))
        return [
            of.FlowSpec(1, 2000, match, (of.ToController(),), c),
            of.FlowSpec(0, 310, arp, (of.ToController(),), c),
        ]
    # Since then: a route applies its next hop's shard for the prefix (GROUP_SHARDS).
    group = of.Group(of.route_group(entry.nexthop_id, entry.prefix))
    action = of.ToController() if entry.kind == RouteKind.CONNECTED else group
    return [of.FlowSpec(1, 1000 + net.prefixlen, match, (action,), of.cookie(of.Kind.ROUTE))]


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
    st.sampled_from(list(RouteKind)),
    st.integers(1, 2**32 - 1),
    st.integers(1, 0xFFFFFF00),
)
def test_ipv4_flows_are_what_they_were(addr, plen, kind, nh, port):
    prefix = str(ipaddress.IPv4Network((addr, plen), strict=False))
    entry = FibEntry(prefix=prefix, kind=kind, nexthop_id=nh, dp_port=port)
    assert of.fib_flows(entry) == _old_ipv4_fib_flows(entry)


def test_ipv4_router_port_flows_are_what_they_were():
    c = of.cookie(of.Kind.ROUTER_PORT, 3)
    ipv4 = [f for f in of.router_port_flows(3, MAC) if dict(f.match).get("eth_type") != 0x86DD]
    to_ctl = (of.ToController(),)
    assert ipv4 == [
        of.FlowSpec(0, 300, (("in_port", 3), ("eth_type", 0x0806), ("eth_dst", MAC)), to_ctl, c),
        of.FlowSpec(
            0,
            300,
            (("in_port", 3), ("eth_type", 0x0800), ("ipv4_dst", ("224.0.0.0", "255.255.255.0"))),
            to_ctl,
            c,
        ),
        of.FlowSpec(0, 200, (("in_port", 3), ("eth_dst", MAC)), (of.Goto(of.TABLE_FIB),), c),
    ]


def test_router_port_punts_ipv6_link_scope_multicast():
    """OSPFv3 hellos and neighbour solicitations are not sent to the router MAC:
    without this punt, admission would drop them and no adjacency could form."""
    (v6,) = [f for f in of.router_port_flows(3, MAC) if dict(f.match).get("eth_type") == 0x86DD]
    assert v6.table == of.TABLE_CLASSIFIER and v6.priority == of.PRIO_PUNT
    assert v6.match == (("in_port", 3), ("eth_type", 0x86DD), ("ipv6_dst", ("ff02::", "ffff::")))
    assert v6.actions == (of.ToController(),)
    assert v6.cookie == of.cookie(of.Kind.ROUTER_PORT, 3)


def test_ipv6_routes_match_per_the_contract():
    def flow(prefix, kind=RouteKind.UNICAST, nh=5, port=0):
        return of.fib_flows(FibEntry(prefix=prefix, kind=kind, nexthop_id=nh, dp_port=port))

    (p64,) = flow("2001:db8:1::/64")
    assert p64.table == of.TABLE_FIB and p64.priority == of.PRIO_ROUTE_BASE + 64
    assert p64.match == (
        ("eth_type", 0x86DD),
        ("ipv6_dst", ("2001:db8:1::", "ffff:ffff:ffff:ffff::")),
    )
    assert p64.actions == (
        of.Group(of.route_group(5, "2001:db8:1::/64")),
    ) and p64.cookie == of.cookie(of.Kind.ROUTE)
    (p128,) = flow("2001:db8::7/128")
    assert p128.priority == of.PRIO_ROUTE_BASE + 128
    assert p128.match == (("eth_type", 0x86DD), ("ipv6_dst", "2001:db8::7"))
    (default,) = flow("::/0")
    assert default.priority == of.PRIO_ROUTE_BASE and default.match == (("eth_type", 0x86DD),)
    (connected,) = flow("2001:db8:2::/64", RouteKind.CONNECTED, 0, 2)
    assert connected.actions == (of.ToController(),)
    assert of.route_priority("2001:db8::/48") == of.route_priority("10.0.0.0/24") + 24
    assert of.route_priority("10.0.0.0/24") == of.PRIO_ROUTE_BASE + 24


def test_ipv6_local_address_goes_to_the_vm_without_an_arp_flow():
    flows = of.fib_flows(FibEntry(prefix="fe80::1/128", kind=RouteKind.LOCAL, dp_port=4))
    assert flows == [
        of.FlowSpec(
            of.TABLE_FIB,
            of.PRIO_LOCAL,
            (("eth_type", 0x86DD), ("ipv6_dst", "fe80::1")),
            (of.ToController(),),
            of.cookie(of.Kind.LOCAL, 4),
        )
    ]


def test_ipv6_addresses_are_written_as_the_switch_reports_them():
    """inet_ntop's form (as os-ken and reconcile.py print what a switch reports),
    not Python's, which writes IPv4-mapped addresses in hex; host bits cleared."""
    (mapped,) = of.fib_flows(FibEntry(prefix="::ffff:c000:200/120", kind=RouteKind.UNICAST))
    assert dict(mapped.match)["ipv6_dst"] == (
        "::ffff:192.0.2.0",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00",
    )
    (host_bits,) = of.fib_flows(FibEntry(prefix="2001:DB8::1/32", kind=RouteKind.UNICAST))
    assert dict(host_bits.match)["ipv6_dst"] == ("2001:db8::", "ffff:ffff::")


def test_a_next_hops_routes_spread_over_its_shards():
    """Route flows of one next hop use GROUP_SHARDS groups of the same buckets, chosen by
    the prefix: OVS's cost of removing a flow from a group grows with the group's flows."""
    per = 64
    prefixes = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(of.GROUP_SHARDS * per)]
    shards: dict[int, int] = {}
    for prefix in prefixes:
        gid = of.route_group(7, prefix)
        assert gid in of.nexthop_group_ids(7) and of.nexthop_of_group(gid) == 7
        assert gid == of.route_group(7, prefix)  # stable
        shards[gid] = shards.get(gid, 0) + 1
    assert len(shards) == of.GROUP_SHARDS
    assert min(shards.values()) > per // 2
    assert max(shards.values()) < per * 2
    # Shard 0 is the next-hop id itself; a next-hop id too large to shard is left alone.
    assert of.nexthop_group_ids(7)[0] == 7 and len(set(of.nexthop_group_ids(7))) == of.GROUP_SHARDS
    largest = 2 ** (of.SHARD_SHIFT - 1) - 1  # the largest sharded next-hop id
    assert max(of.nexthop_group_ids(largest)) <= 0xFFFFFF00  # OFPG_MAX
    assert {of.nexthop_of_group(g) for g in of.nexthop_group_ids(largest)} == {largest}
    for big in (largest + 1, 2**of.SHARD_SHIFT - 1, 2**28 + largest + 1, 0xFFFFFF00):
        assert of.route_group(big, "10.0.0.0/8") == big and of.nexthop_group_ids(big) == (big,)
        assert of.nexthop_of_group(big) == big


def test_the_groups_a_fib_uses_are_its_routes_shards():
    """What must exist before the flows: one shard per route at most, none for the rest."""
    fib = [
        FibEntry(prefix="10.1.0.0/16", kind=RouteKind.UNICAST, nexthop_id=7),
        FibEntry(prefix="0.0.0.0/0", kind=RouteKind.UNICAST, nexthop_id=7),
        FibEntry(prefix="2001:db8::/32", kind=RouteKind.UNICAST, nexthop_id=8),
        FibEntry(prefix="172.31.1.0/24", kind=RouteKind.CONNECTED, dp_port=1),
        FibEntry(prefix="172.31.1.1/32", kind=RouteKind.LOCAL, dp_port=1),
    ]
    assert of.used_groups(fib) == {
        of.route_group(7, "10.1.0.0/16"),
        of.route_group(7, "0.0.0.0/0"),
        of.route_group(8, "2001:db8::/32"),
    }
    assert of.used_groups(fib[3:]) == set()


def test_every_shard_of_a_next_hop_has_its_buckets():
    mod = NextHopMod(
        mod=Mod.ADD,
        ct_id=1,
        dp_id=0x99,
        nexthop_id=7,
        buckets=[
            Bucket(dp_port=2, src_hwaddress="02:00:00:00:00:01", dst_hwaddress="06:0:0:0:0:7")
        ],
    )
    groups = of.nexthop_groups(mod)
    assert [g.group_id for g in groups] == list(of.nexthop_group_ids(7))
    some = of.nexthop_group_ids(7)[3:5]
    assert [g.group_id for g in of.nexthop_groups(mod, some)] == list(some)
    assert {(g.select, g.buckets) for g in groups} == {
        (of.nexthop_group(mod).select, of.nexthop_group(mod).buckets)
    }
    (fib,) = of.fib_flows(FibEntry(prefix="10.1.0.0/16", kind=RouteKind.UNICAST, nexthop_id=7))
    assert fib.actions == (of.Group(of.route_group(7, "10.1.0.0/16")),)

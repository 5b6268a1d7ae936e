"""The pure pipeline: what each intent becomes on the switch."""

from __future__ import annotations

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
    assert p24.actions == (of.Group(2),)
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

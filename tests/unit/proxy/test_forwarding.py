"""README "Forwarding design", claim by claim, by running packets through the flows.

The switch below is programmed with exactly what rfproxy computes
(openflow.py's builders, composed as its reconciliation composes them, via
proxy/specsim.py), then packets are run through it by the pipeline simulator
(rflib/ofsim.py, held to Open vSwitch in tests/component/test_ofsim_vs_ovs.py).

The router: port 1 faces a host subnet, ports 2 and 3 are links to routers B
and C; port 9 is a switch port mapped to no VM.
"""

from __future__ import annotations

import ipaddress

from hypothesis import assume, given
from hypothesis import strategies as st

from routeflow.proxy import openflow as of
from routeflow.proxy import specsim
from routeflow.rflib import ofsim
from routeflow.rflib.protocol import Bucket, FibEntry, Mod, NextHopMod, RouteKind

R = {1: "02:00:00:00:0a:01", 2: "02:00:00:00:0a:02", 3: "02:00:00:00:0a:03"}
B_MAC, C_MAC = "02:00:00:00:0b:02", "02:00:00:00:0c:03"
H1_MAC, H2_MAC = "02:00:00:00:01:64", "02:00:00:00:01:65"
NH_H1, NH_B, NH_UNRESOLVED, NH_ECMP = 1, 2, 3, 4


def route(prefix, nh):
    return FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=nh)


def local(prefix, port):
    return FibEntry(prefix=prefix, kind=RouteKind.LOCAL, dp_port=port)


def connected(prefix, port):
    return FibEntry(prefix=prefix, kind=RouteKind.CONNECTED, dp_port=port)


FIB = [
    local("10.0.1.1/32", 1),
    local("10.0.12.1/32", 2),
    local("10.0.13.1/32", 3),
    connected("10.0.1.0/24", 1),
    connected("10.0.12.0/30", 2),
    route("10.0.1.100/32", NH_H1),  # a resolved host
    route("10.0.2.0/24", NH_B),
    route("10.0.3.0/24", NH_UNRESOLVED),
    route("10.0.5.0/24", NH_ECMP),
    route("0.0.0.0/0", NH_B),
    local("2001:db8:1::1/128", 1),
    local("fe80::a:1/128", 1),
    connected("2001:db8:1::/64", 1),
    route("2001:db8:2::/64", NH_B),
    route("::/0", NH_B),
]


def nexthop(nh, *buckets):
    return NextHopMod(mod=Mod.ADD, ct_id=1, dp_id=1, nexthop_id=nh, buckets=list(buckets))


def bucket(port, dst):
    return Bucket(dp_port=port, src_hwaddress=R[port], dst_hwaddress=dst)


NEXTHOPS = [
    nexthop(NH_H1, bucket(1, H1_MAC)),
    nexthop(NH_B, bucket(2, B_MAC)),
    nexthop(NH_UNRESOLVED),
    nexthop(NH_ECMP, bucket(2, B_MAC), bucket(3, C_MAC)),
]

SWITCH = specsim.switch_pipeline(R, FIB, NEXTHOPS)


def ipv4(dst, in_port=1, eth_dst=None, ttl=64, src="10.0.1.100", eth_src=H1_MAC):
    return {
        "in_port": in_port,
        "eth_src": eth_src,
        "eth_dst": eth_dst or R[in_port],
        "eth_type": 0x0800,
        "ip_proto": 1,
        "ipv4_src": src,
        "ipv4_dst": dst,
        "nw_ttl": ttl,
    }


def ipv6(dst, in_port=1, eth_dst=None, ttl=64, src="2001:db8:1::100", proto=58):
    return {
        "in_port": in_port,
        "eth_src": H1_MAC,
        "eth_dst": eth_dst or R[in_port],
        "eth_type": 0x86DD,
        "ip_proto": proto,
        "ipv6_src": src,
        "ipv6_dst": dst,
        "nw_ttl": ttl,
    }


def arp(op, spa, tpa, in_port=1, eth_src=H1_MAC, eth_dst="ff:ff:ff:ff:ff:ff"):
    return {
        "in_port": in_port,
        "eth_src": eth_src,
        "eth_dst": eth_dst,
        "eth_type": 0x0806,
        "arp_op": op,
        "arp_spa": spa,
        "arp_tpa": tpa,
        "arp_sha": eth_src,
    }


def kinds(result: ofsim.Result) -> list[str]:
    return [o.kind for o in result.outcomes]


def cookie_kind(flow: ofsim.Flow | None) -> int | None:
    return None if flow is None else (flow.cookie >> of.COOKIE_KIND_SHIFT) & 0xFF


# --- table 0: the classifier ----------------------------------------------------------------


def test_transit_arp_between_hosts_never_reaches_a_vm():
    request = arp(1, "10.0.1.100", "10.0.1.101")  # broadcast, for another host
    reply = arp(2, "10.0.1.101", "10.0.1.100", eth_src=H2_MAC, eth_dst=H1_MAC)
    for frame in (request, reply):
        r = SWITCH.run(frame)
        assert kinds(r) == [ofsim.DROP]
        assert cookie_kind(r.flows[-1]) == of.Kind.BASE  # the table-miss drop


@given(
    st.integers(1, 2),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=4).map(str),
    st.sampled_from([H2_MAC, "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"]),
)
def test_no_arp_reaches_a_vm_unless_aimed_at_the_router(op, spa, tpa, eth_dst):
    router_addresses = {"10.0.1.1", "10.0.12.1", "10.0.13.1"}
    r = SWITCH.run(arp(op, spa, tpa, eth_dst=eth_dst))
    assert not r.outputs  # ARP is never forwarded by the switch
    assert r.punted == (tpa == "10.0.1.1"), "only the address of the ingress port"
    if tpa not in router_addresses:
        assert r.dropped


def test_arp_aimed_at_the_router_goes_to_the_vm():
    who_has = arp(1, "10.0.1.100", "10.0.1.1")  # broadcast request for the port's address
    reply = arp(2, "10.0.1.100", "10.0.1.1", eth_dst=R[1])  # answer to the router's request
    for frame in (who_has, reply):
        assert kinds(SWITCH.run(frame)) == [ofsim.CONTROLLER_OUT]
    # The address of port 2 is answered on port 2 only, as a Linux router would on its link.
    assert SWITCH.run(arp(1, "10.0.12.2", "10.0.12.1", in_port=2, eth_src=B_MAC)).punted
    assert SWITCH.run(arp(1, "10.0.1.100", "10.0.12.1")).dropped


def test_transit_frames_between_hosts_never_reach_a_vm():
    ping = ipv4("10.0.1.101", eth_dst=H2_MAC)  # host to host on the subnet
    assert SWITCH.run(ping).dropped
    assert SWITCH.run(ipv6("2001:db8:1::101", eth_dst=H2_MAC)).dropped
    # Only the router MAC of the ingress port admits into the FIB.
    assert SWITCH.run(ipv4("10.0.2.5", eth_dst=R[2])).dropped
    # A port mapped to no VM forwards nothing, even to a router MAC.
    assert SWITCH.run(ipv4("10.0.2.5", in_port=9, eth_dst=R[1])).dropped


def test_link_local_multicast_is_punted_on_router_ports_only():
    ospf = {**ipv4("224.0.0.5", eth_dst="01:00:5e:00:00:05"), "ip_proto": 89, "nw_ttl": 1}
    ospf6 = {**ipv6("ff02::5", eth_dst="33:33:00:00:00:05", src="fe80::b:2", proto=89)}
    ns = {**ipv6("ff02::1:ff0a:1", eth_dst="33:33:ff:0a:00:01", src="fe80::b:2"), "nw_ttl": 255}
    for frame in (ospf, ospf6, ns):
        r = SWITCH.run(frame)
        assert kinds(r) == [ofsim.CONTROLLER_OUT]
        assert r.outcomes[0].packet == SWITCH.run(frame).outcomes[0].packet  # untouched
        assert cookie_kind(r.flows[0]) == of.Kind.ROUTER_PORT
        assert SWITCH.run({**frame, "in_port": 9}).dropped
    # Multicast beyond the link scope is not the router's business.
    assert SWITCH.run({**ospf, "ipv4_dst": "224.0.1.1"}).dropped
    assert SWITCH.run({**ospf6, "ipv6_dst": "ff05::2"}).dropped


# --- table 1: the FIB -----------------------------------------------------------------------


def test_routed_packets_leave_rewritten_with_ttl_decremented():
    for frame, family_dst in (
        (ipv4("10.0.2.5"), "10.0.2.5"),
        (ipv6("2001:db8:2::5"), "2001:db8:2::5"),
    ):
        r = SWITCH.run(frame)
        (out,) = r.outcomes
        assert (out.kind, out.port) == (ofsim.OUTPUT, 2)
        assert out.packet == {
            **{k: v for k, v in frame.items() if k != "in_port"},
            "eth_src": R[2],  # the router MAC of the port it leaves by
            "eth_dst": B_MAC,
            "nw_ttl": 63,
        }
        assert family_dst in str(out.packet)
        assert [h.table for h in r.trace if isinstance(h, ofsim.TableHit)] == [0, 1]


def test_a_resolved_host_is_reached_directly():
    r = SWITCH.run(ipv4("10.0.1.100", in_port=2, src="10.0.2.5", eth_src=B_MAC))
    (out,) = r.outcomes
    assert (out.port, out.packet["eth_src"], out.packet["eth_dst"]) == (1, R[1], H1_MAC)


def test_a_packet_whose_ttl_runs_out_is_not_forwarded():
    r = SWITCH.run(ipv4("10.0.2.5", ttl=1))
    assert kinds(r) == [ofsim.TTL_EXPIRED]
    assert r.outcomes[0].packet["eth_dst"] == R[1]  # expired before any rewrite


def test_a_next_hop_whose_mac_is_unknown_punts_to_the_vm():
    frame = ipv4("10.0.3.7")
    r = SWITCH.run(frame)
    (out,) = r.outcomes
    assert out.kind == ofsim.CONTROLLER_OUT
    # The VM gets the frame as the host sent it: its kernel routes and decrements.
    assert out.packet == {k: v for k, v in frame.items() if k != "in_port"}
    hits = [h for h in r.trace if isinstance(h, ofsim.BucketHit)]
    assert [(of.nexthop_of_group(h.group_id), h.bucket) for h in hits] == [(NH_UNRESOLVED, 0)]


def test_unresolved_hosts_of_a_connected_subnet_go_to_the_vm():
    assert kinds(SWITCH.run(ipv4("10.0.1.101", in_port=2, eth_src=B_MAC))) == [ofsim.CONTROLLER_OUT]
    assert kinds(SWITCH.run(ipv6("2001:db8:1::101", in_port=2))) == [ofsim.CONTROLLER_OUT]


def test_the_routers_own_addresses_go_to_the_vm():
    for frame in (
        ipv4("10.0.1.1"),
        ipv4("10.0.12.1"),  # any of its addresses, from any router port
        ipv4("10.0.13.1", in_port=2, eth_src=B_MAC),
        ipv6("2001:db8:1::1"),
        ipv6("fe80::a:1", src="fe80::1:64"),  # link-local: ND and OSPFv3 unicast
    ):
        r = SWITCH.run(frame)
        assert kinds(r) == [ofsim.CONTROLLER_OUT]
        assert cookie_kind(r.flows[-1]) == of.Kind.LOCAL


def test_a_local_address_beats_a_route_to_the_same_address():
    pipeline = specsim.switch_pipeline(R, [*FIB, route("10.0.1.1/32", NH_B)], NEXTHOPS)
    assert kinds(pipeline.run(ipv4("10.0.1.1"))) == [ofsim.CONTROLLER_OUT]


def test_ecmp_reaches_every_next_hop():
    r = SWITCH.run(ipv4("10.0.5.9"))
    assert len(r.executions) == 2
    ways = {(o.port, o.packet["eth_src"], o.packet["eth_dst"]) for o in r.outcomes}
    assert ways == {(2, R[2], B_MAC), (3, R[3], C_MAC)}
    assert all(o.packet["nw_ttl"] == 63 for o in r.outcomes)


def test_a_next_hop_mac_change_is_one_group_change():
    moved = [*NEXTHOPS[:1], nexthop(NH_B, bucket(3, C_MAC)), *NEXTHOPS[2:]]
    after = specsim.switch_pipeline(R, FIB, moved)
    assert after.tables == SWITCH.tables  # not one flow changed
    for dst in ("10.0.2.5", "192.0.2.1"):  # the /24 and the default route
        (out,) = after.run(ipv4(dst)).outcomes
        assert (out.port, out.packet["eth_dst"]) == (3, C_MAC)


def test_a_route_back_out_of_the_ingress_port_is_dropped_by_the_switch():
    """OpenFlow never sends a packet back out of its ingress port (only IN_PORT does).

    So a packet from B for a prefix routed via B (a transient loop while OSPF
    converges) is dropped rather than bounced, and a host that sends to the
    router what it could deliver itself gets nothing (a Linux router would
    forward it and send an ICMP redirect).
    """
    r = SWITCH.run(ipv4("10.0.2.5", in_port=2, src="10.0.12.2", eth_src=B_MAC))
    assert r.dropped
    assert "ingress port 2" in r.executions[0].notes[-1]
    # With ECMP one of the two ways is still open.
    ecmp = SWITCH.run(ipv4("10.0.5.9", in_port=2, src="10.0.12.2", eth_src=B_MAC))
    assert [kinds(ofsim.Result((ex,))) for ex in ecmp.executions] == [["drop"], ["output"]]


def test_the_virtual_switch_hands_everything_to_the_controller():
    vs = ofsim.Pipeline([specsim.sim_flow(s) for s in of.virtual_switch_flows()])
    for frame in (ipv4("10.0.2.5"), arp(1, "10.0.1.100", "10.0.1.101"), ipv6("ff02::5")):
        assert kinds(vs.run(frame)) == [ofsim.CONTROLLER_OUT]


# --- longest prefix match, against a reference ----------------------------------------------


def _reference_lpm(routes: dict[ipaddress._BaseNetwork, int], dst: ipaddress._BaseAddress):
    covering = [net for net in routes if net.version == dst.version and dst in net]
    return routes[max(covering, key=lambda n: n.prefixlen)] if covering else None


def _net(version: int):
    bits = 32 if version == 4 else 128
    return st.builds(
        lambda addr, plen: ipaddress.ip_network((addr, plen), strict=False),
        st.integers(0, 2**bits - 1),
        st.integers(0, bits),
    )


def _near(nets, version):
    """A destination: often inside one of the prefixes (else LPM is rarely interesting)."""
    bits = 32 if version == 4 else 128
    anywhere = st.integers(0, 2**bits - 1).map(
        ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    )
    if not nets:
        return anywhere
    inside = st.tuples(st.sampled_from(nets), st.integers(0, 2**bits - 1)).map(
        lambda t: t[0].network_address + (t[1] % t[0].num_addresses)
    )
    return st.one_of(inside, anywhere)


LINK_LOCAL_MCAST_NET = ipaddress.ip_network("224.0.0.0/24")


def test_link_local_multicast_is_punted_even_under_a_default_route():
    """A default route must not swallow OSPF hellos to 224.0.0.5 (hypothesis found it)."""
    pipeline = specsim.switch_pipeline(
        R, [route("0.0.0.0/0", 1)], [nexthop(1, bucket(2, "02:00:00:00:ff:01"))]
    )
    for dst in ("224.0.0.0", "224.0.0.5", "224.0.0.255"):
        (out,) = pipeline.run(ipv4(dst)).outcomes
        assert out.kind == ofsim.CONTROLLER_OUT, dst
    (out,) = pipeline.run(ipv4("224.0.1.0")).outcomes  # not link-local: routed
    assert out.packet["eth_dst"] == "02:00:00:00:ff:01"


@given(st.data(), st.sampled_from([4, 6]))
def test_longest_prefix_wins(data, version):
    nets = data.draw(st.lists(_net(4) | _net(6), max_size=12, unique=True))
    routes = {net: i + 1 for i, net in enumerate(nets)}  # next hop i+1 per prefix
    fib = [route(str(net), nh) for net, nh in routes.items()]
    # Each next hop leaves port 2 towards a MAC that names it.
    hops = [nexthop(nh, bucket(2, f"02:00:00:00:ff:{nh:02x}")) for nh in routes.values()]
    pipeline = specsim.switch_pipeline(R, fib, hops)
    dst = data.draw(_near([n for n in nets if n.version == version], version))
    # Link-local multicast (OSPF, VRRP...) is the routing protocols' own: punted to the
    # relay in table 0 before any route is looked at (test below), never routed.
    assume(dst not in LINK_LOCAL_MCAST_NET)
    frame = ipv4(str(dst)) if version == 4 else ipv6(str(dst))
    want = _reference_lpm(routes, dst)
    r = pipeline.run(frame)
    if want is None:
        assert r.dropped
    else:
        (out,) = r.outcomes
        assert out.packet["eth_dst"] == f"02:00:00:00:ff:{want:02x}"


# --- every frame at once ----------------------------------------------------------------------

ROUTER_IPS = {1: "10.0.1.1", 2: "10.0.12.1", 3: "10.0.13.1"}


@st.composite
def frames(draw):
    in_port = draw(st.sampled_from([1, 2, 3, 9]))
    eth_dst = draw(st.sampled_from([*R.values(), H2_MAC, "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:05"]))
    family = draw(st.sampled_from(["arp", "ipv4", "ipv6"]))
    if family == "arp":
        tpa = draw(st.sampled_from([*ROUTER_IPS.values(), "10.0.1.101", "10.0.2.5"]))
        return arp(draw(st.integers(1, 2)), "10.0.1.100", tpa, in_port=in_port, eth_dst=eth_dst)
    ttl = draw(st.integers(0, 255))
    if family == "ipv4":
        dst = draw(
            st.sampled_from([*ROUTER_IPS.values(), "224.0.0.5", "224.0.1.1", "10.0.1.100"])
            | st.ip_addresses(v=4).map(str)
        )
        return ipv4(dst, in_port=in_port, eth_dst=eth_dst, ttl=ttl)
    dst = draw(
        st.sampled_from(["2001:db8:1::1", "fe80::a:1", "ff02::5", "ff05::2", "2001:db8:1::7"])
        | st.ip_addresses(v=6).map(str)
    )
    return ipv6(dst, in_port=in_port, eth_dst=eth_dst, ttl=ttl)


def _punt_allowed(frame) -> bool:
    """What the classifier may hand to a VM: the router's own traffic, and the FIB's slow path."""
    port = frame["in_port"]
    if port not in R:
        return False
    if frame["eth_type"] == 0x0806:
        return frame["eth_dst"] == R[port] or frame["arp_tpa"] == ROUTER_IPS[port]
    dst = ipaddress.ip_address(frame.get("ipv4_dst") or frame["ipv6_dst"])
    link_mcast = ipaddress.ip_network("224.0.0.0/24" if dst.version == 4 else "ff02::/16")
    return dst in link_mcast or frame["eth_dst"] == R[port]


@given(frames())
def test_every_frame_is_forwarded_punted_or_dropped_by_the_design(frame):
    r = SWITCH.run(frame)
    in_port = frame["in_port"]
    for out in r.outputs:
        # Only IP to the ingress port's router MAC is forwarded, by the FIB's groups...
        assert frame["eth_type"] != 0x0806 and frame["eth_dst"] == R[in_port]
        assert out.port != in_port and frame["nw_ttl"] > 1
        # ...rewritten as the next hop expects it.
        assert out.packet["eth_src"] == R[out.port]
        assert out.packet["nw_ttl"] == frame["nw_ttl"] - 1
    if r.punted:
        assert _punt_allowed(frame), r.outcomes
    for ex in r.executions:  # a frame is forwarded, punted or dropped: never two of these
        assert len({o.kind for o in ex.outcomes}) == 1

"""IPv4 routes through IPv6 next hops (RFC 5549, as FRR's BGP unnumbered installs them)
are carried: the next hop is the IPv6 neighbour, on the general path and on fastnl's
shared-shape fast path alike, through a nexthop object or an ``RTA_VIA`` gateway, and
nothing is refused.
"""

from __future__ import annotations

import socket

from routeflow.client import fastnl
from routeflow.client.kernel import KernelView
from routeflow.rflib.protocol import NextHop

from .test_fastnl import attr, links, message, slow, u32
from .test_fastnl import ip as ip4
from .test_fastnl_ipv6 import nexthop_msg

RTM_NEWROUTE = 24
RTA_VIA = 18


def v4_route_via_nhid(prefix: str, plen: int, nhid: int) -> bytes:
    attrs = [attr(15, u32(254)), attr(1, ip4(prefix)), attr(30, u32(nhid))]
    return message(RTM_NEWROUTE, 2, plen, 254, 1, 0, attrs)


def v4_route_via_gateway(prefix: str, plen: int, gateway: str) -> bytes:
    attrs = [attr(15, u32(254)), attr(1, ip4(prefix)), attr(5, ip4(gateway)), attr(4, u32(1))]
    return message(RTM_NEWROUTE, 2, plen, 254, 1, 0, attrs)


def v4_route_via_inet6(prefix: str, plen: int, gateway: str, oif: int) -> bytes:
    """``ip route add P via inet6 GW dev X``: RTA_VIA, struct rtvia (family, address)."""
    via = socket.AF_INET6.to_bytes(2, "little") + socket.inet_pton(socket.AF_INET6, gateway)
    attrs = [attr(15, u32(254)), attr(1, ip4(prefix)), attr(RTA_VIA, via), attr(4, u32(oif))]
    return message(RTM_NEWROUTE, 2, plen, 254, 1, 0, attrs)


def feed(view: KernelView, data: bytes, fast: bool) -> None:
    view.feed_many(fastnl.parse(data, slow) if fast else slow(data))


def check(fast: bool) -> None:
    view = KernelView(1)
    view.feed_many(links())
    feed(view, v4_route_via_gateway("10.5.0.0", 16, "10.0.1.2"), fast)  # an ordinary one
    feed(view, nexthop_msg(7, 2, "fe80::1"), fast)  # an IPv6 neighbour, as BGP unnumbered
    for prefix in ("10.6.0.0", "10.7.0.0", "10.8.0.0"):
        feed(view, v4_route_via_nhid(prefix, 16, 7), fast)
    feed(view, v4_route_via_inet6("10.9.0.0", 16, "FE80:0::2", 2), fast)
    assert set(view.routes) == {"10.5.0.0/16", "10.6.0.0/16", "10.7.0.0/16", "10.8.0.0/16",
                                "10.9.0.0/16"}  # fmt: skip
    port = view.routes["10.6.0.0/16"].nexthops[0].vm_port
    for prefix in ("10.6.0.0/16", "10.7.0.0/16", "10.8.0.0/16"):
        assert view.routes[prefix].nexthops == [NextHop(vm_port=port, gateway="fe80::1")]
    assert view.routes["10.9.0.0/16"].nexthops == [NextHop(vm_port=port, gateway="fe80::2")]
    assert view.take_refusals() == {}


def test_carried_on_the_general_path():
    check(fast=False)


def test_carried_on_the_fast_path():
    check(fast=True)

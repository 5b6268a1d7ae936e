"""IPv4 routes through IPv6 next hops (RFC 5549) are refused out loud, once per prefix.

The switch cannot carry them out yet; what matters is that the operator is told which
prefixes and why (rfclient logs ``take_refusals`` as warnings) instead of the routes
vanishing silently, on the general path and on fastnl's shared-shape fast path alike.
"""

from __future__ import annotations

from routeflow.client import fastnl
from routeflow.client.kernel import KernelView

from .test_fastnl import attr, links, message, slow, u32
from .test_fastnl import ip as ip4
from .test_fastnl_ipv6 import nexthop_msg

RTM_NEWROUTE = 24


def v4_route_via_nhid(prefix: str, plen: int, nhid: int) -> bytes:
    attrs = [attr(15, u32(254)), attr(1, ip4(prefix)), attr(30, u32(nhid))]
    return message(RTM_NEWROUTE, 2, plen, 254, 1, 0, attrs)


def v4_route_via_gateway(prefix: str, plen: int, gateway: str) -> bytes:
    attrs = [attr(15, u32(254)), attr(1, ip4(prefix)), attr(5, ip4(gateway)), attr(4, u32(1))]
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
    assert set(view.routes) == {"10.5.0.0/16"}
    refusals = view.take_refusals()
    assert set(refusals) == {"10.6.0.0/16", "10.7.0.0/16", "10.8.0.0/16"}
    assert all("RFC 5549" in why for why in refusals.values())
    assert view.take_refusals() == {}  # told once
    feed(view, v4_route_via_nhid("10.6.0.0", 16, 7), fast)  # the same route again
    assert view.take_refusals() == {}
    assert "10.6.0.0/16" not in view.routes


def test_refused_on_the_general_path():
    check(fast=False)


def test_refused_on_the_fast_path():
    check(fast=True)

"""rfclient's IPv6 against the real kernel: a private dual-stack namespace per test.

As in test_netlink.py, eth1/peer1 and eth2/peer2 are veth pairs inside the
namespace (the peers are not router ports; their link-local addresses serve
as OSPFv3-style gateways "fe80::... dev ethN"). DAD is off in the namespace
so addresses are usable at once. The namespace is deleted even on failure.

The watcher here never reconciles (a long reconcile delay): what it reports
after link flaps is its own emulation of the kernel, and must equal what a
fresh dump of the kernel gives.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from routeflow.client.netlink import (
    Dumper,
    NetlinkWatcher,
    RtnlMarshal,
    enter_netns,
    get_hwaddr,
    poke,
)
from routeflow.rflib.protocol import NextHop, Route, RouteKind

from .test_netlink import VM, Server, in_netns, ip, needs_root

pytestmark = pytest.mark.component


def sysctl(ns: str, setting: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", setting],
        check=True,
        capture_output=True,
        timeout=10,
    )


def link_local(ns: str, dev: str) -> str:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-6", "addr", "show", "dev", dev, "scope", "link"],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    (addr,) = [a["local"] for i in json.loads(out) for a in i["addr_info"] if "local" in a]
    return addr


@pytest.fixture
def ns6():
    name = f"rfc6{os.getpid()}{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        sysctl(name, "net.ipv6.conf.default.accept_dad=0")
        sysctl(name, "net.ipv6.conf.all.forwarding=1")  # a router, as in the VMs
        for n in (1, 2):
            ip(name, f"link add eth{n} type veth peer name peer{n}")
            ip(name, f"link set peer{n} up")
            ip(name, f"link set eth{n} up")
            ip(name, f"addr add 10.0.{n}.1/24 dev eth{n}")
            ip(name, f"-6 addr add 2001:db8:{n}::1/64 dev eth{n}")
        ip(name, "link set lo up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def watcher6(ns6):
    w = NetlinkWatcher(VM, netns=ns6, reconcile_delay=300.0)
    w.start(timeout=10)
    try:
        yield w
    finally:
        w.stop()


def fresh_dump(ns: str):
    """What a new rfclient would load now."""
    return in_netns(ns, lambda: Dumper(RtnlMarshal()).load_view(VM))


def until(what: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def matches_dump(ns: str, watcher: NetlinkWatcher, server: Server) -> Callable[[], bool]:
    """The server's picture (rebuilt from deltas) equals a fresh dump."""

    def check() -> bool:
        server.apply(watcher.drain())
        fresh = fresh_dump(ns)
        neigh = {k: n.hwaddress for k, n in fresh.neighbours.items()}
        return server.routes == fresh.routes and server.neighbours == neigh

    return check


def uni(prefix: str, *hops) -> Route:
    return Route(
        prefix=prefix,
        kind=RouteKind.UNICAST,
        nexthops=[NextHop(vm_port=p, gateway=g, weight=w) for p, g, w in hops],
    )


def own(prefix: str, kind: RouteKind, port: int) -> Route:
    return Route(prefix=prefix, kind=kind, nexthops=[NextHop(vm_port=port)])


@needs_root
@pytest.mark.parametrize("silent", [False, True], ids=["notified", "skip_notify_on_dev_down"])
def test_ipv6_view_equals_a_fresh_dump_through_link_flaps(ns6, watcher6, silent):
    ns, watcher = ns6, watcher6
    if silent:
        sysctl(ns, "net.ipv6.route.skip_notify_on_dev_down=1")
    ll = {n: link_local(ns, f"eth{n}") for n in (1, 2)}
    gw1, gw2 = link_local(ns, "peer1"), link_local(ns, "peer2")
    server = Server()
    server.apply(watcher.snapshot()[0])
    v6 = {p: r for p, r in server.routes.items() if ":" in p}
    assert v6 == {
        "2001:db8:1::/64": own("2001:db8:1::/64", RouteKind.CONNECTED, 1),
        "2001:db8:2::/64": own("2001:db8:2::/64", RouteKind.CONNECTED, 2),
        "2001:db8:1::1/128": own("2001:db8:1::1/128", RouteKind.LOCAL, 1),
        "2001:db8:2::1/128": own("2001:db8:2::1/128", RouteKind.LOCAL, 2),
        f"{ll[1]}/128": own(f"{ll[1]}/128", RouteKind.LOCAL, 1),
        f"{ll[2]}/128": own(f"{ll[2]}/128", RouteKind.LOCAL, 2),
    }

    ip(ns, f"-6 route add 2001:db8:10::/48 via {gw1} dev eth1")
    ip(ns, "-6 route append 2001:db8:10::/48 via 2001:db8:2::2 dev eth2")
    ecmp = f"nexthop via {gw1} dev eth1 nexthop via {gw2} dev eth2 weight 3"
    ip(ns, f"-6 route add 2001:db8:20::/48 {ecmp}")
    ip(ns, f"nexthop add id 61 via {gw2} dev eth2")
    ip(ns, "-6 route add 2001:db8:61::/48 nhid 61")
    ip(ns, f"-6 route add 2001:db8:62::/48 via {gw1} dev eth1")
    ip(ns, f"-6 neigh replace {gw1} lladdr 02:00:00:00:01:02 dev eth1 nud reachable")
    ip(ns, "-6 neigh replace 2001:db8:2::2 lladdr 02:00:00:00:02:02 dev eth2 nud permanent")
    expected = dict(server.routes)
    expected["2001:db8:10::/48"] = uni("2001:db8:10::/48", (1, gw1, 1), (2, "2001:db8:2::2", 1))
    expected["2001:db8:20::/48"] = uni("2001:db8:20::/48", (1, gw1, 1), (2, gw2, 3))
    expected["2001:db8:61::/48"] = uni("2001:db8:61::/48", (2, gw2, 1))
    expected["2001:db8:62::/48"] = uni("2001:db8:62::/48", (1, gw1, 1))

    def settled() -> bool:
        # Routes and neighbours come in separate notifications: wait for both (a loaded
        # run drained the routes before the second neighbour had been read).
        server.apply(watcher.drain())
        return (
            server.routes == expected
            and server.neighbours.get((1, gw1)) == "02:00:00:00:01:02"
            and server.neighbours.get((2, "2001:db8:2::2")) == "02:00:00:00:02:02"
        )

    until(settled)
    assert server.neighbours[(1, gw1)] == "02:00:00:00:01:02"
    assert server.neighbours[(2, "2001:db8:2::2")] == "02:00:00:00:02:02"
    # One ECMP hop goes: the kernel names only that hop.
    ip(ns, f"-6 route del 2001:db8:20::/48 via {gw1} dev eth1")
    expected["2001:db8:20::/48"] = uni("2001:db8:20::/48", (2, gw2, 1))
    until(settled)
    until(matches_dump(ns, watcher, server))

    # Down: eth1's IPv6 routes, addresses and neighbours go; the ECMP route keeps
    # a dead hop; IPv4's local address stays.
    ip(ns, "link set eth1 down")
    until(matches_dump(ns, watcher, server))
    assert "2001:db8:62::/48" not in server.routes
    assert f"{ll[1]}/128" not in server.routes
    assert server.routes["2001:db8:10::/48"] == uni("2001:db8:10::/48", (2, "2001:db8:2::2", 1))
    assert "10.0.1.1/32" in server.routes
    assert (1, gw1) not in server.neighbours

    # Up: the link-local address comes back, the global one (not kept) does not.
    ip(ns, "link set eth1 up")
    until(matches_dump(ns, watcher, server))
    until(lambda: f"{ll[1]}/128" in fresh_dump(ns).routes)
    until(matches_dump(ns, watcher, server))
    assert "2001:db8:1::1/128" not in server.routes
    assert len(server.routes["2001:db8:10::/48"].nexthops) == 2
    assert watcher.resyncs == 1, "no reconcile dump: the view did it by itself"


@needs_root
def test_address_removal_and_carrier_loss(ns6, watcher6):
    ns, watcher = ns6, watcher6
    gw1 = link_local(ns, "peer1")
    server = Server()
    server.apply(watcher.snapshot()[0])
    ip(ns, f"-6 route add 2001:db8:10::/48 via {gw1} dev eth1")
    ip(ns, "-6 route add 2001:db8:11::/48 via 2001:db8:1::2 dev eth1")
    until(lambda: server.apply(watcher.drain()) or "2001:db8:11::/48" in server.routes)
    # The address goes with its local and on-link routes; gateway routes stay.
    ip(ns, "-6 addr del 2001:db8:1::1/64 dev eth1")
    until(matches_dump(ns, watcher, server))
    assert "2001:db8:1::/64" not in server.routes
    assert "2001:db8:1::1/128" not in server.routes
    assert "2001:db8:11::/48" in server.routes
    # The carrier goes (the peer is down): routes stay, flagged linkdown.
    ip(ns, "link set peer1 down")
    until(matches_dump(ns, watcher, server))
    assert "2001:db8:10::/48" in server.routes


def _neighbour_solicited(ns: str, iface: str, target: str, timeout: float) -> threading.Thread:
    """Watch ``iface`` for an ICMPv6 neighbour solicitation for ``target``."""
    packed = socket.inet_pton(socket.AF_INET6, target)
    result: dict = {}
    ready = threading.Event()

    def run():
        enter_netns(ns)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD)) as s:
            s.bind((iface, 0))
            s.settimeout(0.2)
            ready.set()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    frame = s.recv(2048)
                except TimeoutError:
                    continue
                # Ethernet 14 + IPv6 40: next header 58 (ICMPv6), type 135, target at +8.
                if frame[20] == 58 and frame[54] == 135 and frame[62:78] == packed:
                    result["seen"] = True
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.result = result  # type: ignore[attr-defined]
    thread.start()
    assert ready.wait(5)
    return thread


@needs_root
def test_poke_makes_the_kernel_solicit_a_link_local_gateway(ns6, watcher6):
    ns, watcher = ns6, watcher6
    gw1 = link_local(ns, "peer1")
    mac = in_netns(ns, get_hwaddr, "peer1")
    server = Server()
    server.apply(watcher.snapshot()[0])
    ip(ns, f"-6 route add 2001:db8:10::/48 via {gw1} dev eth1")
    until(lambda: (1, gw1) in watcher.unresolved_gateways())
    watch = _neighbour_solicited(ns, "peer1", gw1, timeout=3.0)
    assert in_netns(ns, poke, gw1, "eth1")
    watch.join(5)
    assert watch.result.get("seen"), "no neighbour solicitation for the gateway"
    # peer1 answers: the gateway resolves to its MAC.
    until(lambda: server.apply(watcher.drain()) or (1, gw1) in server.neighbours)
    assert server.neighbours[(1, gw1)] == mac
    assert (1, gw1) not in watcher.unresolved_gateways()


@needs_root
def test_ipv4_routes_through_an_ipv6_neighbour_rfc5549(ns6, watcher6):
    """What FRR's BGP unnumbered installs (``via inet6 fe80::... dev X``, and as
    nexthop objects): the IPv4 prefixes go through the IPv6 neighbour, which a poke
    resolves; the view equals a fresh dump."""
    ns, watcher = ns6, watcher6
    gw1 = link_local(ns, "peer1")
    mac = in_netns(ns, get_hwaddr, "peer1")
    server = Server()
    server.apply(watcher.snapshot()[0])
    ip(ns, f"route add 10.66.0.0/16 via inet6 {gw1} dev eth1")
    ip(ns, f"nexthop add id 81 via {gw1} dev eth1")
    ip(ns, "route add 10.67.0.0/16 nhid 81")
    want = {p: uni(p, (1, gw1, 1)) for p in ("10.66.0.0/16", "10.67.0.0/16")}
    until(
        lambda: (
            server.apply(watcher.drain()) or all(server.routes.get(p) == r for p, r in want.items())
        )
    )
    until(lambda: (1, gw1) in watcher.unresolved_gateways())
    assert in_netns(ns, poke, gw1, "eth1")
    until(lambda: server.apply(watcher.drain()) or (1, gw1) in server.neighbours)
    assert server.neighbours[(1, gw1)] == mac
    until(matches_dump(ns, watcher, server))
    assert {p: server.routes[p] for p in want} == want


@needs_root
def test_an_ipv6_table_never_reaches_pyroute2(ns6, watcher6):
    """Routes by a gateway, ECMP, nexthop objects and groups: all on fastnl's path.

    The watcher's and its dumper's general decoder is wrapped to record what
    it is handed; route messages (types 24, 25) must never be among them, in
    notifications or in the reconcile dump.
    """
    from routeflow.bench import nlroutes

    ns, watcher = ns6, watcher6
    slow: list[int] = []

    def spy(parse):
        def counting(data: bytes):
            slow.append(struct.unpack_from("=H", data, 4)[0])
            return parse(data)

        return counting

    watcher._parse_slow = spy(watcher._parse_slow)  # type: ignore[method-assign]
    watcher._dumper._parse_slow = spy(watcher._dumper._parse_slow)  # type: ignore[method-assign]
    server = Server()
    server.apply(watcher.snapshot()[0])
    base = len(server.routes)
    count = 3000
    apply = functools.partial(nlroutes.apply_routes, ipv6=True, prefixlen=48)
    add = functools.partial(apply, via="2001:db8:1::100", dev="eth1")
    assert in_netns(ns, add, "add", count) == (count, 0)
    ip(ns, "nexthop add id 71 via 2001:db8:1::100 dev eth1")
    ip(ns, "nexthop add id 72 via 2001:db8:2::100 dev eth2")
    ip(ns, "nexthop add id 73 group 71/72,2")
    ip(ns, "-6 route add 2001:db8:71::/48 nhid 71")
    ip(ns, "-6 route add 2001:db8:73::/48 nhid 73")
    ecmp = "nexthop via 2001:db8:1::100 dev eth1 nexthop via 2001:db8:2::100 dev eth2"
    ip(ns, f"-6 route add 2001:db8:74::/48 {ecmp}")
    ip(ns, "-6 route replace fd00::/48 nhid 73 proto 99")  # nlroutes deletes its own
    two = [(1, "2001:db8:1::100", 1), (2, "2001:db8:2::100", 2)]
    expected = {
        "2001:db8:71::/48": uni("2001:db8:71::/48", (1, "2001:db8:1::100", 1)),
        "2001:db8:73::/48": uni("2001:db8:73::/48", *two),
        "2001:db8:74::/48": uni("2001:db8:74::/48", *[(p, g, 1) for p, g, _w in two]),
        "fd00::/48": uni("fd00::/48", *two),
        "fd00:0:bb7::/48": uni("fd00:0:bb7::/48", (1, "2001:db8:1::100", 1)),  # the last
    }

    def loaded() -> bool:
        server.apply(watcher.drain())
        return len(server.routes) == base + count + 3 and all(
            server.routes.get(p) == r for p, r in expected.items()
        )

    until(loaded, timeout=30)
    dumped = in_netns(ns, watcher._dumper.load_view, VM)  # the dump path too
    assert dumped.routes == server.routes
    assert in_netns(ns, apply, "del", count) == (count, 0)
    until(lambda: server.apply(watcher.drain()) or len(server.routes) == base + 3, timeout=30)
    assert not [kind for kind in slow if kind in (24, 25)]
    assert slow, "links and nexthop objects still go to pyroute2"

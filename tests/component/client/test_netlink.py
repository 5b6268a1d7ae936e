"""rfclient against a real kernel: a private network namespace per test.

Each namespace holds veth pairs eth1/peer1 and eth2/peer2 (the peers are not
router ports, and give us a place to capture what leaves eth1). Nothing is
created outside the namespace, and the namespace is deleted even on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from routeflow.client import daemon
from routeflow.client.daemon import ClientDaemon, main, parse_vm_id, vm_id_from_interface
from routeflow.client.netlink import (
    NetlinkWatcher,
    enter_netns,
    get_hwaddr,
    poke,
    send_mapping_packet,
)
from routeflow.rflib import ipc
from routeflow.rflib.mapping import MAPPING_ETHERTYPE, decode_mapping_frame
from routeflow.rflib.protocol import (
    ClientHello,
    Mod,
    NeighbourMod,
    NextHop,
    PortConfig,
    PortOperation,
    PortRegister,
    Resync,
    Route,
    RouteKind,
    RouteMod,
)

pytestmark = pytest.mark.component

VM = 0x2A
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces")


def ip(ns: str, command: str) -> None:
    subprocess.run(["ip", "-n", ns, *command.split()], check=True, capture_output=True, timeout=10)


def ip_batch(ns: str, lines: list[str]) -> None:
    done = subprocess.run(
        ["ip", "-n", ns, "-batch", "-"],
        input="\n".join(lines) + "\n",
        text=True,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def in_netns(ns: str, fn: Callable, *args):
    """Run fn(*args) on a fresh thread inside the namespace; return its result."""
    result: dict = {}

    def target():
        try:
            enter_netns(ns)
            result["value"] = fn(*args)
        except BaseException as err:
            result["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture
def netns():
    name = f"rfc{os.getpid()}{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        # These tests are about IPv4: without IPv6, no link-local LOCAL routes
        # appear once DAD completes (IPv6 has its own test_netlink_ipv6.py).
        subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            check=True,
            capture_output=True,
        )
        for n in (1, 2):
            ip(name, f"link add eth{n} type veth peer name peer{n}")
            ip(name, f"link set peer{n} up")
            ip(name, f"link set eth{n} up")
            ip(name, f"addr add 10.0.{n}.1/24 dev eth{n}")
        ip(name, "link set lo up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Server:
    """rfserver's view of one client: deltas applied to dicts."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.neighbours: dict[tuple[int, str], str | None] = {}
        self.ports: dict[int, PortRegister] = {}

    def apply(self, msgs) -> None:
        for m in msgs:
            if isinstance(m, PortRegister):
                self.ports[m.vm_port] = m
            elif isinstance(m, RouteMod):
                for r in m.routes:
                    if m.mod == Mod.ADD:
                        self.routes[r.prefix] = r
                    else:
                        self.routes.pop(r.prefix, None)
            elif isinstance(m, NeighbourMod):
                for n in m.neighbours:
                    if m.mod == Mod.ADD:
                        self.neighbours[(n.vm_port, n.address)] = n.hwaddress
                    else:
                        self.neighbours.pop((n.vm_port, n.address), None)


def wait_until(watcher: NetlinkWatcher, server: Server, cond: Callable[[], bool], timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        server.apply(watcher.drain())
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; server has routes {sorted(server.routes)}")
        time.sleep(0.02)


@pytest.fixture
def watcher(netns):
    w = NetlinkWatcher(VM, netns=netns, reconcile_delay=0.2)
    w.start(timeout=10)
    try:
        yield w
    finally:
        w.stop()


def connected(prefix: str, port: int) -> Route:
    return Route(prefix=prefix, kind=RouteKind.CONNECTED, nexthops=[NextHop(vm_port=port)])


def local(addr: str, port: int) -> Route:
    return Route(prefix=f"{addr}/32", kind=RouteKind.LOCAL, nexthops=[NextHop(vm_port=port)])


def uni(prefix: str, *hops) -> Route:
    return Route(
        prefix=prefix,
        kind=RouteKind.UNICAST,
        nexthops=[NextHop(vm_port=p, gateway=g, weight=w) for p, g, w in hops],
    )


BASE_ROUTES = {
    "10.0.1.0/24": connected("10.0.1.0/24", 1),
    "10.0.2.0/24": connected("10.0.2.0/24", 2),
    "10.0.1.1/32": local("10.0.1.1", 1),
    "10.0.2.1/32": local("10.0.2.1", 2),
}


# --- the watcher ---------------------------------------------------------------------


@needs_root
def test_initial_snapshot(watcher):
    server = Server()
    snapshot, counts = watcher.snapshot()
    server.apply(snapshot)
    assert sorted(server.ports) == [1, 2]
    assert server.ports[1].ifname == "eth1"
    assert server.routes == BASE_ROUTES
    assert counts["routes"] == 4


@needs_root
def test_routes_nexthops_and_neighbours_follow_the_kernel(netns, watcher):
    server = Server()
    server.apply(watcher.snapshot()[0])
    ip(netns, "route add 10.5.0.0/16 via 10.0.1.2")
    ip(netns, "route replace 10.6.0.0/24 nexthop via 10.0.1.2 weight 2 nexthop via 10.0.2.2")
    ip(netns, "nexthop add id 10 via 10.0.1.3 dev eth1")
    ip(netns, "nexthop add id 11 via 10.0.2.3 dev eth2")
    ip(netns, "nexthop add id 12 group 10/11,3")
    ip(netns, "route add 10.9.0.0/24 nhid 10")
    ip(netns, "route add 10.8.0.0/24 nhid 12")
    ip(netns, "neigh replace 10.0.1.2 lladdr 02:00:00:00:01:02 dev eth1 nud reachable")
    expected = dict(BASE_ROUTES)
    expected["10.5.0.0/16"] = uni("10.5.0.0/16", (1, "10.0.1.2", 1))
    expected["10.6.0.0/24"] = uni("10.6.0.0/24", (1, "10.0.1.2", 2), (2, "10.0.2.2", 1))
    expected["10.9.0.0/24"] = uni("10.9.0.0/24", (1, "10.0.1.3", 1))
    expected["10.8.0.0/24"] = uni("10.8.0.0/24", (1, "10.0.1.3", 1), (2, "10.0.2.3", 3))
    wait_until(watcher, server, lambda: server.routes == expected)
    wait_until(watcher, server, lambda: server.neighbours == {(1, "10.0.1.2"): "02:00:00:00:01:02"})
    assert watcher.unresolved_gateways() == {(2, "10.0.2.2"), (1, "10.0.1.3"), (2, "10.0.2.3")}

    # A nexthop change re-emits the routes that use it, directly or through a group.
    ip(netns, "nexthop replace id 10 via 10.0.1.4 dev eth1")
    expected["10.9.0.0/24"] = uni("10.9.0.0/24", (1, "10.0.1.4", 1))
    expected["10.8.0.0/24"] = uni("10.8.0.0/24", (1, "10.0.1.4", 1), (2, "10.0.2.3", 3))
    wait_until(watcher, server, lambda: server.routes == expected)

    # Deleting a nexthop object silently takes its routes (and shrinks its groups).
    ip(netns, "nexthop del id 10")
    del expected["10.9.0.0/24"]
    expected["10.8.0.0/24"] = uni("10.8.0.0/24", (2, "10.0.2.3", 3))
    wait_until(watcher, server, lambda: server.routes == expected)

    ip(netns, "route del 10.5.0.0/16")
    ip(netns, "neigh del 10.0.1.2 dev eth1")
    del expected["10.5.0.0/16"]
    wait_until(watcher, server, lambda: server.routes == expected and not server.neighbours)


@needs_root
def test_link_down_is_followed_even_though_the_kernel_stays_silent(netns, watcher):
    server = Server()
    server.apply(watcher.snapshot()[0])
    ip(netns, "route add 10.5.0.0/16 via 10.0.1.2")
    ip(netns, "route add 10.6.0.0/16 via 10.0.2.2")
    wait_until(watcher, server, lambda: "10.6.0.0/16" in server.routes)
    ip(netns, "link set eth1 down")
    expected = {k: v for k, v in BASE_ROUTES.items() if k != "10.0.1.0/24"}
    expected["10.6.0.0/16"] = uni("10.6.0.0/16", (2, "10.0.2.2", 1))
    # eth1's peer loses carrier as well; the local route of 10.0.1.1 stays.
    wait_until(watcher, server, lambda: server.routes == expected)
    time.sleep(0.4)  # the reconcile dump (reconcile_delay=0.2) must agree
    server.apply(watcher.drain())
    assert server.routes == expected
    assert watcher.resyncs >= 2


@needs_root
def test_overflow_reloads_the_state_and_deletes_what_vanished(netns):
    w = NetlinkWatcher(VM, netns=netns, rcvbuf=4096)
    w.start(timeout=10)
    try:
        server = Server()
        server.apply(w.snapshot()[0])
        ip_batch(netns, [f"route add 10.100.{i}.0/24 via 10.0.1.2" for i in range(50)])
        wait_until(w, server, lambda: len(server.routes) == 54)
        # Hold the view: the thread stops reading, the small buffer overflows.
        before = w.overflows
        with w._lock:
            ip_batch(netns, [f"route del 10.100.{i}.0/24" for i in range(50)])
            ip_batch(
                netns,
                [f"route add 172.{16 + i // 250}.{i % 250}.0/24 via 10.0.2.2" for i in range(2000)],
            )
        expected = dict(BASE_ROUTES)
        for i in range(2000):
            p = f"172.{16 + i // 250}.{i % 250}.0/24"
            expected[p] = uni(p, (2, "10.0.2.2", 1))
        wait_until(w, server, lambda: server.routes == expected, timeout=8)
        assert w.overflows > before
    finally:
        w.stop()


# --- frames out ------------------------------------------------------------------------


class Capture:
    """Capture in the namespace on a background thread, started before the traffic."""

    def __init__(self, ns: str, iface: str, ethertype: int, count: int, timeout: float = 3.0):
        self.frames: list[bytes] = []
        self._ready = threading.Event()

        def run():
            enter_netns(ns)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype)) as s:
                s.bind((iface, 0))
                s.settimeout(timeout)
                self._ready.set()
                with contextlib.suppress(TimeoutError):
                    while len(self.frames) < count:
                        self.frames.append(s.recv(2048))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def wait(self) -> list[bytes]:
        self._thread.join(10)
        return self.frames


def hwaddr(ns: str, iface: str) -> str:
    return in_netns(ns, get_hwaddr, iface)


@needs_root
def test_mapping_frame_leaves_the_interface(netns):
    cap = Capture(netns, "peer1", MAPPING_ETHERTYPE, 1)
    in_netns(netns, send_mapping_packet, "eth1", VM, 1)
    (frame,) = cap.wait()
    assert frame[:6] == b"\xff" * 6
    assert len(frame) >= 60
    assert decode_mapping_frame(frame) == (hwaddr(netns, "eth1"), VM, 1)


@needs_root
def test_poke_makes_the_kernel_arp_for_the_gateway(netns):
    cap = Capture(netns, "peer1", 0x0806, 1)
    assert in_netns(netns, poke, "10.0.1.2", "eth1")
    (frame,) = cap.wait()
    op, target = struct.unpack("!H", frame[20:22])[0], socket.inet_ntoa(frame[38:42])
    assert (op, target) == (1, "10.0.1.2")  # an ARP request for the gateway


# --- the daemon ------------------------------------------------------------------------


@needs_root
def test_daemon_resyncs_streams_and_sends_mapping_packets(netns, tmp_path):
    async def scenario():
        sessions: list[asyncio.Queue] = []
        conns: list[ipc.Connection] = []

        async def handler(conn):
            queue: asyncio.Queue = asyncio.Queue()
            sessions.append(queue)
            conns.append(conn)
            async for msg in conn:
                await queue.put(msg)

        address = f"unix:{tmp_path}/rfserver.sock"
        server = await ipc.serve(address, handler)
        client = ClientDaemon(VM, address, poke_interval=0.2, netns=netns, hostname="vm42")
        task = asyncio.create_task(client.run())

        async def until(queue, pred):
            while True:
                msg = await asyncio.wait_for(queue.get(), 5)
                if pred(msg):
                    return msg

        async def resync(queue):
            msgs = [await asyncio.wait_for(queue.get(), 5)]
            while msgs[-1] != Resync(phase="end", scope=VM):
                msgs.append(await asyncio.wait_for(queue.get(), 5))
            return msgs

        try:
            while not sessions:
                await asyncio.sleep(0.01)
            first = await resync(sessions[0])
            assert first[:2] == [
                ClientHello(vm_id=VM, hostname="vm42"),
                Resync(phase="begin", scope=VM),
            ]
            state = Server()
            state.apply(first)
            assert sorted(state.ports) == [1, 2]
            assert state.routes == BASE_ROUTES

            ip(netns, "route add 10.5.0.0/16 via 10.0.1.2")
            msg = await until(sessions[0], lambda m: isinstance(m, RouteMod))
            assert msg == RouteMod(
                mod=Mod.ADD, vm_id=VM, routes=[uni("10.5.0.0/16", (1, "10.0.1.2", 1))]
            )

            cap = Capture(netns, "peer2", MAPPING_ETHERTYPE, daemon.MAPPING_SENDS)
            await conns[0].send(
                PortConfig(vm_id=VM, vm_port=2, operation_id=PortOperation.SEND_MAPPING_PACKET)
            )
            frames = await asyncio.to_thread(cap.wait)
            assert len(frames) == daemon.MAPPING_SENDS
            assert {decode_mapping_frame(f)[1:] for f in frames} == {(VM, 2)}

            # The gateway 10.0.1.2 is unresolved: the daemon keeps poking it.
            arp = Capture(netns, "peer1", 0x0806, 1)
            assert len(await asyncio.to_thread(arp.wait)) == 1

            # The server drops us: the client comes back with a full resync.
            await conns[0].close()
            while len(sessions) < 2:
                await asyncio.sleep(0.01)
            second = Server()
            second.apply(await resync(sessions[1]))
            assert second.routes == {**BASE_ROUTES, "10.5.0.0/16": msg.routes[0]}
        finally:
            client.stop()
            await asyncio.wait_for(task, 10)
            server.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


# --- command line ---------------------------------------------------------------------


def test_parse_vm_id():
    assert parse_vm_id("42") == 42
    assert parse_vm_id("0x2a") == 42
    assert parse_vm_id("010") == 10
    for bad in ("x", "-1", str(2**64), ""):
        with pytest.raises(ValueError, match="--vm-id"):
            parse_vm_id(bad)


def test_vm_id_from_the_mgmt_interface_mac():
    assert vm_id_from_interface("lo") == 0
    with pytest.raises(ValueError, match="no such interface"):
        vm_id_from_interface("nosuchif0")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vm-id", "zz"], "bad --vm-id 'zz'"),
        (["--mgmt-if", "nosuchif0"], "no such interface"),
        ([], "give --vm-id"),
        (["--vm-id", "1", "--server", "http://x"], "bad address"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err

"""Record the kernel's route notifications for the fastnl tests (run as root).

    cd tests/unit/client/data
    PYTHONPATH=../../../../src python capture_netlink.py > netlink.txt

Each step runs ``ip`` commands in a private namespace (deleted afterwards) and
writes a ``# step`` line followed by every datagram the kernel sent to a
socket subscribed to IPv4/IPv6 routes and nexthop objects, one hex line each;
the last steps are dumps (several messages per datagram). The file is data:
tests read it, nothing regenerates it on its own.
"""

from __future__ import annotations

import os
import platform
import secrets
import socket
import struct
import subprocess
import sys
import time

from routeflow.bench.nlroutes import apply_routes
from routeflow.client.netlink import enter_netns, open_event_socket

STEPS: list[tuple[str, list[str]]] = [
    ("dump links", []),
    ("v6 connected and local routes of an address", ["-6 addr add 2001:db8:9::1/64 dev eth1"]),
    ("v6 via a gateway", ["-6 route add 2001:db8:100::/48 via 2001:db8:1::100 dev eth1"]),
    ("v6 with a metric", ["-6 route add 2001:db8:101::/48 via 2001:db8:1::100 metric 20"]),
    ("v6 replace", ["-6 route replace 2001:db8:100::/48 via 2001:db8:2::100 dev eth2"]),
    ("v6 on-link", ["-6 route add 2001:db8:102::/48 dev eth1"]),
    ("v6 link-local gateway", ["-6 route add 2001:db8:106::/48 via fe80::1 dev eth1"]),
    ("v6 default route", ["-6 route add default via 2001:db8:2::100 dev eth2"]),
    ("v6 mapped prefix", ["-6 route add ::ffff:1.2.3.0/120 via 2001:db8:1::100 dev eth1"]),
    (
        "v6 ECMP",
        [
            "-6 route add 2001:db8:103::/48 nexthop via 2001:db8:1::100 dev eth1 "
            "nexthop via 2001:db8:2::100 dev eth2 weight 3"
        ],
    ),
    ("v6 ECMP append", ["-6 route append 2001:db8:103::/48 via 2001:db8:1::101 dev eth1"]),
    ("v6 ECMP delete one hop", ["-6 route del 2001:db8:103::/48 via 2001:db8:1::101 dev eth1"]),
    (
        "nexthop objects",
        [
            "nexthop add id 1 via 2001:db8:1::100 dev eth1",
            "nexthop add id 2 via 2001:db8:2::100 dev eth2",
            "nexthop add id 10 group 1/2,3",
            "nexthop add id 3 via 10.0.1.100 dev eth1",
            "nexthop add id 4 via 10.0.2.100 dev eth2",
            "nexthop add id 11 group 3/4",
        ],
    ),
    ("v6 nexthop object", ["-6 route add 2001:db8:104::/48 nhid 1"]),
    ("v6 nexthop group", ["-6 route add 2001:db8:105::/48 nhid 10"]),
    ("v6 replace by a group", ["-6 route replace 2001:db8:101::/48 nhid 10 metric 20"]),
    ("v4 via a gateway", ["route add 100.64.3.0/24 via 10.0.1.100 dev eth1"]),
    ("v4 over an IPv6 gateway (RFC 5549)", ["route add 100.64.0.0/24 via inet6 fe80::1 dev eth1"]),
    (
        "v4 ECMP",
        [
            "route add 100.64.1.0/24 nexthop via 10.0.1.100 dev eth1 "
            "nexthop via 10.0.2.100 dev eth2 weight 2"
        ],
    ),
    ("v4 nexthop group", ["route add 100.64.2.0/24 nhid 11"]),
    ("v4 nexthop object over IPv6", ["route add 100.64.4.0/24 nhid 1"]),
    ("v6 blackhole", ["-6 route add blackhole 2001:db8:107::/48"]),
    ("v6 other table", ["-6 route add 2001:db8:108::/48 via 2001:db8:1::100 table 100"]),
    ("bench routes v6 add", []),
    ("bench routes v4 add", []),
    ("dump v6", []),
    ("dump v4", []),
    (
        "deletes",
        [
            "-6 route del 2001:db8:100::/48",
            "-6 route del 2001:db8:101::/48 metric 20",
            "-6 route del 2001:db8:102::/48",
            "-6 route del 2001:db8:103::/48",
            "-6 route del 2001:db8:104::/48",
            "-6 route del 2001:db8:106::/48",
            "-6 route del ::ffff:1.2.3.0/120",
            "-6 route del default",
            "route del 100.64.0.0/24",
            "route del 100.64.1.0/24",
            "route del 100.64.3.0/24",
            "route del 100.64.4.0/24",
        ],
    ),
    ("bench routes v6 del", []),
    ("bench routes v4 del", []),
    ("nexthop group delete takes its routes", ["nexthop del id 10"]),
    ("link down", ["link set eth1 down"]),
]


def ip(ns: str, args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args.split()], check=True, capture_output=True, timeout=10)


def read_all(sock: socket.socket) -> list[bytes]:
    out = []
    time.sleep(0.05)
    while True:
        try:
            out.append(sock.recv(1 << 20))
        except BlockingIOError:
            return out


RTM_GETLINK = 18
RTM_GETROUTE = 26


def dump(ns_sock: socket.socket, kind: int, body: bytes) -> list[bytes]:
    ns_sock.send(struct.pack("=IHHII", 16 + len(body), kind, 0x301, 1, 0) + body)
    out = []
    while True:
        data = ns_sock.recv(1 << 20)
        out.append(data)
        if struct.unpack_from("=H", data, 4)[0] == 3:  # NLMSG_DONE
            return out


def main() -> int:
    ns = f"rfcap{os.getpid()}{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for setting in ("net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.forwarding=1"):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting], check=True)
        for n in (1, 2):
            ip(ns, f"link add eth{n} type veth peer name peer{n}")
            ip(ns, f"link set peer{n} up")
            ip(ns, f"link set eth{n} up")
            ip(ns, f"addr add 10.0.{n}.1/24 dev eth{n}")
            ip(ns, f"-6 addr add 2001:db8:{n}::1/64 dev eth{n}")
        time.sleep(0.5)
        enter_netns(ns)
        sock = open_event_socket(1 << 20)
        dumper = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        dumper.bind((0, 0))
        print(f"# captured on Linux {platform.release()} by capture_netlink.py")
        for name, commands in STEPS:
            read_all(sock)
            for command in commands:
                ip(ns, command)
            if name == "dump links":
                got = dump(dumper, RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0))
            elif name.startswith("dump"):
                family = socket.AF_INET6 if "v6" in name else socket.AF_INET
                got = dump(dumper, RTM_GETROUTE, struct.pack("=BBBBBBBBI", family, *[0] * 8))
            elif name.startswith("bench routes"):
                v6 = "v6" in name
                op = "add" if name.endswith("add") else "del"
                via = "2001:db8:1::100" if v6 else "10.0.1.100"
                apply_routes(op, 3, via=via, dev="eth1", ipv6=v6, prefixlen=48 if v6 else 24)
                got = read_all(sock)
            else:
                got = read_all(sock)
            print(f"# {name}")
            for data in got:
                print(data.hex())
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    return 0


if __name__ == "__main__":
    sys.exit(main())

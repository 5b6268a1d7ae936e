"""Load (or remove) many IPv4 or IPv6 routes into the kernel of the current namespace, fast.

``ip -batch`` takes about 20 s for a million routes here (one request and one
acknowledgement per route); the kernel itself needs about 3 s. This writes
RTM_NEWROUTE/RTM_DELROUTE requests straight to a netlink socket, thousands per
datagram and without acknowledgements (errors are still reported, and counted).
The routes are what a BGP daemon installs: one prefix each, through one gateway.

    python -m routeflow.bench.nlroutes add --count 1000000 --via 172.31.2.100 --dev eth2
    python -m routeflow.bench.nlroutes del --count 1000000
    python -m routeflow.bench.nlroutes add --ipv6 --count 100000 --via 2001:db8:f::100 --dev eth2
    python -m routeflow.bench.nlroutes add --routes routes.txt --dev eth2 --ready

A routes file (``prefix gateway`` per line, both families) is what `bench fib
--table` loads: the kernel's best route of each prefix of a table.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import struct
import sys
import time
from collections.abc import Iterator

__all__ = [
    "DEFAULT_START",
    "DEFAULT_START6",
    "PROTO",
    "RoutesFileError",
    "apply_routes",
    "main",
    "pack_route_list",
    "prefixes",
    "prefixes6",
    "read_routes",
    "send_packed",
]

RTM_NEWROUTE = 24
RTM_DELROUTE = 25
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
#: Routes this tool installs carry their own protocol number, so that
#: ``ip route flush proto 99`` removes exactly them.
PROTO = 99
DEFAULT_START = "100.0.0.0"
#: IPv6 routes come out of the unique local range (fd00::/8): 2**40 /48s, and
#: never the lab's own addresses (a lab /48 is derived from its name, and the
#: benchmark's gateway link is in the documentation range 2001:db8::/32).
DEFAULT_START6 = "fd00::"
#: First octets never used (private lab space, loopback, link-local, multicast+).
_SKIP_FIRST_OCTET = frozenset({0, 10, 127, 169, 172, 192})

_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_ADD = struct.Struct("=IHHII BBBBBBBBI HH4s HH4s HHI")
_DEL = struct.Struct("=IHHII BBBBBBBBI HH4s")
_ADD6 = struct.Struct("=IHHII BBBBBBBBI HH16s HH16s HHI")
_DEL6 = struct.Struct("=IHHII BBBBBBBBI HH16s")
_PER_SEND = 4096


def prefixes(count: int, start: str = DEFAULT_START, prefixlen: int = 24) -> Iterator[int]:
    """``count`` distinct network addresses (as ints) of length ``prefixlen``.

    Consecutive blocks from ``start``, skipping first octets that lab networks
    or the kernel reserve; raises ValueError when unicast space runs out.
    """
    if not 8 <= prefixlen <= 32:
        raise ValueError(f"prefix length {prefixlen} is outside 8-32")
    step = 1 << (32 - prefixlen)
    addr = int(ipaddress.IPv4Address(start)) & ~(step - 1) & 0xFFFFFFFF
    made = 0
    while made < count:
        first = addr >> 24
        if first >= 224:
            raise ValueError(f"only {made} /{prefixlen} prefixes fit below 224.0.0.0")
        if first in _SKIP_FIRST_OCTET:
            addr = (first + 1) << 24
            continue
        yield addr
        made += 1
        addr += step


def prefixes6(count: int, start: str = DEFAULT_START6, prefixlen: int = 48) -> Iterator[int]:
    """``count`` consecutive IPv6 network addresses (as ints) of length ``prefixlen``.

    From ``start`` upwards within its /8 (fd00::/8 by default): never into
    another range by accident; raises ValueError when the /8 runs out.
    """
    if not 16 <= prefixlen <= 128:
        raise ValueError(f"prefix length {prefixlen} is outside 16-128")
    step = 1 << (128 - prefixlen)
    addr = int(ipaddress.IPv6Address(start)) & ~(step - 1)
    top = ((addr >> 120) + 1) << 120
    if addr + count * step > top:
        raise ValueError(f"{count} /{prefixlen} prefixes do not fit in {start}/8")
    return iter(range(addr, addr + count * step, step))


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    for opt, fallback in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, fallback, 32 << 20)
    sock.bind((0, 0))
    return sock


def _count_errors(sock: socket.socket) -> tuple[int, int]:
    """(errors, first errno) among the replies queued so far (non-blocking)."""
    errors = first = 0
    while True:
        try:
            data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return errors, first
        except OSError as err:
            if err.errno == errno.ENOBUFS:  # more errors than the buffer holds
                errors += 1
                continue
            raise
        off = 0
        while off + 16 <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
            if kind == NLMSG_ERROR and length >= 20:
                code = struct.unpack_from("=i", data, off + 16)[0]
                if code:
                    errors += 1
                    first = first or -code
            off += (length + 3) & ~3 if length else len(data)


def apply_routes(
    op: str,
    count: int,
    *,
    via: str | None = None,
    dev: str | None = None,
    start: str | None = None,
    prefixlen: int = 24,
    ipv6: bool = False,
) -> tuple[int, int]:
    """Add (replace) or delete ``count`` routes; returns (requests sent, errors)."""
    if op not in ("add", "del"):
        raise ValueError(f"unknown operation {op!r}")
    if op == "add" and (via is None or dev is None):
        raise ValueError("adding routes needs a gateway (via) and a device (dev)")
    sock = _socket()
    try:
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        alen = 20 if ipv6 else 8  # rtattr header + address
        if op == "add":
            gw = socket.inet_pton(family, via or "")
            oif = socket.if_nametoindex(dev or "")
            st = _ADD6 if ipv6 else _ADD
            kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        else:
            gw, oif = b"", 0
            st, kind, flags = _DEL6 if ipv6 else _DEL, RTM_DELROUTE, NLM_F_REQUEST
        if ipv6:
            nets = prefixes6(count, start or DEFAULT_START6, prefixlen)
            dst_pack = _pack128
        else:
            nets = prefixes(count, start or DEFAULT_START, prefixlen)
            dst_pack = struct.Struct("!I").pack
        size = st.size
        buf = bytearray(size * _PER_SEND)
        pack = st.pack_into
        sent = errors = first_errno = 0
        fill = 0
        tail = (alen, RTA_GATEWAY, gw, 8, RTA_OIF, oif) if op == "add" else ()
        for seq, net in enumerate(nets, 1):
            pack(
                buf,
                fill * size,
                size,
                kind,
                flags,
                seq,
                0,
                family,
                prefixlen,
                0,
                0,
                RT_TABLE_MAIN,
                PROTO,
                0,
                RTN_UNICAST,
                0,
                alen,
                RTA_DST,
                dst_pack(net),
                *tail,
            )
            fill += 1
            if fill == _PER_SEND:
                sock.send(buf)
                sent += fill
                fill = 0
                e, f = _count_errors(sock)
                errors += e
                first_errno = first_errno or f
        if fill:
            sock.send(bytes(buf[: fill * size]))
            sent += fill
        e, f = _count_errors(sock)
        errors += e
        first_errno = first_errno or f
        if errors:
            print(
                f"nlroutes: {errors} of {sent} requests failed "
                f"(first: {errno.errorcode.get(first_errno, first_errno)})",
                file=sys.stderr,
            )
        return sent, errors
    finally:
        sock.close()


def _pack128(value: int) -> bytes:
    return value.to_bytes(16, "big")


class RoutesFileError(ValueError):
    """A line of a routes file that is not ``prefix gateway``; names the file and line."""


def read_routes(path: str) -> list[tuple[int, int, bytes, bytes]]:
    """A routes file: ``prefix gateway`` per line (either family, mixed), ``#`` comments.

    Returns (family, prefix length, network bytes, gateway bytes) per route.
    """
    out: list[tuple[int, int, bytes, bytes]] = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].split()
            if not text:
                continue
            try:
                if len(text) != 2:
                    raise ValueError(f"want 'prefix gateway', got {len(text)} fields")
                addr, _, plen_text = text[0].partition("/")
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                net = socket.inet_pton(family, addr)
                plen = int(plen_text)
                if not 0 <= plen <= len(net) * 8:
                    raise ValueError(f"prefix length {plen} is out of range")
                gw = socket.inet_pton(family, text[1])
            except (OSError, ValueError) as err:
                raise RoutesFileError(f"{path}:{lineno}: {err}") from None
            out.append((family, plen, net, gw))
    return out


def pack_route_list(op: str, routes: list[tuple[int, int, bytes, bytes]], oif: int) -> list[bytes]:
    """RTM_NEWROUTE (replace) or RTM_DELROUTE requests for ``routes``, in datagrams."""
    out = []
    buf = bytearray()
    for seq, (family, plen, net, gw) in enumerate(routes, 1):
        v6 = family == socket.AF_INET6
        alen = 20 if v6 else 8
        if op == "add":
            st = _ADD6 if v6 else _ADD
            head = (st.size, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE, seq, 0)
            tail: tuple = (alen, RTA_GATEWAY, gw, 8, RTA_OIF, oif)
        else:
            st = _DEL6 if v6 else _DEL
            head = (st.size, RTM_DELROUTE, NLM_F_REQUEST, seq, 0)
            tail = ()
        buf += st.pack(
            *head,
            family,
            plen,
            0,
            0,
            RT_TABLE_MAIN,
            PROTO,
            0,
            RTN_UNICAST,
            0,
            alen,
            RTA_DST,
            net,
            *tail,
        )
        if seq % _PER_SEND == 0:
            out.append(bytes(buf))
            buf = bytearray()
    if buf:
        out.append(bytes(buf))
    return out


def send_packed(datagrams: list[bytes]) -> tuple[int, int]:
    """Send prepared requests; returns (requests sent, errors), as apply_routes."""
    sock = _socket()
    try:
        sent = errors = first_errno = 0
        for data in datagrams:
            sock.send(data)
            sent += _count_messages(data)
            e, f = _count_errors(sock)
            errors += e
            first_errno = first_errno or f
        e, f = _count_errors(sock)
        errors += e
        first_errno = first_errno or f
        if errors:
            print(
                f"nlroutes: {errors} of {sent} requests failed "
                f"(first: {errno.errorcode.get(first_errno, first_errno)})",
                file=sys.stderr,
            )
        return sent, errors
    finally:
        sock.close()


def _count_messages(data: bytes) -> int:
    n = off = 0
    while off + 16 <= len(data):
        n += 1
        off += (_NLMSG.unpack_from(data, off)[0] + 3) & ~3
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routeflow.bench.nlroutes", description=__doc__)
    parser.add_argument("op", choices=["add", "del"])
    parser.add_argument("--count", type=int)
    parser.add_argument("--via", help="gateway (add)")
    parser.add_argument("--dev", help="output device (add)")
    parser.add_argument("--start", default=None, help=f"{DEFAULT_START} ({DEFAULT_START6})")
    parser.add_argument("--prefixlen", type=int, default=24)
    parser.add_argument("--ipv6", action="store_true", help="IPv6 routes (fd00::/8)")
    parser.add_argument(
        "--routes",
        metavar="FILE",
        help="the routes of FILE ('prefix gateway' lines, both families) instead of --count; "
        "with --ready, they are packed first, 'ready' is printed and a line on stdin starts it",
    )
    parser.add_argument("--ready", action="store_true", help="see --routes")
    args = parser.parse_args(argv)
    if args.routes:
        return _main_routes(args)
    if args.count is None:
        parser.error("--count or --routes is required")
    t = time.perf_counter()
    try:
        sent, errors = apply_routes(
            args.op,
            args.count,
            via=args.via,
            dev=args.dev,
            start=args.start,
            prefixlen=args.prefixlen,
            ipv6=args.ipv6,
        )
    except (OSError, ValueError) as err:
        print(f"nlroutes: {err}", file=sys.stderr)
        return 2
    print(f"{args.op} {sent} routes in {time.perf_counter() - t:.3f} s, {errors} errors")
    return 1 if errors else 0


def _main_routes(args: argparse.Namespace) -> int:
    try:
        routes = read_routes(args.routes)
        oif = socket.if_nametoindex(args.dev) if args.op == "add" else 0
        datagrams = pack_route_list(args.op, routes, oif)
    except (OSError, ValueError) as err:
        print(f"nlroutes: {err}", file=sys.stderr)
        return 2
    if args.ready:
        print("ready", flush=True)
        sys.stdin.readline()
    t = time.perf_counter()
    try:
        sent, errors = send_packed(datagrams)
    except OSError as err:
        print(f"nlroutes: {err}", file=sys.stderr)
        return 2
    print(f"{args.op} {sent} routes in {time.perf_counter() - t:.3f} s, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

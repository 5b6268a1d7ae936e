"""A minimal BGP speaker for `bench bgp`: announces a table file's prefixes.

    python -m routeflow.bench.bgpfeed TABLE --asn 65100 --peer-as 65001 \\
        --local 192.0.2.2 --peer 192.0.2.1 [--local6 fd00::2] --go FILE --log FILE

ExaBGP takes one API command (or configuration line) per prefix and parses
each in Python: a full table through it measures ExaBGP. This speaker packs
the UPDATE messages itself before the clock starts (prefixes sharing an AS
path share a message, up to 4096 bytes), connects to the peer (the VM's
bgpd), and once ``--go`` exists writes them as fast as the session takes
them. It logs ``first WALLTIME`` just before its first UPDATE, ``last
WALLTIME`` after the last and then ``done``; ``established`` once the
session is up, ``notification CODE SUBCODE`` if the peer sends one. It keeps
the session up with a KEEPALIVE every second (the lab's bgpd holds for 9 s)
and reads (and drops) whatever the peer sends, until it is killed.

``--prepend N`` puts its own AS N more times at the head of every path (a backup
peer: the VM's bgpd prefers the other peer's shorter paths). With ``--down
FILE``, once the table is sent and FILE exists, the speaker goes down as a peer
shut down by its operator does: it logs ``down WALLTIME``, sends a NOTIFICATION
(Cease, Administrative Shutdown: RFC 4486), closes the session and exits; the
VM's bgpd drops every route it learnt from it at once (no graceful restart: the
OPEN offers none).

IPv4 unicast over the IPv4 session; with ``--local6`` also IPv6 unicast over the
same session (MP-BGP, RFC 4760: MP_REACH_NLRI with that address as the next hop),
as a dual-stack edge peer sends it. Without ``--local6`` a table's IPv6 prefixes
are left out (counted in the log).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator

from routeflow.bench.table import TableError, read_table_file

__all__ = ["nlri", "open_message", "updates"]

MARKER = b"\xff" * 16
MAX_MESSAGE = 4096
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
CEASE, ADMINISTRATIVE_SHUTDOWN = 6, 2  # RFC 4486
AS_TRANS = 23456
KEEPALIVE_MSG = MARKER + struct.pack("!HB", 19, KEEPALIVE)


def _message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold: int = 90, ipv6: bool = False) -> bytes:
    """OPEN with IPv4 unicast (and IPv6 unicast with ``ipv6``: RFC 4760) and
    four-octet AS (RFC 6793) capabilities."""
    caps = bytes((1, 4)) + struct.pack("!HBB", 1, 0, 1)  # multiprotocol: AFI 1, SAFI 1
    if ipv6:
        caps += bytes((1, 4)) + struct.pack("!HBB", 2, 0, 1)  # AFI 2 (IPv6), SAFI 1
    caps += bytes((65, 4)) + struct.pack("!I", asn)  # four-octet AS
    params = bytes((2, len(caps))) + caps
    body = struct.pack(
        "!BHH4sB",
        4,
        asn if asn < 65536 else AS_TRANS,
        hold,
        socket.inet_aton(router_id),
        len(params),
    )
    return _message(OPEN, body + params)


def nlri(prefix: str) -> bytes:
    """One prefix (either family) as NLRI: its length, then the bytes it needs."""
    addr, _, plen_text = prefix.partition("/")
    plen = int(plen_text)
    if ":" in addr:
        return bytes((plen,)) + socket.inet_pton(socket.AF_INET6, addr)[: (plen + 7) // 8]
    return bytes((plen,)) + socket.inet_aton(addr)[: (plen + 7) // 8]


def _path_attributes(path: tuple[int, ...]) -> bytes:
    """ORIGIN and AS_PATH (four-octet ASes, RFC 6793)."""
    origin = bytes((0x40, 1, 1, 0))  # IGP
    segs = b""
    for i in range(0, len(path), 255):
        part = path[i : i + 255]
        segs += bytes((2, len(part))) + b"".join(struct.pack("!I", a) for a in part)
    if len(segs) < 256:
        as_path = bytes((0x40, 2, len(segs))) + segs
    else:  # extended length
        as_path = bytes((0x50, 2)) + struct.pack("!H", len(segs)) + segs
    return origin + as_path


def _chunks(prefixes: list[bytes], room: int) -> Iterator[bytes]:
    """Encoded prefixes joined into runs of at most ``room`` bytes."""
    part: list[bytes] = []
    size = 0
    for p in prefixes:
        if size + len(p) > room:
            yield b"".join(part)
            part, size = [], 0
        part.append(p)
        size += len(p)
    if part:
        yield b"".join(part)


def notification(code: int, subcode: int) -> bytes:
    return _message(NOTIFICATION, bytes((code, subcode)))


def updates(
    routes: Iterable[tuple[str, tuple[int, ...]]],
    asn: int,
    next_hop: str,
    next_hop6: str | None = None,
    prepend: int = 0,
) -> Iterator[bytes]:
    """UPDATE messages announcing ``(prefix, as_path)`` behind ``asn`` (``1 + prepend``
    times): IPv4 prefixes via ``next_hop`` in the NLRI field, IPv6 ones via
    ``next_hop6`` in MP_REACH_NLRI (one family per message); prefixes with the same
    path share messages of at most 4096 bytes. An IPv6 prefix without ``next_hop6`` is
    a ValueError."""
    by_path: dict[tuple[int, ...], list[bytes]] = {}
    by_path6: dict[tuple[int, ...], list[bytes]] = {}
    own = (asn,) * (1 + prepend)
    for prefix, path in routes:
        into = by_path6 if ":" in prefix else by_path
        into.setdefault((*own, *path), []).append(nlri(prefix))
    if by_path6 and next_hop6 is None:
        raise ValueError("IPv6 prefixes need an IPv6 next hop")
    hop = bytes((0x40, 3, 4)) + socket.inet_aton(next_hop)
    for path, prefixes in by_path.items():
        attrs = _path_attributes(path) + hop
        head = struct.pack("!HH", 0, len(attrs)) + attrs
        for run in _chunks(prefixes, MAX_MESSAGE - 19 - len(head)):
            yield _message(UPDATE, head + run)
    if not by_path6:
        return
    assert next_hop6 is not None
    # MP_REACH_NLRI: AFI 2, SAFI 1, next hop (16 bytes, global), reserved, NLRI.
    mp_fixed = struct.pack("!HBB", 2, 1, 16) + socket.inet_pton(socket.AF_INET6, next_hop6)
    mp_fixed += b"\x00"
    for path, prefixes in by_path6.items():
        common = _path_attributes(path)
        room = MAX_MESSAGE - 19 - 4 - len(common) - 4 - len(mp_fixed)
        for run in _chunks(prefixes, room):
            value = mp_fixed + run
            # optional, non-transitive, extended length; type 14
            mp = bytes((0x90, 14)) + struct.pack("!H", len(value)) + value
            attrs = common + mp
            yield _message(UPDATE, struct.pack("!HH", 0, len(attrs)) + attrs)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise ConnectionError("the peer closed the session")
        buf += data
    return buf


def _read_message(sock: socket.socket) -> tuple[int, bytes]:
    head = _recv_exact(sock, 19)
    length, kind = struct.unpack("!HB", head[16:19])
    return kind, _recv_exact(sock, length - 19)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routeflow.bench.bgpfeed")
    parser.add_argument("table")
    parser.add_argument("--asn", type=int, required=True)
    parser.add_argument("--peer-as", type=int, required=True)
    parser.add_argument("--local", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--local6", default=None, help="IPv6 next hop: announce IPv6 too")
    parser.add_argument("--go", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--prepend", type=int, default=0, help="own AS this many more times")
    parser.add_argument("--down", default=None, help="once this file exists: Cease, exit")
    args = parser.parse_args(argv)
    log = open(args.log, "w", buffering=1)  # noqa: SIM115
    try:
        table = read_table_file(args.table)
    except (OSError, TableError) as err:
        print(f"bgpfeed: {err}", file=sys.stderr)
        return 2
    routes = [
        (e.prefix, e.as_path) for e in table if args.local6 is not None or ":" not in e.prefix
    ]
    log.write(f"prefixes {len(routes)} ipv6-left-out {len(table) - len(routes)}\n")
    del table
    # Whole messages per write: a KEEPALIVE goes between two writes, never into one.
    batches: list[bytes] = []
    part: list[bytes] = []
    size = total = 0
    for msg in updates(routes, args.asn, args.local, args.local6, args.prepend):
        if size + len(msg) > 65536:
            batches.append(b"".join(part))
            part, size = [], 0
        part.append(msg)
        size += len(msg)
        total += len(msg)
    if part:
        batches.append(b"".join(part))
    log.write(f"packed {total} bytes\n")
    del routes, part
    lock = threading.Lock()
    while True:  # the VM's bgpd may not be up yet
        try:
            sock = socket.create_connection(
                (args.peer, 179), timeout=5, source_address=(args.local, 0)
            )
            break
        except OSError:
            time.sleep(0.5)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(open_message(args.asn, args.local, ipv6=args.local6 is not None))
    kind, _body = _read_message(sock)
    if kind != OPEN:
        log.write(f"expected OPEN, got {kind}\n")
        return 1
    sock.sendall(KEEPALIVE_MSG)

    def reader() -> None:
        try:
            while True:
                kind, body = _read_message(sock)
                if kind == KEEPALIVE and not established.is_set():
                    established.set()
                    log.write("established\n")
                elif kind == NOTIFICATION:
                    log.write(f"notification {body[0]} {body[1]}\n")
                    os._exit(1)
        except OSError as exc:
            log.write(f"session closed: {exc}\n")
            os._exit(1)

    def keepalive() -> None:
        while True:
            time.sleep(1.0)
            with lock:
                sock.sendall(KEEPALIVE_MSG)

    established = threading.Event()
    threading.Thread(target=reader, daemon=True).start()
    established.wait()
    threading.Thread(target=keepalive, daemon=True).start()
    while not os.path.exists(args.go):
        time.sleep(0.01)
    log.write(f"first {time.time():.6f}\n")
    for batch in batches:
        with lock:
            sock.sendall(batch)
    log.write(f"last {time.time():.6f}\ndone\n")
    if args.down is None:
        while True:
            time.sleep(3600)
    while not os.path.exists(args.down):
        time.sleep(0.005)
    with lock:  # no KEEPALIVE after the NOTIFICATION
        log.write(f"down {time.time():.6f}\n")
        sock.sendall(notification(CEASE, ADMINISTRATIVE_SHUTDOWN))
        sock.shutdown(socket.SHUT_WR)
        log.write("notified\n")
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

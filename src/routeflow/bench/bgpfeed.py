"""A minimal BGP speaker for `bench bgp`: announces a table file's IPv4 prefixes.

    python -m routeflow.bench.bgpfeed TABLE --asn 65100 --peer-as 65001 \\
        --local 192.0.2.2 --peer 192.0.2.1 --go FILE --log FILE

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

IPv4 unicast only: a table's IPv6 prefixes are left out (counted in the log).
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
AS_TRANS = 23456
KEEPALIVE_MSG = MARKER + struct.pack("!HB", 19, KEEPALIVE)


def _message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold: int = 90) -> bytes:
    """OPEN with IPv4 unicast (RFC 4760) and four-octet AS (RFC 6793) capabilities."""
    caps = bytes((1, 4)) + struct.pack("!HBB", 1, 0, 1)  # multiprotocol: AFI 1, SAFI 1
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
    """One IPv4 prefix as NLRI: its length, then the bytes it needs."""
    addr, _, plen_text = prefix.partition("/")
    plen = int(plen_text)
    return bytes((plen,)) + socket.inet_aton(addr)[: (plen + 7) // 8]


def _attributes(path: tuple[int, ...], next_hop: str) -> bytes:
    origin = bytes((0x40, 1, 1, 0))  # IGP
    segs = b""
    for i in range(0, len(path), 255):
        part = path[i : i + 255]
        segs += bytes((2, len(part))) + b"".join(struct.pack("!I", a) for a in part)
    if len(segs) < 256:
        as_path = bytes((0x40, 2, len(segs))) + segs
    else:  # extended length
        as_path = bytes((0x50, 2)) + struct.pack("!H", len(segs)) + segs
    hop = bytes((0x40, 3, 4)) + socket.inet_aton(next_hop)
    return origin + as_path + hop


def updates(
    routes: Iterable[tuple[str, tuple[int, ...]]], asn: int, next_hop: str
) -> Iterator[bytes]:
    """UPDATE messages announcing ``(prefix, as_path)`` behind ``asn`` via ``next_hop``:
    prefixes with the same path share messages of at most 4096 bytes."""
    by_path: dict[tuple[int, ...], list[bytes]] = {}
    for prefix, path in routes:
        by_path.setdefault((asn, *path), []).append(nlri(prefix))
    for path, prefixes in by_path.items():
        attrs = _attributes(path, next_hop)
        head = struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs
        room = MAX_MESSAGE - 19 - len(head)
        part: list[bytes] = []
        size = 0
        for p in prefixes:
            if size + len(p) > room:
                yield _message(UPDATE, head + b"".join(part))
                part, size = [], 0
            part.append(p)
            size += len(p)
        if part:
            yield _message(UPDATE, head + b"".join(part))


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
    parser.add_argument("--go", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    log = open(args.log, "w", buffering=1)  # noqa: SIM115
    try:
        table = read_table_file(args.table)
    except (OSError, TableError) as err:
        print(f"bgpfeed: {err}", file=sys.stderr)
        return 2
    v4 = [(e.prefix, e.as_path) for e in table if ":" not in e.prefix]
    log.write(f"prefixes {len(v4)} ipv6-left-out {len(table) - len(v4)}\n")
    del table
    # Whole messages per write: a KEEPALIVE goes between two writes, never into one.
    batches: list[bytes] = []
    part: list[bytes] = []
    size = total = 0
    for msg in updates(v4, args.asn, args.local):
        if size + len(msg) > 65536:
            batches.append(b"".join(part))
            part, size = [], 0
        part.append(msg)
        size += len(msg)
        total += len(msg)
    if part:
        batches.append(b"".join(part))
    log.write(f"packed {total} bytes\n")
    del v4, part
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
    sock.sendall(open_message(args.asn, args.local))
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
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())

"""MRT TABLE_DUMP_V2 RIB dumps as tables: records written here byte by byte (RFC 6396)."""

from __future__ import annotations

import bz2
import gzip
import socket
import struct
import subprocess
import sys

import pytest

from routeflow.bench.table import TableError, read_table_file
from routeflow.bench.tablemrt import is_mrt, read_mrt


def record(subtype: int, body: bytes, kind: int = 13) -> bytes:
    return struct.pack("!IHHI", 0, kind, subtype, len(body)) + body


def peer_index(peers: int = 2) -> bytes:
    body = socket.inet_aton("10.0.0.1") + struct.pack("!HH", 0, peers)
    for i in range(peers):
        addr = socket.inet_aton(f"10.0.0.{i + 2}")
        body += struct.pack("!B", 2) + addr + addr + struct.pack("!I", 65001 + i)
    return record(1, body)


def as_path_attr(path: list[int], aset: list[int] = ()) -> bytes:  # type: ignore[assignment]
    seg = struct.pack("!BB", 2, len(path)) + b"".join(struct.pack("!I", a) for a in path)
    if aset:
        seg += struct.pack("!BB", 1, len(aset)) + b"".join(struct.pack("!I", a) for a in aset)
    return struct.pack("!BBB", 0x40, 1, 1) + b"\0" + struct.pack("!BBB", 0x40, 2, len(seg)) + seg


def rib(seq: int, prefix: str, paths: list[list[int]], aset: list[int] = ()) -> bytes:  # type: ignore[assignment]
    addr, plen_text = prefix.split("/")
    plen = int(plen_text)
    v6 = ":" in addr
    raw = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, addr)[: (plen + 7) // 8]
    entries = b""
    for i, path in enumerate(paths):
        attrs = as_path_attr(path, aset)
        entries += struct.pack("!HIH", i, 0, len(attrs)) + attrs
    body = struct.pack("!IB", seq, plen) + raw + struct.pack("!H", len(paths)) + entries
    return record(4 if v6 else 2, body)


DUMP = (
    peer_index()
    + rib(0, "1.2.0.0/16", [[65001, 3356, 15169], [65002, 174, 15169]])
    + rib(1, "2001:DB9::/32", [[65002, 6939]])
    + rib(2, "1.2.3.0/24", [[65001]], aset=[64512, 64513])
    + rib(3, "0.0.0.0/0", [[65001, 1299]])
)


def test_a_rib_dump_is_a_table(tmp_path):
    path = tmp_path / "rib.mrt"
    path.write_bytes(DUMP)
    assert is_mrt(str(path))
    entries = read_mrt(str(path))
    assert [(e.prefix, e.as_path) for e in entries] == [
        ("1.2.0.0/16", (65001, 3356, 15169)),  # the first peer's path
        ("2001:db9::/32", (65002, 6939)),
        ("1.2.3.0/24", (65001,)),  # AS_SET members left out
        ("0.0.0.0/0", (65001, 1299)),
    ]
    assert read_table_file(str(path)) == entries


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_compressed_dumps(tmp_path, compress):
    path = tmp_path / "rib.mrt.x"
    path.write_bytes(compress(DUMP))
    assert is_mrt(str(path))
    assert len(read_table_file(str(path))) == 4


def test_text_tables_are_not_mrt(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1.0.0.0/8 1\n")
    assert not is_mrt(str(path))
    assert read_table_file(str(path))[0].prefix == "1.0.0.0/8"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (DUMP[:-5], "rib.mrt"),  # cut in the last record
        (peer_index() + record(1, b"", kind=16), "is BGP4MP: an update file"),  # a BGP4MP update
        (DUMP[:40] + b"\xff" * 30, "rib.mrt"),
    ],
)
def test_damaged_dumps_name_the_file(tmp_path, data, says):
    path = tmp_path / "rib.mrt"
    path.write_bytes(data)
    with pytest.raises(TableError, match=says):
        read_mrt(str(path))


def test_reading_mrt_leaves_sigpipe_alone(tmp_path):
    # mrtparse sets SIGPIPE to SIG_DFL on import; after that a write to a closed socket
    # killed the process (a pytest worker, once) instead of raising BrokenPipeError.
    dump = tmp_path / "rib.mrt"
    dump.write_bytes(peer_index() + rib(0, "192.0.2.0/24", [[65001, 65002]]))
    code = f"""
import signal, socket
from routeflow.bench.tablemrt import read_mrt
assert [e.prefix for e in read_mrt({str(dump)!r})] == ["192.0.2.0/24"]
assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN, signal.getsignal(signal.SIGPIPE)
a, b = socket.socketpair()
b.close()
try:
    a.sendall(b"x" * 100000)
except BrokenPipeError:
    print("raised")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "raised\n"), (r.returncode, r.stderr[-500:])

"""How many flows a table holds, asked over one kept OpenFlow connection.

A benchmark polls the switch's flow count every 50 ms while a table loads.
Running ``ovs-ofctl dump-tables`` for each poll is a process started,
connected and torn down twenty times a second: CPU taken from the very
daemons being timed on a two-core machine, and nothing the raw baseline (one
``ovs-ofctl --bundle``) pays. This keeps one connection to the bridge's
management socket (``$OVS_RUNDIR/<bridge>.mgmt``) and sends one table-stats
request per poll.

Why by hand: the request and its reply are two fixed layouts of OpenFlow
1.3; os-ken would bring a controller framework (its app manager and event
loop) to send them.
"""

from __future__ import annotations

import os
import socket
import struct

OFP_VERSION = 4  # OpenFlow 1.3
OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_ECHO_REQUEST = 2
OFPT_ECHO_REPLY = 3
OFPT_MULTIPART_REQUEST = 18
OFPT_MULTIPART_REPLY = 19
OFPMP_TABLE = 3
OFPMPF_REPLY_MORE = 1

_HEADER = struct.Struct("!BBHI")
_MP = struct.Struct("!HH4x")
_TABLE = struct.Struct("!B3xIQQ")  # ofp_table_stats: table_id, active_count, lookups, matches


def mgmt_path(rundir: str, bridge: str) -> str:
    """The management socket ovs-vswitchd opens for ``bridge`` under its OVS_RUNDIR."""
    return os.path.join(rundir, f"{bridge}.mgmt")


class StatsError(OSError):
    """The switch refused or broke the connection."""


class TableStats:
    """One OpenFlow 1.3 connection to a bridge's management socket."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self._xid = 0
        self._buf = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
            self._sock.sendall(_HEADER.pack(OFP_VERSION, OFPT_HELLO, 8, self._next_xid()))
            version, kind, _body, _xid = self._read_xid()
            if kind != OFPT_HELLO:
                raise StatsError(f"{path}: expected HELLO, got message type {kind}")
            if version < OFP_VERSION:
                raise StatsError(f"{path}: the bridge does not speak OpenFlow 1.3")
        except BaseException:
            self._sock.close()
            raise

    @classmethod
    def of_bridge(cls, rundir: str, bridge: str) -> TableStats:
        return cls(mgmt_path(rundir, bridge))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> TableStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def active(self) -> dict[int, int]:
        """Every table's active flow count, by table id."""
        xid = self._next_xid()
        req = _MP.pack(OFPMP_TABLE, 0)
        self._sock.sendall(
            _HEADER.pack(OFP_VERSION, OFPT_MULTIPART_REQUEST, 8 + len(req), xid) + req
        )
        counts: dict[int, int] = {}
        while True:
            _version, kind, body, rxid = self._read_xid()
            if kind == OFPT_ECHO_REQUEST:
                self._sock.sendall(
                    _HEADER.pack(OFP_VERSION, OFPT_ECHO_REPLY, 8 + len(body), rxid) + body
                )
                continue
            if rxid != xid:
                continue  # an unsolicited message, or a late reply to an abandoned request
            if kind == OFPT_ERROR:
                etype, code = struct.unpack_from("!HH", body) if len(body) >= 4 else (-1, -1)
                raise StatsError(
                    f"{self.path}: table stats refused (error type {etype} code {code})"
                )
            if kind != OFPT_MULTIPART_REPLY or len(body) < _MP.size:
                raise StatsError(f"{self.path}: unexpected reply type {kind}")
            mp_type, flags = _MP.unpack_from(body)
            if mp_type != OFPMP_TABLE:
                raise StatsError(f"{self.path}: unexpected multipart reply type {mp_type}")
            for off in range(_MP.size, len(body) - _TABLE.size + 1, _TABLE.size):
                table_id, active, _lookups, _matches = _TABLE.unpack_from(body, off)
                counts[table_id] = active
            if not flags & OFPMPF_REPLY_MORE:
                return counts

    def _next_xid(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        return self._xid

    def _read_xid(self) -> tuple[int, int, bytes, int]:
        while True:
            if len(self._buf) >= 8:
                version, kind, length, xid = _HEADER.unpack_from(self._buf)
                if length < 8:
                    raise StatsError(f"{self.path}: malformed OpenFlow header (length {length})")
                if len(self._buf) >= length:
                    body = self._buf[8:length]
                    self._buf = self._buf[length:]
                    return version, kind, body, xid
            chunk = self._sock.recv(65536)
            if not chunk:
                raise StatsError(f"{self.path}: the switch closed the connection")
            self._buf += chunk


#: Kept connections by management socket path, for polls; close_all() ends them.
_KEPT: dict[str, TableStats] = {}


def table_active(rundir: str, bridge: str, table: int) -> int | None:
    """Flows in ``table`` of ``bridge`` over a kept connection; None if the switch
    cannot be asked so (the caller falls back to ovs-ofctl, which says why)."""
    path = mgmt_path(rundir, bridge)
    try:
        stats = _KEPT.get(path)
        if stats is None:
            stats = _KEPT[path] = TableStats(path)
        return stats.active().get(table)
    except OSError:
        dropped = _KEPT.pop(path, None)
        if dropped is not None:
            dropped.close()
        return None


def close_all() -> None:
    while _KEPT:
        _KEPT.popitem()[1].close()

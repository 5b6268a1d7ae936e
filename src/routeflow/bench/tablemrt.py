"""MRT files through mrtparse: RIB dumps as tables, update files as records.

A RIB dump (TABLE_DUMP_V2 as RouteViews and RIPE RIS write them, ADD-PATH
variants included, or the older TABLE_DUMP that OpenBGPD and archives before
2008 have) names every prefix with one entry per peer that offered it; a table
file has one AS path per prefix, so the first peer's path is kept
(AS_SEQUENCE segments in order; the members of an AS_SET, which only
aggregates carry, are left out). An update file (BGP4MP, BGP4MP_ET: the
collectors' ``updates.*``, routers' mrtdump) gives ``recorded.Record``s for a
churn stream (``mrt_records``). Files may be gzip or bzip2 compressed
(mrtparse reads the magic). Damage raises TableError naming the file and the
record; an update file given as a table (or the other way round) is told so.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from routeflow.bench.churn import ChurnError
from routeflow.bench.recorded import Record
from routeflow.bench.table import TableEntry, TableError, _entry

__all__ = ["is_mrt", "mrt_records", "mrt_type", "read_mrt"]

TABLE_DUMP, TABLE_DUMP_V2, BGP4MP, BGP4MP_ET = 12, 13, 16, 17
PEER_INDEX_TABLE = 1
#: RIB_IPV4_UNICAST, RIB_IPV6_UNICAST and their ADD-PATH forms (RFC 8050).
RIB_UNICAST = frozenset({2, 4, 8, 10})
#: BGP4MP_MESSAGE, _AS4, _LOCAL, _AS4_LOCAL and their ADD-PATH forms (RFC 8050).
BGP4MP_MESSAGES = frozenset({1, 4, 6, 7, 8, 9, 10, 11})
BGP4MP_STATE_CHANGES = frozenset({0, 5})
BGP4MP_ENTRY = 2
AS_PATH, MP_REACH_NLRI, MP_UNREACH_NLRI, AS4_PATH = 2, 14, 15, 17
AS_TRANS = 23456
AS_SEQUENCE = 2
UPDATE = 2
MRT_TYPES = frozenset({11, 12, 13, 16, 17, 32, 33, 48, 49})


def mrt_type(path: str) -> int | None:
    """The MRT type of a file's first record (gzip and bzip2 opened as mrtparse
    would), or None when the file is not MRT."""
    import bz2
    import gzip

    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
        opener: Callable[..., Any] = (
            gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic == b"BZh" else open
        )
        with opener(path, "rb") as fh:
            head = fh.read(12)
    except (OSError, EOFError, ValueError):
        return None
    if len(head) < 12:
        return None
    kind = int.from_bytes(head[4:6], "big")
    return kind if kind in MRT_TYPES else None


def is_mrt(path: str) -> bool:
    """A file whose first record is an MRT header (compressed or not)."""
    return mrt_type(path) is not None


def _key(field: object) -> int:
    """mrtparse gives enumerations as {number: name}."""
    return next(iter(field)) if isinstance(field, dict) else int(field)  # type: ignore[call-overload]


def _segments(value: list) -> tuple[int, ...]:
    return tuple(int(a) for seg in value if _key(seg["type"]) == AS_SEQUENCE for a in seg["value"])


def _path_of(attributes: list) -> tuple[int, ...]:
    """The AS path (AS_SEQUENCE members); from a 2-octet session, AS4_PATH's
    four-octet ASes replace the AS_TRANS tail they stand for (RFC 6793 4.2.3)."""
    path: tuple[int, ...] = ()
    path4: tuple[int, ...] | None = None
    for attr in attributes:
        code = _key(attr["type"])
        if code == AS_PATH:
            path = _segments(attr["value"])
        elif code == AS4_PATH:
            path4 = _segments(attr["value"])
    if path4 is not None and AS_TRANS in path and len(path4) <= len(path):
        return path[: len(path) - len(path4)] + path4
    return path


_import_lock = threading.Lock()


def _mrt_reader() -> Any:
    """mrtparse's Reader, imported without what mrtparse does on import.

    On import mrtparse sets SIGPIPE to SIG_DFL for the whole process (right for its
    command-line tool piped into `head`, wrong in a library): from then on a write to a
    socket or pipe whose reader has gone kills the process silently instead of raising
    BrokenPipeError. That killed a pytest worker once the MRT tests had run in it (a
    client writing to a server that had refused it). Its call is skipped for SIGPIPE.
    """
    with _import_lock:
        if "mrtparse" not in sys.modules:
            real = signal.signal

            def keep_sigpipe(signum, handler):
                if signum == signal.SIGPIPE:
                    return signal.getsignal(signum)
                return real(signum, handler)

            signal.signal = keep_sigpipe  # type: ignore[assignment]
            try:
                import mrtparse  # noqa: F401
            finally:
                signal.signal = real
    return sys.modules["mrtparse"].Reader


def read_mrt(path: str) -> list[TableEntry]:
    """The prefixes of a RIB dump with their first peer's AS path, in dump order."""
    Reader = _mrt_reader()

    out: list[TableEntry] = []
    seen: set[str] = set()
    try:
        for record, entry in enumerate(Reader(path), 1):
            data = entry.data
            kind = _key(data["type"]) if "type" in data else None
            if kind in (BGP4MP, BGP4MP_ET) and _key(data["subtype"]) == BGP4MP_ENTRY:
                raise TableError(
                    f"{path}: MRT record {record} is BGP4MP_ENTRY, an old RIB form (OpenBGPD's "
                    "`table-mp`) that mrtparse does not read: dump the RIB as TABLE_DUMP_V2 "
                    "(OpenBGPD: `table-v2`)"
                )
            if kind in (BGP4MP, BGP4MP_ET):
                raise TableError(
                    f"{path}: MRT record {record} is BGP4MP: an update file, not a RIB "
                    "dump (`routeflow bench churn` replays it)"
                )
            if kind not in (TABLE_DUMP_V2, TABLE_DUMP, None):
                raise TableError(f"{path}: MRT record {record} is not a RIB dump (type {kind})")
            if entry.err:
                raise TableError(f"{path}: MRT record {record}: {entry.err_msg}")
            subtype = _key(data["subtype"])
            if kind == TABLE_DUMP:  # one entry per peer and prefix, subtype = AFI
                attrs = data.get("path_attributes", ())
            elif subtype in RIB_UNICAST:
                attrs = (data["rib_entries"] or [{}])[0].get("path_attributes", ())
            else:
                continue  # the peer index, multicast RIBs
            try:
                e = _entry(f"{data['prefix']}/{data['length']}", _path_of(attrs))
            except ValueError as err:
                raise TableError(f"{path}: MRT record {record}: {err}") from None
            if e.prefix not in seen:
                seen.add(e.prefix)
                out.append(e)
    except TableError:
        raise
    except Exception as err:  # mrtparse on a damaged file: struct, index, key errors
        raise TableError(
            f"{path}: not a readable MRT RIB dump ({type(err).__name__}: {err})"
        ) from None
    return out


def _nlri(items: list) -> list[tuple[str, int]]:
    return [(f"{n['prefix']}/{n['length']}", int(n.get("path_id") or 0)) for n in items]


def mrt_records(path: str) -> list[Record]:
    """The announcements, withdrawals and session changes of an MRT update file
    (BGP4MP, BGP4MP_ET), in file order; keepalives, opens and other AFIs/SAFIs
    (only unicast is taken) are skipped. A RIB dump is refused with a pointer."""
    Reader = _mrt_reader()

    out: list[Record] = []
    try:
        for record, entry in enumerate(Reader(path), 1):
            data = entry.data
            kind = _key(data["type"]) if "type" in data else None
            if kind in (TABLE_DUMP, TABLE_DUMP_V2):
                raise ChurnError(
                    f"{path}: MRT record {record} is a RIB dump (TABLE_DUMP): a table, not "
                    "updates (`bench churn-gen --table` makes a stream from it)"
                )
            if kind not in (BGP4MP, BGP4MP_ET):
                raise ChurnError(f"{path}: MRT record {record} is not BGP4MP (type {kind})")
            if _key(data["subtype"]) == BGP4MP_ENTRY:
                raise ChurnError(
                    f"{path}: MRT record {record} is BGP4MP_ENTRY, an old RIB form: a "
                    "table, not updates"
                )
            if entry.err:
                raise ChurnError(f"{path}: MRT record {record}: {entry.err_msg}")
            t = float(_key(data["timestamp"])) + int(data.get("microsecond_timestamp", 0)) / 1e6
            subtype = _key(data["subtype"])
            peer = str(data.get("peer_ip", ""))
            if subtype in BGP4MP_STATE_CHANGES:
                out.append(Record(t, peer, "S", state=_key(data["new_state"])))
                continue
            if subtype not in BGP4MP_MESSAGES:
                continue
            msg = data.get("bgp_message", {})
            if _key(msg.get("type", 0)) != UPDATE:
                continue
            attrs = msg.get("path_attributes", [])
            for prefix, pid in _nlri(msg.get("withdrawn_routes", [])):
                out.append(Record(t, peer, "W", prefix, path_id=pid))
            announced = _nlri(msg.get("nlri", []))
            for attr in attrs:
                code = _key(attr["type"])
                value = attr.get("value")
                if code not in (MP_REACH_NLRI, MP_UNREACH_NLRI) or not isinstance(value, dict):
                    continue
                if _key(value.get("safi", 0)) != 1:
                    continue  # unicast only (no VPN, flowspec, multicast)
                if code == MP_UNREACH_NLRI:
                    for prefix, pid in _nlri(value.get("withdrawn_routes", [])):
                        out.append(Record(t, peer, "W", prefix, path_id=pid))
                else:
                    announced += _nlri(value.get("nlri", []))
            if announced:
                path_ = _path_of(attrs)
                out.extend(Record(t, peer, "A", p, path_, pid) for p, pid in announced)
    except ChurnError:
        raise
    except Exception as err:  # mrtparse on a damaged file: struct, index, key errors
        raise ChurnError(
            f"{path}: not a readable MRT update file ({type(err).__name__}: {err})"
        ) from None
    return out

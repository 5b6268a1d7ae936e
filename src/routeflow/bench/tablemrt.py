"""MRT TABLE_DUMP_V2 RIB dumps (RouteViews, RIPE RIS) as table entries, through mrtparse.

A RIB dump names every prefix once with one entry per peer that offered
it; a table file has one AS path per prefix, so the first peer's path is
kept (AS_SEQUENCE segments in order; the members of an AS_SET, which only
aggregates carry, are left out). Files may be gzip or bzip2 compressed
(mrtparse reads the magic). Anything that is not a RIB dump raises
TableError naming the file and the record.
"""

from __future__ import annotations

from routeflow.bench.table import TableEntry, TableError, _entry

__all__ = ["is_mrt", "read_mrt"]

TABLE_DUMP_V2 = 13
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST = 2
RIB_IPV6_UNICAST = 4
AS_PATH = 2
AS_SEQUENCE = 2


def is_mrt(path: str) -> bool:
    """A compressed file, or one whose first record is a TABLE_DUMP_V2 MRT header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    if head.startswith((b"\x1f\x8b", b"BZh")):
        return True
    return len(head) == 12 and int.from_bytes(head[4:6], "big") == TABLE_DUMP_V2


def _key(field: object) -> int:
    """mrtparse gives enumerations as {number: name}."""
    return next(iter(field)) if isinstance(field, dict) else int(field)  # type: ignore[call-overload]


def _as_path(rib_entries: list) -> tuple[int, ...]:
    if not rib_entries:
        return ()
    for attr in rib_entries[0].get("path_attributes", ()):
        if _key(attr["type"]) == AS_PATH:
            return tuple(
                int(asn)
                for seg in attr["value"]
                if _key(seg["type"]) == AS_SEQUENCE
                for asn in seg["value"]
            )
    return ()


def read_mrt(path: str) -> list[TableEntry]:
    """The prefixes of a RIB dump with their first peer's AS path, in dump order."""
    from mrtparse import Reader

    out: list[TableEntry] = []
    seen: set[str] = set()
    try:
        for record, entry in enumerate(Reader(path), 1):
            data = entry.data
            if "type" in data and _key(data["type"]) != TABLE_DUMP_V2:
                raise TableError(f"{path}: MRT record {record} is not TABLE_DUMP_V2 (a RIB dump)")
            if entry.err:
                raise TableError(f"{path}: MRT record {record}: {entry.err_msg}")
            subtype = _key(data["subtype"])
            if subtype not in (RIB_IPV4_UNICAST, RIB_IPV6_UNICAST):
                continue  # the peer index, multicast RIBs, add-path variants
            try:
                e = _entry(f"{data['prefix']}/{data['length']}", _as_path(data["rib_entries"]))
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

"""Table files: a BGP table as text, one ``prefix [as_path...]`` per line.

    # comments, blank lines
    193.0.0.0/21 3356 1299 3333
    2001:67c:2e8::/48 6939 3333
    10.0.0.0/8                      # no AS path: an IGP or static route

Both families may be mixed (``read_table_file`` also takes MRT RIB dumps,
see tablemrt.py). A prefix must be a network address (no host bits) and
appear once; AS numbers are 1 to 4294967295 (no AS sets). Bad
lines raise TableError naming the source and the line, so a million-line
file is never half loaded. Parsing is pure (``parse_table``); ``read_table``
is the file-reading shell.

Prefixes are kept as the text KernelView and Open vSwitch's readers use
(IPv4 dotted, IPv6 as Python's ``ipaddress`` writes it), with their family,
length and network as an integer, so a bench can pack, match and compare
them without building ``ipaddress`` objects.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from routeflow.client.fastnl import addr_text

__all__ = [
    "TableEntry",
    "TableError",
    "format_table",
    "nested_count",
    "parse_table",
    "read_table",
    "read_table_file",
    "table_stats",
]

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
MAX_ASN = 0xFFFFFFFF


class TableError(ValueError):
    """A line of a table file that cannot be a route: ``source:line: what``."""


class TableEntry(NamedTuple):
    prefix: str  # canonical text, "net/len"
    family: int  # socket.AF_INET or AF_INET6
    plen: int
    net: int  # the network address as an integer
    as_path: tuple[int, ...]

    @property
    def bits(self) -> int:
        return 32 if self.family == AF_INET else 128


def _entry(text: str, as_path: tuple[int, ...]) -> TableEntry:
    """One prefix; ValueError says what is wrong with it."""
    addr, slash, plen_text = text.partition("/")
    if not slash:
        raise ValueError(f"{text!r} is not a prefix (no /length)")
    family = AF_INET6 if ":" in addr else AF_INET
    try:
        raw = socket.inet_pton(family, addr)
    except OSError:
        name = "IPv6" if family == AF_INET6 else "IPv4"
        raise ValueError(f"{addr!r} is not an {name} address") from None
    bits = len(raw) * 8
    if not (plen_text.isascii() and plen_text.isdigit()) or int(plen_text) > bits:
        raise ValueError(f"prefix length {plen_text!r} is not 0-{bits}")
    plen = int(plen_text)
    net = int.from_bytes(raw, "big")
    host = (1 << (bits - plen)) - 1
    if net & host:
        network = addr_text(family, (net & ~host).to_bytes(len(raw), "big"))
        raise ValueError(f"{text} has host bits set (the network is {network}/{plen})")
    return TableEntry(f"{addr_text(family, raw)}/{plen}", family, plen, net, as_path)


def _as_path(tokens: list[str]) -> tuple[int, ...]:
    path = []
    for token in tokens:
        if not (token.isascii() and token.isdigit()) or not 1 <= int(token) <= MAX_ASN:
            if token.startswith("{"):
                raise ValueError(f"AS sets are not supported: {token!r}")
            raise ValueError(f"AS number {token!r} is not an integer 1-{MAX_ASN}")
        path.append(int(token))
    return tuple(path)


def parse_table(lines: Iterable[str], source: str = "<table>") -> list[TableEntry]:
    """Every route of a table file's lines, in file order."""
    out: list[TableEntry] = []
    first_line: dict[tuple[int, int, int], int] = {}
    for lineno, line in enumerate(lines, 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        try:
            entry = _entry(tokens[0], _as_path(tokens[1:]))
        except ValueError as err:
            raise TableError(f"{source}:{lineno}: {err}") from None
        key = (entry.family, entry.plen, entry.net)
        seen = first_line.setdefault(key, lineno)
        if seen != lineno:
            raise TableError(f"{source}:{lineno}: {entry.prefix} already on line {seen}")
        out.append(entry)
    return out


def read_table(path: str) -> list[TableEntry]:
    """A table file (errors name the file and line; a missing file raises TableError too)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_table(fh, path)
    except (OSError, UnicodeDecodeError) as err:
        raise TableError(f"{path}: {err}") from None


def read_table_file(path: str) -> list[TableEntry]:
    """A table file, an MRT RIB dump (tablemrt.py) or one printed as text by
    ``bgpdump -m`` / ``bgpkit-parser`` (recorded.py), told apart by their start."""
    # Imported here: both modules build on this one.
    from routeflow.bench.recorded import looks_like_text_records
    from routeflow.bench.tablemrt import is_mrt, read_mrt

    if is_mrt(path):
        return read_mrt(path)
    if _first_data_line(path, looks_like_text_records):
        from routeflow.bench.churn import ChurnError
        from routeflow.bench.recorded import parse_text_records, table_from_records

        try:
            with open(path, encoding="utf-8") as fh:
                return table_from_records(parse_text_records(fh, path, first_per_prefix=True), path)
        except ChurnError as err:
            raise TableError(str(err)) from None
        except (OSError, UnicodeDecodeError) as err:
            raise TableError(f"{path}: {err}") from None
    return read_table(path)


def _first_data_line(path: str, test: Callable[[str], bool]) -> bool:
    """Whether a text file's first line that is neither blank nor a comment passes ``test``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    return test(line)
    except OSError:
        return False
    return False


def format_table(entries: Iterable[TableEntry], header: Iterable[str] = ()) -> Iterator[str]:
    """The lines of a table file (newline-terminated), comments first."""
    for line in header:
        yield f"# {line}\n"
    for e in entries:
        yield f"{e.prefix} {' '.join(map(str, e.as_path))}\n" if e.as_path else f"{e.prefix}\n"


def nested_count(entries: Iterable[TableEntry]) -> int:
    """How many prefixes lie inside a less specific one of the same table.

    Prefixes are either nested or disjoint, so one sweep in address order
    with a stack of the enclosing prefixes finds them all.
    """
    nested = 0
    stack: list[tuple[int, int, int]] = []  # (family, first address, last address)
    for e in sorted(entries, key=lambda e: (e.family, e.net, e.plen)):
        last = e.net | ((1 << (e.bits - e.plen)) - 1)
        while stack and not (stack[-1][0] == e.family and stack[-1][1] <= e.net <= stack[-1][2]):
            stack.pop()
        if stack:
            nested += 1
        stack.append((e.family, e.net, last))
    return nested


def table_stats(entries: list[TableEntry]) -> dict[str, object]:
    """What a reader wants to know of a table: sizes, length mix, nesting, AS paths."""
    v4 = Counter(e.plen for e in entries if e.family == AF_INET)
    v6 = Counter(e.plen for e in entries if e.family == AF_INET6)
    nested = nested_count(entries)
    return {
        "prefixes": len(entries),
        "ipv4": sum(v4.values()),
        "ipv6": sum(v6.values()),
        "ipv4_lengths": dict(sorted(v4.items())),
        "ipv6_lengths": dict(sorted(v6.items())),
        "nested": nested,
        "nested_share": round(nested / len(entries), 3) if entries else 0.0,
        "as_paths": len({e.as_path for e in entries}),
    }

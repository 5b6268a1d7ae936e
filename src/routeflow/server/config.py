"""The operator's mapping file (rfserver.csv): which VM port is which switch port.

The format is the original RouteFlow one, ``vm_id,vm_port,ct_id,dp_id,dp_port``
with hexadecimal ids and decimal ports, so existing lab configs keep working.
Two things are stricter than the original, because a silently misread mapping
wires a router port to the wrong switch port and is miserable to debug:

* the header line is required (it is what tells a mapping file from any other
  CSV, and it pins the column order);
* every problem in the file is reported at once, each with its line number and
  field, instead of stopping at (or skipping) the first bad line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from routeflow.rflib.types import ConfigEntry

__all__ = [
    "HEADER",
    "MAX_ID",
    "MAX_PORT",
    "ConfigError",
    "dump_config",
    "load_config",
    "parse_config",
]

#: The required first line, column names in order.
HEADER = ("vm_id", "vm_port", "ct_id", "dp_id", "dp_port")
#: Ids (VM, controller, datapath) are 64-bit, like an OpenFlow datapath id.
MAX_ID = 2**64 - 1
#: OFPP_MAX: port numbers above it are OpenFlow reserved ports, never router ports.
MAX_PORT = 0xFFFFFF00

_HEADER_TEXT = ",".join(HEADER)
_HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")
_DEC = re.compile(r"[+-]?[0-9]+")


class ConfigError(Exception):
    """A mapping file that cannot be used; ``errors`` lists every problem found.

    One exception for the whole file so the operator fixes everything in one go;
    each message reads ``source:line: field: problem``.
    """

    def __init__(self, errors: Iterable[str] | str) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


def _parse_id(name: str, text: str) -> tuple[int | None, str | None]:
    if not text:
        return None, f"{name}: empty"
    if not _HEX.fullmatch(text):
        return None, f"{name}: {text!r} is not a hexadecimal id"
    value = int(text, 16)
    if value > MAX_ID:
        return None, f"{name}: {text} is out of the 64-bit range"
    return value, None


def _parse_port(name: str, text: str) -> tuple[int | None, str | None]:
    if not text:
        return None, f"{name}: empty"
    if not _DEC.fullmatch(text):
        return None, f"{name}: {text!r} is not a decimal port number"
    value = int(text)
    if not 1 <= value <= MAX_PORT:
        return None, f"{name}: {value} is out of range (ports are 1..{MAX_PORT})"
    return value, None


def _parse_fields(fields: list[str]) -> tuple[ConfigEntry | None, list[str]]:
    if len(fields) != len(HEADER):
        return None, [f"wrong number of columns: expected {len(HEADER)}, got {len(fields)}"]
    errors: list[str] = []
    values: dict[str, int] = {}
    for name, text in zip(HEADER, fields, strict=True):
        parse = _parse_port if name.endswith("_port") else _parse_id
        value, error = parse(name, text)
        if error is not None:
            errors.append(error)
        else:
            assert value is not None
            values[name] = value
    if errors:
        return None, errors
    return ConfigEntry(**values), []


def parse_config(text: str, source: str = "<string>") -> list[ConfigEntry]:
    """Parse a mapping file's text; raise ConfigError listing every problem.

    Blank lines and lines starting with '#' are ignored. The first other line
    must be the header; a file with only the header is a valid, empty mapping.
    """
    text = text.removeprefix("\ufeff")
    errors: list[str] = []
    entries: list[ConfigEntry] = []
    vm_lines: dict[tuple[int, int], int] = {}
    dp_lines: dict[tuple[int, int, int], int] = {}
    # A switch is mirrored by one VM: two VMs writing one FIB table would fight
    # over every prefix they share (the default route, every OSPF route).
    switch_vm: dict[tuple[int, int], tuple[int, int]] = {}
    header_seen = False

    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        fields = [f.strip() for f in line.split(",")]
        entry, problems = _parse_fields(fields)

        if not header_seen:
            header_seen = True
            if [f.lower() for f in fields] == list(HEADER):
                continue
            if entry is None:
                errors.append(f"{where}: expected the header {_HEADER_TEXT!r}, got {line!r}")
                continue
            # A mapping where the header belongs: the original's header-less form.
            errors.append(
                f"{where}: missing header: the first line must be {_HEADER_TEXT!r} "
                f"(header-less files are not accepted)"
            )

        if entry is None:
            errors.extend(f"{where}: {problem}" for problem in problems)
            continue
        if entry.vm_key in vm_lines:
            errors.append(
                f"{where}: vm port (0x{entry.vm_id:x}, {entry.vm_port}) "
                f"already mapped on line {vm_lines[entry.vm_key]}"
            )
        if entry.dp_key in dp_lines:
            errors.append(
                f"{where}: dp port (0x{entry.ct_id:x}, 0x{entry.dp_id:x}, {entry.dp_port}) "
                f"already mapped on line {dp_lines[entry.dp_key]}"
            )
        owner = switch_vm.setdefault((entry.ct_id, entry.dp_id), (entry.vm_id, lineno))
        if owner[0] != entry.vm_id:
            errors.append(
                f"{where}: switch (ct 0x{entry.ct_id:x}, dp 0x{entry.dp_id:x}) is already "
                f"mirrored by vm 0x{owner[0]:x} (line {owner[1]}); one VM per switch, "
                f"not vm 0x{entry.vm_id:x} too"
            )
        vm_lines.setdefault(entry.vm_key, lineno)
        dp_lines.setdefault(entry.dp_key, lineno)
        entries.append(entry)

    if not header_seen:
        errors.append(
            f"{source}: empty file: expected the header {_HEADER_TEXT!r} "
            f"followed by one mapping per line"
        )
    if errors:
        raise ConfigError(errors)
    return entries


def load_config(path: str | os.PathLike[str]) -> list[ConfigEntry]:
    """Read and parse a mapping file; unreadable files raise ConfigError too."""
    source = os.fsdecode(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{source}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 text: {e.reason} at byte {e.start}") from e
    return parse_config(text, source)


def dump_config(entries: Iterable[ConfigEntry]) -> str:
    """Write entries in the file format, in the given order (parse_config reads it back).

    Does not validate: duplicate or out-of-range entries are written as they are
    and refused when read back.
    """
    lines = [_HEADER_TEXT]
    lines.extend(
        f"0x{e.vm_id:x},{e.vm_port},0x{e.ct_id:x},0x{e.dp_id:x},{e.dp_port}" for e in entries
    )
    return "\n".join(lines) + "\n"

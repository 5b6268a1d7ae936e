"""Daemon logging with the ids a line is about as fields (--log-format).

A record about one VM, switch or controller carries its ids (``extra=ids(dp_id=...)``,
or a daemon-wide default such as rfclient's vm_id), so an operator filters by them:

- ``text``: the usual line, then ``vm_id=0x5 dp_id=0x1 ct_id=1`` (grep);
- ``json``: one object per line with the same keys (jq);
- ``journal``: journald's native protocol, the ids as ``VM_ID=``, ``DP_ID=``,
  ``CT_ID=`` (``journalctl DP_ID=0x1``);
- ``auto`` (the default): ``journal`` when stderr is the journal (systemd says so in
  ``$JOURNAL_STREAM``), ``text`` otherwise.

Datapath and VM ids are written in hex, as everywhere else in routeflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping

FIELDS = ("vm_id", "vm_port", "ct_id", "dp_id", "dp_port")
HEX_FIELDS = frozenset({"vm_id", "dp_id"})
FORMATS = ("auto", "text", "json", "journal")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
#: logging level -> syslog priority (journald's PRIORITY=)
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


def ids(**values: int | None) -> dict[str, int]:
    """``extra=`` for a log call: the ids given (None left out); keys from FIELDS."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise TypeError(f"not a log field: {', '.join(sorted(unknown))}")
    return {k: v for k, v in values.items() if v is not None}


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    """The id fields a record carries, as text, in FIELDS order."""
    out = {}
    for key in FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            out[key] = f"{value:#x}" if key in HEX_FIELDS and isinstance(value, int) else str(value)
    return out


class TextFormatter(logging.Formatter):
    """The daemons' usual line, its id fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = record_fields(record)
        if not fields:
            return line
        head, sep, rest = line.partition("\n")  # a traceback follows the first line
        return head + "".join(f" {k}={v}" for k, v in fields.items()) + sep + rest


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, ids."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, object] = {
            "time": f"{t}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def journal_datagram(fields: Mapping[str, str]) -> bytes:
    """journald's native wire form: KEY=value lines; a value with a newline goes binary."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald's socket, the ids as VM_ID=, DP_ID=, CT_ID=, ..."""

    def __init__(self, identifier: str, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.formatter_ = logging.Formatter()

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatter_.formatException(record.exc_info)
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(PRIORITIES.get(record.levelno, 2 if record.levelno > 40 else 6)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname or "",
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName or "",
        }
        fields.update({k.upper(): v for k, v in record_fields(record).items()})
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sock.sendto(journal_datagram(self.fields(record)), self.path)
        except Exception:  # logging must never take the daemon down
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


class _Defaults(logging.Filter):
    """Daemon-wide ids (rfproxy's ct_id, rfclient's vm_id) for records that lack them."""

    def __init__(self, defaults: Mapping[str, int]) -> None:
        super().__init__()
        self.defaults = dict(defaults)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.defaults.items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


def stderr_is_journal(environ: Mapping[str, str], fd: int = 2) -> bool:
    """systemd's rule: $JOURNAL_STREAM is DEVICE:INODE of the stream it connected."""
    dev, _, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def resolve(fmt: str, environ: Mapping[str, str], fd: int = 2) -> str:
    """auto -> journal or text (see the module docstring)."""
    if fmt != "auto":
        return fmt
    return "journal" if stderr_is_journal(environ, fd) else "text"


def add_log_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=FORMATS,
        help="text (key=value ids appended), json (one object per line), journal "
        "(journald fields VM_ID, DP_ID, CT_ID); auto: journal under systemd, else text",
    )


def setup(level: str, fmt: str, identifier: str, **defaults: int | None) -> None:
    """Root logging for a daemon: one handler of ``fmt``, ``defaults`` on every record."""
    resolved = resolve(fmt, os.environ)
    handler: logging.Handler
    if resolved == "journal" and os.path.exists(JOURNAL_SOCKET):
        handler = JournalHandler(identifier)
    elif resolved == "journal":  # no journald here: say so once, and go on as text
        print(f"{identifier}: no journald socket at {JOURNAL_SOCKET}; logging text to stderr",
              file=sys.stderr)  # fmt: skip
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(TextFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if resolved == "json" else TextFormatter())
    fields = ids(**defaults)
    if fields:
        handler.addFilter(_Defaults(fields))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)

"""Daemon log lines carry the ids they concern: text key=value, JSON, journald fields."""

from __future__ import annotations

import json
import logging
import socket
import struct

import pytest

from routeflow.proxy import actions as act
from routeflow.rflib import logs


def _record(msg: str = "switch %#x left", *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord(
        "routeflow.test", logging.WARNING, __file__, 7, msg, args or (0x1,), exc_info, "f"
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def parse_datagram(data: bytes) -> dict[str, str]:
    """journald's side of the native protocol (KEY=value lines, or KEY\\n<u64 len>value\\n)."""
    fields, i = {}, 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = end + 1
        else:
            key, (size,) = line, struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n"
            i = end + 10 + size
        fields[key.decode()] = value.decode()
    return fields


def test_text_appends_the_ids_in_hex_after_the_message():
    line = logs.TextFormatter().format(_record(dp_id=0x1, ct_id=3, vm_id=None))
    assert line.endswith("WARNING switch 0x1 left ct_id=3 dp_id=0x1")
    assert logs.TextFormatter().format(_record()).endswith("switch 0x1 left")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = _record(exc_info=sys.exc_info(), vm_id=0x5)
    first, *rest = logs.TextFormatter().format(record).splitlines()
    assert first.endswith("left vm_id=0x5") and rest[-1] == "RuntimeError: boom"


def test_json_is_one_object_per_line_with_the_ids():
    doc = json.loads(logs.JsonFormatter().format(_record(vm_id=0x5, vm_port=2, dp_id=0x10)))
    assert doc["message"] == "switch 0x1 left" and doc["level"] == "WARNING"
    assert (doc["vm_id"], doc["vm_port"], doc["dp_id"]) == ("0x5", "2", "0x10")
    assert doc["logger"] == "routeflow.test" and doc["time"].endswith("Z")


def test_journal_handler_sends_native_fields_to_the_socket(tmp_path):
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(path)
        journal.settimeout(5)
        handler = logs.JournalHandler("rfserver", path)
        try:
            handler.handle(_record("two\nlines %s", "x", dp_id=0x1, ct_id=1))
            fields = parse_datagram(journal.recv(65536))
        finally:
            handler.close()
    assert fields["MESSAGE"] == "two\nlines x"  # the binary form
    assert (fields["DP_ID"], fields["CT_ID"]) == ("0x1", "1")
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "rfserver"
    assert fields["CODE_LINE"] == "7" and fields["LOGGER"] == "routeflow.test"


def test_auto_is_journal_only_when_stderr_is_the_journal_stream(tmp_path):
    with open(tmp_path / "stream", "w") as fh:
        st = __import__("os").fstat(fh.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logs.resolve("auto", env, fh.fileno()) == "journal"
        assert logs.resolve("auto", {"JOURNAL_STREAM": f"{st.st_dev}:1"}, fh.fileno()) == "text"
        assert logs.resolve("auto", {"JOURNAL_STREAM": "junk"}, fh.fileno()) == "text"
        assert logs.resolve("auto", {}, fh.fileno()) == "text"
        assert logs.resolve("json", env, fh.fileno()) == "json"


def test_daemon_wide_defaults_fill_records_that_lack_them():
    flt = logs._Defaults(logs.ids(vm_id=0x5))
    record = _record()
    assert flt.filter(record) and record.vm_id == 0x5
    record = _record(vm_id=0x6)
    flt.filter(record)
    assert record.vm_id == 0x6
    with pytest.raises(TypeError, match="not a log field: vmid"):
        logs.ids(vmid=1)


def test_proxy_notices_carry_ids_without_changing_what_they_equal():
    notice = act.warning("switch %#x left", 0x1, dp_id=0x1)
    assert notice == act.warning("switch %#x left", 0x1)
    assert dict(notice.ids) == {"dp_id": 0x1}

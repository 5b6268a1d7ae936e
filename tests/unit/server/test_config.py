"""The mapping file is where operator typos enter: every error must point at its line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routeflow.rflib.types import ConfigEntry
from routeflow.server.config import (
    MAX_ID,
    MAX_PORT,
    ConfigError,
    dump_config,
    load_config,
    parse_config,
)

SRC = "rfserver.csv"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, SRC)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def entry(vm_id, vm_port, ct_id, dp_id, dp_port) -> ConfigEntry:
    return ConfigEntry(vm_id=vm_id, vm_port=vm_port, ct_id=ct_id, dp_id=dp_id, dp_port=dp_port)


# --- valid files ------------------------------------------------------------------


def test_valid_file_with_comments_blank_lines_and_both_hex_forms(tmp_path):
    path = tmp_path / "rfserver.csv"
    path.write_text(
        "# lab 1: two routers\n"
        "vm_id,vm_port,ct_id,dp_id,dp_port\n"
        "\n"
        "12A0A0A0A0A0,1,0,99,1\n"
        "  # indented comment\n"
        "0x12a0a0a0a0a0, 2 ,0x0,0x99,2\r\n"
        "0XBEEF,1,1,FFFFFFFFFFFFFFFF,4294967040\n"
    )
    assert load_config(path) == [
        entry(0x12A0A0A0A0A0, 1, 0, 0x99, 1),
        entry(0x12A0A0A0A0A0, 2, 0, 0x99, 2),
        entry(0xBEEF, 1, 1, MAX_ID, MAX_PORT),
    ]


def test_header_only_is_an_empty_mapping():
    assert parse_config("vm_id,vm_port,ct_id,dp_id,dp_port\n") == []


def test_header_is_case_and_space_tolerant_and_bom_is_skipped():
    text = "\ufeff VM_ID , vm_port,ct_id ,dp_id,dp_port\n5,1,0,1,1\n"
    assert parse_config(text) == [entry(5, 1, 0, 1, 1)]


# --- one error kind each, with exact line numbers ----------------------------------


HEADER = "vm_id,vm_port,ct_id,dp_id,dp_port\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("5,x1,0,99,1", "vm_port: 'x1' is not a decimal port number"),
        ("5,1,0,99,x1", "dp_port: 'x1' is not a decimal port number"),
        ("5,1,0,99,0x1", "dp_port: '0x1' is not a decimal port number"),
        ("5,1,0,99,1.5", "dp_port: '1.5' is not a decimal port number"),
        ("5,1,0,99,0", f"dp_port: 0 is out of range (ports are 1..{MAX_PORT})"),
        ("5,-2,0,99,1", f"vm_port: -2 is out of range (ports are 1..{MAX_PORT})"),
        ("5,1,0,99,4294967041", f"dp_port: 4294967041 is out of range (ports are 1..{MAX_PORT})"),
        ("zz,1,0,99,1", "vm_id: 'zz' is not a hexadecimal id"),
        ("5,1,-1,99,1", "ct_id: '-1' is not a hexadecimal id"),
        ("5,1,0,0x,1", "dp_id: '0x' is not a hexadecimal id"),
        ("5,1,0,9_9,1", "dp_id: '9_9' is not a hexadecimal id"),
        ("5,1,0,10000000000000000,1", "dp_id: 10000000000000000 is out of the 64-bit range"),
        ("5,1,,99,1", "ct_id: empty"),
        ("5,1,0,99", "wrong number of columns: expected 5, got 4"),
        ("5,1,0,99,1,", "wrong number of columns: expected 5, got 6"),
    ],
)
def test_field_errors_name_line_and_field(line, message):
    text = HEADER + "# comment\n\n" + line + "\n"
    assert errors_of(text) == [f"{SRC}:4: {message}"]


def test_duplicate_vm_port_names_first_line():
    text = HEADER + "\n5,2,0,99,1\n1,1,0,98,2\n\n# x\n\n\n5,2,0,99,3\n"
    assert errors_of(text) == [f"{SRC}:9: vm port (0x5, 2) already mapped on line 3"]


def test_duplicate_dp_port_names_first_line():
    text = HEADER + "5,1,0,99,1\n6,1,0x0,0x99,1\n"
    assert errors_of(text) == [
        f"{SRC}:3: dp port (0x0, 0x99, 1) already mapped on line 2",
        f"{SRC}:3: switch (ct 0x0, dp 0x99) is already mirrored by vm 0x5 (line 2); "
        "one VM per switch, not vm 0x6 too",
    ]


def test_a_switch_is_mirrored_by_one_vm():
    """Two VMs writing one switch's FIB would fight over every prefix they share."""
    text = HEADER + "5,1,0,99,1\n5,2,0,99,2\n6,1,0,99,3\n6,2,1,99,1\n"
    assert errors_of(text) == [
        f"{SRC}:4: switch (ct 0x0, dp 0x99) is already mirrored by vm 0x5 (line 2); "
        "one VM per switch, not vm 0x6 too"
    ]  # the same dp_id under another controller (line 5) is another switch


def test_same_vm_port_in_another_format_is_still_a_duplicate():
    text = HEADER + "0xA,1,0,1,1\na,01,0,1,2\n"
    assert errors_of(text) == [f"{SRC}:3: vm port (0xa, 1) already mapped on line 2"]


def test_empty_file():
    message = (
        f"{SRC}: empty file: expected the header 'vm_id,vm_port,ct_id,dp_id,dp_port' "
        "followed by one mapping per line"
    )
    assert errors_of("") == [message]
    assert errors_of("# only comments\n\n   \n") == [message]


def test_headerless_original_form_is_refused_but_its_lines_still_checked():
    text = "5,1,0,99,1\n5,2,0,99,1\n"
    assert errors_of(text) == [
        f"{SRC}:1: missing header: the first line must be 'vm_id,vm_port,ct_id,dp_id,dp_port' "
        "(header-less files are not accepted)",
        f"{SRC}:2: dp port (0x0, 0x99, 1) already mapped on line 1",
    ]


def test_wrong_header():
    text = "vm,port,ct,dp,port\n5,1,0,99,1\n"
    assert errors_of(text) == [
        f"{SRC}:1: expected the header 'vm_id,vm_port,ct_id,dp_id,dp_port', "
        "got 'vm,port,ct,dp,port'"
    ]


def test_all_errors_are_collected_in_file_order():
    text = (
        HEADER  # line 1
        + "5,1,0,99,1\n"  # 2
        + "5,x,0,99,2\n"  # 3
        + "6,0,zz,99,3\n"  # 4: two field errors on one line
        + "5,1,0,99,1\n"  # 5: both duplicates
        + "7,1\n"  # 6
    )
    assert errors_of(text) == [
        f"{SRC}:3: vm_port: 'x' is not a decimal port number",
        f"{SRC}:4: vm_port: 0 is out of range (ports are 1..{MAX_PORT})",
        f"{SRC}:4: ct_id: 'zz' is not a hexadecimal id",
        f"{SRC}:5: vm port (0x5, 1) already mapped on line 2",
        f"{SRC}:5: dp port (0x0, 0x99, 1) already mapped on line 2",
        f"{SRC}:6: wrong number of columns: expected 5, got 2",
    ]


def test_default_source_name():
    with pytest.raises(ConfigError, match=r"^<string>:2: vm_port: 'x'"):
        parse_config(HEADER + "1,x,0,1,1\n")


def test_unreadable_file_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match=r"nope\.csv: cannot read: "):
        load_config(missing)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"bin\.csv: not UTF-8 text"):
        load_config(binary)


def test_load_config_uses_path_as_source(tmp_path):
    path = tmp_path / "rfserver.csv"
    path.write_text(HEADER + "1,1,0,1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [f"{path}:2: wrong number of columns: expected 5, got 4"]


def test_config_error_from_single_string():
    error = ConfigError("x.csv: boom")
    assert error.errors == ["x.csv: boom"]
    assert str(error) == "x.csv: boom"


# --- dump ---------------------------------------------------------------------------


def test_dump_format():
    assert dump_config([entry(0x12A0, 1, 0, 0x99, 2)]) == (
        "vm_id,vm_port,ct_id,dp_id,dp_port\n0x12a0,1,0x0,0x99,2\n"
    )
    assert dump_config([]) == "vm_id,vm_port,ct_id,dp_id,dp_port\n"


ids = st.integers(0, MAX_ID)
ports = st.integers(1, MAX_PORT)
config_entries = st.lists(
    st.builds(ConfigEntry, vm_id=ids, vm_port=ports, ct_id=ids, dp_id=ids, dp_port=ports),
    max_size=20,
    unique_by=(lambda e: e.vm_key, lambda e: e.dp_key),
)


@given(config_entries)
def test_dump_parse_round_trip(entries):
    assert parse_config(dump_config(entries)) == entries


@given(config_entries)
def test_round_trip_through_a_file(tmp_path_factory, entries):
    path = tmp_path_factory.mktemp("cfg") / "rfserver.csv"
    path.write_text(dump_config(entries))
    assert load_config(path) == entries

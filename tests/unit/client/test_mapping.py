"""The mapping frame shared by rfclient (encoder) and rfproxy (decoder)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routeflow.rflib.mapping import (
    MAPPING_ETHERTYPE,
    MIN_FRAME_SIZE,
    decode_mapping_frame,
    decode_mapping_payload,
    encode_mapping_frame,
)


def test_frame_layout():
    frame = encode_mapping_frame("02:00:00:00:00:01", 0x0102030405060708, 0x0A0B0C0D)
    assert len(frame) == MIN_FRAME_SIZE
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == bytes.fromhex("020000000001")
    assert struct.unpack("!H", frame[12:14])[0] == MAPPING_ETHERTYPE == 0x0A0A
    assert frame[14:26] == bytes.fromhex("01020304050607080a0b0c0d")
    assert frame[26:] == bytes(MIN_FRAME_SIZE - 26)


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=6, max_size=6),
)
def test_round_trip(vm_id, vm_port, mac_bytes):
    mac = ":".join(f"{b:02x}" for b in mac_bytes)
    frame = encode_mapping_frame(mac, vm_id, vm_port)
    assert decode_mapping_payload(frame[14:]) == (vm_id, vm_port)
    assert decode_mapping_frame(frame) == (mac, vm_id, vm_port)


def test_payload_without_padding_decodes():
    assert decode_mapping_payload(struct.pack("!QI", 7, 3)) == (7, 3)


@pytest.mark.parametrize("size", [0, 1, 8, 11])
def test_short_payload_is_an_error(size):
    with pytest.raises(ValueError, match="too short"):
        decode_mapping_payload(bytes(size))


def test_other_ethertype_is_not_a_mapping_frame():
    frame = bytearray(encode_mapping_frame("02:00:00:00:00:01", 1, 1))
    frame[12:14] = b"\x08\x00"
    with pytest.raises(ValueError, match="ethertype"):
        decode_mapping_frame(bytes(frame))


@pytest.mark.parametrize(
    ("mac", "vm_id", "vm_port"),
    [
        ("02:00:00:00:00", 1, 1),
        ("zz:00:00:00:00:01", 1, 1),
        ("02:00:00:00:00:01", -1, 1),
        ("02:00:00:00:00:01", 2**64, 1),
        ("02:00:00:00:00:01", 1, 2**32),
    ],
)
def test_bad_inputs_are_rejected(mac, vm_id, vm_port):
    with pytest.raises(ValueError):
        encode_mapping_frame(mac, vm_id, vm_port)

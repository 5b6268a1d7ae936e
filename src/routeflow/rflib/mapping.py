"""The mapping packet: how a VM port and a switch port find out they are wired together.

rfclient sends one broadcast frame out of a VM interface; it crosses the
virtual switch and reaches rfproxy as a packet-in on some (vs_id, vs_port),
which is how rfserver learns which VM port sits behind which virtual switch
port. Both ends must agree on the bytes, so encoding and decoding live here,
free of any socket.

Frame: dst ff:ff:ff:ff:ff:ff, src = the VM interface MAC, ethertype 0x0A0A,
payload = vm_id (8 bytes, big-endian) + vm_port (4 bytes, big-endian), padded
with zeros to the 60-byte Ethernet minimum.
"""

from __future__ import annotations

import struct

__all__ = [
    "MAPPING_ETHERTYPE",
    "MIN_FRAME_SIZE",
    "PAYLOAD_SIZE",
    "decode_mapping_frame",
    "decode_mapping_payload",
    "encode_mapping_frame",
    "mac_to_bytes",
]

MAPPING_ETHERTYPE = 0x0A0A
#: Shortest Ethernet frame without the FCS; shorter frames get dropped as runts.
MIN_FRAME_SIZE = 60
_BROADCAST = b"\xff" * 6
_ETH_HEADER = struct.Struct("!6s6sH")
_PAYLOAD = struct.Struct("!QI")
PAYLOAD_SIZE = _PAYLOAD.size  # 12


def mac_to_bytes(mac: str) -> bytes:
    """``"02:00:00:00:00:01"`` -> 6 bytes; ValueError for anything else."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"bad MAC address {mac!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"bad MAC address {mac!r}") from None


def encode_mapping_frame(src_mac: str, vm_id: int, vm_port: int) -> bytes:
    """The whole Ethernet frame announcing (vm_id, vm_port) from ``src_mac``."""
    if not 0 <= vm_id < 1 << 64:
        raise ValueError(f"vm_id {vm_id} does not fit in 64 bits")
    if not 0 <= vm_port < 1 << 32:
        raise ValueError(f"vm_port {vm_port} does not fit in 32 bits")
    frame = _ETH_HEADER.pack(_BROADCAST, mac_to_bytes(src_mac), MAPPING_ETHERTYPE)
    frame += _PAYLOAD.pack(vm_id, vm_port)
    return frame.ljust(MIN_FRAME_SIZE, b"\0")


def decode_mapping_payload(payload: bytes) -> tuple[int, int]:
    """(vm_id, vm_port) from the bytes after the ethertype; padding is ignored."""
    if len(payload) < PAYLOAD_SIZE:
        raise ValueError(f"mapping payload too short: {len(payload)} bytes, need {PAYLOAD_SIZE}")
    vm_id, vm_port = _PAYLOAD.unpack_from(payload)
    return vm_id, vm_port


def decode_mapping_frame(frame: bytes) -> tuple[str, int, int]:
    """(src_mac, vm_id, vm_port) from a whole untagged frame; ValueError if it is not one."""
    if len(frame) < _ETH_HEADER.size:
        raise ValueError(f"frame too short: {len(frame)} bytes")
    _dst, src, ethertype = _ETH_HEADER.unpack_from(frame)
    if ethertype != MAPPING_ETHERTYPE:
        raise ValueError(f"not a mapping frame: ethertype {ethertype:#06x}")
    vm_id, vm_port = decode_mapping_payload(frame[_ETH_HEADER.size :])
    return ":".join(f"{b:02x}" for b in src), vm_id, vm_port

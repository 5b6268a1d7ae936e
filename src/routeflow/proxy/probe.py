"""rfproxy's link probes: LLDP frames naming the switch port that sent them (pure bytes).

The format is os-ken's (and Ryu's) topology discovery one, so either side can
read the other's probes: chassis id "dpid:<16 hex digits>" (subtype 7, locally
assigned), port id the OpenFlow port number as 4 bytes (subtype 2, port
component), then the TTL and the end TLV, sent to the nearest-bridge group
01:80:c2:00:00:0e. Bridges do not forward that group, so a probe crosses one
link only. Built and parsed here with ``struct`` instead of os-ken's packet
library: the core stays free of the controller framework, and the parser, which
reads frames off the wire, is fuzzable on its own (tests/unit/proxy/test_probe.py
checks both directions against os-ken's own LLDPPacket).
"""

from __future__ import annotations

import struct

__all__ = ["ETH_TYPE_LLDP", "LLDP_DST", "ProbeError", "build_probe", "parse_probe"]

ETH_TYPE_LLDP = 0x88CC
LLDP_DST = "01:80:c2:00:00:0e"
_DST = bytes.fromhex(LLDP_DST.replace(":", ""))
_CHASSIS_PREFIX = b"dpid:"
_TLV_END, _TLV_CHASSIS, _TLV_PORT, _TLV_TTL = 0, 1, 2, 3
_CHASSIS_LOCAL = 7  # chassis id subtype "locally assigned"
_PORT_COMPONENT = 2  # port id subtype "port component"
_MAX_TTL = 0xFFFF


class ProbeError(ValueError):
    """A frame that is not one of our probes; the text says which part is wrong."""


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def _mac(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise ValueError(f"source MAC {text!r}: expected six hex octets")
    return raw


def build_probe(dp_id: int, port_no: int, src_mac: str, ttl: int) -> bytes:
    """The LLDP frame that switch ``dp_id`` sends out of ``port_no``."""
    if not 0 <= dp_id < 1 << 64:
        raise ValueError(f"dp_id {dp_id}: not a 64-bit datapath id")
    if not 0 <= port_no < 1 << 32:
        raise ValueError(f"port_no {port_no}: not a 32-bit port number")
    ttl = max(1, min(_MAX_TTL, ttl))
    chassis = bytes([_CHASSIS_LOCAL]) + _CHASSIS_PREFIX + f"{dp_id:016x}".encode()
    body = (
        _tlv(_TLV_CHASSIS, chassis)
        + _tlv(_TLV_PORT, bytes([_PORT_COMPONENT]) + struct.pack("!I", port_no))
        + _tlv(_TLV_TTL, struct.pack("!H", ttl))
        + _tlv(_TLV_END, b"")
    )
    return _DST + _mac(src_mac) + struct.pack("!H", ETH_TYPE_LLDP) + body


def _tlvs(data: bytes, pos: int):
    """Yield (type, value) up to the end TLV; ProbeError if a TLV runs past the frame."""
    while True:
        if pos + 2 > len(data):
            raise ProbeError("LLDPDU ends without an end TLV")
        (head,) = struct.unpack_from("!H", data, pos)
        kind, length = head >> 9, head & 0x1FF
        pos += 2
        if pos + length > len(data):
            raise ProbeError(f"TLV type {kind} of {length} bytes runs past the frame")
        if kind == _TLV_END:
            return
        yield kind, data[pos : pos + length]
        pos += length


def parse_probe(frame: bytes) -> tuple[int, int, int]:
    """(source dp_id, source port, TTL) of a probe; ProbeError for any other frame.

    LLDP from anything else (a host's lldpd, a switch's own agent) is not an
    error of the sender, but it is not a probe: the caller counts and drops it.
    """
    if len(frame) < 14:
        raise ProbeError("runt frame")
    pos = 12
    (ethertype,) = struct.unpack_from("!H", frame, pos)
    if ethertype == 0x8100:  # a VLAN tag: skip it
        if len(frame) < 18:
            raise ProbeError("runt tagged frame")
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        pos = 16
    if ethertype != ETH_TYPE_LLDP:
        raise ProbeError(f"ethertype {ethertype:#06x} is not LLDP")
    tlvs = list(_tlvs(frame, pos + 2))
    if len(tlvs) < 3 or [k for k, _ in tlvs[:3]] != [_TLV_CHASSIS, _TLV_PORT, _TLV_TTL]:
        raise ProbeError("LLDPDU does not start with chassis id, port id and TTL")
    (_, chassis), (_, port), (_, ttl) = tlvs[:3]
    if chassis[:1] != bytes([_CHASSIS_LOCAL]) or not chassis[1:].startswith(_CHASSIS_PREFIX):
        raise ProbeError("chassis id is not dpid:<hex>")
    try:
        dp_id = int(chassis[1 + len(_CHASSIS_PREFIX) :].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise ProbeError("chassis id is not dpid:<hex>") from None
    if not 0 <= dp_id < 1 << 64:
        raise ProbeError("chassis id is not a 64-bit datapath id")
    if len(port) != 5 or port[0] != _PORT_COMPONENT:
        raise ProbeError("port id is not a 4-byte port component")
    if len(ttl) != 2:
        raise ProbeError("TTL is not 2 bytes")
    return dp_id, struct.unpack("!I", port[1:])[0], struct.unpack("!H", ttl)[0]

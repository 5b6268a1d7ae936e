"""LLDP probes: our bytes against os-ken's own topology discovery format, and fuzzed parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from os_ken.lib.packet import ethernet, lldp, packet
from os_ken.topology.switches import LLDPPacket

from routeflow.proxy.probe import ETH_TYPE_LLDP, ProbeError, build_probe, parse_probe

MAC = "02:00:00:00:00:01"
dp_ids = st.integers(0, 2**64 - 1)
ports = st.integers(0, 2**32 - 1)


@given(dp_ids, ports, st.integers(1, 0xFFFF))
def test_probe_round_trip(dp_id, port, ttl):
    assert parse_probe(build_probe(dp_id, port, MAC, ttl)) == (dp_id, port, ttl)


@given(dp_ids, ports)
def test_os_ken_reads_our_probes_and_we_read_its(dp_id, port):
    ours = build_probe(dp_id, port, MAC, 3)
    assert LLDPPacket.lldp_parse(ours) == (dp_id, port)
    theirs = LLDPPacket.lldp_packet(dp_id, port, MAC, 120)
    assert parse_probe(theirs) == (dp_id, port, 120)
    eth = packet.Packet(ours).get_protocol(ethernet.ethernet)
    assert (eth.dst, eth.src, eth.ethertype) == (lldp.LLDP_MAC_NEAREST_BRIDGE, MAC, ETH_TYPE_LLDP)


def test_ttl_is_clamped_to_the_field():
    assert parse_probe(build_probe(1, 1, MAC, 0))[2] == 1
    assert parse_probe(build_probe(1, 1, MAC, 10**6))[2] == 0xFFFF


def test_a_vlan_tagged_probe_is_read():
    frame = build_probe(5, 2, MAC, 3)
    tagged = frame[:12] + bytes.fromhex("81000064") + frame[12:]
    assert parse_probe(tagged) == (5, 2, 3)


def test_other_lldp_is_not_a_probe():
    # A host's lldpd: chassis id subtype MAC address, port id an interface name.
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(lldp.LLDP_MAC_NEAREST_BRIDGE, MAC, ETH_TYPE_LLDP))
    tlvs = (
        lldp.ChassisID(
            subtype=lldp.ChassisID.SUB_MAC_ADDRESS, chassis_id=b"\x02\x00\x00\x00\x00\x01"
        ),
        lldp.PortID(subtype=lldp.PortID.SUB_INTERFACE_NAME, port_id=b"eth0"),
        lldp.TTL(ttl=120),
        lldp.End(),
    )
    pkt.add_protocol(lldp.lldp(tlvs))
    pkt.serialize()
    with pytest.raises(ProbeError, match="chassis id"):
        parse_probe(bytes(pkt.data))


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "runt"),
        (b"\x00" * 12 + b"\x08\x00" + b"\x00" * 40, "not LLDP"),
        (b"\x00" * 12 + b"\x88\xcc", "end TLV"),
        (b"\x00" * 12 + b"\x88\xcc\x02\xff", "runs past"),
    ],
)
def test_bad_frames_say_why(frame, why):
    with pytest.raises(ProbeError, match=why):
        parse_probe(frame)


@pytest.mark.parametrize(("dp_id", "port"), [(-1, 1), (2**64, 1), (1, -1), (1, 2**32)])
def test_build_refuses_out_of_range_ids(dp_id, port):
    with pytest.raises(ValueError):
        build_probe(dp_id, port, MAC, 3)


def test_build_refuses_a_bad_mac():
    with pytest.raises(ValueError, match="source MAC"):
        build_probe(1, 1, "02:00", 3)


@given(st.binary(max_size=80))
def test_parse_never_fails_otherwise(data):
    frame = build_probe(5, 2, MAC, 3)
    for candidate in (data, frame[:14] + data, frame[: len(frame) // 2] + data):
        try:
            dp_id, port, ttl = parse_probe(candidate)
        except ProbeError:
            continue
        assert 0 <= dp_id < 2**64 and 0 <= port < 2**32 and 0 <= ttl <= 0xFFFF

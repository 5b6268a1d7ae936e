"""DHCP answers come from the model: the port's address, MTU, router, DNS, routes."""

from __future__ import annotations

import struct

from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp

from routeflow.tenant.dhcp import DHCP_MAC, TokenBucket, lease_for, reply

from .cloudfix import VM1, VM2, cloud


def request(mac: str, kind: int, flags: int = 0) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=mac, ethertype=0x0800))
    pkt.add_protocol(ipv4.ipv4(src="0.0.0.0", dst="255.255.255.255", proto=17))
    pkt.add_protocol(udp.udp(src_port=68, dst_port=67))
    opts = dhcp.options(option_list=[dhcp.option(dhcp.DHCP_MESSAGE_TYPE_OPT, bytes([kind]))])
    pkt.add_protocol(
        dhcp.dhcp(op=dhcp.DHCP_BOOT_REQUEST, chaddr=mac, xid=0x1234, flags=flags, options=opts)
    )
    pkt.serialize()
    return bytes(pkt.data)


def options(frame: bytes) -> tuple[packet.Packet, dict[int, bytes]]:
    pkt = packet.Packet(frame)
    d = pkt.get_protocol(dhcp.dhcp)
    return pkt, {o.tag: o.value for o in d.options.option_list}


def test_discover_gets_an_offer_with_every_option() -> None:
    lease = lease_for(cloud(), VM1)
    assert lease is not None
    pkt, opts = options(reply(request(VM1.mac_address, dhcp.DHCP_DISCOVER), lease) or b"")
    d = pkt.get_protocol(dhcp.dhcp)
    assert d.yiaddr == "10.10.0.11" and d.xid == 0x1234
    assert opts[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([dhcp.DHCP_OFFER])
    assert opts[dhcp.DHCP_SUBNET_MASK_OPT] == bytes([255, 255, 255, 0])
    assert opts[dhcp.DHCP_GATEWAY_ADDR_OPT] == bytes([10, 10, 0, 1])
    assert opts[dhcp.DHCP_DNS_SERVER_ADDR_OPT] == bytes([192, 0, 2, 53])
    assert struct.unpack("!H", opts[dhcp.DHCP_INTERFACE_MTU_OPT]) == (1450,)
    assert opts[dhcp.DHCP_SERVER_IDENTIFIER_OPT] == bytes([10, 10, 0, 1])
    assert struct.unpack("!I", opts[dhcp.DHCP_IP_ADDR_LEASE_TIME_OPT]) == (86400,)
    # 121: 172.16/12 via .254, then the default route via the gateway (RFC 3442)
    assert opts[dhcp.DHCP_CLASSLESS_ROUTE_OPT] == bytes(
        [12, 172, 16, 10, 10, 0, 254, 0, 10, 10, 0, 1]
    )
    eth = pkt.get_protocol(ethernet.ethernet)
    ip = pkt.get_protocol(ipv4.ipv4)
    assert (eth.src, eth.dst, ip.dst) == (DHCP_MAC, VM1.mac_address, "10.10.0.11")


def test_request_gets_an_ack_and_broadcast_flag_is_honoured() -> None:
    lease = lease_for(cloud(), VM1)
    assert lease is not None
    pkt, opts = options(reply(request(VM1.mac_address, dhcp.DHCP_REQUEST, 0x8000), lease) or b"")
    assert opts[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([dhcp.DHCP_ACK])
    assert pkt.get_protocol(ipv4.ipv4).dst == "255.255.255.255"


def test_spoofed_mac_release_and_garbage_get_nothing() -> None:
    lease = lease_for(cloud(), VM1)
    assert lease is not None
    assert reply(request(VM2.mac_address, dhcp.DHCP_DISCOVER), lease) is None
    assert reply(request(VM1.mac_address, 7), lease) is None  # RELEASE
    assert reply(b"\x00" * 30, lease) is None
    assert reply(b"", lease) is None


def test_token_bucket_refills_with_the_clock_passed_in() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.4) is False
    assert bucket.allow(0.6) is True  # 0.6 s at 2/s: one token (after 0.4 s spent 0.8)
    assert bucket.allow(100.0) and bucket.allow(100.0) and bucket.allow(100.0)
    assert not bucket.allow(100.0)  # never more than the burst
    assert not bucket.allow(50.0)  # a clock going back gives nothing

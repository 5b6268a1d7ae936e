"""DHCP for tenant ports, answered by the node agent from the model (pure).

OVS has no DHCP responder, so the pipeline sends a VM's DHCP requests to the
node agent (packet-in) and the agent answers here, as Dragonflow does. Rules:

1. Only a known VIF gets an answer, and only with the port's own fixed IPv4
   address on a subnet with ``enable_dhcp``; the request's chaddr must be the
   port's MAC (anything else is a spoof or a stale VM: no answer).
2. DISCOVER gets OFFER, REQUEST gets ACK; every other message type is ignored
   (RELEASE/DECLINE change nothing: the address belongs to the port, not a lease).
3. Options: 1 netmask, 3 router (the subnet's gateway), 6 DNS, 15 domain,
   26 MTU (the network's: VXLAN overhead must reach the VM, else big frames
   vanish silently), 51 lease time, 54 server identifier, 121 host routes.
4. Requests are rate-limited per port (``TokenBucket``; the clock is passed in),
   so a VM looping on DHCP cannot keep the agent busy.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp

from routeflow.tenant.model import Cloud, Network, Port, Subnet

__all__ = ["DHCP_MAC", "LEASE_SECONDS", "Lease", "TokenBucket", "lease_for", "reply"]

#: Source MAC of the agent's answers (locally administered, Neutron's OUI range).
DHCP_MAC = "fa:16:3e:ff:ff:fe"
LEASE_SECONDS = 86400
DOMAIN = "openstacklocal"


@dataclass(frozen=True, slots=True)
class Lease:
    """What a port is told: everything comes from the model."""

    mac: str
    ip: str
    prefixlen: int
    server_ip: str
    router: str | None
    dns: tuple[str, ...]
    mtu: int
    routes: tuple[tuple[str, str], ...]  # (destination cidr, nexthop)


def lease_for(cloud: Cloud, port: Port) -> Lease | None:
    """The lease of ``port`` (its first IPv4 fixed IP on a DHCP subnet), or None."""
    network: Network | None = cloud.networks.get(port.network_id)
    if network is None:
        return None
    for fixed in port.fixed_ips:
        subnet: Subnet | None = cloud.subnets.get(fixed.subnet_id)
        if subnet is None or subnet.ip_version != 4 or not subnet.enable_dhcp:
            continue
        net = ipaddress.IPv4Network(subnet.cidr, strict=False)
        server = subnet.gateway_ip or str(net.network_address + 1)
        return Lease(
            mac=port.mac_address.lower(),
            ip=fixed.ip_address,
            prefixlen=net.prefixlen,
            server_ip=server,
            router=subnet.gateway_ip,
            dns=tuple(subnet.dns_nameservers),
            mtu=network.mtu,
            routes=tuple((r.destination, r.nexthop) for r in subnet.host_routes),
        )
    return None


def _classless_routes(routes: tuple[tuple[str, str], ...]) -> bytes:
    """Option 121 (RFC 3442): width, significant octets of the destination, router."""
    out = bytearray()
    for dest, hop in routes:
        net = ipaddress.IPv4Network(dest, strict=False)
        width = net.prefixlen
        out.append(width)
        out += net.network_address.packed[: (width + 7) // 8]
        out += ipaddress.IPv4Address(hop).packed
    return bytes(out)


def _options(lease: Lease, msg_type: int) -> dhcp.options:
    mask = ipaddress.IPv4Network(f"0.0.0.0/{lease.prefixlen}").netmask
    opts = [
        dhcp.option(dhcp.DHCP_MESSAGE_TYPE_OPT, bytes([msg_type])),
        dhcp.option(dhcp.DHCP_SERVER_IDENTIFIER_OPT, ipaddress.IPv4Address(lease.server_ip).packed),
        dhcp.option(dhcp.DHCP_IP_ADDR_LEASE_TIME_OPT, struct.pack("!I", LEASE_SECONDS)),
        dhcp.option(dhcp.DHCP_SUBNET_MASK_OPT, mask.packed),
        dhcp.option(dhcp.DHCP_INTERFACE_MTU_OPT, struct.pack("!H", lease.mtu)),
        dhcp.option(dhcp.DHCP_DOMAIN_NAME_OPT, DOMAIN.encode()),
    ]
    if lease.router:
        opts.append(
            dhcp.option(dhcp.DHCP_GATEWAY_ADDR_OPT, ipaddress.IPv4Address(lease.router).packed)
        )
    if lease.dns:
        packed = b"".join(ipaddress.IPv4Address(d).packed for d in lease.dns)
        opts.append(dhcp.option(dhcp.DHCP_DNS_SERVER_ADDR_OPT, packed))
    if lease.routes:
        routes = lease.routes
        if lease.router:  # RFC 3442: with option 121 the client ignores option 3
            routes = (*routes, ("0.0.0.0/0", lease.router))
        opts.append(dhcp.option(dhcp.DHCP_CLASSLESS_ROUTE_OPT, _classless_routes(routes)))
    return dhcp.options(option_list=opts)


def _message_type(req: dhcp.dhcp) -> int | None:
    for opt in req.options.option_list if req.options else ():
        if opt.tag == dhcp.DHCP_MESSAGE_TYPE_OPT and opt.value:
            return int(opt.value[0])
    return None


def reply(frame: bytes, lease: Lease) -> bytes | None:
    """The Ethernet frame answering the DHCP request ``frame`` (rules 1-3), or None."""
    try:
        pkt = packet.Packet(frame)
    except Exception:  # os-ken raises many kinds on garbage; a bad frame gets no answer
        return None
    req = pkt.get_protocol(dhcp.dhcp)
    eth = pkt.get_protocol(ethernet.ethernet)
    if req is None or eth is None or req.op != dhcp.DHCP_BOOT_REQUEST:
        return None
    if str(req.chaddr).lower() != lease.mac or str(eth.src).lower() != lease.mac:
        return None
    kind = _message_type(req)
    answer = {dhcp.DHCP_DISCOVER: dhcp.DHCP_OFFER, dhcp.DHCP_REQUEST: dhcp.DHCP_ACK}.get(kind or 0)
    if answer is None:
        return None
    broadcast = bool(req.flags & 0x8000)
    out = packet.Packet()
    out.add_protocol(
        ethernet.ethernet(
            dst="ff:ff:ff:ff:ff:ff" if broadcast else lease.mac, src=DHCP_MAC, ethertype=0x0800
        )
    )
    out.add_protocol(
        ipv4.ipv4(
            src=lease.server_ip,
            dst="255.255.255.255" if broadcast else lease.ip,
            proto=17,
            ttl=64,
        )
    )
    out.add_protocol(udp.udp(src_port=67, dst_port=68))
    out.add_protocol(
        dhcp.dhcp(
            op=dhcp.DHCP_BOOT_REPLY,
            chaddr=lease.mac,
            xid=req.xid,
            flags=req.flags,
            hlen=6,
            yiaddr=lease.ip,
            siaddr=lease.server_ip,
            giaddr=req.giaddr,
            options=_options(lease, answer),
        )
    )
    out.serialize()
    return bytes(out.data)


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``allow(now)`` takes one if there is one."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

"""The tenant pipeline on a node's br-int: tables, registers, cookies, fixed ports (pure).

One place for the numbers the compiler writes, the node agent reconciles by and the
lab check compares (notes/tenant-networks.md §4.2, Dragonflow's layout). NAT and floating
IPs are tenant/nat.py's.

| table | name | what |
|---|---|---|
| 0  | CLASSIFY  | VM port: reg6 = port key, metadata = VNI -> 5; tunnel + tun_id -> 72 |
| 5  | PORT_SEC  | the port's eth_src + IPv4 source (fixed IPs, allowed pairs), ARP |
|    |           | likewise, DHCP from 0.0.0.0 |
| 10 | EGRESS_CT | IPv4 of a port with port security: ct(zone = reg6[0..15]) -> 15 |
| 15 | EGRESS_SG | est/rel on, inv drop, DHCP on, new + a rule: commit -> 20; drop |
| 20 | SERVICES  | ARP -> 25, DHCP client -> 30, the rest -> 40 |
| 25 | ARP       | responder for every known port and router interface IP |
| 30 | DHCP      | per port: CONTROLLER (the packet-in's cookie is the port's) |
| 40 | L2        | metadata + eth_dst: router MAC -> reg5, 50; port MAC -> reg7, 70; |
|    |           | multicast -> the network's local ports |
| 45 | UNSNAT    | gateway node, from outside: reg5 + the router's gateway IP -> |
|    |           | ct(nat) (un-SNAT); + a floating IP -> ct(commit,nat(dst=fixed)) |
| 46 | DNAT      | after NAT: still to the gateway IP (no connection) drop; -> 50 |
| 50 | ROUTING   | reg5: ICMP echo responder for router IPs; longest prefix by |
|    |           | priority -> dec_ttl, eth_src = router MAC, metadata = VNI, 55 |
| 55 | HOST      | metadata + ipv4_dst -> eth_dst, reg7 -> 70 |
| 60 | SNAT      | gateway node, to outside: a floating IP's fixed IP -> |
|    |           | ct(commit,nat(src=FIP)); the router's subnets -> nat(src=gw IP) |
| 65 | EXT_OUT   | after NAT: eth_src = gateway port MAC, eth_dst = the external |
|    |           | next hop (learned by ARP), out of the external port |
| 70 | DISPATCH  | reg7: local -> 85; remote -> tun_dst, tun_id = VNI, the tunnel port |
| 72 | TUNNEL_IN | from the tunnel: metadata + eth_dst of a local port -> reg7, 85 |
| 75 | INGRESS_CT| IPv4 to a port with port security: ct(zone = reg7[0..15]) -> 80 |
| 80 | INGRESS_SG| est/rel on, inv drop, new + a rule: commit -> 85; drop |
| 85 | OUTPUT    | reg7 -> the port's ofport |

Registers: ``metadata`` = the network's VNI (segmentation id), ``reg5`` = router key,
``reg6`` = source port key, ``reg7`` = destination port key; ``reg0``/``reg1`` are
scratch space inside one flow's actions.

Cookies: one per model object, ``0x7e`` in the top byte (a tenant flow), the object's
kind in the next byte and its key (VNI, port key, router key) in the low 32 bits; the
pipeline's fixed flows carry ``BASE``. A node agent dumps ``cookie=TENANT/TENANT_MASK``
to find every tenant flow and ``cookie_of(kind, key)/OBJECT_MASK`` for one object's.

DHCP for the node agent: a client's DISCOVER/REQUEST reaches the controller from the
DHCP table's per-port flow, so the OpenFlow 1.3 packet-in's ``cookie`` is that port's
(``cookie_kind(msg.cookie) == (Kind.PORT, port.key)``, per the OpenFlow 1.3 spec); its
match carries ``in_port`` (the binding's ofport) and, as OVS fills pipeline fields in,
``metadata`` (the VNI) and ``reg6`` (the port key; not checked here against a live
controller). Answer with a packet-out to ``in_port``.
"""

from __future__ import annotations

import enum

# Tables.
CLASSIFY = 0
PORT_SEC = 5
EGRESS_CT = 10
EGRESS_SG = 15
SERVICES = 20
ARP = 25
DHCP = 30
L2 = 40
UNSNAT = 45
DNAT = 46
ROUTING = 50
HOST = 55
SNAT = 60
EXT_OUT = 65
DISPATCH = 70
TUNNEL_IN = 72
INGRESS_CT = 75
INGRESS_SG = 80
OUTPUT = 85

TABLES = {
    CLASSIFY: "classify",
    PORT_SEC: "port security",
    EGRESS_CT: "egress conntrack",
    EGRESS_SG: "egress security groups",
    SERVICES: "services",
    ARP: "arp responder",
    DHCP: "dhcp",
    L2: "l2 lookup",
    UNSNAT: "un-snat",
    DNAT: "dnat",
    ROUTING: "routing",
    HOST: "host lookup",
    SNAT: "snat",
    EXT_OUT: "external egress",
    DISPATCH: "egress dispatch",
    TUNNEL_IN: "tunnel ingress",
    INGRESS_CT: "ingress conntrack",
    INGRESS_SG: "ingress security groups",
    OUTPUT: "output",
}

# Registers (ofsim / OXM names).
NETWORK_REG = "metadata"  # VNI
ROUTER_REG = "reg5"
SRC_PORT_REG = "reg6"
DST_PORT_REG = "reg7"
SCRATCH_REG0 = "reg0"  # within one flow's actions only (the echo responder's MAC swap)
SCRATCH_REG1 = "reg1"

# The flow-based VXLAN port of br-int (``ofport_request``; lab/ovsnode.py creates it so).
TUNNEL_OFPORT = 100
# A gateway node's external port on br-int (``ofport_request``; lab/ovsnode.py).
EXTERNAL_OFPORT = 101

# Priorities.
PRI_HIGH = 1000  # responders and exceptions
PRI_PORT = 100  # per-object lookups
PRI_MULTICAST = 50
PRI_DEFAULT = 0  # a table's default (drop or go on)
PRI_ROUTE_BASE = 100  # routing: longest prefix first, see route_priority

DHCP_CLIENT_PORT = 68
DHCP_SERVER_PORT = 67
MULTICAST_MAC = ("01:00:00:00:00:00", "01:00:00:00:00:00")


def route_priority(prefixlen: int, connected: bool) -> int:
    """Longest prefix wins; at one length a connected subnet beats an extra route."""
    return PRI_ROUTE_BASE + 2 * prefixlen + (1 if connected else 0)


class Kind(enum.IntEnum):
    """The model object a flow belongs to (byte 6 of the cookie)."""

    BASE = 0
    NETWORK = 1
    PORT = 2
    ROUTER = 3
    SECURITY_GROUP = 4
    FLOATINGIP = 5


TENANT = 0x7E << 56
TENANT_MASK = 0xFF << 56
OBJECT_MASK = (0xFFFF << 48) | 0xFFFFFFFF


def cookie_of(kind: Kind, key: int = 0) -> int:
    if not 0 <= key < 1 << 32:
        raise ValueError(f"cookie key {key} does not fit 32 bits")
    return TENANT | (int(kind) << 48) | key


def cookie_kind(cookie: int) -> tuple[Kind, int] | None:
    """(kind, key) of a tenant cookie; None for a flow that is not the tenant pipeline's."""
    if cookie & TENANT_MASK != TENANT:
        return None
    return Kind((cookie >> 48) & 0xFF), cookie & 0xFFFFFFFF

"""Forwarding intents -> OpenFlow 1.3 flow and group specs (pure).

The pipeline on every physical switch has two tables:

* table 0, the classifier, admits into the FIB only frames addressed to the
  router MAC of the port they arrived on, and sends to the controller (and so
  to the VM) only what is for the router itself: ARP aimed at the router's
  address or MAC, link-local multicast (OSPF hellos; OSPFv3 and neighbour
  discovery to ff02::/16), and, via the FIB, packets to the router's own
  addresses. Everything else is dropped. Transit ARP and ICMP between hosts
  never reach a VM (RouteFlow 2012 punted them all).
* table 1, the FIB, does longest-prefix match with one flow per prefix
  (priority grows with prefix length); a route's action is one OpenFlow group
  per next hop, so a next-hop MAC change is one group-mod.

Specs are plain frozen dataclasses so this module imports no controller
framework; ofmsg.py turns them into os-ken messages. The same
specs could drive another controller, as the ONOS port of RouteFlow did.
"""

from __future__ import annotations

import ipaddress
import socket
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from routeflow.proxy.probe import ETH_TYPE_LLDP
from routeflow.rflib.mapping import MAPPING_ETHERTYPE
from routeflow.rflib.protocol import Bucket, FibEntry, NextHopMod, RouteKind

TABLE_CLASSIFIER = 0
TABLE_FIB = 1

# Priorities: the classifier's punts beat admission; in the FIB, the router's
# own addresses beat any route, and longer prefixes beat shorter ones.
PRIO_MISS = 0
PRIO_ADMIT = 200
PRIO_PUNT = 300
PRIO_PUNT_LOCAL_ARP = 310
PRIO_ROUTE_BASE = 1000
PRIO_LOCAL = 2000

# Cookies mark our flows (high 16 bits "RF") and their kind, so reconciliation
# and deletion can select exactly what routeflow installed.
COOKIE_RF = 0x5246 << 48
COOKIE_KIND_SHIFT = 40
COOKIE_MASK_KIND = COOKIE_RF | (0xFF << COOKIE_KIND_SHIFT)


class Kind:
    BASE = 1
    ROUTER_PORT = 2
    LOCAL = 3
    ROUTE = 4
    VS = 5
    RELAY = 6  # datapath relay: a router port's frames to and from its relay link
    VLINK = 7  # virtual-domain control plane: VM port to VM port (proxy/vlinks.py)
    DISCOVERY = 8  # topology discovery: link probes (LLDP) to the controller


#: A next hop's route flows are spread over up to this many groups with the same
#: buckets ("shards"), chosen by a hash of the prefix. Open vSwitch keeps, per
#: group, an array of the flows using it, and searches it linearly each time
#: one of them is deleted or moved to another group: with one group per next
#: hop, withdrawing or re-routing a full table through one next hop costs time
#: quadratic in its routes (moving 200k flows out of one group took OVS 4.6 s,
#: out of 64 groups 1.45 s; deleting 1.1M flows 13 s from 64 groups, 7.8 s from
#: 256; see docs/performance.md, "Peer down"). A shard's group exists only once
#: a route uses it (rfproxy creates it before that route's flow; core.py), so a
#: next hop with a few routes (a host, a neighbour) has a few groups, and a
#: next-hop change is one group-mod per shard that exists, independent of its routes.
#: 64 rather than 16 or 256, by measurement (docs/performance.md, "Shards made by
#: their first route"): at a full table a peer's routes moved as fast with 64 as
#: with 256, while 256 per next hop made emptying a dead peer's groups and a MAC
#: change (one group-mod per shard) slower.
GROUP_SHARDS = 64
#: Shard s (1..GROUP_SHARDS-1) of next hop n is group ``n | s << SHARD_SHIFT`` (the top
#: bits); shard 0 is group n. Only next-hop ids below ``2**(SHARD_SHIFT - 1)``
#: are sharded (rfserver counts them from 1 and reuses freed ones), so every
#: shard stays under OFPG_MAX (0xffffff00); a larger id is its only group.
SHARD_SHIFT = 32 - (GROUP_SHARDS - 1).bit_length()
_ID_MASK = (1 << SHARD_SHIFT) - 1
_SHARDED = 1 << (SHARD_SHIFT - 1)
_SHARD_MASK = GROUP_SHARDS - 1
_crc32 = zlib.crc32


def route_group(nexthop_id: int, prefix: str) -> int:
    """The group a route flow of ``prefix`` through next hop ``nexthop_id`` applies."""
    if nexthop_id >= _SHARDED:
        return nexthop_id
    return nexthop_id | (_crc32(prefix.encode()) & _SHARD_MASK) << SHARD_SHIFT


def nexthop_group_ids(nexthop_id: int) -> tuple[int, ...]:
    """Every group one next hop may have (its possible shards), shard 0 (the id) first."""
    if nexthop_id >= _SHARDED:
        return (nexthop_id,)
    return tuple(nexthop_id | s << SHARD_SHIFT for s in range(GROUP_SHARDS))


def nexthop_of_group(group_id: int) -> int:
    """The next hop whose shard ``group_id`` is (its id if not a shard)."""
    nexthop_id = group_id & _ID_MASK
    return nexthop_id if nexthop_id < _SHARDED else group_id


def cookie(kind: int, detail: int = 0) -> int:
    return COOKIE_RF | (kind << COOKIE_KIND_SHIFT) | (detail & ((1 << COOKIE_KIND_SHIFT) - 1))


def is_ours(cookie: int) -> bool:
    """Whether a flow with this cookie was installed by routeflow."""
    return cookie & 0xFFFF << 48 == COOKIE_RF


#: The original RouteFlow virtual switch datapath id: ASCII "rfvsrfvs".
DEFAULT_VS_DPID = int.from_bytes(b"rfvsrfvs", "big")


ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
LINK_LOCAL_MCAST = ("224.0.0.0", "255.255.255.0")
#: IPv6 link-scope multicast: OSPFv3 (ff02::5, ff02::6), ND solicitations to
#: solicited-node groups, router solicitations. Their frames are not sent to
#: the router MAC, so admission would drop them.
LINK_LOCAL_MCAST6 = ("ff02::", "ffff::")


@dataclass(frozen=True)
class Output:
    port: int


@dataclass(frozen=True)
class ToController:
    pass


@dataclass(frozen=True)
class Goto:
    table: int


@dataclass(frozen=True)
class Group:
    group_id: int


@dataclass(frozen=True)
class SetEthSrc:
    mac: str


@dataclass(frozen=True)
class SetEthDst:
    mac: str


@dataclass(frozen=True)
class DecTtl:
    pass


@dataclass(frozen=True)
class PushVlan:
    """Push an 802.1Q tag (ethertype 0x8100); SetVlanVid gives it its id."""


@dataclass(frozen=True)
class SetVlanVid:
    vid: int  # 0..4095; the OpenFlow 1.3 "present" bit is added when sent


@dataclass(frozen=True)
class PopVlan:
    pass


Action = (
    Output
    | ToController
    | Goto
    | Group
    | SetEthSrc
    | SetEthDst
    | DecTtl
    | PushVlan
    | SetVlanVid
    | PopVlan
)


@dataclass(frozen=True)
class FlowSpec:
    """A flow; (table, priority, match) is its identity on the switch."""

    table: int
    priority: int
    match: tuple[tuple[str, object], ...]
    actions: tuple[Action, ...] = ()  # empty: drop
    cookie: int = 0

    @property
    def key(self) -> tuple[int, int, tuple[tuple[str, object], ...]]:
        return (self.table, self.priority, self.match)


@dataclass(frozen=True)
class GroupSpec:
    group_id: int
    select: bool  # ECMP select group, else indirect
    buckets: tuple[tuple[tuple[Action, ...], int], ...] = field(default=())  # (actions, weight)


def base_flows() -> list[FlowSpec]:
    """Table-miss drop in both tables: an unprogrammed port forwards nothing."""
    c = cookie(Kind.BASE)
    return [
        FlowSpec(TABLE_CLASSIFIER, PRIO_MISS, (), (), c),
        FlowSpec(TABLE_FIB, PRIO_MISS, (), (), c),
    ]


#: Link probes beat every other classifier flow: a probe is never admitted, relayed or dropped.
PRIO_DISCOVERY = 500


def discovery_flows() -> list[FlowSpec]:
    """Every LLDP frame a physical switch receives goes to the controller (proxy/discovery.py).

    LLDP's nearest-bridge group is never forwarded by a bridge, so what arrives
    came over one link; rfproxy reads it and never relays it to a VM.
    """
    return [
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_DISCOVERY,
            (("eth_type", ETH_TYPE_LLDP),),
            (ToController(),),
            cookie(Kind.DISCOVERY),
        )
    ]


def virtual_switch_flows() -> list[FlowSpec]:
    """The virtual switch hands every frame to the controller, which relays it.

    In datapath relay mode, mapped VM ports get flows of their own (vs_relay_flows);
    mapping packets still go to the controller, above those.
    """
    return [
        FlowSpec(TABLE_CLASSIFIER, PRIO_MISS, (), (ToController(),), cookie(Kind.VS)),
        vs_mapping_flow(),
    ]


def router_port_flows(
    dp_port: int, mac: str, punt: tuple[Action, ...] = (ToController(),)
) -> list[FlowSpec]:
    """Classifier flows for one router port (a switch port mapped to a VM interface).

    ``punt`` is where control traffic for the router goes: the controller, or
    in datapath relay mode the port's relay link (``relay_punt``).
    """
    mac = mac.lower()
    c = cookie(Kind.ROUTER_PORT, dp_port)
    return [
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_PUNT,
            (("in_port", dp_port), ("eth_type", ETH_TYPE_ARP), ("eth_dst", mac)),
            punt,
            c,
        ),
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_PUNT,
            (("in_port", dp_port), ("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", LINK_LOCAL_MCAST)),
            punt,
            c,
        ),
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_PUNT,
            (("in_port", dp_port), ("eth_type", ETH_TYPE_IPV6), ("ipv6_dst", LINK_LOCAL_MCAST6)),
            punt,
            c,
        ),
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_ADMIT,
            (("in_port", dp_port), ("eth_dst", mac)),
            (Goto(TABLE_FIB),),
            c,
        ),
    ]


def _network(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if ":" in prefix:
        return ipaddress.IPv6Network(prefix, strict=False)
    return ipaddress.IPv4Network(prefix, strict=False)


def _prefix_match(prefix: str) -> tuple[tuple[str, object], ...]:
    net = _network(prefix)
    if net.version == 6:
        eth_type, field_name = ETH_TYPE_IPV6, "ipv6_dst"
    else:
        eth_type, field_name = ETH_TYPE_IPV4, "ipv4_dst"
    if net.prefixlen == 0:
        # The default route matches any destination of its family. A switch
        # stores an all-zero mask as no field at all, so we must not send one
        # either: reconciliation compares our match with what the switch reports.
        return (("eth_type", eth_type),)
    if net.prefixlen == net.max_prefixlen:
        dst: object = _text(net.network_address)
    else:
        dst = (_text(net.network_address), _text(net.netmask))
    return (("eth_type", eth_type), (field_name, dst))


def _text(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as the switch reports it (through os-ken, or reconcile.py's parser).

    For IPv6 that is inet_ntop's form, not Python's: they differ on IPv4-mapped
    and -compatible addresses ("::ffff:1.2.3.4" vs "::ffff:102:304").
    """
    if addr.version == 4:
        return str(addr)
    return socket.inet_ntop(socket.AF_INET6, addr.packed)


def route_priority(prefix: str) -> int:
    """IPv4 and IPv6 flows share the range: their eth_type keeps them apart."""
    return PRIO_ROUTE_BASE + _network(prefix).prefixlen


def fib_flows(entry: FibEntry) -> list[FlowSpec]:
    """The flows one FIB entry needs (a LOCAL IPv4 address also answers ARP).

    A LOCAL IPv6 address needs no classifier flow of its own: neighbour
    solicitations for it go to its solicited-node group (the router port's
    ff02::/16 punt), and unicast to it reaches the FIB like any routed packet.
    """
    if entry.kind == RouteKind.LOCAL:
        net = _network(entry.prefix)
        c = cookie(Kind.LOCAL, entry.dp_port)
        local = FlowSpec(TABLE_FIB, PRIO_LOCAL, _prefix_match(entry.prefix), (ToController(),), c)
        if net.version == 6:
            return [local]
        return [
            local,
            FlowSpec(
                TABLE_CLASSIFIER,
                PRIO_PUNT_LOCAL_ARP,
                (
                    ("in_port", entry.dp_port),
                    ("eth_type", ETH_TYPE_ARP),
                    ("arp_tpa", str(net.network_address)),
                ),
                (ToController(),),
                c,
            ),
        ]
    c = cookie(Kind.ROUTE)
    prio = route_priority(entry.prefix)
    if entry.kind == RouteKind.CONNECTED:
        # Hosts not yet resolved: the VM's kernel resolves and forwards them
        # (slow path); each resolved host then gets its own /32 (/128) route.
        return [FlowSpec(TABLE_FIB, prio, _prefix_match(entry.prefix), (ToController(),), c)]
    group = Group(route_group(entry.nexthop_id, entry.prefix))
    return [FlowSpec(TABLE_FIB, prio, _prefix_match(entry.prefix), (group,), c)]


# --- datapath relay ------------------------------------------------------------------------
#
# In datapath relay mode each physical switch has one relay link to the virtual
# switch (a patch port pair in the lab, a cable in a deployment). A router
# port's control frames cross it tagged with the port's number as VLAN id, so
# both ends know which router port they belong to, and never reach the
# controller. What the FIB punts (the router's own addresses, connected hosts
# not yet resolved, unresolved next hops) still takes the packet-in relay:
# a FIB flow is shared by every ingress port, and the tag must name the port.

#: Single-hop BFD control and echo (RFC 5881), to this router by definition.
BFD_PORTS = (3784, 3785)
IP_PROTO_OSPF = 89
IP_PROTO_UDP = 17
OFPVID_PRESENT = 0x1000
#: Mapping packets must still reach the controller from the virtual switch.
PRIO_MAPPING = 400
#: ARP to the router's MAC beats the LOCAL ARP punt (to the controller) of fib_flows.
PRIO_RELAY_ARP = PRIO_PUNT_LOCAL_ARP + 1


def relay_punt(dp_port: int, relay_port: int) -> tuple[Action, ...]:
    """Where a router port's control frames go in datapath mode: tagged, out of the relay link."""
    return (PushVlan(), SetVlanVid(dp_port), Output(relay_port))


def relay_flows(dp_port: int, mac: str, relay_port: int) -> list[FlowSpec]:
    """A physical switch's datapath relay flows for one router port (with router_port_flows).

    Unicast control protocols to the router's MAC that are always for the
    router itself (OSPF, single-hop BFD) skip the FIB's packet-in, and ARP to
    the router's MAC skips the LOCAL ARP punt; what the VM sends comes back
    over the relay link tagged with this port. Broadcast ARP requests for the
    router's addresses keep the packet-in relay (their flow comes with the FIB).
    """
    mac = mac.lower()
    c = cookie(Kind.RELAY, dp_port)
    punt = relay_punt(dp_port, relay_port)
    flows = [
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_PUNT,
            (("in_port", relay_port), ("vlan_vid", OFPVID_PRESENT | dp_port)),
            (PopVlan(), Output(dp_port)),
            c,
        ),
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_RELAY_ARP,
            (("in_port", dp_port), ("eth_type", ETH_TYPE_ARP), ("eth_dst", mac)),
            punt,
            c,
        ),
    ]
    for eth_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        head = (("in_port", dp_port), ("eth_dst", mac), ("eth_type", eth_type))
        flows.append(
            FlowSpec(TABLE_CLASSIFIER, PRIO_PUNT, (*head, ("ip_proto", IP_PROTO_OSPF)), punt, c)
        )
        flows.extend(
            FlowSpec(
                TABLE_CLASSIFIER,
                PRIO_PUNT,
                (*head, ("ip_proto", IP_PROTO_UDP), ("udp_dst", port)),
                punt,
                c,
            )
            for port in BFD_PORTS
        )
    return flows


def vs_relay_flows(dp_port: int, vs_port: int, vs_relay_port: int) -> list[FlowSpec]:
    """The virtual switch's side of one router port's datapath relay."""
    c = cookie(Kind.RELAY, vs_port)
    return [
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_PUNT,
            (("in_port", vs_relay_port), ("vlan_vid", OFPVID_PRESENT | dp_port)),
            (PopVlan(), Output(vs_port)),
            c,
        ),
        FlowSpec(
            TABLE_CLASSIFIER,
            PRIO_PUNT,
            (("in_port", vs_port),),
            relay_punt(dp_port, vs_relay_port),
            c,
        ),
    ]


#: A virtual link beats a VM port's relay flows (PRIO_PUNT); mapping packets beat it.
PRIO_VLINK = 350


def virtual_link_flows(vs_a: int, vs_b: int) -> list[FlowSpec]:
    """The virtual switch joins VM ports a and b as a cable would (see proxy/vlinks.py)."""
    c = cookie(Kind.VLINK, min(vs_a, vs_b))
    return [
        FlowSpec(TABLE_CLASSIFIER, PRIO_VLINK, (("in_port", vs_a),), (Output(vs_b),), c),
        FlowSpec(TABLE_CLASSIFIER, PRIO_VLINK, (("in_port", vs_b),), (Output(vs_a),), c),
    ]


def vs_mapping_flow() -> FlowSpec:
    """Mapping packets from the VMs reach the controller whatever relay flows exist."""
    return FlowSpec(
        TABLE_CLASSIFIER,
        PRIO_MAPPING,
        (("eth_type", MAPPING_ETHERTYPE),),
        (ToController(),),
        cookie(Kind.VS),
    )


def bucket_actions(bucket: Bucket) -> tuple[Action, ...]:
    return (
        SetEthSrc(bucket.src_hwaddress.lower()),
        SetEthDst(bucket.dst_hwaddress.lower()),
        DecTtl(),
        Output(bucket.dp_port),
    )


def nexthop_group(mod: NextHopMod, group_id: int | None = None) -> GroupSpec:
    """A next hop's group (shard 0 unless ``group_id`` names another of its shards);
    unresolved (no bucket) punts to the VM via the controller."""
    gid = mod.nexthop_id if group_id is None else group_id
    if not mod.buckets:
        return GroupSpec(gid, False, (((ToController(),), 1),))
    buckets = tuple((bucket_actions(b), max(1, b.weight)) for b in mod.buckets)
    return GroupSpec(gid, len(buckets) > 1, buckets)


def nexthop_groups(mod: NextHopMod, group_ids: Iterable[int] | None = None) -> list[GroupSpec]:
    """Groups of one next hop with the same buckets: the shards ``group_ids`` (every
    possible shard, see GROUP_SHARDS, if None)."""
    first = nexthop_group(mod)
    ids = nexthop_group_ids(mod.nexthop_id) if group_ids is None else group_ids
    return [GroupSpec(gid, first.select, first.buckets) for gid in ids]


def used_groups(fib: Iterable[FibEntry]) -> set[int]:
    """The groups the route flows of ``fib`` apply (the shards that must exist)."""
    return {route_group(e.nexthop_id, e.prefix) for e in fib if e.kind == RouteKind.UNICAST}

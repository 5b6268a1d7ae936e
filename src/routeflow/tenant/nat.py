"""North-south traffic as flows (pure): router gateways with SNAT, floating IPs, gateway nodes.

A router with ``external_gateway_info`` reaches its external network through one
**gateway node** (a node registered with ``gateway: true`` and up): the one the server
recorded it on (``Router.gateway_node``, sticky: tenant/schedule.py), or, without a live
record, router key modulo their number, by name. Every node that routes for the router
gets a default route (below every other route): decrement TTL, set ``eth_dst`` to the
router's gateway port MAC and tunnel the packet to the gateway node with the external
network's VNI (the gateway port's MAC tells the gateway node which router it is for); on
the gateway node itself it goes straight on. So routing stays on the source node and
only the NAT is central, as Neutron's DVR with a centralised SNAT.

On the gateway node, in the router's own conntrack zone (``nat_zone``, counted down from
65535 so it never meets a port's zone, which counts up from 1):

* **SNAT** (table SNAT; a tunnelled frame to the gateway port's MAC is classified
  straight into it): an associated floating IP's fixed address ->
  ``ct(commit,nat(src=FIP))``; anything else of the router -> ``nat(src=gateway IP)``
  when ``enable_snat`` (else it leaves untranslated). Then EXT_OUT: ``eth_src`` = the
  gateway port's MAC, ``eth_dst`` = the external subnet's gateway (``neighbours``, which
  the node agent learns by ARP on the external port: tenant/extarp.py), out of the
  external port. Without a learned next hop nothing leaves.
* **From outside** (the external port is classified into the external network): ARP
  for the gateway IP and for every associated floating IP is answered with the gateway
  port's MAC; ARP replies go to the agent. A frame to that MAC is the router's: UNSNAT
  un-NATs replies to the gateway IP (``ct(nat)``) and DNATs a floating IP to its fixed
  IP (``ct(commit,nat(dst=...))``), then DNAT hands it to the router's routing table,
  which delivers it like any routed packet (tunnel to the port's node, ingress security
  groups there). A packet to the gateway IP that belongs to no connection is dropped.

Scope: IPv4; one external network per gateway node (its port is untagged); the next
hop is the external subnet's ``gateway_ip`` (an on-link destination is also sent to
it, which a routed fabric forwards). NAT state lives in the gateway node's conntrack
only: if the router moves to another gateway node, established connections are lost.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from routeflow.rflib import ofsim
from routeflow.rflib.ofsim import (
    ApplyActions,
    Ct,
    DecTtl,
    Flow,
    GotoTable,
    Move,
    Nat,
    Output,
    SetField,
    WriteMetadata,
)
from routeflow.tenant import pipeline as p
from routeflow.tenant.model import DEVICE_ROUTER_GATEWAY, Cloud, FloatingIP, Node, Port, Router

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
PRI_DEFAULT_ROUTE = p.PRI_ROUTE_BASE - 1  # below every route, extra routes of /0 included


def nat_zone(router: Router) -> int:
    """The router's conntrack zone on its gateway node (ports' zones count up from 1)."""
    return 0xFFFF - (router.key & 0xFFF)


def gateway_nodes(cloud: Cloud) -> list[Node]:
    """The gateway nodes routers are scheduled on: registered and up (a node whose
    session the server lost for longer than its grace is down: its routers move)."""
    return sorted((n for n in cloud.nodes.values() if n.gateway and n.up), key=lambda n: n.id)


def live_record(cloud: Cloud, router: Router) -> Node | None:
    """The gateway node ``router`` is recorded on (tenant/schedule.py), if it is a
    registered gateway node that is up."""
    node = cloud.nodes.get(router.gateway_node) if router.gateway_node else None
    return node if node is not None and node.gateway and node.up else None


def fallback_node(cloud: Cloud, router: Router) -> Node | None:
    """Router key modulo the number of live gateway nodes, by name: where a router
    without a live record goes (None: no gateway node is up)."""
    nodes = gateway_nodes(cloud)
    return nodes[router.key % len(nodes)] if nodes else None


def gateway_node(cloud: Cloud, router: Router) -> Node | None:
    """The node that NATs for ``router`` (None: no gateway node is up): the one it is
    recorded on while that one is up (sticky, tenant/schedule.py), else the fallback
    (the server records that same node in the same commit; a model built without the
    server, as in unit tests, gets the fallback)."""
    return live_record(cloud, router) or fallback_node(cloud, router)


@dataclass(frozen=True)
class Gateway:
    """A router's way out: its gateway port on the external network, resolved."""

    router: Router
    port: Port
    ip: str  # the gateway port's IPv4 address (the SNAT address)
    vni: int  # the external network's VNI
    next_hop: str | None  # the external subnet's gateway_ip
    node: Node


def gateway_of(cloud: Cloud, router: Router) -> Gateway | None:
    """``router``'s gateway when it has one that can carry traffic."""
    info = router.external_gateway_info
    if info is None or not router.admin_state_up:
        return None
    net = cloud.networks.get(info.network_id)
    node = gateway_node(cloud, router)
    if net is None or not net.admin_state_up or node is None:
        return None
    port = next(
        (
            q
            for q in sorted(cloud.ports.values(), key=lambda q: q.id)
            if q.device_owner == DEVICE_ROUTER_GATEWAY and q.device_id == router.id
        ),
        None,
    )
    if port is None:
        return None
    for fixed in port.fixed_ips:
        subnet = cloud.subnets.get(fixed.subnet_id)
        if subnet is not None and subnet.ip_version == 4:
            return Gateway(
                router, port, fixed.ip_address, net.segmentation_id, subnet.gateway_ip, node
            )
    return None


def served_routers(cloud: Cloud, node_name: str) -> list[Router]:
    """Routers whose NAT runs on ``node_name``."""
    node = cloud.nodes.get(node_name)
    if node is None or not node.gateway or not node.up:
        return []
    out = []
    for router in sorted(cloud.routers.values(), key=lambda r: r.id):
        gw = gateway_of(cloud, router)
        if gw is not None and gw.node.id == node_name:
            out.append(router)
    return out


def floating_ips(cloud: Cloud, router: Router) -> list[FloatingIP]:
    """The router's associated floating IPs whose port still exists."""
    return sorted(
        (
            f
            for f in cloud.floatingips.values()
            if f.router_id == router.id
            and f.port_id in cloud.ports
            and f.fixed_ip_address is not None
        ),
        key=lambda f: f.id,
    )


@dataclass(frozen=True)
class Uplink:
    """``bgp`` mode: the gateway node's own address on its external link (the next hop
    of the /32s it announces, answered by ARP on the external port) and the fabric
    router on that link (where everything to outside goes, whatever the external
    subnet's ``gateway_ip`` says: the pool is not on-link anywhere)."""

    ip: str
    next_hop: str

    @property
    def mac(self) -> str:
        """A locally administered MAC derived from ``ip`` (02:ee + the address)."""
        return "02:ee:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(self.ip).packed)


def external_vni(cloud: Cloud) -> int | None:
    """The VNI of the external network a gateway node's one external port carries
    (the first usable one by id; None: there is none yet)."""
    for net in sorted(cloud.networks.values(), key=lambda n: n.id):
        if net.external and net.admin_state_up:
            return net.segmentation_id
    return None


def next_hops(
    cloud: Cloud, node_name: str, uplink: Uplink | None = None
) -> list[tuple[str, str, str]]:
    """(next hop IP, our IP, our MAC) for every served router: what the agent ARPs for
    on the external port (one entry per next hop); on a gateway node that is up, the
    external network's gateways too, served or not (``standby_mac``, from 0.0.0.0), so
    a router that moves here on failover finds the MAC known. With an ``uplink`` (bgp
    mode): its one next hop, asked for whether or not a router is served here yet."""
    if uplink is not None:
        return [(uplink.next_hop, uplink.ip, uplink.mac)]
    out: dict[str, tuple[str, str, str]] = {}
    for router in served_routers(cloud, node_name):
        gw = gateway_of(cloud, router)
        if gw is not None and gw.next_hop:
            out.setdefault(gw.next_hop, (gw.next_hop, gw.ip, gw.port.mac_address))
    node = cloud.nodes.get(node_name)
    xvni = external_vni(cloud)
    if node is not None and node.gateway and node.up and xvni is not None:
        # Standing by: the external network's gateways are asked for too, by ARP probe
        # (sender 0.0.0.0, RFC 5227) from the node's own MAC: never from a gateway port's
        # MAC, which bridges would then send to this node instead of the serving one.
        for net in cloud.networks.values():
            if net.external and net.segmentation_id == xvni:
                for subnet in cloud.subnets_of(net.id):
                    hop = subnet.gateway_ip
                    if subnet.ip_version == 4 and hop:
                        out.setdefault(hop, (hop, "0.0.0.0", standby_mac(node_name)))
    return [out[k] for k in sorted(out)]


def standby_mac(node_name: str) -> str:
    """A gateway node's own MAC on its external port (connected mode), for its ARP
    probes: locally administered, 02:ed + four bytes of the name's SHA-256."""
    digest = hashlib.sha256(node_name.encode()).digest()
    return "02:ed:" + ":".join(f"{b:02x}" for b in digest[:4])


def claimed_addresses(
    cloud: Cloud, node_name: str, uplink: Uplink | None = None
) -> frozenset[tuple[str, str]]:
    """(IPv4 address, MAC) pairs ``node_name`` answers ARP for on its external port in
    connected mode: every served router's gateway IP and associated floating IPs, at the
    gateway port's MAC (the same MAC whichever gateway node serves the router). What
    the node announces by gratuitous ARP when it takes them over. Empty with an
    ``uplink`` (bgp mode: outside reaches them by the /32s, through the uplink)."""
    if uplink is not None:
        return frozenset()
    out: set[tuple[str, str]] = set()
    for router in served_routers(cloud, node_name):
        gw = gateway_of(cloud, router)
        if gw is None:
            continue
        mac = gw.port.mac_address
        out.add((gw.ip, mac))
        out.update((f.floating_ip_address, mac) for f in floating_ips(cloud, router))
    return frozenset(out)


def _apply(*actions: ofsim.Action) -> ApplyActions:
    return ApplyActions(tuple(actions))


def source_flows(cloud: Cloud, router: Router, tunnel_ofport: int, here: str) -> list[Flow]:
    """The router's default route on a node that routes for it (``here``)."""
    gw = gateway_of(cloud, router)
    if gw is None:
        return []
    c = p.cookie_of(p.Kind.ROUTER, router.key)
    match = {p.ROUTER_REG: router.key, "eth_type": ETH_IPV4}
    if gw.node.id == here:
        instructions: tuple[ofsim.Instruction, ...] = (
            _apply(DecTtl(), SetField("eth_dst", gw.port.mac_address)),
            WriteMetadata(gw.vni),
            GotoTable(p.SNAT),
        )
    else:
        instructions = (
            _apply(
                DecTtl(),
                SetField("eth_dst", gw.port.mac_address),
                SetField("tun_ipv4_dst", gw.node.tunnel_ip),
                SetField("tunnel_id", gw.vni),
                Output(tunnel_ofport),
            ),
        )
    return [Flow(p.ROUTING, PRI_DEFAULT_ROUTE, match, instructions, c)]


def _arp_responder(vni: int, ip: str, mac: str, cookie: int) -> Flow:
    return Flow(
        p.ARP,
        p.PRI_PORT,
        {p.NETWORK_REG: vni, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip},
        (
            _apply(
                Move("eth_src", "eth_dst"),
                SetField("eth_src", mac),
                SetField("arp_op", 2),
                Move("arp_sha", "arp_tha"),
                Move("arp_spa", "arp_tpa"),
                SetField("arp_sha", mac),
                SetField("arp_spa", ip),
                Output(ofsim.IN_PORT),
            ),
        ),
        cookie,
    )


def _to_uplink(vni: int, uplink: Uplink, ip: str, rkey: int, cookie: int) -> Flow:
    """bgp mode: a frame from outside to the uplink MAC for ``ip`` is router ``rkey``'s."""
    return Flow(
        p.L2,
        p.PRI_PORT,
        {p.NETWORK_REG: vni, "eth_dst": uplink.mac, "eth_type": ETH_IPV4, "ipv4_dst": ip},
        (_apply(SetField(p.ROUTER_REG, rkey)), GotoTable(p.UNSNAT)),
        cookie,
    )


def gateway_flows(
    cloud: Cloud,
    routers: Iterable[Router],
    tunnel_ofport: int,
    external_ofport: int,
    neighbours: Mapping[str, str],
    uplink: Uplink | None = None,
) -> list[Flow]:
    """Everything a gateway node needs for the routers it serves (see the docstring).

    With an ``uplink`` (bgp mode) the external port answers ARP for the uplink address
    only; frames from outside come to the uplink MAC and are told apart by their
    destination (a router's gateway IP or one of its floating IPs, which the node
    announces as /32s with the uplink address as next hop); frames to outside leave
    from the uplink MAC to the uplink's next hop."""
    out: list[Flow] = []
    classified: set[int] = set()
    # Whether or not a router is served here yet: the external port is classified into
    # the external network and ARP replies go to the agent (it resolves the next hop
    # before a router moves here); bgp mode also answers ARP for the uplink.
    xvni = external_vni(cloud) if external_ofport else None
    if xvni is not None:
        nc = p.cookie_of(p.Kind.NETWORK, xvni)
        classified.add(xvni)
        out.append(
            Flow(
                p.CLASSIFY,
                p.PRI_PORT,
                {"in_port": external_ofport},
                (WriteMetadata(xvni), GotoTable(p.SERVICES)),
                nc,
            )
        )
        reply = {p.NETWORK_REG: xvni, "eth_type": ETH_ARP, "arp_op": 2}
        out.append(Flow(p.ARP, p.PRI_HIGH, reply, (_apply(Output(ofsim.CONTROLLER)),), nc))
        if uplink is not None:
            out.append(_arp_responder(xvni, uplink.ip, uplink.mac, nc))
    for router in routers:
        gw = gateway_of(cloud, router)
        if gw is None:
            continue
        rkey, vni, mac = router.key, gw.vni, gw.port.mac_address
        rc = p.cookie_of(p.Kind.ROUTER, rkey)
        nc = p.cookie_of(p.Kind.NETWORK, vni)
        zone = nat_zone(router)
        reg5 = {p.ROUTER_REG: rkey, "eth_type": ETH_IPV4}
        if vni not in classified:
            classified.add(vni)
            if external_ofport and len(classified) == 1:  # one external network per port
                out.append(
                    Flow(
                        p.CLASSIFY,
                        p.PRI_PORT,
                        {"in_port": external_ofport},
                        (WriteMetadata(vni), GotoTable(p.SERVICES)),
                        nc,
                    )
                )
            reply = {p.NETWORK_REG: vni, "eth_type": ETH_ARP, "arp_op": 2}
            out.append(Flow(p.ARP, p.PRI_HIGH, reply, (_apply(Output(ofsim.CONTROLLER)),), nc))
        # From the other nodes: the router's frames to outside, by the gateway port's MAC
        # (classified straight into SNAT: tables only go forward).
        tunnel = {"in_port": tunnel_ofport, "tunnel_id": vni, "eth_dst": mac}
        out.append(
            Flow(
                p.CLASSIFY,
                p.PRI_PORT,
                tunnel,
                (_apply(SetField(p.ROUTER_REG, rkey)), WriteMetadata(vni), GotoTable(p.SNAT)),
                rc,
            )
        )
        # From outside.
        if uplink is None:
            out.append(_arp_responder(vni, gw.ip, mac, rc))
            out.append(
                Flow(
                    p.L2,
                    p.PRI_PORT,
                    {p.NETWORK_REG: vni, "eth_dst": mac},
                    (_apply(SetField(p.ROUTER_REG, rkey)), GotoTable(p.UNSNAT)),
                    rc,
                )
            )
        else:
            out.append(_to_uplink(vni, uplink, gw.ip, rkey, rc))
        snat = gw.router.external_gateway_info is not None and (
            gw.router.external_gateway_info.enable_snat
        )
        if snat:
            out.append(
                Flow(
                    p.UNSNAT,
                    p.PRI_PORT,
                    {**reg5, "ipv4_dst": gw.ip},
                    (_apply(Ct(table=p.DNAT, zone=zone, nat=Nat())),),
                    rc,
                )
            )
        else:
            out.append(Flow(p.UNSNAT, p.PRI_DEFAULT, reg5, (GotoTable(p.DNAT),), rc))
        out.append(Flow(p.DNAT, p.PRI_HIGH, {**reg5, "ipv4_dst": gw.ip}, (), rc))
        out.append(Flow(p.DNAT, p.PRI_PORT, reg5, (GotoTable(p.ROUTING),), rc))
        # To outside.
        if snat:
            out.append(
                Flow(
                    p.SNAT,
                    p.PRI_PORT,
                    reg5,
                    (_apply(Ct(commit=True, table=p.EXT_OUT, zone=zone, nat=Nat("src", gw.ip))),),
                    rc,
                )
            )
        else:
            out.append(Flow(p.SNAT, p.PRI_PORT, reg5, (GotoTable(p.EXT_OUT),), rc))
        hop_mac = neighbours.get((gw.next_hop or "") if uplink is None else uplink.next_hop)
        if external_ofport and hop_mac:
            out.append(
                Flow(
                    p.EXT_OUT,
                    p.PRI_PORT,
                    reg5,
                    (
                        _apply(
                            SetField("eth_src", mac if uplink is None else uplink.mac),
                            SetField("eth_dst", hop_mac),
                            Output(external_ofport),
                        ),
                    ),
                    rc,
                )
            )
        for fip in floating_ips(cloud, router):
            fc = p.cookie_of(p.Kind.FLOATINGIP, fip.key)
            fixed = fip.fixed_ip_address
            assert fixed is not None
            if uplink is None:
                out.append(_arp_responder(vni, fip.floating_ip_address, mac, fc))
            else:
                out.append(_to_uplink(vni, uplink, fip.floating_ip_address, rkey, fc))
            out.append(
                Flow(
                    p.UNSNAT,
                    p.PRI_PORT,
                    {**reg5, "ipv4_dst": fip.floating_ip_address},
                    (_apply(Ct(commit=True, table=p.DNAT, zone=zone, nat=Nat("dst", fixed))),),
                    fc,
                )
            )
            out.append(
                Flow(
                    p.SNAT,
                    p.PRI_PORT + 1,
                    {**reg5, "ipv4_src": fixed},
                    (
                        _apply(
                            Ct(
                                commit=True,
                                table=p.EXT_OUT,
                                zone=zone,
                                nat=Nat("src", fip.floating_ip_address),
                            )
                        ),
                    ),
                    fc,
                )
            )
    return out

"""The tenant flow compiler: a Cloud snapshot and a node's bindings in, its flows out (pure).

``compile_node(cloud, node)`` returns a frozenset of ofsim ``Flow``s for the node's
br-int (tables, registers and cookies in tenant/pipeline.py). It depends only on the
snapshot, so applying the same changes in any order compiles the same set, and an update
is a set difference: ``diff(old, new)`` says what to delete and what to add.

The flows are compiled per object (a *fragment*: a local port, a known port, a local
network, a router, a remote-group rule, one member of a remote group), each a pure
function of the objects it reads, found through an ``Index`` (reverse lookups kept up to
date) rather than scans of every port, so a whole node costs O(flows).
``NodeCompiler`` keeps the fragments of one node: a change recompiles only the
fragments that read a changed object (memoised on the objects' values, so an unchanged
port re-sent in a full state costs a hash) and returns the flow diff; its output equals
``compile_node`` on the same snapshot after every change (property-tested).

What a node gets:

* **Local networks**: networks with a VIF port plugged here (the port in
  ``node.bindings``, which the agent reads from OVSDB ``external_ids:iface-id``) and
  bound here or not bound yet (``binding_host_id`` the node or empty). For them:
  classification and port security of local ports, tunnel ingress, ARP responder for
  every known port and router interface IP, L2 lookup of every bound port (local or
  remote) and router interface, multicast to local ports, DHCP to the controller.
* **Routed networks**: networks on a router that has an interface on a local network.
  For them only what routing on the source node needs: host lookup (IP -> MAC, port key)
  and dispatch of their bound ports. Routing is on the source node; the destination node
  only receives over the tunnel, so there is no hairpin through a central node.
* Nothing else: a network with no port here and no router to a local one has no flow.

Broadcast and unknown unicast never cross tunnels: ARP for every known address is
answered on the source node, and every bound port's MAC is in the L2 table, so a
remote node needs no copy of BUM traffic; a multicast frame goes to the local ports of
its network only (DHCP goes to the node agent). An ARP request from a port for its own
address is not answered (it is a duplicate-address probe) but flooded locally.

Security groups (tenant/secgroups.py): a port with port security goes through
conntrack and its groups' rules out (tables 10/15) and in (75/80). Router gateways,
SNAT and floating IPs (tenant/nat.py): a router's fragment carries its default route to
its gateway node; the gateway node also compiles the routers it serves (local ports or
not) and one "nat" fragment with their NAT. Scope: IPv4. Router extra routes are compiled when
their next hop is a known port of one of the router's subnets; allowed address pairs
pass port security but get no host route. Ports, networks and routers with
``admin_state_up`` false get no flows.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from routeflow.rflib import ofsim
from routeflow.rflib.ofsim import (
    ApplyActions,
    DecTtl,
    Flow,
    GotoTable,
    Move,
    Output,
    SetField,
    WriteMetadata,
)
from routeflow.tenant import nat, secgroups
from routeflow.tenant import pipeline as p
from routeflow.tenant.model import (
    Cloud,
    Port,
    Router,
    SecurityGroup,
)
from routeflow.tenant.nodeindex import Facts, Index, bound, ipv4, usable

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
IP_ICMP = 1
IP_UDP = 17
#: Fragments memoised per kind (the node's ports, twice over, and some slack).
MEMO = 1 << 14


@dataclass(frozen=True)
class NodeContext:
    """One node as its agent sees it: its name (``Node.id``), its local ports
    (``port_id -> ofport`` from OVSDB ``external_ids:iface-id``) and the tunnel port."""

    name: str
    bindings: Mapping[str, int] = field(default_factory=dict)
    tunnel_ofport: int = p.TUNNEL_OFPORT
    #: A gateway node's external port (0: none) and the MACs its agent learned there.
    external_ofport: int = 0
    neighbours: Mapping[str, str] = field(default_factory=dict)
    #: bgp mode: the gateway node's uplink (tenant/nat.py Uplink); its flows are there
    #: whether or not a router is served yet.
    uplink: nat.Uplink | None = None

    @property
    def standing_by(self) -> bool:
        """A gateway node's external port has flows whether or not a router is served
        there yet (bgp mode: the uplink; connected mode: ARP replies to the agent, which
        resolves the next hop before a router moves here)."""
        return self.uplink is not None or self.external_ofport != 0


def diff(old: Iterable[Flow], new: Iterable[Flow]) -> tuple[list[Flow], list[Flow]]:
    """(to delete, to add) turning ``old`` into ``new``.

    A flow's identity on a switch is (table, priority, match): a flow whose actions or
    cookie changed is only in the add list (an add replaces it), never deleted first.
    """
    old_set, new_set = set(old), set(new)
    added = new_set - old_set
    kept = {(f.table, f.priority, f.match) for f in new_set}
    removed = [f for f in old_set - new_set if (f.table, f.priority, f.match) not in kept]
    key = _order
    return sorted(removed, key=key), sorted(added, key=key)


def _order(f: Flow) -> tuple[int, int, str]:
    return (f.table, -f.priority, repr(f.match))


def apply_actions(*actions: ofsim.Action) -> ApplyActions:
    return ApplyActions(tuple(actions))


# --- fragments: one object's flows --------------------------------------------------------

FragKey = tuple[object, ...]


class _Out:
    def __init__(self) -> None:
        self.flows: list[Flow] = []

    def add(
        self,
        table: int,
        priority: int,
        match: Mapping[str, object],
        cookie: int,
        *instructions: ofsim.Instruction,
    ) -> None:
        self.flows.append(Flow(table, priority, match, tuple(instructions), cookie))

    def arp_responder(self, vni: int, ip: str, mac: str, cookie: int) -> None:
        """Answer "who has ip" with mac, back out of the asking port (Nicira moves)."""
        mac_int = ofsim.field_value("arp_sha", mac)[0]
        self.add(
            p.ARP,
            p.PRI_PORT,
            {p.NETWORK_REG: vni, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip},
            cookie,
            apply_actions(
                Move("eth_src", "eth_dst"),
                SetField("eth_src", mac),
                SetField("arp_op", 2),
                Move("arp_sha", "arp_tha"),
                Move("arp_spa", "arp_tpa"),
                SetField("arp_sha", mac_int),
                SetField("arp_spa", ip),
                Output(ofsim.IN_PORT),
            ),
        )


def _base() -> frozenset[Flow]:
    """The fixed flows: services split, the defaults of tables that go on, and the
    security-group tables' own."""
    out = _Out()
    c = p.cookie_of(p.Kind.BASE)
    out.add(p.SERVICES, p.PRI_PORT, {"eth_type": ETH_ARP}, c, GotoTable(p.ARP))
    dhcp = {
        "eth_type": ETH_IPV4,
        "ip_proto": IP_UDP,
        "udp_src": p.DHCP_CLIENT_PORT,
        "udp_dst": p.DHCP_SERVER_PORT,
    }
    out.add(p.SERVICES, p.PRI_PORT, dhcp, c, GotoTable(p.DHCP))
    out.add(p.SERVICES, p.PRI_DEFAULT, {}, c, GotoTable(p.L2))
    out.add(p.ARP, p.PRI_DEFAULT, {}, c, GotoTable(p.L2))
    return frozenset(out.flows + secgroups.base_flows())


BASE = _base()


@functools.lru_cache(maxsize=MEMO)
def _local_port(
    port: Port,
    ofport: int,
    vni: int,
    ips: tuple[str, ...],
    dhcp_on: bool,
    groups: tuple[SecurityGroup, ...],
) -> frozenset[Flow]:
    """Classification, port security, DHCP and delivery of a port bound here, and its
    security groups' rules (``groups``: those of its groups that exist)."""
    out = _Out()
    add = out.add
    c = p.cookie_of(p.Kind.PORT, port.key)
    reg6 = {p.SRC_PORT_REG: port.key}
    add(
        p.CLASSIFY,
        p.PRI_PORT,
        {"in_port": ofport},
        c,
        apply_actions(SetField(p.SRC_PORT_REG, port.key)),
        WriteMetadata(vni),
        GotoTable(p.PORT_SEC),
    )
    # Port security: anti-spoofing here, then conntrack and security groups.
    ok = GotoTable(p.EGRESS_CT)
    inbound = GotoTable(p.INGRESS_CT)
    if not port.port_security_enabled:
        ok, inbound = GotoTable(p.SERVICES), GotoTable(p.OUTPUT)
        add(p.PORT_SEC, p.PRI_PORT, reg6, c, ok)
    else:
        pairs = [(port.mac_address, f"{ip}/32") for ip in ips]
        for pair in port.allowed_address_pairs:
            try:
                net4 = ipaddress.ip_network(pair.ip_address, strict=False)
            except ValueError:
                continue
            if net4.version == 4:
                pairs.append((pair.mac_address or port.mac_address, str(net4)))
        for mac, cidr in sorted(set(pairs)):
            add(
                p.PORT_SEC,
                p.PRI_PORT,
                {**reg6, "eth_src": mac, "eth_type": ETH_IPV4, "ipv4_src": cidr},
                c,
                ok,
            )
            add(
                p.PORT_SEC,
                p.PRI_PORT,
                {**reg6, "eth_src": mac, "eth_type": ETH_ARP, "arp_spa": cidr, "arp_sha": mac},
                c,
                ok,
            )
        dhcp = {
            **reg6,
            "eth_src": port.mac_address,
            "eth_type": ETH_IPV4,
            "ip_proto": IP_UDP,
            "ipv4_src": "0.0.0.0",
            "udp_src": p.DHCP_CLIENT_PORT,
            "udp_dst": p.DHCP_SERVER_PORT,
        }
        add(p.PORT_SEC, p.PRI_PORT, dhcp, c, ok)
        # ARP probes (duplicate address detection) come from 0.0.0.0.
        add(
            p.PORT_SEC,
            p.PRI_PORT,
            {
                **reg6,
                "eth_src": port.mac_address,
                "eth_type": ETH_ARP,
                "arp_spa": "0.0.0.0",
                "arp_sha": port.mac_address,
            },
            c,
            ok,
        )
        out.flows += secgroups.port_flows(port, groups)
    if dhcp_on:
        add(p.DHCP, p.PRI_PORT, reg6, c, apply_actions(Output(ofsim.CONTROLLER)))
    # Its own address is not answered for it (DAD probe): flooded locally instead.
    for ip in ips:
        add(
            p.ARP,
            p.PRI_HIGH,
            {**reg6, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip},
            c,
            GotoTable(p.L2),
        )
    add(
        p.TUNNEL_IN,
        p.PRI_PORT,
        {p.NETWORK_REG: vni, "eth_dst": port.mac_address},
        c,
        apply_actions(SetField(p.DST_PORT_REG, port.key)),
        inbound,
    )
    add(p.OUTPUT, p.PRI_PORT, {p.DST_PORT_REG: port.key}, c, apply_actions(Output(ofport)))
    return frozenset(out.flows)


@functools.lru_cache(maxsize=MEMO)
def _known_port(
    port: Port,
    vni: int,
    ips: tuple[str, ...],
    local: bool,
    dispatch: int | str | None,
    tunnel_ofport: int,
) -> frozenset[Flow]:
    """A bound port of a network this node sees: ARP, L2 (only where the network is
    local), host lookup and dispatch (also where it is only routed to). ``dispatch``: the
    table a port plugged here goes on to, the tunnel endpoint of a remote one, or None."""
    out = _Out()
    c = p.cookie_of(p.Kind.PORT, port.key)
    if local:
        for ip in ips:
            out.arp_responder(vni, ip, port.mac_address, c)
        out.add(
            p.L2,
            p.PRI_PORT,
            {p.NETWORK_REG: vni, "eth_dst": port.mac_address},
            c,
            apply_actions(SetField(p.DST_PORT_REG, port.key)),
            GotoTable(p.DISPATCH),
        )
    for ip in ips:
        out.add(
            p.HOST,
            p.PRI_PORT,
            {p.NETWORK_REG: vni, "eth_type": ETH_IPV4, "ipv4_dst": ip},
            c,
            apply_actions(
                SetField("eth_dst", port.mac_address), SetField(p.DST_PORT_REG, port.key)
            ),
            GotoTable(p.DISPATCH),
        )
    if isinstance(dispatch, int):
        out.add(p.DISPATCH, p.PRI_PORT, {p.DST_PORT_REG: port.key}, c, GotoTable(dispatch))
    elif isinstance(dispatch, str):
        out.add(
            p.DISPATCH,
            p.PRI_PORT,
            {p.DST_PORT_REG: port.key},
            c,
            apply_actions(
                SetField("tun_ipv4_dst", dispatch),
                SetField("tunnel_id", vni),
                Output(tunnel_ofport),
            ),
        )
    return frozenset(out.flows)


def _local_network(vni: int, tunnel_ofport: int, outs: tuple[int, ...]) -> frozenset[Flow]:
    """Tunnel ingress and multicast of a network with a port here."""
    out = _Out()
    c = p.cookie_of(p.Kind.NETWORK, vni)
    out.add(
        p.CLASSIFY,
        p.PRI_PORT,
        {"in_port": tunnel_ofport, "tunnel_id": vni},
        c,
        WriteMetadata(vni),
        GotoTable(p.TUNNEL_IN),
    )
    out.add(
        p.L2,
        p.PRI_MULTICAST,
        {p.NETWORK_REG: vni, "eth_dst": p.MULTICAST_MAC},
        c,
        apply_actions(*(Output(o) for o in outs)),
    )
    return frozenset(out.flows)


class Fragments:
    """Computes one fragment from a snapshot, its index and the node's facts; a key is
    (kind, ids...): base, port, known, net, router, rule, member (rule key, port id)."""

    def __init__(self, cloud: Cloud, index: Index, node: NodeContext, facts: Facts) -> None:
        self.cloud, self.index, self.node, self.facts = cloud, index, node, facts

    def __call__(self, key: FragKey) -> frozenset[Flow]:
        kind = key[0]
        if kind == "port":
            return self.local_port(str(key[1]))
        if kind == "known":
            return self.known_port(str(key[1]))
        if kind == "member":
            return self.member(int(key[1]), str(key[2]))  # type: ignore[call-overload]
        if kind == "net":
            return self.local_network(str(key[1]))
        if kind == "router":
            return self.router(str(key[1]))
        if kind == "rule":
            return self.rule(int(key[1]))  # type: ignore[call-overload]
        if kind == "base":
            f = self.facts
            some = f.local or f.routers or f.served or self.node.standing_by
            return BASE if some else frozenset()
        if kind == "nat":
            node = self.node
            served = [self.cloud.routers[rid] for rid in sorted(self.facts.served)]
            return frozenset(
                nat.gateway_flows(
                    self.cloud,
                    served,
                    node.tunnel_ofport,
                    node.external_ofport,
                    node.neighbours,
                    node.uplink,
                )
            )
        raise ValueError(f"unknown fragment {key}")

    def all_keys(self) -> list[FragKey]:
        """Every fragment that may have flows (a full compile)."""
        f, index = self.facts, self.index
        keys: list[FragKey] = [("base",), ("nat",)]
        keys += [("port", pid) for pid in f.local]
        keys += [("net", nid) for nid in f.local_by_net]
        for nid in (*f.local_by_net, *f.routed_nets):
            keys += [("known", pid) for pid in index.ports_by_net.get(nid, ())]
        keys += [("router", rid) for rid in f.routers]
        for rkey, (_gid, rule) in f.rules.items():
            keys.append(("rule", rkey))
            members = index.members.get(rule.remote_group_id or "", ())
            keys += [("member", rkey, pid) for pid in members]
        return keys

    def local_port(self, pid: str) -> frozenset[Flow]:
        ofport = self.facts.local.get(pid)
        if ofport is None:
            return frozenset()
        cloud = self.cloud
        port = cloud.ports[pid]
        vni = cloud.networks[port.network_id].segmentation_id
        dhcp_on = any(
            s.enable_dhcp and s.ip_version == 4
            for s in (cloud.subnets[i] for i in self.index.subnets_by_net.get(port.network_id, ()))
        )
        groups: tuple[SecurityGroup, ...] = ()
        if port.port_security_enabled:
            groups = tuple(
                g for gid in port.security_groups if (g := cloud.security_groups.get(gid))
            )
        return _local_port(port, ofport, vni, ipv4(port, cloud), dhcp_on, groups)

    def known_port(self, pid: str) -> frozenset[Flow]:
        cloud, node = self.cloud, self.node
        port = cloud.ports.get(pid)
        if port is None or not bound(port, cloud) or not usable(port, cloud):
            return frozenset()
        status = self.facts.status(port.network_id)
        if not status:
            return frozenset()
        dispatch: int | str | None = None
        if port.binding_host_id == node.name:
            if pid in node.bindings:
                dispatch = p.INGRESS_CT if port.port_security_enabled else p.OUTPUT
        else:
            dispatch = cloud.nodes[port.binding_host_id].tunnel_ip
        vni = cloud.networks[port.network_id].segmentation_id
        return _known_port(port, vni, ipv4(port, cloud), status == 2, dispatch, node.tunnel_ofport)

    def local_network(self, nid: str) -> frozenset[Flow]:
        ports = self.facts.local_by_net.get(nid)
        if not ports:
            return frozenset()
        vni = self.cloud.networks[nid].segmentation_id
        return _local_network(vni, self.node.tunnel_ofport, tuple(sorted(ports.values())))

    def rule(self, rkey: int) -> frozenset[Flow]:
        got = self.facts.rules.get(rkey)
        if got is None:
            return frozenset()
        gid, rule = got
        group = self.cloud.security_groups[gid]
        remote = self.cloud.security_groups.get(rule.remote_group_id or "")
        members = any(
            secgroups.port_addresses(self.cloud, self.cloud.ports[m])
            for m in self.index.members.get(rule.remote_group_id or "", ())
        )
        return frozenset(secgroups.remote_rule_flow(group, rule, remote, members))

    def member(self, rkey: int, pid: str) -> frozenset[Flow]:
        got = self.facts.rules.get(rkey)
        port = self.cloud.ports.get(pid)
        if got is None or port is None or got[1].remote_group_id not in port.security_groups:
            return frozenset()
        rule = got[1]
        remote = self.cloud.security_groups.get(rule.remote_group_id or "")
        addresses = secgroups.port_addresses(self.cloud, port)
        return frozenset(secgroups.member_flows(rule, remote, addresses))

    def router(self, rid: str) -> frozenset[Flow]:
        """A distributed router: its interfaces' MACs and IPs on local networks, routes to
        every subnet it joins, extra routes, and an echo responder for its addresses."""
        iface_ids = self.facts.routers.get(rid)
        if iface_ids is None:
            return frozenset()
        cloud = self.cloud
        router = cloud.routers[rid]
        ifaces = [cloud.ports[i] for i in iface_ids]
        out = _Out()
        rkey = router.key
        for iface in ifaces:
            net = cloud.networks[iface.network_id]
            vni = net.segmentation_id
            c = p.cookie_of(p.Kind.PORT, iface.key)
            ips = ipv4(iface, cloud)
            if iface.network_id in self.facts.local_by_net:
                for ip in ips:
                    out.arp_responder(vni, ip, iface.mac_address, c)
                out.add(
                    p.L2,
                    p.PRI_PORT,
                    {p.NETWORK_REG: vni, "eth_dst": iface.mac_address},
                    c,
                    apply_actions(SetField(p.ROUTER_REG, rkey)),
                    GotoTable(p.ROUTING),
                )
            for fip in iface.fixed_ips:
                subnet = cloud.subnets.get(fip.subnet_id)
                if subnet is None or subnet.ip_version != 4:
                    continue
                ip = fip.ip_address
                echo = {
                    p.ROUTER_REG: rkey,
                    "eth_type": ETH_IPV4,
                    "ip_proto": IP_ICMP,
                    "ipv4_dst": ip,
                    "icmpv4_type": 8,
                }
                out.add(
                    p.ROUTING,
                    p.PRI_HIGH + 1,
                    echo,
                    c,
                    apply_actions(
                        # Swap the MACs through two scratch registers: the reply comes
                        # from the interface the request was sent to.
                        Move("eth_dst", p.SCRATCH_REG0, 32, 0, 0),
                        Move("eth_dst", p.SCRATCH_REG1, 16, 32, 0),
                        Move("eth_src", "eth_dst"),
                        Move(p.SCRATCH_REG0, "eth_src", 32, 0, 0),
                        Move(p.SCRATCH_REG1, "eth_src", 16, 0, 32),
                        Move("ipv4_src", "ipv4_dst"),
                        SetField("ipv4_src", ip),
                        SetField("icmpv4_type", 0),
                        Output(ofsim.IN_PORT),
                    ),
                )
                # Anything else to the router itself stops here.
                out.add(
                    p.ROUTING,
                    p.PRI_HIGH,
                    {p.ROUTER_REG: rkey, "eth_type": ETH_IPV4, "ipv4_dst": ip},
                    c,
                )
                cidr = ipaddress.ip_network(subnet.cidr, strict=False)
                out.add(
                    p.ROUTING,
                    p.route_priority(cidr.prefixlen, connected=True),
                    {p.ROUTER_REG: rkey, "eth_type": ETH_IPV4, "ipv4_dst": str(cidr)},
                    c,
                    apply_actions(DecTtl(), SetField("eth_src", iface.mac_address)),
                    WriteMetadata(vni),
                    GotoTable(p.HOST),
                )
        self.extra_routes(out, router, ifaces)
        out.flows += nat.source_flows(cloud, router, self.node.tunnel_ofport, self.node.name)
        return frozenset(out.flows)

    def extra_routes(self, out: _Out, router: Router, ifaces: list[Port]) -> None:
        cloud = self.cloud
        c = p.cookie_of(p.Kind.ROUTER, router.key)
        by_ip: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, Port] = {}
        for iface in ifaces:
            for fip in iface.fixed_ips:
                subnet = cloud.subnets.get(fip.subnet_id)
                if subnet is not None and subnet.ip_version == 4:
                    by_ip[ipaddress.ip_network(subnet.cidr, strict=False)] = iface
        for route in sorted(set(router.routes), key=lambda r: (r.destination, r.nexthop)):
            try:
                dest = ipaddress.ip_network(route.destination, strict=False)
                hop = ipaddress.ip_address(route.nexthop)
            except ValueError:
                continue
            if dest.version != 4 or hop.version != 4:
                continue
            out_iface = next(
                (i for n, i in sorted(by_ip.items(), key=lambda x: str(x[0])) if hop in n), None
            )
            if out_iface is None:
                continue
            iface = out_iface
            candidates = self.index.ports_by_ip.get((iface.network_id, str(hop)), ())
            target = next(
                (
                    q
                    for q in (cloud.ports[i] for i in sorted(candidates))
                    if str(hop) in ipv4(q, cloud) and bound(q, cloud)
                ),
                None,
            )
            if target is None:
                continue
            vni = cloud.networks[iface.network_id].segmentation_id
            # Just below a connected subnet of the same length: connected routes win.
            out.add(
                p.ROUTING,
                p.route_priority(dest.prefixlen, connected=False),
                {p.ROUTER_REG: router.key, "eth_type": ETH_IPV4, "ipv4_dst": str(dest)},
                c,
                apply_actions(
                    DecTtl(),
                    SetField("eth_src", iface.mac_address),
                    SetField("eth_dst", target.mac_address),
                    SetField(p.DST_PORT_REG, target.key),
                ),
                WriteMetadata(vni),
                GotoTable(p.DISPATCH),
            )


def node_facts(cloud: Cloud, index: Index, node: NodeContext) -> Facts:
    """What ``node`` sees of ``cloud``, from scratch."""
    facts = Facts()
    for pid in sorted(node.bindings):
        facts.set_local(cloud, node, pid)
    facts.served = frozenset(r.id for r in nat.served_routers(cloud, node.name))
    facts.set_routers(cloud, index)
    facts.set_rules(cloud)
    return facts


def compile_node(cloud: Cloud, node: NodeContext) -> frozenset[Flow]:
    """Every flow of ``node``'s br-int for the tenant pipeline (see the module docstring)."""
    index = Index.of(cloud)
    facts = node_facts(cloud, index, node)
    if not facts.local and not facts.served and not node.standing_by:
        return frozenset()
    frag = Fragments(cloud, index, node, facts)
    flows: set[Flow] = set()
    for key in frag.all_keys():
        flows.update(frag(key))
    return frozenset(secgroups.merge(flows))


def flows_per_port(cloud: Cloud, nodes: Mapping[str, NodeContext]) -> dict[str, dict[str, int]]:
    """For every VIF port: how many flows carry its cookie on each node (0s left out).

    The issue's figure "flows per port on its own node and on other nodes with its
    network"; a node without the port's network has none.
    """
    counts: dict[str, dict[str, int]] = {}
    by_key = {port.key: port.id for port in cloud.ports.values() if port.is_vif}
    for name, ctx in sorted(nodes.items()):
        for flow in compile_node(cloud, ctx):
            kind = p.cookie_kind(flow.cookie)
            if kind is None or kind[0] is not p.Kind.PORT or kind[1] not in by_key:
                continue
            per = counts.setdefault(by_key[kind[1]], {})
            per[name] = per.get(name, 0) + 1
    return counts

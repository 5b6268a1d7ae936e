"""The tenant flow compiler: a Cloud snapshot and a node's bindings in, its flows out (pure).

``compile_node(cloud, node)`` returns a frozenset of ofsim ``Flow``s for the node's
br-int (tables, registers and cookies in tenant/pipeline.py). It depends only on the
snapshot, so applying the same changes in any order compiles the same set, and an update
is a set difference: ``diff(old, new)`` says what to delete and what to add.

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
conntrack and its groups' rules out (tables 10/15) and in (75/80). Scope: IPv4; no
NAT or floating IPs (issue 14: tables reserved). Router extra routes are compiled when
their next hop is a known port of one of the router's subnets; allowed address pairs
pass port security but get no host route. Ports, networks and routers with
``admin_state_up`` false get no flows.
"""

from __future__ import annotations

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
from routeflow.tenant import pipeline as p
from routeflow.tenant import secgroups
from routeflow.tenant.model import Cloud, Network, Port, Router

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
IP_ICMP = 1
IP_UDP = 17


@dataclass(frozen=True)
class NodeContext:
    """One node as its agent sees it: its name (``Node.id``), its local ports
    (``port_id -> ofport`` from OVSDB ``external_ids:iface-id``) and the tunnel port."""

    name: str
    bindings: Mapping[str, int] = field(default_factory=dict)
    tunnel_ofport: int = p.TUNNEL_OFPORT


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


def _ipv4(port: Port, cloud: Cloud) -> list[str]:
    """The port's IPv4 addresses on subnets that exist."""
    out = []
    for fip in port.fixed_ips:
        subnet = cloud.subnets.get(fip.subnet_id)
        if subnet is None or subnet.ip_version != 4:
            continue
        out.append(fip.ip_address)
    return out


def _usable(port: Port, cloud: Cloud) -> bool:
    net = cloud.networks.get(port.network_id)
    return port.admin_state_up and net is not None and net.admin_state_up


def _bound(port: Port, cloud: Cloud) -> bool:
    """A VIF port the data plane delivers to: bound to a known node."""
    return port.is_vif and bool(port.binding_host_id) and port.binding_host_id in cloud.nodes


@dataclass
class _Compiler:
    cloud: Cloud
    node: NodeContext
    flows: list[Flow] = field(default_factory=list)

    def add(
        self,
        table: int,
        priority: int,
        match: Mapping[str, object],
        cookie: int,
        *instructions: ofsim.Instruction,
    ) -> None:
        self.flows.append(Flow(table, priority, match, tuple(instructions), cookie))

    # --- which objects this node sees --------------------------------------------------

    def local_ports(self) -> list[tuple[Port, int]]:
        out = []
        for port_id, ofport in sorted(self.node.bindings.items()):
            port = self.cloud.ports.get(port_id)
            # Plugged here and bound here, or plugged here and not bound yet: the server
            # records the binding only after this agent reports the VIF, and the VM's
            # first DHCP request must not wait for that round trip (it was lost, and
            # udhcpc retried a second later). A port bound to another node is not ours.
            if (
                port is not None
                and port.is_vif
                and port.binding_host_id in ("", self.node.name)
                and _usable(port, self.cloud)
            ):
                out.append((port, ofport))
        return out

    def routers_of(self, network_ids: set[str]) -> list[tuple[Router, list[Port]]]:
        """Routers with an interface on one of ``network_ids``, with all their interfaces."""
        out = []
        for router in sorted(self.cloud.routers.values(), key=lambda r: r.id):
            if not router.admin_state_up:
                continue
            ifaces = [i for i in self.cloud.router_interfaces(router.id) if _usable(i, self.cloud)]
            if any(i.network_id in network_ids for i in ifaces):
                out.append((router, ifaces))
        return out

    # --- the whole node ----------------------------------------------------------------

    def compile(self) -> frozenset[Flow]:
        local = self.local_ports()
        if not local:
            return frozenset()
        local_nets = {port.network_id for port, _ in local}
        routers = self.routers_of(local_nets)
        routed_nets = {i.network_id for _, ifaces in routers for i in ifaces} - local_nets
        self.base()
        for port, ofport in local:
            self.local_port(port, ofport)
        for net_id in sorted(local_nets):
            self.local_network(self.cloud.networks[net_id], [p_ for p_, _ in local])
        for net_id in sorted(local_nets | routed_nets):
            for port in self.cloud.ports_of(net_id):
                if _bound(port, self.cloud) and _usable(port, self.cloud):
                    self.known_port(port, local=net_id in local_nets)
        for router, ifaces in routers:
            self.router(router, ifaces, local_nets)
        self.flows += secgroups.base_flows()
        guarded = [port for port, _ in local if port.port_security_enabled]
        self.flows += secgroups.local_flows(self.cloud, guarded)
        return frozenset(secgroups.merge(self.flows))

    def base(self) -> None:
        """The fixed flows: services split, and the defaults of tables that go on."""
        c = p.cookie_of(p.Kind.BASE)
        self.add(p.SERVICES, p.PRI_PORT, {"eth_type": ETH_ARP}, c, GotoTable(p.ARP))
        dhcp = {
            "eth_type": ETH_IPV4,
            "ip_proto": IP_UDP,
            "udp_src": p.DHCP_CLIENT_PORT,
            "udp_dst": p.DHCP_SERVER_PORT,
        }
        self.add(p.SERVICES, p.PRI_PORT, dhcp, c, GotoTable(p.DHCP))
        self.add(p.SERVICES, p.PRI_DEFAULT, {}, c, GotoTable(p.L2))
        self.add(p.ARP, p.PRI_DEFAULT, {}, c, GotoTable(p.L2))

    # --- ports -------------------------------------------------------------------------

    def local_port(self, port: Port, ofport: int) -> None:
        """Classification, port security, DHCP and delivery of a port bound here."""
        net = self.cloud.networks[port.network_id]
        c = p.cookie_of(p.Kind.PORT, port.key)
        reg6 = {p.SRC_PORT_REG: port.key}
        self.add(
            p.CLASSIFY,
            p.PRI_PORT,
            {"in_port": ofport},
            c,
            apply_actions(SetField(p.SRC_PORT_REG, port.key)),
            WriteMetadata(net.segmentation_id),
            GotoTable(p.PORT_SEC),
        )
        # Port security: anti-spoofing here, then conntrack and security groups.
        ok = GotoTable(p.EGRESS_CT)
        inbound = GotoTable(p.INGRESS_CT)
        if not port.port_security_enabled:
            ok, inbound = GotoTable(p.SERVICES), GotoTable(p.OUTPUT)
            self.add(p.PORT_SEC, p.PRI_PORT, reg6, c, ok)
        else:
            pairs = [(port.mac_address, f"{ip}/32") for ip in _ipv4(port, self.cloud)]
            for pair in port.allowed_address_pairs:
                try:
                    net4 = ipaddress.ip_network(pair.ip_address, strict=False)
                except ValueError:
                    continue
                if net4.version == 4:
                    pairs.append((pair.mac_address or port.mac_address, str(net4)))
            for mac, cidr in sorted(set(pairs)):
                self.add(
                    p.PORT_SEC,
                    p.PRI_PORT,
                    {**reg6, "eth_src": mac, "eth_type": ETH_IPV4, "ipv4_src": cidr},
                    c,
                    ok,
                )
                self.add(
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
            self.add(p.PORT_SEC, p.PRI_PORT, dhcp, c, ok)
            # ARP probes (duplicate address detection) come from 0.0.0.0.
            self.add(
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
        if any(s.enable_dhcp for s in self.cloud.subnets_of(net.id) if s.ip_version == 4):
            self.add(p.DHCP, p.PRI_PORT, reg6, c, apply_actions(Output(ofsim.CONTROLLER)))
        # Its own address is not answered for it (DAD probe): flooded locally instead.
        for ip in _ipv4(port, self.cloud):
            self.add(
                p.ARP,
                p.PRI_HIGH,
                {**reg6, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip},
                c,
                GotoTable(p.L2),
            )
        self.add(
            p.TUNNEL_IN,
            p.PRI_PORT,
            {p.NETWORK_REG: net.segmentation_id, "eth_dst": port.mac_address},
            c,
            apply_actions(SetField(p.DST_PORT_REG, port.key)),
            inbound,
        )
        self.add(p.OUTPUT, p.PRI_PORT, {p.DST_PORT_REG: port.key}, c, apply_actions(Output(ofport)))

    def known_port(self, port: Port, local: bool) -> None:
        """A bound port of a network this node sees: ARP, L2 (only where the network is
        local), host lookup and dispatch (also where it is only routed to)."""
        net = self.cloud.networks[port.network_id]
        vni = net.segmentation_id
        c = p.cookie_of(p.Kind.PORT, port.key)
        ips = _ipv4(port, self.cloud)
        if local:
            for ip in ips:
                self.arp_responder(vni, ip, port.mac_address, c)
            self.add(
                p.L2,
                p.PRI_PORT,
                {p.NETWORK_REG: vni, "eth_dst": port.mac_address},
                c,
                apply_actions(SetField(p.DST_PORT_REG, port.key)),
                GotoTable(p.DISPATCH),
            )
        for ip in ips:
            self.add(
                p.HOST,
                p.PRI_PORT,
                {p.NETWORK_REG: vni, "eth_type": ETH_IPV4, "ipv4_dst": ip},
                c,
                apply_actions(
                    SetField("eth_dst", port.mac_address), SetField(p.DST_PORT_REG, port.key)
                ),
                GotoTable(p.DISPATCH),
            )
        here = port.binding_host_id == self.node.name
        if here:
            if port.id in self.node.bindings:
                inbound = p.INGRESS_CT if port.port_security_enabled else p.OUTPUT
                self.add(p.DISPATCH, p.PRI_PORT, {p.DST_PORT_REG: port.key}, c, GotoTable(inbound))
            return
        remote = self.cloud.nodes[port.binding_host_id]
        self.add(
            p.DISPATCH,
            p.PRI_PORT,
            {p.DST_PORT_REG: port.key},
            c,
            apply_actions(
                SetField("tun_ipv4_dst", remote.tunnel_ip),
                SetField("tunnel_id", vni),
                Output(self.node.tunnel_ofport),
            ),
        )

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

    def local_network(self, net: Network, local: list[Port]) -> None:
        """Tunnel ingress and multicast of a network with a port here."""
        c = p.cookie_of(p.Kind.NETWORK, net.segmentation_id)
        vni = net.segmentation_id
        self.add(
            p.CLASSIFY,
            p.PRI_PORT,
            {"in_port": self.node.tunnel_ofport, "tunnel_id": vni},
            c,
            WriteMetadata(vni),
            GotoTable(p.TUNNEL_IN),
        )
        outs = sorted(self.node.bindings[q.id] for q in local if q.network_id == net.id)
        self.add(
            p.L2,
            p.PRI_MULTICAST,
            {p.NETWORK_REG: vni, "eth_dst": p.MULTICAST_MAC},
            c,
            apply_actions(*(Output(o) for o in outs)),
        )

    # --- routers -----------------------------------------------------------------------

    def router(self, router: Router, ifaces: list[Port], local_nets: set[str]) -> None:
        """A distributed router: its interfaces' MACs and IPs on local networks, routes to
        every subnet it joins, extra routes, and an echo responder for its addresses."""
        rkey = router.key
        for iface in ifaces:
            net = self.cloud.networks[iface.network_id]
            vni = net.segmentation_id
            c = p.cookie_of(p.Kind.PORT, iface.key)
            ips = _ipv4(iface, self.cloud)
            if iface.network_id in local_nets:
                for ip in ips:
                    self.arp_responder(vni, ip, iface.mac_address, c)
                self.add(
                    p.L2,
                    p.PRI_PORT,
                    {p.NETWORK_REG: vni, "eth_dst": iface.mac_address},
                    c,
                    apply_actions(SetField(p.ROUTER_REG, rkey)),
                    GotoTable(p.ROUTING),
                )
            for fip in iface.fixed_ips:
                subnet = self.cloud.subnets.get(fip.subnet_id)
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
                self.add(
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
                self.add(
                    p.ROUTING,
                    p.PRI_HIGH,
                    {p.ROUTER_REG: rkey, "eth_type": ETH_IPV4, "ipv4_dst": ip},
                    c,
                )
                cidr = ipaddress.ip_network(subnet.cidr, strict=False)
                self.add(
                    p.ROUTING,
                    p.route_priority(cidr.prefixlen, connected=True),
                    {p.ROUTER_REG: rkey, "eth_type": ETH_IPV4, "ipv4_dst": str(cidr)},
                    c,
                    apply_actions(DecTtl(), SetField("eth_src", iface.mac_address)),
                    WriteMetadata(vni),
                    GotoTable(p.HOST),
                )
        self.extra_routes(router, ifaces)

    def extra_routes(self, router: Router, ifaces: list[Port]) -> None:
        c = p.cookie_of(p.Kind.ROUTER, router.key)
        by_ip: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, Port] = {}
        for iface in ifaces:
            for fip in iface.fixed_ips:
                subnet = self.cloud.subnets.get(fip.subnet_id)
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
            target = next(
                (
                    q
                    for q in self.cloud.ports_of(iface.network_id)
                    if str(hop) in _ipv4(q, self.cloud) and _bound(q, self.cloud)
                ),
                None,
            )
            if target is None:
                continue
            vni = self.cloud.networks[iface.network_id].segmentation_id
            # Just below a connected subnet of the same length: connected routes win.
            self.add(
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


def compile_node(cloud: Cloud, node: NodeContext) -> frozenset[Flow]:
    """Every flow of ``node``'s br-int for the tenant pipeline (see the module docstring)."""
    return _Compiler(cloud, node).compile()


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

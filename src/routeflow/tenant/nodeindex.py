"""What a node's flows are compiled from besides the objects themselves (pure).

``Index``: reverse lookups of a snapshot (the ports of a network, the interfaces of a
router, the members of a security group...), kept up to date object by object, so the
compiler never scans every port to find the few it needs. ``Facts``: what one node sees
(its usable local ports by network, the routers reaching them, the networks routed to,
the remote-group rules its guarded ports use), updated port by port.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from routeflow.tenant.model import Cloud, Port, SecurityGroupRule, Subnet


class NodeLike(Protocol):
    """What the compiler reads of a node (``NodeContext``, the agent's ``NodeView``)."""

    @property
    def name(self) -> str: ...
    @property
    def bindings(self) -> Mapping[str, int]: ...
    @property
    def tunnel_ofport(self) -> int: ...


def ipv4(port: Port, cloud: Cloud) -> tuple[str, ...]:
    """The port's IPv4 addresses on subnets that exist."""
    out = []
    for fip in port.fixed_ips:
        subnet = cloud.subnets.get(fip.subnet_id)
        if subnet is None or subnet.ip_version != 4:
            continue
        out.append(fip.ip_address)
    return tuple(out)


def usable(port: Port, cloud: Cloud) -> bool:
    net = cloud.networks.get(port.network_id)
    return port.admin_state_up and net is not None and net.admin_state_up


def bound(port: Port, cloud: Cloud) -> bool:
    """A VIF port the data plane delivers to: bound to a known node."""
    return port.is_vif and bool(port.binding_host_id) and port.binding_host_id in cloud.nodes


# --- what reads what ----------------------------------------------------------------------


class Index:
    """Reverse lookups of a snapshot (ports of a network, interfaces of a router...), so
    the compiler never scans every port; ``port``/``subnet`` keep it up to date."""

    def __init__(self) -> None:
        self.ports_by_net: dict[str, set[str]] = {}
        self.ifaces_by_router: dict[str, set[str]] = {}
        self.ports_by_host: dict[str, set[str]] = {}
        self.members: dict[str, set[str]] = {}  # security group -> port ids
        self.ports_by_subnet: dict[str, set[str]] = {}  # by their fixed IPs
        self.ports_by_ip: dict[tuple[str, str], set[str]] = {}  # (network, fixed IP)
        self.subnets_by_net: dict[str, set[str]] = {}

    @classmethod
    def of(cls, cloud: Cloud) -> Index:
        index = cls()
        for port in cloud.ports.values():
            index.port(None, port)
        for subnet in cloud.subnets.values():
            index.subnet(None, subnet)
        return index

    @staticmethod
    def _move(table: dict[object, set[str]], old: Iterable[object], new: Iterable[object],
              oid: str) -> None:  # fmt: skip
        old, new = set(old), set(new)
        for k in old - new:
            ids = table.get(k)
            if ids is not None:
                ids.discard(oid)
                if not ids:
                    del table[k]
        for k in new - old:
            table.setdefault(k, set()).add(oid)

    def port(self, old: Port | None, new: Port | None) -> None:
        if old is None and new is None:
            return
        oid = (old or new).id  # type: ignore[union-attr]
        a: list[Port] = [old] if old is not None else []
        b: list[Port] = [new] if new is not None else []
        move = self._move
        move(self.ports_by_net, [q.network_id for q in a], [q.network_id for q in b], oid)  # type: ignore[arg-type]
        move(
            self.ifaces_by_router,  # type: ignore[arg-type]
            [q.device_id for q in a if q.is_router_interface],
            [q.device_id for q in b if q.is_router_interface],
            oid,
        )
        move(
            self.ports_by_host,  # type: ignore[arg-type]
            [q.binding_host_id for q in a if q.binding_host_id],
            [q.binding_host_id for q in b if q.binding_host_id],
            oid,
        )
        move(self.members, [g for q in a for g in q.security_groups],  # type: ignore[arg-type]
             [g for q in b for g in q.security_groups], oid)  # fmt: skip
        move(self.ports_by_subnet, [f.subnet_id for q in a for f in q.fixed_ips],  # type: ignore[arg-type]
             [f.subnet_id for q in b for f in q.fixed_ips], oid)  # fmt: skip
        move(
            self.ports_by_ip,  # type: ignore[arg-type]
            [(q.network_id, f.ip_address) for q in a for f in q.fixed_ips],
            [(q.network_id, f.ip_address) for q in b for f in q.fixed_ips],
            oid,
        )

    def subnet(self, old: Subnet | None, new: Subnet | None) -> None:
        if old is None and new is None:
            return
        oid = (old or new).id  # type: ignore[union-attr]
        self._move(
            self.subnets_by_net,  # type: ignore[arg-type]
            [old.network_id] if old is not None else [],
            [new.network_id] if new is not None else [],
            oid,
        )


@dataclass
class Facts:
    """What a node sees, derived from the snapshot and its bindings: its usable local
    ports (by network), the routers that reach them, the networks routed to, and the
    remote-group rules its guarded ports use."""

    local: dict[str, int] = field(default_factory=dict)  # port id -> ofport
    local_by_net: dict[str, dict[str, int]] = field(default_factory=dict)
    routers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # id -> usable ifaces
    routed_nets: frozenset[str] = frozenset()
    guarded: Counter[str] = field(default_factory=Counter)  # group -> guarded local ports
    served: frozenset[str] = frozenset()  # routers whose NAT runs here (tenant/nat.py)
    rules: dict[int, tuple[str, SecurityGroupRule]] = field(default_factory=dict)

    def status(self, net_id: str) -> int:
        """0: not seen here, 1: routed to, 2: local."""
        return 2 if net_id in self.local_by_net else 1 if net_id in self.routed_nets else 0

    def set_local(self, cloud: Cloud, node: NodeLike, pid: str) -> None:
        """Re-decide whether ``pid`` is a usable local port of ``node``."""
        if pid in self.local:
            self._drop(pid)
        ofport = node.bindings.get(pid)
        cloud_port = cloud.ports.get(pid)
        # Plugged here and bound here, or plugged here and not bound yet: the server
        # records the binding only after this agent reports the VIF, and the VM's
        # first DHCP request must not wait for that round trip (it was lost, and
        # udhcpc retried a second later). A port bound to another node is not ours.
        if (
            ofport is not None
            and cloud_port is not None
            and cloud_port.is_vif
            and cloud_port.binding_host_id in ("", node.name)
            and usable(cloud_port, cloud)
        ):
            self.local[pid] = ofport
            self.local_by_net.setdefault(cloud_port.network_id, {})[pid] = ofport
            if cloud_port.port_security_enabled:
                self.guarded.update(cloud_port.security_groups)
            self._guarded_of[pid] = (
                cloud_port.security_groups if cloud_port.port_security_enabled else ()
            )
            self._net_of[pid] = cloud_port.network_id

    def _drop(self, pid: str) -> None:
        del self.local[pid]
        net = self._net_of.pop(pid)
        ports = self.local_by_net[net]
        del ports[pid]
        if not ports:
            del self.local_by_net[net]
        self.guarded.subtract(self._guarded_of.pop(pid))
        for g in [g for g, n in self.guarded.items() if n <= 0]:
            del self.guarded[g]

    _net_of: dict[str, str] = field(default_factory=dict)
    _guarded_of: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def set_routers(self, cloud: Cloud, index: Index) -> None:
        """Routers with a usable interface on a local network (or served here: their
        NAT runs on this node), with all their usable interfaces; the networks they join
        that are not local are routed to."""
        routers: dict[str, tuple[str, ...]] = {}
        for rid in sorted(index.ifaces_by_router):
            router = cloud.routers.get(rid)
            if router is None or not router.admin_state_up:
                continue
            ifaces = sorted(
                q.id
                for q in (cloud.ports[i] for i in index.ifaces_by_router[rid])
                if usable(q, cloud)
            )
            if rid in self.served or any(
                cloud.ports[i].network_id in self.local_by_net for i in ifaces
            ):
                routers[rid] = tuple(ifaces)
        self.routers = routers
        self.routed_nets = frozenset(
            cloud.ports[i].network_id for ifaces in routers.values() for i in ifaces
        ) - frozenset(self.local_by_net)

    def set_rules(self, cloud: Cloud) -> None:
        """The remote-group rules of the groups of guarded local ports, by key."""
        rules: dict[int, tuple[str, SecurityGroupRule]] = {}
        for gid in sorted(self.guarded):
            group = cloud.security_groups.get(gid)
            if group is None:
                continue
            for rule in group.rules:
                if rule.remote_group_id is not None:
                    rules[rule.key] = (gid, rule)
        self.rules = rules

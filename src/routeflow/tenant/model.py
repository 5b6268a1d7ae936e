"""The tenant model: what the Neutron-compatible API stores and what node agents receive.

One struct per Neutron resource, holding the fields routeflow acts on plus the standard
attributes real clients expect back. The API layer turns these into Neutron JSON (and
back); node agents receive them unchanged (model objects, not flows) and compile their
own flows from them. Router interfaces and gateway ports are ordinary `Port`s, told apart
by `device_owner`, as in Neutron.

Rules this module keeps (pure, no I/O, no clock):
- Every object is frozen; a change is a new object with `revision_number + 1`.
- `Cloud` is an immutable snapshot; `Cloud.apply(change)` returns the next one. Applying
  the same set of changes in any order that respects revisions gives the same snapshot,
  which is what lets a node catch up from "full state, then deltas".
- Integers the data plane needs (network VNI, router key, port key) are allocated once by
  the server and stored in the object, so every node compiles the same numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

DEVICE_ROUTER_INTERFACE = "network:router_interface"
DEVICE_ROUTER_GATEWAY = "network:router_gateway"
DEVICE_FLOATINGIP = "network:floatingip"
DEVICE_DHCP = "network:dhcp"

VNI_MIN = 1
VNI_MAX = (1 << 24) - 1  # VXLAN network identifier is 24 bits
KEY_MAX = (1 << 31) - 1  # router and port keys live in 32-bit OpenFlow registers


class Kind(enum.StrEnum):
    """Object kinds; also the store key prefix (`tenant/<kind>/<id>`)."""

    NETWORK = "network"
    SUBNET = "subnet"
    PORT = "port"
    ROUTER = "router"
    NODE = "node"
    SECURITY_GROUP = "security_group"
    FLOATINGIP = "floatingip"


class _Base(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    id: str
    name: str = ""
    project_id: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    created_at: str = ""  # ISO 8601, set by the server (the model has no clock)
    updated_at: str = ""
    revision_number: int = 0


class Network(_Base, frozen=True, kw_only=True):
    admin_state_up: bool = True
    shared: bool = False
    external: bool = False  # Neutron's "router:external"
    mtu: int = 1450  # underlay MTU minus the 50 bytes of VXLAN over IPv4
    port_security_enabled: bool = True
    segmentation_id: int = 0  # VNI; allocated by the server, never 0 once stored


class AllocationPool(msgspec.Struct, frozen=True):
    start: str
    end: str


class HostRoute(msgspec.Struct, frozen=True):
    destination: str
    nexthop: str


class Subnet(_Base, frozen=True, kw_only=True):
    network_id: str
    ip_version: Literal[4, 6] = 4
    cidr: str
    gateway_ip: str | None = None
    enable_dhcp: bool = True
    allocation_pools: tuple[AllocationPool, ...] = ()
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()


class FixedIP(msgspec.Struct, frozen=True):
    subnet_id: str
    ip_address: str


class AddressPair(msgspec.Struct, frozen=True):
    ip_address: str
    mac_address: str | None = None


class Port(_Base, frozen=True, kw_only=True):
    network_id: str
    mac_address: str
    fixed_ips: tuple[FixedIP, ...] = ()
    admin_state_up: bool = True
    status: Literal["DOWN", "ACTIVE", "BUILD", "ERROR"] = "DOWN"
    device_id: str = ""
    device_owner: str = ""
    binding_host_id: str = ""  # Neutron's "binding:host_id": the node the VIF is plugged on
    security_groups: tuple[str, ...] = ()
    port_security_enabled: bool = True
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    key: int = 0  # port key for OpenFlow registers; allocated by the server

    @property
    def is_router_interface(self) -> bool:
        return self.device_owner == DEVICE_ROUTER_INTERFACE

    @property
    def is_vif(self) -> bool:
        """A port a VM plugs into (not owned by the network itself)."""
        return not self.device_owner.startswith("network:")


class ExternalFixedIP(msgspec.Struct, frozen=True):
    subnet_id: str
    ip_address: str


class GatewayInfo(msgspec.Struct, frozen=True, kw_only=True):
    network_id: str
    enable_snat: bool = True
    external_fixed_ips: tuple[ExternalFixedIP, ...] = ()


class Router(_Base, frozen=True, kw_only=True):
    admin_state_up: bool = True
    status: str = "ACTIVE"
    external_gateway_info: GatewayInfo | None = None
    routes: tuple[HostRoute, ...] = ()
    key: int = 0  # router key for OpenFlow registers; allocated by the server
    #: The gateway node that NATs for it (tenant/schedule.py: recorded by the server,
    #: sticky); "" with no external gateway, or before the server recorded one.
    gateway_node: str = ""


class SecurityGroupRule(msgspec.Struct, frozen=True, kw_only=True):
    """One rule of a security group; it lives inside its group (a rule change is a new
    group revision, so a node sees a group and its rules change together).

    ``protocol`` is as the client gave it (a name or a number as text), normalised to
    lower case; ``port_range_min``/``max`` are ICMP type/code for ICMP. ``key`` is the
    rule's number in the data plane (conjunction id), allocated by the server.
    """

    id: str
    project_id: str = ""
    description: str = ""
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    created_at: str = ""
    updated_at: str = ""
    revision_number: int = 0
    key: int = 0


class SecurityGroup(_Base, frozen=True, kw_only=True):
    """A security group with its rules (Neutron's ``security_group_rules`` inline)."""

    stateful: bool = True
    shared: bool = False
    rules: tuple[SecurityGroupRule, ...] = ()
    key: int = 0  # allocated by the server (cookies)


class Node(_Base, frozen=True, kw_only=True):
    """A compute node: `id` is its name (`routeflow tenant node --name`)."""

    tunnel_ip: str  # VXLAN endpoint on the underlay
    gateway: bool = False
    #: False once the server lost the node's session for longer than its grace
    #: (``--gateway-grace``): a gateway node that is down gets no routers.
    up: bool = True


class FloatingIP(_Base, frozen=True, kw_only=True):
    """A floating IP: an address of an external network, NATed 1:1 to a port's fixed IP.

    The address itself is held by a ``network:floatingip`` port on the external network
    (as Neutron does), so IPAM and "network in use" see it. Associated when ``port_id``
    is set; then ``router_id`` is the router joining the port's network to the external
    one (the gateway node NATs for that router).
    """

    floating_network_id: str
    floating_ip_address: str
    floating_subnet_id: str = ""
    port_id: str | None = None
    fixed_ip_address: str | None = None
    router_id: str | None = None
    status: Literal["ACTIVE", "DOWN", "ERROR"] = "DOWN"
    key: int = 0  # allocated by the server (cookies)


Object = Network | Subnet | Port | Router | Node | SecurityGroup | FloatingIP

KIND_OF: dict[type, Kind] = {
    Network: Kind.NETWORK,
    Subnet: Kind.SUBNET,
    Port: Kind.PORT,
    Router: Kind.ROUTER,
    Node: Kind.NODE,
    SecurityGroup: Kind.SECURITY_GROUP,
    FloatingIP: Kind.FLOATINGIP,
}
TYPE_OF: dict[Kind, type] = {kind: cls for cls, kind in KIND_OF.items()}


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One delta as the server sends it: `obj` is the new object, None when deleted.

    `revision` is the server's global revision after this change (monotonic), so a node
    that reconnects says which revision it holds and the server knows what to resend.
    """

    kind: Kind
    id: str
    revision: int
    obj: Object | None = None


class Cloud(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable snapshot of every object, keyed by kind and id."""

    revision: int = 0
    networks: Mapping[str, Network] = msgspec.field(default_factory=dict)
    subnets: Mapping[str, Subnet] = msgspec.field(default_factory=dict)
    ports: Mapping[str, Port] = msgspec.field(default_factory=dict)
    routers: Mapping[str, Router] = msgspec.field(default_factory=dict)
    nodes: Mapping[str, Node] = msgspec.field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroup] = msgspec.field(default_factory=dict)
    floatingips: Mapping[str, FloatingIP] = msgspec.field(default_factory=dict)

    def table(self, kind: Kind) -> Mapping[str, Object]:
        tables: dict[Kind, Mapping[str, Object]] = {
            Kind.NETWORK: self.networks,
            Kind.SUBNET: self.subnets,
            Kind.PORT: self.ports,
            Kind.ROUTER: self.routers,
            Kind.NODE: self.nodes,
            Kind.SECURITY_GROUP: self.security_groups,
            Kind.FLOATINGIP: self.floatingips,
        }
        return tables[kind]

    def apply(self, change: Change) -> Cloud:
        """The snapshot after `change`; a stale change (older revision) is ignored."""
        if change.revision <= self.revision:
            return self
        table = dict(self.table(change.kind))
        if change.obj is None:
            table.pop(change.id, None)
        else:
            if KIND_OF[type(change.obj)] is not change.kind or change.obj.id != change.id:
                raise ValueError(f"change {change.kind}/{change.id} carries a mismatched object")
            table[change.id] = change.obj
        field = {
            Kind.NETWORK: "networks",
            Kind.SUBNET: "subnets",
            Kind.PORT: "ports",
            Kind.ROUTER: "routers",
            Kind.NODE: "nodes",
            Kind.SECURITY_GROUP: "security_groups",
            Kind.FLOATINGIP: "floatingips",
        }[change.kind]
        return msgspec.structs.replace(self, revision=change.revision, **{field: table})

    def apply_all(self, changes: Iterable[Change]) -> Cloud:
        cloud = self
        for change in sorted(changes, key=lambda c: c.revision):
            cloud = cloud.apply(change)
        return cloud

    @classmethod
    def from_changes(cls, revision: int, changes: Iterable[Change]) -> Cloud:
        """The snapshot a full state describes: the inverse of `changes()`.

        Not `Cloud().apply_all(...)`: every change of a full state carries the same
        revision, and `apply` keeps only the first change of a revision (a stale
        re-delivery). Deletions in a full state mean nothing and are ignored.
        """
        tables: dict[Kind, dict[str, Object]] = {kind: {} for kind in Kind}
        for change in changes:
            if change.obj is None:
                continue
            if KIND_OF[type(change.obj)] is not change.kind or change.obj.id != change.id:
                raise ValueError(f"change {change.kind}/{change.id} carries a mismatched object")
            tables[change.kind][change.id] = change.obj
        return cls(
            revision=revision,
            networks=tables[Kind.NETWORK],  # type: ignore[arg-type]
            subnets=tables[Kind.SUBNET],  # type: ignore[arg-type]
            ports=tables[Kind.PORT],  # type: ignore[arg-type]
            routers=tables[Kind.ROUTER],  # type: ignore[arg-type]
            nodes=tables[Kind.NODE],  # type: ignore[arg-type]
            security_groups=tables[Kind.SECURITY_GROUP],  # type: ignore[arg-type]
            floatingips=tables[Kind.FLOATINGIP],  # type: ignore[arg-type]
        )

    def changes(self) -> list[Change]:
        """The full state as changes (what a node receives on connect); see `from_changes`."""
        out = []
        for kind in Kind:
            for oid, obj in sorted(self.table(kind).items()):
                out.append(Change(kind=kind, id=oid, revision=self.revision, obj=obj))
        return out

    # Queries the compiler and the API both need.

    def subnets_of(self, network_id: str) -> list[Subnet]:
        return sorted(
            (s for s in self.subnets.values() if s.network_id == network_id), key=lambda s: s.id
        )

    def ports_of(self, network_id: str) -> list[Port]:
        return sorted(
            (p for p in self.ports.values() if p.network_id == network_id), key=lambda p: p.id
        )

    def members_of(self, group_id: str) -> list[Port]:
        """Ports in a security group (a remote group's members), by id."""
        return sorted(
            (p for p in self.ports.values() if group_id in p.security_groups), key=lambda p: p.id
        )

    def router_interfaces(self, router_id: str) -> list[Port]:
        return sorted(
            (p for p in self.ports.values() if p.is_router_interface and p.device_id == router_id),
            key=lambda p: p.id,
        )


def encode(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


def decode_change(data: bytes) -> Change:
    return msgspec.msgpack.decode(data, type=Change)


def decode_object(kind: Kind, data: bytes) -> Object:
    return msgspec.msgpack.decode(data, type=TYPE_OF[kind])

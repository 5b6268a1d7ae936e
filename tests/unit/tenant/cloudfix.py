"""A small tenant model for the node-side unit tests."""

from __future__ import annotations

from collections.abc import Callable

from routeflow.tenant.model import (
    Change,
    Cloud,
    FixedIP,
    HostRoute,
    Kind,
    Network,
    Node,
    Port,
    Subnet,
)

NET = Network(id="net-a", name="a", project_id="p1", mtu=1450, segmentation_id=100)
SUBNET = Subnet(
    id="sub-a",
    network_id="net-a",
    cidr="10.10.0.0/24",
    gateway_ip="10.10.0.1",
    dns_nameservers=("192.0.2.53",),
    host_routes=(HostRoute(destination="172.16.0.0/12", nexthop="10.10.0.254"),),
)
VM1 = Port(
    id="port-1",
    network_id="net-a",
    mac_address="fa:16:3e:00:00:11",
    fixed_ips=(FixedIP(subnet_id="sub-a", ip_address="10.10.0.11"),),
    binding_host_id="c1",
    key=11,
)
VM2 = Port(
    id="port-2",
    network_id="net-a",
    mac_address="fa:16:3e:00:00:12",
    fixed_ips=(FixedIP(subnet_id="sub-a", ip_address="10.10.0.12"),),
    binding_host_id="c2",
    key=12,
)


def cloud(revision: int = 5) -> Cloud:
    base = Cloud()
    changes = [
        Change(kind=Kind.NETWORK, id=NET.id, revision=1, obj=NET),
        Change(kind=Kind.SUBNET, id=SUBNET.id, revision=2, obj=SUBNET),
        Change(kind=Kind.PORT, id=VM1.id, revision=3, obj=VM1),
        Change(kind=Kind.PORT, id=VM2.id, revision=revision, obj=VM2),
    ]
    return base.apply_all(changes)


class MemoryRepo:
    """A stand-in for the tenant server's Repository: a Cloud, subscribers, calls recorded."""

    def __init__(self, model: Cloud) -> None:
        self.cloud = model
        self.subs: list[Callable[[Change], None]] = []
        self.nodes: list[Node] = []
        self.binds: list[tuple[str, str, bool]] = []

    def snapshot(self) -> Cloud:
        return self.cloud

    def subscribe(self, fn: Callable[[Change], None]) -> Callable[[], None]:
        self.subs.append(fn)
        return lambda: self.subs.remove(fn)

    def register_node(self, node: Node) -> None:
        self.nodes.append(node)

    def bind_port(self, port_id: str, host: str, active: bool) -> None:
        if port_id == "unknown":
            raise KeyError(port_id)
        self.binds.append((port_id, host, active))

    def emit(self, change: Change) -> None:
        self.cloud = self.cloud.apply(change)
        for fn in list(self.subs):
            fn(change)

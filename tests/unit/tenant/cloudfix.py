"""A small tenant model for the node-side unit tests."""

from __future__ import annotations

from routeflow.tenant.model import (
    Change,
    Cloud,
    FixedIP,
    HostRoute,
    Kind,
    Network,
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

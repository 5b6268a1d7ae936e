"""A small cloud to compile and run (pure): two tenants with the same address space.

Tests of the compiler, the simulator runs and the component test share it, so "vm a1
pings a3 across a router" means one thing everywhere. Three nodes; tenant A and tenant
B each have two networks (10.0.1.0/24 and 10.0.2.0/24, the same in both tenants) and a
router joining them. VMs (port name -> network, node, address):

    a1 A1 n1 10.0.1.11     a2 A1 n2 10.0.1.12     a3 A2 n2 10.0.2.13
    a4 A1 n1 10.0.1.14     b1 B1 n1 10.0.1.11     b2 B2 n3 10.0.2.12

Router interfaces are ``ri-<network>`` at .1; port keys 1.. for VMs, 100.. for interfaces.
Each tenant has its ``default`` security group (``sg-<project>``) with Neutron's rules
(egress open, ingress from the group's members) and every VM is in it, as the API
would have made them.
"""

from __future__ import annotations

from routeflow.tenant.model import (
    DEVICE_ROUTER_GATEWAY,
    DEVICE_ROUTER_INTERFACE,
    KIND_OF,
    Change,
    Cloud,
    ExternalFixedIP,
    FixedIP,
    FloatingIP,
    GatewayInfo,
    Network,
    Node,
    Object,
    Port,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)

NODES = {"n1": "198.51.100.1", "n2": "198.51.100.2", "n3": "198.51.100.3"}
VMS = {
    "a1": ("A1", "n1", "10.0.1.11"),
    "a2": ("A1", "n2", "10.0.1.12"),
    "a3": ("A2", "n2", "10.0.2.13"),
    "a4": ("A1", "n1", "10.0.1.14"),
    "b1": ("B1", "n1", "10.0.1.11"),
    "b2": ("B2", "n3", "10.0.2.12"),
}
NETWORKS = {  # name -> (project, VNI, cidr, router)
    "A1": ("tenant-a", 101, "10.0.1.0/24", "RA"),
    "A2": ("tenant-a", 102, "10.0.2.0/24", "RA"),
    "B1": ("tenant-b", 201, "10.0.1.0/24", "RB"),
    "B2": ("tenant-b", 202, "10.0.2.0/24", "RB"),
}
ROUTERS = {"RA": ("tenant-a", 1), "RB": ("tenant-b", 2)}


def mac(key: int) -> str:
    return f"fa:16:3e:00:{key >> 8 & 0xFF:02x}:{key & 0xFF:02x}"


def default_group(project: str, key: int) -> SecurityGroup:
    """Neutron's default group: egress open, ingress from its own members."""
    gid = f"sg-{project}"
    rules = [
        SecurityGroupRule(
            id=f"{gid}-{direction}-{eth}",
            project_id=project,
            direction=direction,  # type: ignore[arg-type]
            ethertype=eth,  # type: ignore[arg-type]
            remote_group_id=gid if direction == "ingress" else None,
            key=key * 10 + i,
        )
        for i, (direction, eth) in enumerate(
            [("egress", "IPv4"), ("egress", "IPv6"), ("ingress", "IPv4"), ("ingress", "IPv6")]
        )
    ]
    return SecurityGroup(id=gid, name="default", project_id=project, key=key, rules=tuple(rules))


def objects() -> list[Object]:
    """Every object of the sample cloud, ids equal to names (subnets: ``s<net>``)."""
    out: list[Object] = [Node(id=n, name=n, tunnel_ip=ip) for n, ip in NODES.items()]
    for i, project in enumerate(sorted({p for p, _ in ROUTERS.values()})):
        out.append(default_group(project, 1 + i))
    for name, (project, key) in ROUTERS.items():
        out.append(Router(id=name, name=name, project_id=project, key=key))
    for i, (name, (project, vni, cidr, router)) in enumerate(NETWORKS.items()):
        out.append(Network(id=name, name=name, project_id=project, segmentation_id=vni))
        out.append(
            Subnet(
                id=f"s{name}",
                network_id=name,
                project_id=project,
                cidr=cidr,
                gateway_ip=cidr.replace("0/24", "1"),
            )
        )
        key = 100 + i
        out.append(
            Port(
                id=f"ri-{name}",
                network_id=name,
                project_id=project,
                mac_address=mac(key),
                fixed_ips=(FixedIP(f"s{name}", cidr.replace("0/24", "1")),),
                device_id=router,
                device_owner=DEVICE_ROUTER_INTERFACE,
                key=key,
            )
        )
    for i, (name, (net, node, ip)) in enumerate(VMS.items()):
        key = 1 + i
        out.append(
            Port(
                id=name,
                name=name,
                network_id=net,
                project_id=NETWORKS[net][0],
                mac_address=mac(key),
                fixed_ips=(FixedIP(f"s{net}", ip),),
                device_owner="compute:nova",
                binding_host_id=node,
                security_groups=(f"sg-{NETWORKS[net][0]}",),
                key=key,
            )
        )
    return out


def changes(objs: list[Object], start: int = 1) -> list[Change]:
    """``objs`` created in this order (revisions ``start``, ``start + 1``...)."""
    return [
        Change(kind=KIND_OF[type(o)], id=o.id, revision=start + i, obj=o)
        for i, o in enumerate(objs)
    ]


def cloud() -> Cloud:
    return Cloud().apply_all(changes(objects()))


def bindings(node: str, first_ofport: int = 1) -> dict[str, int]:
    """The sample VMs plugged on ``node``: port id -> ofport, in name order."""
    names = sorted(n for n, (_, where, _) in VMS.items() if where == node)
    return {n: first_ofport + i for i, n in enumerate(names)}


# --- north-south: an external network, a gateway node, SNAT and a floating IP ----------

GATEWAY_NODE = ("g1", "198.51.100.9")
EXTERNAL = ("EXT", 900, "203.0.113.0/24", "203.0.113.1")  # id, VNI, cidr, next hop
ROUTER_GATEWAY_IP = "203.0.113.10"  # RA's SNAT address
FLOATING_IP = ("fip-a3", "203.0.113.20", "a3")  # id, address, port


def external_objects() -> list[Object]:
    """RA gets a gateway on EXT (SNAT on node g1) and a3 a floating IP."""
    ext, vni, cidr, hop = EXTERNAL
    name, ip = GATEWAY_NODE
    fid, fip, port = FLOATING_IP
    return [
        Node(id=name, name=name, tunnel_ip=ip, gateway=True),
        Network(id=ext, name=ext, project_id="admin", segmentation_id=vni, external=True),
        Subnet(id=f"s{ext}", network_id=ext, project_id="admin", cidr=cidr, gateway_ip=hop),
        Router(
            id="RA",
            name="RA",
            project_id="tenant-a",
            key=1,
            external_gateway_info=GatewayInfo(
                network_id=ext,
                external_fixed_ips=(ExternalFixedIP(f"s{ext}", ROUTER_GATEWAY_IP),),
            ),
        ),
        Port(
            id="gw-RA",
            network_id=ext,
            mac_address=mac(200),
            fixed_ips=(FixedIP(f"s{ext}", ROUTER_GATEWAY_IP),),
            device_id="RA",
            device_owner=DEVICE_ROUTER_GATEWAY,
            key=200,
        ),
        FloatingIP(
            id=fid,
            project_id="tenant-a",
            floating_network_id=ext,
            floating_ip_address=fip,
            port_id=port,
            fixed_ip_address=VMS[port][2],
            router_id="RA",
            status="ACTIVE",
            key=1,
        ),
    ]


def cloud_external() -> Cloud:
    """The sample cloud with ``external_objects()`` created after it."""
    objs = objects()
    return Cloud().apply_all(changes(objs) + changes(external_objects(), len(objs) + 1))

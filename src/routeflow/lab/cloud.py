"""The ``cloud:`` section of a lab file (pure): compute nodes, underlay and tenants.

A cloud lab runs tenant networks: each compute node is a namespace with its own
ovsdb-server/ovs-vswitchd, br-int (controller set at creation) and br-ul holding
the node's tunnel address on the underlay; the tenant server and one node agent
per node run beside them. ``tenants`` is what the lab bootstraps *through the
API* (openstacksdk), never by writing the store: networks, one router per
tenant joining its networks, and VMs (namespaces that get their address by DHCP).

Rules checked here, every problem named by its path:

1. Node names are 1-12 of [a-z0-9-] (they become namespace names), unique.
2. ``underlay`` is an IPv4 network with room for every node; node N gets host N.
3. ``mtu`` (the tenant MTU) is 576-8950 and at most ``underlay_mtu`` - 50 (VXLAN
   over IPv4); default ``underlay_mtu`` - 50.
4. Tenants have unique names; a tenant's networks have unique names and do not
   overlap each other (tenants may overlap: that is what isolation is about).
5. A router names networks of its own tenant; a VM names a network of its own
   tenant and a node of the cloud; VM names are unique across the cloud.
6. A VM's optional ``ip`` is a host of its network, not the gateway, and unique
   in that network (without one the API's IPAM picks). Fixed addresses let a lab
   give both tenants the *same* address somewhere and an address only one has
   elsewhere: isolation is then tested both ways.
7. ``external`` (with switches: the routeflow fabric is the external network) names
   the lab host whose subnet becomes the external network, the host "outside" that
   the checks use, and VMs that get a floating IP; at least one node is a gateway
   node. That the hosts exist is checked with the rest of the lab (lab/model.py).

``run_names`` and the ``*_pairs`` helpers plan a run (pure): namespace names
per run tag, and which VM pings which in each stage of ``lab check``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

import msgspec

__all__ = [
    "CloudLab",
    "CloudNode",
    "CloudSpec",
    "RunNames",
    "TenantLab",
    "TenantNetwork",
    "TenantRouter",
    "TenantVm",
    "isolation_pairs",
    "routed_pairs",
    "run_names",
    "same_network_pairs",
    "shared_address_pairs",
    "validate_cloud",
]

NODE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
VXLAN_OVERHEAD = 50


class _NodeSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Compute node name: 1-12 of [a-z0-9-], unique (it names the node's namespace).
    name: str
    #: A gateway node (its agent runs with --gateway).
    gateway: bool = False


class _NetworkSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Unique in its tenant.
    name: str
    #: Its subnet; the first address is the router's; no overlap within the tenant.
    cidr: str


class _RouterSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    #: Networks of its own tenant that it joins.
    networks: list[str]


class _VmSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Unique across the cloud.
    name: str
    #: A network of its own tenant.
    network: str
    #: The compute node it runs on.
    node: str
    #: Fixed address in its network (default: the API's IPAM picks); it gets it by DHCP.
    ip: str | None = None


class _TenantSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Unique; tenants may use the same addresses (isolation is what is tested).
    name: str
    networks: list[_NetworkSpec]
    routers: list[_RouterSpec] = msgspec.field(default_factory=list)
    vms: list[_VmSpec] = msgspec.field(default_factory=list)


class _ExternalSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: A lab host elsewhere on the fabric: the checks' "outside".
    outside: str
    #: ``connected``: the external subnet is the host subnet of ``host``, carried by
    #: OSPF. ``bgp``: the external subnet is ``pool``, on-link nowhere; each gateway
    #: node announces the /32s it serves to its switch's VM (``gateways``).
    mode: str = "connected"
    #: connected mode: a lab host whose subnet becomes the external network (its
    #: switch's VM is the next hop); every gateway node's external port joins its link.
    host: str = ""
    #: bgp mode: the external network's subnet (router gateways, floating IPs).
    pool: str = ""
    #: bgp mode: gateway node -> the lab speaker (``speakers:``) whose port, address
    #: and AS it takes: its external port and its BGP speaker sit on that link.
    gateways: dict[str, str] = msgspec.field(default_factory=dict)
    #: VMs given a floating IP (each of a tenant whose routers get the gateway).
    floating_ips: list[str] = msgspec.field(default_factory=list)


class _ApiSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: HOST:PORT of the API; port 0 is a free port chosen at run time.
    listen: str = "127.0.0.1:0"


class CloudSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``cloud:`` mapping as written."""

    #: The compute nodes.
    nodes: list[_NodeSpec]
    #: The nodes' tunnel network (IPv4); node N gets its host N.
    underlay: str = "198.51.100.0/24"
    #: MTU of the underlay (1280-9000).
    underlay_mtu: int = 1500
    #: Tenant MTU, 576-8950 and at most underlay_mtu - 50 (VXLAN) (default: that maximum).
    mtu: int | None = None
    #: The tenant server's API.
    api: _ApiSpec = msgspec.field(default_factory=_ApiSpec)
    #: What the lab creates through the API: networks, routers, VMs per tenant.
    tenants: list[_TenantSpec] = msgspec.field(default_factory=list)
    #: The external network on the routeflow fabric (SNAT, floating IPs, gateway nodes).
    external: _ExternalSpec | None = None


class CloudNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    index: int  # 1-based: the host number on the underlay
    tunnel_ip: str  # with prefix length, e.g. 198.51.100.1/24
    gateway: bool = False


class TenantNetwork(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    cidr: str
    gateway_ip: str  # the first host address (the router's interface)


class TenantRouter(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    networks: tuple[str, ...]


class TenantVm(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    network: str
    node: str
    ip: str | None = None  # None: the API's IPAM picks


class TenantLab(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    networks: tuple[TenantNetwork, ...]
    routers: tuple[TenantRouter, ...]
    vms: tuple[TenantVm, ...]


class ExternalLab(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    outside: str
    mode: str
    floating_ips: tuple[str, ...]
    pool: str = ""
    gateways: tuple[tuple[str, str], ...] = ()  # (gateway node, speaker), by node


class CloudLab(msgspec.Struct, frozen=True, kw_only=True):
    """A validated cloud section; every address derived."""

    nodes: tuple[CloudNode, ...]
    underlay: str
    underlay_mtu: int
    mtu: int
    api_listen: str
    tenants: tuple[TenantLab, ...]
    external: ExternalLab | None = None


def validate_cloud(spec: CloudSpec, err: Callable[[str, str], None]) -> CloudLab | None:
    """The validated section, or None after reporting each problem with ``err(path, msg)``."""
    problems = 0

    def bad(path: str, msg: str) -> None:
        nonlocal problems
        problems += 1
        err(path, msg)

    nodes = _nodes(spec, bad)
    mtu = _mtu(spec, bad)
    node_names = {n.name for n in nodes}
    tenants: list[TenantLab] = []
    seen_tenants: dict[str, int] = {}
    vm_names: dict[str, str] = {}
    for t_index, t in enumerate(spec.tenants):
        path = f"cloud.tenants[{t_index}]"
        if not NAME_RE.match(t.name):
            bad(f"{path}.name", f"{t.name!r} must be 1-32 of [A-Za-z0-9_.-]")
        if t.name in seen_tenants:
            first = seen_tenants[t.name]
            bad(f"{path}.name", f"duplicate tenant {t.name!r} (also tenants[{first}])")
        seen_tenants.setdefault(t.name, t_index)
        networks = _networks(t, path, bad)
        by_name = {n.name for n in networks}
        routers = []
        for r_index, r in enumerate(t.routers):
            rpath = f"{path}.routers[{r_index}]"
            if not NAME_RE.match(r.name):
                bad(f"{rpath}.name", f"{r.name!r} must be 1-32 of [A-Za-z0-9_.-]")
            for net in r.networks:
                if net not in by_name:
                    bad(f"{rpath}.networks", f"{net!r} is not a network of tenant {t.name!r}")
            if len(set(r.networks)) != len(r.networks):
                bad(f"{rpath}.networks", "names a network twice")
            routers.append(TenantRouter(name=r.name, networks=tuple(r.networks)))
        vms = []
        taken: dict[tuple[str, str], str] = {}
        for v_index, v in enumerate(t.vms):
            vpath = f"{path}.vms[{v_index}]"
            if not NODE_NAME_RE.match(v.name):
                bad(f"{vpath}.name", f"{v.name!r} must be 1-12 of [a-z0-9-] (a namespace name)")
            if v.name in vm_names:
                bad(f"{vpath}.name", f"duplicate VM {v.name!r} (also {vm_names[v.name]})")
            vm_names.setdefault(v.name, vpath)
            if v.network not in by_name:
                bad(f"{vpath}.network", f"{v.network!r} is not a network of tenant {t.name!r}")
            if v.node not in node_names:
                bad(f"{vpath}.node", f"{v.node!r} is not a node of the cloud")
            if v.ip is not None:
                _vm_ip(v, networks, taken, vpath, bad)
            vms.append(TenantVm(name=v.name, network=v.network, node=v.node, ip=v.ip))
        tenants.append(
            TenantLab(name=t.name, networks=tuple(networks), routers=tuple(routers), vms=tuple(vms))
        )
    external = None
    if spec.external is not None:
        x = spec.external
        gateway_nodes = [n.name for n in nodes if n.gateway]
        if x.mode not in ("connected", "bgp"):
            bad("cloud.external.mode", f"{x.mode!r}: 'connected' or 'bgp'")
        if not gateway_nodes:
            bad("cloud.nodes", "an external network needs a node with gateway: true")
        if x.mode == "connected":
            if not x.host:
                bad("cloud.external.host", "connected mode needs the external host")
            if x.host == x.outside:
                bad("cloud.external.outside", "must be another host than cloud.external.host")
            if x.pool or x.gateways:
                bad("cloud.external", "pool and gateways are for mode: bgp")
        if x.mode == "bgp":
            _bgp_external(x, gateway_nodes, bad)
        for i, vm in enumerate(x.floating_ips):
            if vm not in vm_names:
                bad(f"cloud.external.floating_ips[{i}]", f"{vm!r} is not a VM of the cloud")
        external = ExternalLab(
            host=x.host,
            outside=x.outside,
            mode=x.mode,
            floating_ips=tuple(x.floating_ips),
            pool=x.pool,
            gateways=tuple(sorted(x.gateways.items())),
        )
    if problems:
        return None
    return CloudLab(
        nodes=tuple(nodes),
        underlay=spec.underlay,
        underlay_mtu=spec.underlay_mtu,
        mtu=mtu,
        api_listen=spec.api.listen,
        tenants=tuple(tenants),
        external=external,
    )


def _bgp_external(
    x: _ExternalSpec, gateway_nodes: list[str], bad: Callable[[str, str], None]
) -> None:
    """bgp mode: an IPv4 pool with room, every gateway node on a speaker of its own."""
    if x.host:
        bad("cloud.external.host", "bgp mode has no external host (the pool is on-link nowhere)")
    try:
        pool = ipaddress.IPv4Network(x.pool)
        if not 8 <= pool.prefixlen <= 29:
            bad("cloud.external.pool", f"{x.pool!r}: a /8 to /29")
    except ValueError as exc:
        bad("cloud.external.pool", f"{x.pool!r} is not an IPv4 network ({exc})")
    for node in sorted(set(x.gateways) - set(gateway_nodes)):
        bad(f"cloud.external.gateways.{node}", "is not a node with gateway: true")
    for node in gateway_nodes:
        if node not in x.gateways:
            bad("cloud.external.gateways", f"gateway node {node!r} has no speaker")
    if len(set(x.gateways.values())) != len(x.gateways):
        bad("cloud.external.gateways", "two gateway nodes name the same speaker")


def uplink_address(subnet: str, taken: set[str]) -> str:
    """bgp mode: a gateway node's uplink address, the first host of the speaker's
    subnet that neither the speaker nor the VM holds."""
    for host in ipaddress.IPv4Network(subnet, strict=False).hosts():
        if str(host) not in taken:
            return str(host)
    raise ValueError(f"{subnet}: no address left for the uplink")


def _vm_ip(
    v: _VmSpec,
    networks: list[TenantNetwork],
    taken: dict[tuple[str, str], str],
    vpath: str,
    bad: Callable[[str, str], None],
) -> None:
    net = next((n for n in networks if n.name == v.network), None)
    try:
        ip = ipaddress.IPv4Address(v.ip)
    except ValueError:
        bad(f"{vpath}.ip", f"{v.ip!r} is not an IPv4 address")
        return
    if net is None:
        return
    cidr = ipaddress.IPv4Network(net.cidr)
    if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
        bad(f"{vpath}.ip", f"{ip} is not a host of {v.network} ({cidr})")
    elif str(ip) == net.gateway_ip:
        bad(f"{vpath}.ip", f"{ip} is the gateway (router interface) of {v.network}")
    elif (v.network, str(ip)) in taken:
        bad(f"{vpath}.ip", f"{ip} is also {taken[(v.network, str(ip))]}'s")
    else:
        taken[(v.network, str(ip))] = v.name


def _nodes(spec: CloudSpec, bad: Callable[[str, str], None]) -> list[CloudNode]:
    try:
        underlay = ipaddress.IPv4Network(spec.underlay)
    except ValueError as exc:
        bad("cloud.underlay", f"{spec.underlay!r} is not an IPv4 network: {exc}")
        return []
    if not spec.nodes:
        bad("cloud.nodes", "at least one node is required")
    if len(spec.nodes) > underlay.num_addresses - 2:
        bad("cloud.underlay", f"{underlay} has no room for {len(spec.nodes)} nodes")
        return []
    out: list[CloudNode] = []
    seen: dict[str, int] = {}
    for i, n in enumerate(spec.nodes):
        if not NODE_NAME_RE.match(n.name):
            bad(f"cloud.nodes[{i}].name", f"{n.name!r} must be 1-12 of [a-z0-9-]")
        if n.name in seen:
            bad(f"cloud.nodes[{i}].name", f"duplicate node {n.name!r} (also nodes[{seen[n.name]}])")
        seen.setdefault(n.name, i)
        ip = underlay.network_address + i + 1
        out.append(
            CloudNode(
                name=n.name, index=i + 1, tunnel_ip=f"{ip}/{underlay.prefixlen}", gateway=n.gateway
            )
        )
    return out


def _mtu(spec: CloudSpec, bad: Callable[[str, str], None]) -> int:
    if not 1280 <= spec.underlay_mtu <= 9000:
        bad("cloud.underlay_mtu", f"{spec.underlay_mtu} is out of range 1280-9000")
    ceiling = spec.underlay_mtu - VXLAN_OVERHEAD
    mtu = spec.mtu if spec.mtu is not None else ceiling
    if not 576 <= mtu <= 8950:
        bad("cloud.mtu", f"{mtu} is out of range 576-8950")
    elif mtu > ceiling:
        bad(
            "cloud.mtu",
            f"{mtu} does not fit the underlay: at most {ceiling} "
            f"(underlay_mtu {spec.underlay_mtu} - {VXLAN_OVERHEAD} for VXLAN)",
        )
    return mtu


def _networks(t: _TenantSpec, path: str, bad: Callable[[str, str], None]) -> list[TenantNetwork]:
    if not t.networks:
        bad(f"{path}.networks", "at least one network is required")
    out: list[TenantNetwork] = []
    seen: dict[str, int] = {}
    nets: list[tuple[ipaddress.IPv4Network, int]] = []
    for i, n in enumerate(t.networks):
        npath = f"{path}.networks[{i}]"
        if not NAME_RE.match(n.name):
            bad(f"{npath}.name", f"{n.name!r} must be 1-32 of [A-Za-z0-9_.-]")
        if n.name in seen:
            bad(f"{npath}.name", f"duplicate network {n.name!r} (also networks[{seen[n.name]}])")
        seen.setdefault(n.name, i)
        try:
            net = ipaddress.IPv4Network(n.cidr)
        except ValueError as exc:
            bad(f"{npath}.cidr", f"{n.cidr!r} is not an IPv4 network: {exc}")
            continue
        if net.prefixlen > 29:
            bad(f"{npath}.cidr", f"{net} is too small (at most /29)")
            continue
        for other, j in nets:
            if net.overlaps(other):
                bad(f"{npath}.cidr", f"{net} overlaps networks[{j}] ({other}) of the same tenant")
        nets.append((net, i))
        out.append(
            TenantNetwork(name=n.name, cidr=str(net), gateway_ip=str(net.network_address + 1))
        )
    return out


# --- planning a run (pure) ----------------------------------------------------------


class RunNames(msgspec.Struct, frozen=True, kw_only=True):
    """Every name a run creates on the host, unique per run ``tag``.

    Namespace names stay at most 14 bytes and begin with a per-object index, so the
    interface names lab/ovsnode.py derives from them (``u<ns>``, ``t<ns>``, cut at 15
    bytes) never collide, whatever the node and VM names are.
    """

    tag: str
    underlay: str
    nodes: dict[str, str]  # node name -> namespace
    vms: dict[str, str]  # VM name -> namespace


def run_names(cloud: CloudLab, tag: str) -> RunNames:
    if not re.fullmatch(r"[a-z0-9]{1,6}", tag):
        raise ValueError(f"run tag {tag!r}: 1-6 of [a-z0-9]")
    nodes = {n.name: f"n{n.index}-{tag}-{n.name}"[:14] for n in cloud.nodes}
    vms: dict[str, str] = {}
    for t in cloud.tenants:
        for vm in t.vms:
            vms[vm.name] = f"v{len(vms) + 1}-{tag}-{vm.name}"[:14]
    return RunNames(tag=tag, underlay=f"ul-{tag}", nodes=nodes, vms=vms)


def _vms(cloud: CloudLab) -> list[tuple[TenantLab, TenantVm]]:
    return [(t, vm) for t in cloud.tenants for vm in t.vms]


def same_network_pairs(cloud: CloudLab) -> list[tuple[str, str]]:
    """(source VM, destination VM): per network, its first VM to each VM of the
    network on another node."""
    out = []
    for t in cloud.tenants:
        for net in t.networks:
            vms = [vm for vm in t.vms if vm.network == net.name]
            out += [(vms[0].name, vm.name) for vm in vms[1:] if vm.node != vms[0].node]
    return out


def routed_pairs(cloud: CloudLab) -> list[tuple[str, str]]:
    """(source, destination) across a router and across nodes: per router and ordered
    pair of its networks, the first such VM pair."""
    out = []
    for t in cloud.tenants:
        for r in t.routers:
            for a in r.networks:
                for b in r.networks:
                    if a == b:
                        continue
                    pair = next(
                        (
                            (x.name, y.name)
                            for x in t.vms
                            if x.network == a
                            for y in t.vms
                            if y.network == b and y.node != x.node
                        ),
                        None,
                    )
                    if pair is not None:
                        out.append(pair)
    return out


def isolation_pairs(cloud: CloudLab, addresses: dict[str, str]) -> list[tuple[str, str]]:
    """(source VM, destination address) that must NOT answer: for each VM, the other
    tenants' VM addresses that no VM of its own tenant has (``addresses``: VM name ->
    IPv4 address as leased). Addresses both tenants use are checked by
    ``shared_address_pairs`` instead (the answer must come from the own tenant)."""
    out = []
    for t, vm in _vms(cloud):
        own = {addresses[v.name] for v in t.vms if v.name in addresses}
        targets = sorted(
            {
                addresses[v.name]
                for other, v in _vms(cloud)
                if other.name != t.name and v.name in addresses
            }
            - own
        )
        out += [(vm.name, ip) for ip in targets[:2]]
    return out


def shared_address_pairs(cloud: CloudLab, addresses: dict[str, str]) -> list[tuple[str, str, str]]:
    """(source VM, destination VM, the other tenant's VM with the same address): a ping
    to the address must reach the own tenant's VM (its MAC answers), never the other."""
    out = []
    for t, vm in _vms(cloud):
        for dst in t.vms:
            if dst.name == vm.name or dst.network != vm.network or dst.name not in addresses:
                continue
            twin = next(
                (
                    v.name
                    for other, v in _vms(cloud)
                    if other.name != t.name and addresses.get(v.name) == addresses[dst.name]
                ),
                None,
            )
            if twin is not None:
                out.append((vm.name, dst.name, twin))
    return out

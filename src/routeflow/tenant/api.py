"""The Neutron v2.0 subset real clients use (openstacksdk, the openstack CLI, tempest).

A FastAPI app over a `Repository`: JSON in, Neutron rules applied to the current
snapshot, one atomic commit out. Shapes, status codes and error bodies follow
neutron-lib's api-ref; only what is implemented is advertised in `/v2.0/extensions`
(clients probe aliases and change behaviour on a 200). Security groups are in
`tenant.api_secgroups`, floating IPs in `tenant.api_floatingips`. The Keystone v3 shim
lives in `tenant.identity`.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from routeflow.rflib.store import StoreError
from routeflow.tenant import ipam, openapi
from routeflow.tenant.api_secgroups import SecurityGroups, secgroup_routes
from routeflow.tenant.identity import Auth, Context, identity_routes
from routeflow.tenant.model import (
    DEVICE_DHCP,
    DEVICE_FLOATINGIP,
    DEVICE_ROUTER_GATEWAY,
    DEVICE_ROUTER_INTERFACE,
    KEY_MAX,
    VNI_MAX,
    VNI_MIN,
    AddressPair,
    AllocationPool,
    Cloud,
    ExternalFixedIP,
    FixedIP,
    GatewayInfo,
    HostRoute,
    Kind,
    Network,
    Port,
    Router,
    Subnet,
)
from routeflow.tenant.repo import Repository

EXTENSIONS = {
    "router": (
        "Neutron L3 Router",
        "Routers with interfaces and an external gateway; floating IPs (SNAT/DNAT on gateway "
        "nodes)",
    ),
    "external-net": ("Neutron external network", "router:external networks"),
    "ext-gw-mode": ("Neutron L3 Configurable external gateway mode", "enable_snat"),
    "extraroute": ("Neutron Extra Route", "Static routes on routers"),
    "binding": ("Port Binding", "binding:host_id and friends"),
    "net-mtu": ("Network MTU", "mtu on networks"),
    "port-security": ("Port Security", "port_security_enabled"),
    "security-group": ("security-group", "Stateful security groups and rules (conntrack)"),
    "allowed-address-pairs": ("Allowed Address Pairs", "allowed_address_pairs on ports"),
    "standard-attr-description": ("standard-attr-description", "description on resources"),
    "standard-attr-timestamp": ("Resource timestamps", "created_at and updated_at"),
    "standard-attr-revisions": ("Resource revision numbers", "revision_number"),
    "project-id": ("project_id field enabled", "project_id next to tenant_id"),
}
# Query parameters that are not attribute filters.
NOT_FILTERS = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse", "verbose"}
STANDARD = {"name", "description", "tenant_id", "project_id"}


class NeutronError(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def bad(message: str) -> NeutronError:
    return NeutronError(400, "BadRequest", message)


def not_found(kind: str, oid: str) -> NeutronError:
    name = {"network": "Network", "subnet": "Subnet", "port": "Port", "router": "Router"}.get(
        kind, kind.title()
    )
    return NeutronError(404, f"{name}NotFound", f"{name} {oid} could not be found.")


def conflict(kind: str, message: str) -> NeutronError:
    return NeutronError(409, kind, message)


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    body = {"NeutronError": {"type": kind, "message": message, "detail": ""}}
    return JSONResponse(body, status_code=status)


# --- input checking -------------------------------------------------------------------


def _str(body: dict, field: str, default: str = "", limit: int = 255) -> str:
    value = body.get(field, default)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid string.")
    if len(value) > limit:
        raise bad(f"Invalid input for {field}. Reason: longer than {limit} characters.")
    return value


def _bool(body: dict, field: str, default: bool) -> bool:
    value = body.get(field, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid boolean value.")


def _list(body: dict, field: str) -> list:
    value = body.get(field, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a list.")
    return value


def _only(body: dict, allowed: Iterable[str], resource: str) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise bad(f"Unrecognized attribute(s) '{', '.join(extra)}' for {resource}")


def _ip(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise bad(f"Invalid input for {field}. Reason: '{value}' is not a valid IP address.")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise bad(
            f"Invalid input for {field}. Reason: '{value}' is not a valid IP address."
        ) from None


def _uuid() -> str:
    return str(uuid.uuid4())


# --- views ------------------------------------------------------------------------------


def _std(obj: Any) -> dict:
    return {
        "id": obj.id,
        "name": obj.name,
        "tenant_id": obj.project_id,
        "project_id": obj.project_id,
        "description": obj.description,
        "tags": list(obj.tags),
        "created_at": obj.created_at,
        "updated_at": obj.updated_at,
        "revision_number": obj.revision_number,
    }


def network_view(n: Network, cloud: Cloud, admin: bool) -> dict:
    out = _std(n) | {
        "admin_state_up": n.admin_state_up,
        "status": "ACTIVE",
        "subnets": [s.id for s in cloud.subnets_of(n.id)],
        "shared": n.shared,
        "router:external": n.external,
        "mtu": n.mtu,
        "port_security_enabled": n.port_security_enabled,
        "availability_zone_hints": [],
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "is_default": False,
        "l2_adjacency": True,
    }
    if admin:
        out |= {
            "provider:network_type": "vxlan",
            "provider:physical_network": None,
            "provider:segmentation_id": n.segmentation_id,
        }
    return out


def subnet_view(s: Subnet) -> dict:
    return _std(s) | {
        "network_id": s.network_id,
        "ip_version": s.ip_version,
        "cidr": s.cidr,
        "gateway_ip": s.gateway_ip,
        "enable_dhcp": s.enable_dhcp,
        "allocation_pools": [{"start": p.start, "end": p.end} for p in s.allocation_pools],
        "dns_nameservers": list(s.dns_nameservers),
        "host_routes": [
            {"destination": r.destination, "nexthop": r.nexthop} for r in s.host_routes
        ],
        "ipv6_ra_mode": None,
        "ipv6_address_mode": None,
        "subnetpool_id": None,
        "segment_id": None,
        "service_types": [],
    }


def port_view(p: Port, admin: bool = True) -> dict:
    out = _std(p) | {
        "network_id": p.network_id,
        "mac_address": p.mac_address,
        "admin_state_up": p.admin_state_up,
        "status": p.status,
        "device_id": p.device_id,
        "device_owner": p.device_owner,
        "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in p.fixed_ips],
        "security_groups": list(p.security_groups),
        "allowed_address_pairs": [
            {"ip_address": a.ip_address, "mac_address": a.mac_address or p.mac_address}
            for a in p.allowed_address_pairs
        ],
        "extra_dhcp_opts": [],
        "port_security_enabled": p.port_security_enabled,
        "binding:vnic_type": "normal",
    }
    if admin:
        out |= {
            "binding:host_id": p.binding_host_id,
            "binding:vif_type": "ovs" if p.binding_host_id else "unbound",
            "binding:profile": {},
            "binding:vif_details": {},
        }
    return out


def router_view(r: Router) -> dict:
    gw = None
    if r.external_gateway_info is not None:
        g = r.external_gateway_info
        gw = {
            "network_id": g.network_id,
            "enable_snat": g.enable_snat,
            "external_fixed_ips": [
                {"subnet_id": f.subnet_id, "ip_address": f.ip_address} for f in g.external_fixed_ips
            ],
        }
    return _std(r) | {
        "admin_state_up": r.admin_state_up,
        "status": r.status,
        "external_gateway_info": gw,
        "routes": [{"destination": h.destination, "nexthop": h.nexthop} for h in r.routes],
        "distributed": True,
        "ha": False,
        "availability_zone_hints": [],
        "availability_zones": [],
        "flavor_id": None,
    }


# --- filters ------------------------------------------------------------------------------


def _matches(view: dict, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if key == "fixed_ips":
            pairs = [w.split("=", 1) for w in wanted]
            ips = view.get("fixed_ips", [])
            for pair in pairs:
                if len(pair) != 2 or not any(str(f.get(pair[0])) == pair[1] for f in ips):
                    return False
            continue
        if key not in view:
            continue  # Neutron ignores filters on unknown attributes
        value = view[key]
        if isinstance(value, bool):
            if not any(w.lower() == str(value).lower() for w in wanted):
                return False
        elif isinstance(value, list):
            if not any(w in map(str, value) for w in wanted):
                return False
        elif value is None:
            if not any(w in ("", "None", "null") for w in wanted):
                return False
        elif str(value) not in wanted:
            return False
    return True


def _fields(view: dict, fields: list[str]) -> dict:
    if not fields:
        return view
    return {k: v for k, v in view.items() if k in fields}


# --- the app --------------------------------------------------------------------------


class NeutronAPI:
    """The Neutron rules over one repository (no I/O of its own)."""

    def __init__(self, repo: Repository):
        self.repo = repo
        self.secgroups = SecurityGroups(self, repo.clock)
        from routeflow.tenant.api_floatingips import FloatingIPs  # (it imports this module)

        self.fips = FloatingIPs(self)

    @property
    def cloud(self) -> Cloud:
        return self.repo.snapshot()

    # Visibility and ownership.

    def _network_visible(self, n: Network, ctx: Context) -> bool:
        return ctx.admin or n.project_id == ctx.project_id or n.shared or n.external

    def _visible(self, kind: Kind, obj: Any, ctx: Context) -> bool:
        if ctx.admin or obj.project_id == ctx.project_id:
            return True
        if kind is Kind.NETWORK:
            return self._network_visible(obj, ctx)
        if kind is Kind.SUBNET:
            net = self.cloud.networks.get(obj.network_id)
            return net is not None and net.shared  # external subnets stay private
        return False

    def find(self, kind: Kind, oid: str, ctx: Context) -> Any:
        obj = self.cloud.table(kind).get(oid)
        if obj is None or not self._visible(kind, obj, ctx):
            raise not_found(str(kind), oid)
        return obj

    def owned(self, kind: Kind, oid: str, ctx: Context) -> Any:
        obj = self.find(kind, oid, ctx)
        if not ctx.admin and obj.project_id != ctx.project_id:
            raise not_found(str(kind), oid)
        return obj

    def view(self, kind: Kind, obj: Any, ctx: Context) -> dict:
        if kind is Kind.NETWORK:
            return network_view(obj, self.cloud, ctx.admin)
        if kind is Kind.SUBNET:
            return subnet_view(obj)
        if kind is Kind.PORT:
            return port_view(obj, ctx.admin)
        return router_view(obj)

    def listing(self, kind: Kind, ctx: Context, query: list[tuple[str, str]]) -> list[dict]:
        filters: dict[str, list[str]] = {}
        fields: list[str] = []
        for key, value in query:
            if key == "fields":
                fields.append(value)
            elif key not in NOT_FILTERS:
                filters.setdefault(key, []).append(value)
        out = []
        for obj in sorted(self.cloud.table(kind).values(), key=lambda o: (o.created_at, o.id)):
            if not self._visible(kind, obj, ctx):
                continue
            view = self.view(kind, obj, ctx)
            if _matches(view, filters):
                out.append(_fields(view, fields))
        return out

    def _project(self, body: dict, ctx: Context) -> str:
        tenant = body.get("project_id", body.get("tenant_id"))
        if tenant is None:
            return ctx.project_id
        if not isinstance(tenant, str):
            raise bad("Invalid input for project_id. Reason: not a string.")
        if tenant != ctx.project_id and not ctx.admin:
            raise NeutronError(
                403,
                "HTTPForbidden",
                "Specifying 'project_id' other than the "
                "authenticated project in request requires admin privileges",
            )
        return tenant

    # Networks.

    NETWORK_FIELDS = STANDARD | {
        "admin_state_up",
        "shared",
        "router:external",
        "mtu",
        "port_security_enabled",
        "availability_zone_hints",
        "provider:network_type",
        "provider:physical_network",
        "provider:segmentation_id",
        "dns_domain",
        "qos_policy_id",
        "is_default",
    }

    def _network_attrs(self, body: dict, ctx: Context, base: Network | None) -> dict:
        _only(body, self.NETWORK_FIELDS, "network")
        attrs: dict[str, Any] = {}
        if "name" in body or base is None:
            attrs["name"] = _str(body, "name")
        if "description" in body or base is None:
            attrs["description"] = _str(body, "description")
        for field, attr in (
            ("admin_state_up", "admin_state_up"),
            ("shared", "shared"),
            ("router:external", "external"),
            ("port_security_enabled", "port_security_enabled"),
        ):
            if field in body:
                attrs[attr] = _bool(body, field, False)
                if field in ("shared", "router:external") and not ctx.admin:
                    raise NeutronError(
                        403,
                        "PolicyNotAuthorized",
                        f"(rule:create_network:{field}) is disallowed by policy",
                    )
        if "mtu" in body:
            mtu = body["mtu"]
            if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 9000:
                raise bad(f"Invalid input for mtu. Reason: '{mtu}' is not in range 68..9000.")
            attrs["mtu"] = mtu
        return attrs

    def create_network(self, body: dict, ctx: Context) -> list[Any]:
        attrs = self._network_attrs(body, ctx, None)
        used = {n.segmentation_id for n in self.cloud.networks.values()}
        vni = ipam.lowest_free(used, VNI_MIN, VNI_MAX, "segmentation_id")
        return [
            Network(id=_uuid(), project_id=self._project(body, ctx), segmentation_id=vni, **attrs)
        ]

    def update_network(self, net: Network, body: dict, ctx: Context) -> list[Any]:
        attrs = self._network_attrs(body, ctx, net)
        if attrs.get("external") is False and net.external:
            for r in self.cloud.routers.values():
                if r.external_gateway_info and r.external_gateway_info.network_id == net.id:
                    raise conflict(
                        "NetworkInUse",
                        f"Unable to complete operation on network {net.id}. There are one or "
                        f"more ports still in use on the network.",
                    )
        return [msgspec.structs.replace(net, **attrs)]

    def delete_network(self, net: Network) -> tuple[list[Any], list[tuple[Kind, str]]]:
        ports = self.cloud.ports_of(net.id)
        # Unassociated floating IPs go with their network (Neutron's); associated ones hold it.
        fips = self.fips.on_network_delete(net)
        held = {p.id for p in ports if p.device_owner == DEVICE_FLOATINGIP and p.device_id in fips}
        if any(p.device_owner != DEVICE_DHCP and p.id not in held for p in ports):
            raise conflict(
                "NetworkInUse",
                f"Unable to complete operation on network {net.id}. There are one or more ports "
                f"still in use on the network.",
            )
        deletes = [(Kind.PORT, p.id) for p in ports]
        deletes += [(Kind.SUBNET, s.id) for s in self.cloud.subnets_of(net.id)]
        deletes += [(Kind.FLOATINGIP, fid) for fid in sorted(fips)]
        return [], [*deletes, (Kind.NETWORK, net.id)]

    # Subnets.

    SUBNET_FIELDS = STANDARD | {
        "network_id",
        "ip_version",
        "cidr",
        "gateway_ip",
        "enable_dhcp",
        "allocation_pools",
        "dns_nameservers",
        "host_routes",
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "subnetpool_id",
        "segment_id",
        "service_types",
        "prefixlen",
        "use_default_subnetpool",
    }

    def _pools(self, body: dict) -> list[AllocationPool]:
        pools = []
        for item in _list(body, "allocation_pools"):
            if not isinstance(item, dict) or set(item) != {"start", "end"}:
                raise bad(
                    "Invalid input for allocation_pools. Reason: each pool needs start and end."
                )
            pools.append(
                AllocationPool(
                    _ip(item["start"], "allocation_pools"), _ip(item["end"], "allocation_pools")
                )
            )
        return pools

    def _subnet_common(self, body: dict, version: int) -> dict:
        attrs: dict[str, Any] = {}
        if "name" in body:
            attrs["name"] = _str(body, "name")
        if "description" in body:
            attrs["description"] = _str(body, "description")
        if "enable_dhcp" in body:
            attrs["enable_dhcp"] = _bool(body, "enable_dhcp", True)
        if "dns_nameservers" in body:
            dns = [_ip(d, "dns_nameservers") for d in _list(body, "dns_nameservers")]
            if len(set(dns)) != len(dns):
                raise bad("Invalid input for dns_nameservers. Reason: duplicate nameserver.")
            attrs["dns_nameservers"] = tuple(dns)
        if "host_routes" in body:
            routes = []
            for item in _list(body, "host_routes"):
                if not isinstance(item, dict) or set(item) != {"destination", "nexthop"}:
                    raise bad(
                        "Invalid input for host_routes. Reason: each route needs destination "
                        "and nexthop."
                    )
                try:
                    dest = str(ipaddress.ip_network(item["destination"], strict=False))
                except (ValueError, TypeError):
                    raise bad(
                        f"Invalid input for host_routes. Reason: bad destination "
                        f"{item['destination']!r}."
                    ) from None
                routes.append(HostRoute(dest, _ip(item["nexthop"], "host_routes")))
            attrs["host_routes"] = tuple(routes)
        return attrs

    def create_subnet(self, body: dict, ctx: Context) -> list[Any]:
        _only(body, self.SUBNET_FIELDS, "subnet")
        network_id = body.get("network_id")
        if not isinstance(network_id, str):
            raise bad("Invalid input for network_id. Reason: 'network_id' is required.")
        net = self.find(Kind.NETWORK, network_id, ctx)
        if not ctx.admin and net.project_id != ctx.project_id and not net.shared:
            raise not_found("network", network_id)
        version = body.get("ip_version", 4)
        if version not in (4, 6):
            raise bad(f"Invalid input for ip_version. Reason: {version!r} is not in [4, 6].")
        cidr = body.get("cidr")
        if not isinstance(cidr, str):
            raise bad("Invalid input for cidr. Reason: 'cidr' is required.")
        try:
            cnet = ipam.parse_cidr(cidr, version)
        except ipam.IpamError as err:
            raise bad(f"Invalid input for cidr. Reason: {err}") from None
        if (version == 4 and cnet.prefixlen > 30) or cnet.prefixlen == 0:
            raise bad(f"Invalid input for cidr. Reason: {cidr} is too small or too large.")
        for other in self.cloud.subnets_of(net.id):
            if ipaddress.ip_network(other.cidr).overlaps(cnet):
                raise bad(
                    f"Invalid input for cidr. Reason: Requested subnet with cidr: {cidr} for "
                    f"network: {net.id} overlaps with another subnet ({other.id})."
                )
        if "gateway_ip" not in body:
            gateway: str | None = ipam.default_gateway(cnet)
        elif body["gateway_ip"] is None:
            gateway = None
        else:
            try:
                gateway = ipam.check_gateway(cnet, _ip(body["gateway_ip"], "gateway_ip"))
            except ipam.IpamError as err:
                raise bad(f"Invalid input for gateway_ip. Reason: {err}") from None
        if body.get("allocation_pools"):
            pools = self._pools(body)
            try:
                pools_t = ipam.check_pools(cnet, pools, gateway)
            except ipam.IpamError as err:
                raise bad(f"Invalid input for {err.field}. Reason: {err}") from None
        else:
            pools_t = ipam.default_pools(cnet, gateway)
        attrs = self._subnet_common(body, version)
        return [
            Subnet(
                id=_uuid(),
                project_id=self._project(body, ctx),
                network_id=net.id,
                ip_version=version,
                cidr=str(cnet),
                gateway_ip=gateway,
                allocation_pools=pools_t,
                **attrs,
            )
        ]

    def update_subnet(self, sub: Subnet, body: dict, ctx: Context) -> list[Any]:
        allowed = STANDARD | {
            "gateway_ip",
            "enable_dhcp",
            "allocation_pools",
            "dns_nameservers",
            "host_routes",
            "service_types",
        }
        _only(body, allowed, "subnet")
        attrs = self._subnet_common(body, sub.ip_version)
        cnet = ipaddress.ip_network(sub.cidr)
        gateway = sub.gateway_ip
        if "gateway_ip" in body:
            if body["gateway_ip"] is None:
                gateway = None
            else:
                try:
                    gateway = ipam.check_gateway(cnet, _ip(body["gateway_ip"], "gateway_ip"))
                except ipam.IpamError as err:
                    raise bad(f"Invalid input for gateway_ip. Reason: {err}") from None
            attrs["gateway_ip"] = gateway
        pools = list(sub.allocation_pools)
        if "allocation_pools" in body:
            pools = self._pools(body)
        try:
            attrs["allocation_pools"] = ipam.check_pools(cnet, pools, gateway)
        except ipam.IpamError as err:
            raise bad(f"Invalid input for {err.field}. Reason: {err}") from None
        return [msgspec.structs.replace(sub, **attrs)]

    def delete_subnet(self, sub: Subnet) -> tuple[list[Any], list[tuple[Kind, str]]]:
        puts = []
        for p in self.cloud.ports.values():
            if any(f.subnet_id == sub.id for f in p.fixed_ips):
                if p.device_owner != DEVICE_DHCP:
                    raise conflict(
                        "SubnetInUse",
                        f"Unable to complete operation on subnet {sub.id}: One or more ports "
                        f"have an IP allocation from this subnet.",
                    )
                puts.append(
                    msgspec.structs.replace(
                        p, fixed_ips=tuple(f for f in p.fixed_ips if f.subnet_id != sub.id)
                    )
                )
        return puts, [(Kind.SUBNET, sub.id)]

    # Ports.

    PORT_FIELDS = STANDARD | {
        "network_id",
        "mac_address",
        "fixed_ips",
        "admin_state_up",
        "device_id",
        "device_owner",
        "binding:host_id",
        "binding:vnic_type",
        "binding:profile",
        "security_groups",
        "port_security_enabled",
        "allowed_address_pairs",
        "extra_dhcp_opts",
        "status",
        "qos_policy_id",
        "propagate_uplink_status",
        "dns_name",
    }

    def _used_ips(self, subnet_id: str, skip_port: str = "") -> set[str]:
        used = {
            f.ip_address
            for p in self.cloud.ports.values()
            if p.id != skip_port
            for f in p.fixed_ips
            if f.subnet_id == subnet_id
        }
        sub = self.cloud.subnets.get(subnet_id)
        if sub is not None and sub.gateway_ip:
            used.add(sub.gateway_ip)
        return used

    def allocate_fixed_ips(
        self, net: Network, requested: list | None, port_id: str = ""
    ) -> tuple[FixedIP, ...]:
        subnets = self.cloud.subnets_of(net.id)
        out: list[FixedIP] = []
        if requested is None:
            for first in subnets[:1]:
                addr = ipam.allocate_ip(
                    first.cidr, first.allocation_pools, self._used_ips(first.id, port_id)
                )
                out.append(FixedIP(first.id, addr))
            return tuple(out)
        for item in requested:
            if (
                not isinstance(item, dict)
                or not set(item) <= {"subnet_id", "ip_address"}
                or not item
            ):
                raise bad(
                    "Invalid input for fixed_ips. Reason: each entry takes subnet_id and/or "
                    "ip_address."
                )
            sub_id = item.get("subnet_id")
            ip = None if item.get("ip_address") is None else _ip(item["ip_address"], "fixed_ips")
            if sub_id is not None:
                found = self.cloud.subnets.get(sub_id) if isinstance(sub_id, str) else None
                if found is None:
                    raise not_found("subnet", str(sub_id))
                sub = found
                if sub.network_id != net.id:
                    raise bad(
                        f"Invalid input for operation: Failed to create port on network "
                        f"{net.id}, because fixed_ips included invalid subnet {sub_id}."
                    )
            else:
                if ip is None:
                    raise bad(
                        "Invalid input for fixed_ips. Reason: subnet_id or ip_address needed."
                    )
                match = [
                    s for s in subnets if ipaddress.ip_address(ip) in ipaddress.ip_network(s.cidr)
                ]
                if not match:
                    raise bad(
                        f"Invalid input for fixed_ips. Reason: no subnet of network {net.id} "
                        f"contains {ip}."
                    )
                sub = match[0]
            used = self._used_ips(sub.id, port_id) | {
                f.ip_address for f in out if f.subnet_id == sub.id
            }
            if ip is not None and ip == sub.gateway_ip:
                used.discard(ip)  # router interfaces take the gateway
                if any(
                    f.ip_address == ip
                    for p in self.cloud.ports.values()
                    if p.id != port_id
                    for f in p.fixed_ips
                    if f.subnet_id == sub.id
                ):
                    used.add(ip)
            try:
                addr = ipam.allocate_ip(sub.cidr, sub.allocation_pools, used, requested=ip)
            except ipam.IpAddressInUse as err:
                raise conflict(
                    "IpAddressInUse",
                    f"Unable to complete operation for network {net.id}. The IP address {ip} is "
                    f"in use.",
                ) from err
            except ipam.Exhausted as err:
                raise conflict(
                    "IpAddressGenerationFailure",
                    f"No more IP addresses available on network {net.id}.",
                ) from err
            except ipam.IpamError as err:
                raise bad(f"Invalid input for fixed_ips. Reason: {err}") from None
            out.append(FixedIP(sub.id, addr))
        return tuple(out)

    def _pairs(self, body: dict) -> tuple[AddressPair, ...]:
        pairs = []
        for item in _list(body, "allowed_address_pairs"):
            if not isinstance(item, dict) or "ip_address" not in item:
                raise bad(
                    "Invalid input for allowed_address_pairs. Reason: ip_address is required."
                )
            ip = item["ip_address"]
            try:
                ip = (
                    str(ipaddress.ip_network(ip, strict=False))
                    if "/" in str(ip)
                    else _ip(ip, "allowed_address_pairs")
                )
            except ValueError:
                raise bad(
                    f"Invalid input for allowed_address_pairs. Reason: bad ip_address {ip!r}."
                ) from None
            mac = item.get("mac_address")
            if mac is not None:
                try:
                    mac = ipam.check_mac(mac)
                except ipam.IpamError as err:
                    raise bad(f"Invalid input for allowed_address_pairs. Reason: {err}") from None
            pairs.append(AddressPair(ip, mac))
        return tuple(pairs)

    def _port_attrs(self, body: dict, ctx: Context) -> dict:
        attrs: dict[str, Any] = {}
        for field in ("name", "description", "device_id", "device_owner"):
            if field in body:
                attrs[field] = _str(body, field)
        if "binding:host_id" in body:
            attrs["binding_host_id"] = _str(body, "binding:host_id")
        for field in ("admin_state_up", "port_security_enabled"):
            if field in body:
                attrs[field] = _bool(body, field, True)
        if "allowed_address_pairs" in body:
            attrs["allowed_address_pairs"] = self._pairs(body)
        return attrs

    def _port_groups(
        self, body: dict, ctx: Context, project: str, attrs: dict, base: Port | None
    ) -> None:
        """Set ``attrs["security_groups"]`` by Neutron's rules (tenant.api_secgroups)."""
        security = attrs.get(
            "port_security_enabled", base.port_security_enabled if base is not None else True
        )
        owner = attrs.get("device_owner", base.device_owner if base is not None else "")
        attrs["security_groups"] = self.secgroups.port_groups(
            body, ctx, project, security, owner, base, self.repo
        )

    def create_port(self, body: dict, ctx: Context) -> list[Any]:
        _only(body, self.PORT_FIELDS, "port")
        network_id = body.get("network_id")
        if not isinstance(network_id, str):
            raise bad("Invalid input for network_id. Reason: 'network_id' is required.")
        net = self.find(Kind.NETWORK, network_id, ctx)
        attrs = self._port_attrs(body, ctx)
        attrs.setdefault("port_security_enabled", net.port_security_enabled)
        used_macs = {p.mac_address for p in self.cloud.ports.values()}
        if "mac_address" in body:
            try:
                mac = ipam.check_mac(body["mac_address"])
            except ipam.IpamError as err:
                raise bad(f"Invalid input for mac_address. Reason: {err}") from None
            if any(p.mac_address == mac for p in self.cloud.ports_of(net.id)):
                raise conflict(
                    "MacAddressInUse",
                    f"Unable to complete operation for network {net.id}. The mac address {mac} "
                    f"is in use.",
                )
        else:
            mac = ipam.allocate_mac(self.cloud.revision + 1, used_macs)
        fixed = body.get("fixed_ips")
        if fixed is not None and not isinstance(fixed, list):
            raise bad("Invalid input for fixed_ips. Reason: not a list.")
        ips = self.allocate_fixed_ips(net, fixed)
        project = self._project(body, ctx)
        self._port_groups(body, ctx, project, attrs, None)
        key = ipam.lowest_free({p.key for p in self.cloud.ports.values()}, 1, KEY_MAX, "port key")
        return [
            Port(
                id=_uuid(),
                project_id=project,
                network_id=net.id,
                mac_address=mac,
                fixed_ips=ips,
                key=key,
                **attrs,
            )
        ]

    def update_port(self, port: Port, body: dict, ctx: Context) -> list[Any]:
        allowed = self.PORT_FIELDS - {"network_id", "tenant_id", "project_id"}
        _only(body, allowed, "port")
        attrs = self._port_attrs(body, ctx)
        self._port_groups(body, ctx, port.project_id, attrs, port)
        if "mac_address" in body:
            try:
                mac = ipam.check_mac(body["mac_address"])
            except ipam.IpamError as err:
                raise bad(f"Invalid input for mac_address. Reason: {err}") from None
            if any(
                p.mac_address == mac and p.id != port.id
                for p in self.cloud.ports_of(port.network_id)
            ):
                raise conflict("MacAddressInUse", f"The mac address {mac} is in use.")
            attrs["mac_address"] = mac
        if "fixed_ips" in body:
            fixed = body["fixed_ips"]
            if not isinstance(fixed, list):
                raise bad("Invalid input for fixed_ips. Reason: not a list.")
            net = self.cloud.networks[port.network_id]
            attrs["fixed_ips"] = self.allocate_fixed_ips(net, fixed, port.id)
        return [msgspec.structs.replace(port, **attrs)]

    def delete_port(self, port: Port, ctx: Context) -> tuple[list[Any], list[tuple[Kind, str]]]:
        if (
            port.device_owner in (DEVICE_ROUTER_INTERFACE, DEVICE_ROUTER_GATEWAY)
            and port.device_id in self.cloud.routers
        ):
            raise conflict(
                "L3PortInUse",
                f"Port {port.id} cannot be deleted directly via the port API: has device owner "
                f"{port.device_owner}.",
            )
        return self.fips.on_port_delete(port), [(Kind.PORT, port.id)]

    # Routers.

    ROUTER_FIELDS = STANDARD | {
        "admin_state_up",
        "external_gateway_info",
        "routes",
        "distributed",
        "ha",
        "availability_zone_hints",
        "flavor_id",
        "enable_ndp_proxy",
    }

    def _gateway(
        self, router: Router, info: object, ctx: Context
    ) -> tuple[GatewayInfo | None, list[Any], list[tuple[Kind, str]]]:
        """The router's new gateway info and the gateway port writes it needs."""
        old_ports = [
            p
            for p in self.cloud.ports.values()
            if p.device_owner == DEVICE_ROUTER_GATEWAY and p.device_id == router.id
        ]
        deletes = [(Kind.PORT, p.id) for p in old_ports]
        if info is None or info == {}:
            if router.external_gateway_info is not None:
                self.fips.check_gateway_clear(router)
            return None, [], deletes
        if not isinstance(info, dict) or not set(info) <= {
            "network_id",
            "enable_snat",
            "external_fixed_ips",
        }:
            raise bad("Invalid input for external_gateway_info. Reason: unexpected attributes.")
        network_id = info.get("network_id")
        if not isinstance(network_id, str):
            raise bad("Invalid input for external_gateway_info. Reason: network_id is required.")
        net = self.cloud.networks.get(network_id)
        if net is None:
            raise not_found("network", network_id)
        if not net.external:
            raise bad(f"Bad router request: Network {network_id} is not an external network.")
        enable_snat = _bool(info, "enable_snat", True)
        if "enable_snat" in info and not ctx.admin and enable_snat is False:
            pass
        requested = info.get("external_fixed_ips")
        if requested is not None and not isinstance(requested, list):
            raise bad("Invalid input for external_fixed_ips. Reason: not a list.")
        same = old_ports and old_ports[0].network_id == network_id and requested is None
        if old_ports and old_ports[0].network_id != network_id:
            self.fips.check_gateway_clear(router)
        if same:
            port = old_ports[0]
            return (
                GatewayInfo(
                    network_id=network_id,
                    enable_snat=enable_snat,
                    external_fixed_ips=tuple(
                        ExternalFixedIP(f.subnet_id, f.ip_address) for f in port.fixed_ips
                    ),
                ),
                [],
                [],
            )
        port_id = _uuid()
        ips = self.allocate_fixed_ips(net, requested, port_id)
        if not ips:
            raise bad(f"Bad router request: no subnet on external network {network_id}.")
        key = ipam.lowest_free({p.key for p in self.cloud.ports.values()}, 1, KEY_MAX, "port key")
        used_macs = {p.mac_address for p in self.cloud.ports.values()}
        port = Port(
            id=port_id,
            network_id=network_id,
            device_owner=DEVICE_ROUTER_GATEWAY,
            device_id=router.id,
            mac_address=ipam.allocate_mac(self.cloud.revision + 7, used_macs),
            fixed_ips=ips,
            key=key,
            status="ACTIVE",
        )
        info_out = GatewayInfo(
            network_id=network_id,
            enable_snat=enable_snat,
            external_fixed_ips=tuple(ExternalFixedIP(f.subnet_id, f.ip_address) for f in ips),
        )
        return info_out, [port], deletes

    def _routes(self, body: dict) -> tuple[HostRoute, ...]:
        routes = []
        for item in _list(body, "routes"):
            if not isinstance(item, dict) or set(item) != {"destination", "nexthop"}:
                raise bad(
                    "Invalid input for routes. Reason: each route needs destination and nexthop."
                )
            try:
                dest = str(ipaddress.ip_network(item["destination"], strict=False))
            except (ValueError, TypeError):
                raise bad(
                    f"Invalid input for routes. Reason: bad destination {item['destination']!r}."
                ) from None
            routes.append(HostRoute(dest, _ip(item["nexthop"], "routes")))
        return tuple(routes)

    def create_router(self, body: dict, ctx: Context) -> list[Any]:
        _only(body, self.ROUTER_FIELDS, "router")
        attrs: dict[str, Any] = {
            "name": _str(body, "name"),
            "description": _str(body, "description"),
        }
        if "admin_state_up" in body:
            attrs["admin_state_up"] = _bool(body, "admin_state_up", True)
        key = ipam.lowest_free(
            {r.key for r in self.cloud.routers.values()}, 1, KEY_MAX, "router key"
        )
        router = Router(id=_uuid(), project_id=self._project(body, ctx), key=key, **attrs)
        gw, puts, _ = self._gateway(router, body.get("external_gateway_info"), ctx)
        return [msgspec.structs.replace(router, external_gateway_info=gw), *puts]

    def update_router(
        self, router: Router, body: dict, ctx: Context
    ) -> tuple[list[Any], list[tuple[Kind, str]]]:
        _only(body, self.ROUTER_FIELDS - {"tenant_id", "project_id"}, "router")
        attrs: dict[str, Any] = {}
        for field in ("name", "description"):
            if field in body:
                attrs[field] = _str(body, field)
        if "admin_state_up" in body:
            attrs["admin_state_up"] = _bool(body, "admin_state_up", True)
        if "routes" in body:
            routes = self._routes(body)
            cidrs = [
                ipaddress.ip_network(self.cloud.subnets[f.subnet_id].cidr)
                for p in self.cloud.router_interfaces(router.id)
                for f in p.fixed_ips
                if f.subnet_id in self.cloud.subnets
            ]
            for r in routes:
                if not any(ipaddress.ip_address(r.nexthop) in c for c in cidrs):
                    raise bad(
                        f"Invalid format for routes: the nexthop {r.nexthop} is not connected "
                        f"with router"
                    )
            attrs["routes"] = routes
        puts: list[Any] = []
        deletes: list[tuple[Kind, str]] = []
        if "external_gateway_info" in body:
            gw, puts, deletes = self._gateway(router, body["external_gateway_info"], ctx)
            attrs["external_gateway_info"] = gw
        return [msgspec.structs.replace(router, **attrs), *puts], deletes

    def delete_router(self, router: Router) -> tuple[list[Any], list[tuple[Kind, str]]]:
        if self.cloud.router_interfaces(router.id):
            raise conflict("RouterInUse", f"Router {router.id} still has ports")
        gw = [
            (Kind.PORT, p.id)
            for p in self.cloud.ports.values()
            if p.device_owner == DEVICE_ROUTER_GATEWAY and p.device_id == router.id
        ]
        return [], [*gw, (Kind.ROUTER, router.id)]

    def _interface_body(self, body: dict) -> tuple[str | None, str | None]:
        if not isinstance(body, dict):
            raise bad("Bad request: the body must be a JSON object.")
        subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
        if (subnet_id is None) == (port_id is None):
            raise bad(
                "Bad router request: Either subnet_id or port_id must be specified (not both)."
            )
        for name, value in (("subnet_id", subnet_id), ("port_id", port_id)):
            if value is not None and not isinstance(value, str):
                raise bad(f"Invalid input for {name}. Reason: not a string.")
        return subnet_id, port_id

    def _check_overlap(self, router: Router, sub: Subnet) -> None:
        for p in self.cloud.router_interfaces(router.id):
            for f in p.fixed_ips:
                other = self.cloud.subnets.get(f.subnet_id)
                if other is None:
                    continue
                if other.id == sub.id:
                    raise bad(f"Bad router request: Router already has a port on subnet {sub.id}.")
                if ipaddress.ip_network(other.cidr).overlaps(ipaddress.ip_network(sub.cidr)):
                    raise bad(
                        f"Bad router request: Cidr {sub.cidr} of subnet {sub.id} overlaps with "
                        f"cidr {other.cidr} of subnet {other.id}."
                    )

    def add_interface(self, router: Router, body: dict, ctx: Context) -> tuple[list[Any], dict]:
        subnet_id, port_id = self._interface_body(body)
        if subnet_id is not None:
            sub = self.find(Kind.SUBNET, subnet_id, ctx)
            if not sub.gateway_ip:
                raise bad("Bad router request: Subnet for router interface must have a gateway IP.")
            self._check_overlap(router, sub)
            if any(
                f.ip_address == sub.gateway_ip and f.subnet_id == sub.id
                for p in self.cloud.ports.values()
                for f in p.fixed_ips
            ):
                raise conflict(
                    "IpAddressInUse",
                    f"IP address {sub.gateway_ip} already allocated in subnet {sub.id}",
                )
            key = ipam.lowest_free(
                {p.key for p in self.cloud.ports.values()}, 1, KEY_MAX, "port key"
            )
            used_macs = {p.mac_address for p in self.cloud.ports.values()}
            port = Port(
                id=_uuid(),
                project_id=router.project_id,
                network_id=sub.network_id,
                mac_address=ipam.allocate_mac(self.cloud.revision + 3, used_macs),
                fixed_ips=(FixedIP(sub.id, sub.gateway_ip),),
                device_owner=DEVICE_ROUTER_INTERFACE,
                device_id=router.id,
                key=key,
                status="ACTIVE",
            )
        else:
            assert port_id is not None
            old = self.find(Kind.PORT, port_id, ctx)
            if old.device_id or old.device_owner:
                raise conflict(
                    "PortInUse",
                    f"Unable to complete operation on port {port_id} for network "
                    f"{old.network_id}. Port already has an attached device {old.device_id}.",
                )
            if len(old.fixed_ips) != 1:
                raise bad("Bad router request: Router port must have exactly one fixed IP.")
            sub = self.cloud.subnets[old.fixed_ips[0].subnet_id]
            self._check_overlap(router, sub)
            port = msgspec.structs.replace(
                old, device_owner=DEVICE_ROUTER_INTERFACE, device_id=router.id, status="ACTIVE"
            )
        info = {
            "id": router.id,
            "tenant_id": router.project_id,
            "project_id": router.project_id,
            "port_id": port.id,
            "network_id": port.network_id,
            "subnet_id": sub.id,
            "subnet_ids": [sub.id],
        }
        return [port], info

    def remove_interface(
        self, router: Router, body: dict, ctx: Context
    ) -> tuple[list[tuple[Kind, str]], dict]:
        subnet_id, port_id = self._interface_body(body)
        ports = self.cloud.router_interfaces(router.id)
        if port_id is not None:
            match = [p for p in ports if p.id == port_id]
            if not match:
                raise NeutronError(
                    404,
                    "RouterInterfaceNotFound",
                    f"Router {router.id} does not have an interface with id {port_id}",
                )
            if subnet_id is not None and not any(
                f.subnet_id == subnet_id for f in match[0].fixed_ips
            ):
                raise conflict(
                    "SubnetMismatchForPort", f"Subnet {subnet_id} is not on port {port_id}"
                )
        else:
            self.find(Kind.SUBNET, str(subnet_id), ctx)
            match = [p for p in ports if any(f.subnet_id == subnet_id for f in p.fixed_ips)]
            if not match:
                raise NeutronError(
                    404,
                    "RouterInterfaceNotFoundForSubnet",
                    f"Router {router.id} has no interface on subnet {subnet_id}",
                )
        port = match[0]
        self.fips.check_interface_removal(router, port)
        sub_ids = [f.subnet_id for f in port.fixed_ips]
        for route in router.routes:
            for sid in sub_ids:
                sub = self.cloud.subnets.get(sid)
                if sub and ipaddress.ip_address(route.nexthop) in ipaddress.ip_network(sub.cidr):
                    raise conflict(
                        "RouterInterfaceInUseByRoute",
                        f"Router interface for subnet {sid} on router {router.id} cannot be "
                        f"deleted, as it is required by one or more routes.",
                    )
        info = {
            "id": router.id,
            "tenant_id": router.project_id,
            "project_id": router.project_id,
            "port_id": port.id,
            "network_id": port.network_id,
            "subnet_id": sub_ids[0] if sub_ids else None,
            "subnet_ids": sub_ids,
        }
        return [(Kind.PORT, port.id)], info


COLLECTIONS: dict[str, tuple[Kind, str]] = {
    "networks": (Kind.NETWORK, "network"),
    "subnets": (Kind.SUBNET, "subnet"),
    "ports": (Kind.PORT, "port"),
    "routers": (Kind.ROUTER, "router"),
}


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("Malformed request body: not JSON.") from None


def _resource_body(body: Any, singular: str) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get(singular), dict):
        raise bad(f'Resource body required: expected {{"{singular}": {{...}}}}.')
    return body[singular]


def create_app(repo: Repository, auth: Auth | None = None) -> FastAPI:
    """The tenant API app: Neutron v2.0 at `/`, the identity shim at `/identity/v3`."""
    auth = auth or Auth()
    api = NeutronAPI(repo)
    app = FastAPI(title="routeflow tenant API (Neutron v2.0 subset)", version="2.0")
    app.state.api = api
    app.state.auth = auth

    @app.exception_handler(NeutronError)
    async def _neutron_error(request: Request, exc: NeutronError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.message)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        # Not stored, so not acknowledged: etcd unreachable, or this server was deposed.
        response = error_response(503, "ServiceUnavailable", f"Change not stored: {exc}")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The router's own answers (unknown path, method not allowed) in Neutron's shape.
        kind = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, kind, str(exc.detail))

    @app.middleware("http")
    async def _authenticate(request: Request, call_next: Callable) -> Any:
        path = request.url.path.rstrip("/")
        if path.startswith("/identity") or (path == "" and request.method == "GET"):
            return await call_next(request)
        if path in ("/openapi.json", "/docs"):
            return await call_next(request)
        ctx = auth.context(request.headers.get("x-auth-token"))
        if ctx is None:
            return error_response(401, "HTTPUnauthorized", "Authentication required")
        request.state.ctx = ctx
        try:
            return await call_next(request)
        except NeutronError as exc:
            return error_response(exc.status, exc.kind, exc.message)

    identity_routes(app, auth)
    api.secgroups = secgroup_routes(app, api, repo)
    from routeflow.tenant.api_floatingips import floatingip_routes

    api.fips = floatingip_routes(app, api, repo)

    @app.get("/")
    async def versions(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        return {
            "versions": [
                {
                    "id": "v2.0",
                    "status": "CURRENT",
                    "links": [{"href": f"{base}/v2.0/", "rel": "self"}],
                }
            ]
        }

    @app.get("/v2.0")
    async def version(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        return {
            "resources": [
                {"name": s, "collection": c, "links": [{"href": f"{base}/v2.0/{c}", "rel": "self"}]}
                for c, (_k, s) in [*COLLECTIONS.items(), ("floatingips", (None, "floatingip"))]
            ]
        }

    def _ext(alias: str) -> dict:
        name, description = EXTENSIONS[alias]
        return {
            "alias": alias,
            "name": name,
            "description": description,
            "links": [],
            "updated": "2026-12-05T00:00:00-00:00",
        }

    @app.get("/v2.0/extensions")
    async def extensions() -> dict:
        return {"extensions": [_ext(a) for a in EXTENSIONS]}

    @app.get("/v2.0/extensions/{alias}")
    async def extension(alias: str) -> dict:
        if alias not in EXTENSIONS:
            raise NeutronError(
                404, "ExtensionNotFound", f"Extension with alias {alias} does not exist"
            )
        return {"extension": _ext(alias)}

    def _collection(coll: str) -> tuple[Kind, str]:
        if coll not in COLLECTIONS:
            raise NeutronError(404, "HTTPNotFound", f"The resource could not be found: {coll}")
        return COLLECTIONS[coll]

    @app.get("/v2.0/{coll}")
    async def list_(coll: str, request: Request) -> dict:
        kind, _s = _collection(coll)
        return {
            coll: api.listing(kind, request.state.ctx, list(request.query_params.multi_items()))
        }

    @app.get("/v2.0/{coll}/{oid}")
    async def show(coll: str, oid: str, request: Request) -> dict:
        kind, singular = _collection(coll)
        view = api.view(kind, api.find(kind, oid, request.state.ctx), request.state.ctx)
        fields = request.query_params.getlist("fields")
        return {singular: _fields(view, fields)}

    def _create_one(kind: Kind, body: dict, ctx: Context) -> list[Any]:
        if kind is Kind.NETWORK:
            return api.create_network(body, ctx)
        if kind is Kind.SUBNET:
            return api.create_subnet(body, ctx)
        if kind is Kind.PORT:
            return api.create_port(body, ctx)
        return api.create_router(body, ctx)

    @app.post("/v2.0/{coll}", status_code=201)
    async def create(coll: str, request: Request) -> dict:
        kind, singular = _collection(coll)
        ctx = request.state.ctx
        body = await _body(request)
        if isinstance(body, dict) and isinstance(body.get(coll), list):
            items = body[coll]
            created = []
            for item in items:  # one commit per item: later items see earlier ones
                if not isinstance(item, dict):
                    raise bad(f"Invalid bulk {coll} body.")
                puts = _create_one(kind, item, ctx)
                repo.commit(puts)
                created.append(puts[0].id)
            return {coll: [api.view(kind, repo.get(kind, oid), ctx) for oid in created]}
        puts = _create_one(kind, _resource_body(body, singular), ctx)
        repo.commit(puts)
        return {singular: api.view(kind, repo.get(kind, puts[0].id), ctx)}

    @app.put("/v2.0/{coll}/{oid}")
    async def update(coll: str, oid: str, request: Request) -> dict:
        kind, singular = _collection(coll)
        ctx = request.state.ctx
        obj = api.owned(kind, oid, ctx)
        body = _resource_body(await _body(request), singular)
        deletes: list[tuple[Kind, str]] = []
        if kind is Kind.NETWORK:
            puts = api.update_network(obj, body, ctx)
        elif kind is Kind.SUBNET:
            puts = api.update_subnet(obj, body, ctx)
        elif kind is Kind.PORT:
            puts = api.update_port(obj, body, ctx)
        else:
            puts, deletes = api.update_router(obj, body, ctx)
        repo.commit(puts, deletes)
        return {singular: api.view(kind, repo.get(kind, oid), ctx)}

    @app.delete("/v2.0/{coll}/{oid}", status_code=204)
    async def delete(coll: str, oid: str, request: Request) -> Response:
        kind, _s = _collection(coll)
        ctx = request.state.ctx
        obj = api.owned(kind, oid, ctx)
        if kind is Kind.NETWORK:
            puts, deletes = api.delete_network(obj)
        elif kind is Kind.SUBNET:
            puts, deletes = api.delete_subnet(obj)
        elif kind is Kind.PORT:
            puts, deletes = api.delete_port(obj, ctx)
        else:
            puts, deletes = api.delete_router(obj)
        repo.commit(puts, deletes)
        return Response(status_code=204)

    @app.put("/v2.0/routers/{oid}/add_router_interface")
    async def add_router_interface(oid: str, request: Request) -> dict:
        ctx = request.state.ctx
        router = api.owned(Kind.ROUTER, oid, ctx)
        puts, info = api.add_interface(router, await _body(request), ctx)
        repo.commit(puts)
        return info

    @app.put("/v2.0/routers/{oid}/remove_router_interface")
    async def remove_router_interface(oid: str, request: Request) -> dict:
        ctx = request.state.ctx
        router = api.owned(Kind.ROUTER, oid, ctx)
        deletes, info = api.remove_interface(router, await _body(request), ctx)
        repo.commit([], deletes)
        return info

    def _openapi() -> dict:  # one path per collection, with bodies (tenant.openapi)
        if app.openapi_schema is None:
            generic = {coll: singular for coll, (_k, singular) in COLLECTIONS.items()}
            app.openapi_schema = openapi.document(app, generic)
        return app.openapi_schema

    app.openapi = _openapi  # type: ignore[method-assign]
    return app

"""Neutron floating IPs: `/v2.0/floatingips` (the `router` extension's second resource).

A floating IP is an address of an external network NATed 1:1 to a port's fixed IP by
the gateway node of the router that joins the port's network to that external network
(tenant/nat.py compiles it). Neutron semantics kept:

* The address is held by a ``network:floatingip`` port on the external network, so it
  comes from the external subnet's pools, is never handed out twice, and the network
  cannot be deleted under it (409).
* Associating (``port_id``, optionally ``fixed_ip_address``) needs a router with its
  gateway on the floating IP's network and an interface on the fixed IP's subnet
  (404 ``ExternalGatewayForFloatingIPNotFound`` otherwise); one floating IP per fixed
  IP and external network (409). ``router_id`` and ``status`` (ACTIVE when associated)
  follow. ``port_id: null`` disassociates; deleting the port disassociates too.
* A router's gateway cannot be cleared nor its interface removed while a floating IP
  uses it (409, as Neutron's ``RouterExternalGatewayInUseByFloatingIp`` and
  ``RouterInterfaceInUseByFloatingIP``).
* Bad input is a 400 naming the field; unknown ids are 404.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import Request
from fastapi.responses import Response

from routeflow.tenant import ipam
from routeflow.tenant.api import (
    NOT_FILTERS,
    NeutronError,
    _body,
    _fields,
    _matches,
    _only,
    _resource_body,
    _str,
    _uuid,
    bad,
    conflict,
    not_found,
)
from routeflow.tenant.identity import Context
from routeflow.tenant.model import (
    DEVICE_FLOATINGIP,
    DEVICE_ROUTER_INTERFACE,
    KEY_MAX,
    FloatingIP,
    Kind,
    Port,
    Router,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from routeflow.tenant.api import NeutronAPI
    from routeflow.tenant.repo import Repository

FIP_FIELDS = {
    "floating_network_id", "floating_ip_address", "subnet_id", "port_id", "fixed_ip_address",
    "description", "tenant_id", "project_id", "qos_policy_id", "dns_name", "dns_domain",
}  # fmt: skip
UPDATE_FIELDS = {"port_id", "fixed_ip_address", "description", "qos_policy_id"}


def fip_view(f: FloatingIP) -> dict:
    return {
        "id": f.id,
        "tenant_id": f.project_id,
        "project_id": f.project_id,
        "floating_network_id": f.floating_network_id,
        "floating_ip_address": f.floating_ip_address,
        "router_id": f.router_id,
        "port_id": f.port_id,
        "fixed_ip_address": f.fixed_ip_address,
        "status": f.status,
        "description": f.description,
        "tags": list(f.tags),
        "port_forwardings": [],
        "qos_policy_id": None,
        "created_at": f.created_at,
        "updated_at": f.updated_at,
        "revision_number": f.revision_number,
    }


def fip_not_found(oid: object) -> NeutronError:
    return NeutronError(404, "FloatingIPNotFound", f"Floating IP {oid} could not be found")


class FloatingIPs:
    """The floating IP rules over the API's snapshot (no I/O of its own)."""

    def __init__(self, api: NeutronAPI):
        self.api = api

    @property
    def cloud(self) -> Any:
        return self.api.cloud

    def find(self, oid: str, ctx: Context) -> FloatingIP:
        f = self.cloud.floatingips.get(oid)
        if f is None or not (ctx.admin or f.project_id == ctx.project_id):
            raise fip_not_found(oid)
        return f

    def _port_id(self, body: dict) -> str | None:
        value = body.get("port_id")
        if value is not None and not isinstance(value, str):
            raise bad("Invalid input for port_id. Reason: not a string.")
        return value

    def _fixed_ip(self, body: dict) -> str | None:
        value = body.get("fixed_ip_address")
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Address(value))
        except (ValueError, TypeError):
            raise bad(
                f"Invalid input for fixed_ip_address. Reason: '{value}' is not a valid IPv4 "
                f"address."
            ) from None

    def association(
        self, fip: FloatingIP, port_id: str | None, fixed: str | None, ctx: Context
    ) -> dict:
        """``port_id``, ``fixed_ip_address``, ``router_id``, ``status`` for associating
        ``fip`` with ``port_id`` (None: disassociated)."""
        if port_id is None:
            if fixed is not None:
                raise bad("Invalid input for fixed_ip_address. Reason: no port_id given.")
            return {"port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN"}
        port: Port = self.api.find(Kind.PORT, port_id, ctx)
        if not ctx.admin and port.project_id != fip.project_id:
            raise not_found("port", port_id)
        if port.device_owner.startswith("network:"):
            raise bad(
                f"Bad floatingip request: Port {port_id} has owner {port.device_owner} and "
                f"therefore cannot be assigned a floating IP."
            )
        v4 = [f for f in port.fixed_ips if ipaddress.ip_address(f.ip_address).version == 4]
        if not v4:
            raise bad(f"Bad floatingip request: Port {port_id} does not have any IPv4 address.")
        if fixed is None:
            if len(v4) > 1:
                raise bad(
                    f"Bad floatingip request: Port {port_id} has multiple fixed IPv4 addresses. "
                    f"Must provide a specific IPv4 address when assigning a floating IP."
                )
            chosen = v4[0]
        else:
            match = [f for f in v4 if f.ip_address == fixed]
            if not match:
                raise bad(f"Bad floatingip request: Port {port_id} does not have fixed ip {fixed}.")
            chosen = match[0]
        router = self.router_for(fip.floating_network_id, chosen.subnet_id)
        if router is None:
            raise NeutronError(
                404,
                "ExternalGatewayForFloatingIPNotFound",
                f"External network {fip.floating_network_id} is not reachable from subnet "
                f"{chosen.subnet_id}. Therefore, cannot associate Port {port_id} with a "
                f"Floating IP.",
            )
        for other in self.cloud.floatingips.values():
            if (
                other.id != fip.id
                and other.port_id == port_id
                and other.fixed_ip_address == chosen.ip_address
                and other.floating_network_id == fip.floating_network_id
            ):
                raise conflict(
                    "FloatingIPPortAlreadyAssociated",
                    f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) with "
                    f"port {port_id} using fixed IP {chosen.ip_address}, as that fixed IP "
                    f"already has a floating IP on external network "
                    f"{fip.floating_network_id}.",
                )
        return {
            "port_id": port_id,
            "fixed_ip_address": chosen.ip_address,
            "router_id": router.id,
            "status": "ACTIVE",
        }

    def router_for(self, external_net: str, subnet_id: str) -> Router | None:
        """The router with its gateway on ``external_net`` and an interface on
        ``subnet_id`` (the lowest id when several qualify)."""
        for router in sorted(self.cloud.routers.values(), key=lambda r: r.id):
            gw = router.external_gateway_info
            if gw is None or gw.network_id != external_net:
                continue
            for iface in self.cloud.router_interfaces(router.id):
                if any(f.subnet_id == subnet_id for f in iface.fixed_ips):
                    return router
        return None

    def create(self, body: dict, ctx: Context) -> list[Any]:
        _only(body, FIP_FIELDS, "floatingip")
        net_id = body.get("floating_network_id")
        if not isinstance(net_id, str):
            raise bad(
                "Invalid input for floating_network_id. Reason: 'floating_network_id' is required."
            )
        net = self.cloud.networks.get(net_id)
        if net is None:
            raise not_found("network", net_id)
        if not net.external:
            raise bad(f"Bad floatingip request: Network {net_id} is not a valid external network.")
        requested: dict[str, object] = {}
        if body.get("subnet_id") is not None:
            sub_id = body["subnet_id"]
            if not isinstance(sub_id, str):
                raise bad("Invalid input for subnet_id. Reason: not a string.")
            sub = self.cloud.subnets.get(sub_id)
            if sub is None:
                raise not_found("subnet", sub_id)
            if sub.network_id != net_id:
                raise bad(f"Bad floatingip request: Subnet {sub_id} is not on network {net_id}.")
            requested["subnet_id"] = sub_id
        if body.get("floating_ip_address") is not None:
            value = body["floating_ip_address"]
            try:
                requested["ip_address"] = str(ipaddress.IPv4Address(value))
            except (ValueError, TypeError):
                raise bad(
                    f"Invalid input for floating_ip_address. Reason: '{value}' is not a valid "
                    f"IPv4 address."
                ) from None
        if not self.cloud.subnets_of(net_id):
            raise bad(f"Bad floatingip request: Network {net_id} has no subnet.")
        project = self.api._project(body, ctx)
        fip_id, port_id = _uuid(), _uuid()
        ips = self.api.allocate_fixed_ips(net, [requested] if requested else None, port_id)
        if not ips:
            raise bad(f"Bad floatingip request: Network {net_id} has no IPv4 subnet.")
        keys = {f.key for f in self.cloud.floatingips.values()}
        fip = FloatingIP(
            id=fip_id,
            project_id=project,
            description=_str(body, "description"),
            floating_network_id=net_id,
            floating_ip_address=ips[0].ip_address,
            floating_subnet_id=ips[0].subnet_id,
            key=ipam.lowest_free(keys, 1, KEY_MAX, "floating IP key"),
        )
        fip = msgspec.structs.replace(
            fip, **self.association(fip, self._port_id(body), self._fixed_ip(body), ctx)
        )
        used_macs = {p.mac_address for p in self.cloud.ports.values()}
        holder = Port(
            id=port_id,
            project_id="",  # Neutron's floating IP port belongs to no project
            network_id=net_id,
            mac_address=ipam.allocate_mac(self.cloud.revision + 11, used_macs),
            fixed_ips=ips[:1],
            device_owner=DEVICE_FLOATINGIP,
            device_id=fip_id,
            status="ACTIVE",
            key=ipam.lowest_free({p.key for p in self.cloud.ports.values()}, 1, KEY_MAX, "port"),
        )
        return [fip, holder]

    def update(self, fip: FloatingIP, body: dict, ctx: Context) -> list[Any]:
        if "floating_network_id" in body or "floating_ip_address" in body:
            raise bad(
                "Invalid input for operation: floating_network_id and floating_ip_address "
                "cannot be updated."
            )
        _only(body, UPDATE_FIELDS, "floatingip")
        attrs: dict[str, Any] = {}
        if "description" in body:
            attrs["description"] = _str(body, "description")
        if "port_id" in body:
            attrs.update(self.association(fip, self._port_id(body), self._fixed_ip(body), ctx))
        elif "fixed_ip_address" in body:
            attrs.update(self.association(fip, fip.port_id, self._fixed_ip(body), ctx))
        return [msgspec.structs.replace(fip, **attrs)]

    def delete(self, fip: FloatingIP) -> list[tuple[Kind, str]]:
        holders = [
            (Kind.PORT, p.id)
            for p in self.cloud.ports.values()
            if p.device_owner == DEVICE_FLOATINGIP and p.device_id == fip.id
        ]
        return [*holders, (Kind.FLOATINGIP, fip.id)]

    # Hooks the rest of the API calls.

    def on_port_delete(self, port: Port) -> list[Any]:
        """Floating IPs of a deleted port are disassociated (Neutron keeps them)."""
        none = {"port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN"}
        return [
            msgspec.structs.replace(f, **none)
            for f in sorted(self.cloud.floatingips.values(), key=lambda f: f.id)
            if f.port_id == port.id
        ]

    def on_network_delete(self, net: Any) -> set[str]:
        """Ids of the unassociated floating IPs of a network being deleted (they go with
        it); associated ones stay and keep their port, so the network is in use."""
        return {
            f.id
            for f in self.cloud.floatingips.values()
            if f.floating_network_id == net.id and f.port_id is None
        }

    def check_gateway_clear(self, router: Router) -> None:
        for f in self.cloud.floatingips.values():
            if f.router_id == router.id:
                raise conflict(
                    "RouterExternalGatewayInUseByFloatingIp",
                    f"Gateway {router.id} cannot be updated for router "
                    f"{router.id}, since a gateway to external network "
                    f"{f.floating_network_id} is required by one or more floating IPs.",
                )

    def check_interface_removal(self, router: Router, iface: Port) -> None:
        subnets = {f.subnet_id for f in iface.fixed_ips}
        assert iface.device_owner == DEVICE_ROUTER_INTERFACE
        for f in self.cloud.floatingips.values():
            if f.router_id != router.id or f.port_id is None:
                continue
            port = self.cloud.ports.get(f.port_id)
            if port is None:
                continue
            if any(x.subnet_id in subnets and x.ip_address == f.fixed_ip_address
                   for x in port.fixed_ips):  # fmt: skip
                raise conflict(
                    "RouterInterfaceInUseByFloatingIP",
                    f"Router interface for subnet {sorted(subnets)[0]} on router {router.id} "
                    f"cannot be deleted, as it is required by one or more floating IPs.",
                )


def floatingip_routes(app: FastAPI, api: NeutronAPI, repo: Repository) -> FloatingIPs:
    """Register `/v2.0/floatingips` on ``app`` (before the generic collection routes)."""
    fips = FloatingIPs(api)

    @app.get("/v2.0/floatingips")
    async def list_fips(request: Request) -> dict:
        ctx: Context = request.state.ctx
        filters: dict[str, list[str]] = {}
        fields: list[str] = []
        for key, value in request.query_params.multi_items():
            if key == "fields":
                fields.append(value)
            elif key not in NOT_FILTERS:
                filters.setdefault(key, []).append(value)
        out = []
        for f in sorted(api.cloud.floatingips.values(), key=lambda f: (f.created_at, f.id)):
            if ctx.admin or f.project_id == ctx.project_id:
                view = fip_view(f)
                if _matches(view, filters):
                    out.append(_fields(view, fields))
        return {"floatingips": out}

    @app.get("/v2.0/floatingips/{oid}")
    async def show_fip(oid: str, request: Request) -> dict:
        view = fip_view(fips.find(oid, request.state.ctx))
        return {"floatingip": _fields(view, request.query_params.getlist("fields"))}

    @app.post("/v2.0/floatingips", status_code=201)
    async def create_fip(request: Request) -> dict:
        ctx = request.state.ctx
        body = _resource_body(await _body(request), "floatingip")
        puts = fips.create(body, ctx)
        repo.commit(puts)
        return {"floatingip": fip_view(api.cloud.floatingips[puts[0].id])}

    @app.put("/v2.0/floatingips/{oid}")
    async def update_fip(oid: str, request: Request) -> dict:
        ctx = request.state.ctx
        fip = fips.find(oid, ctx)
        body = _resource_body(await _body(request), "floatingip")
        repo.commit(fips.update(fip, body, ctx))
        return {"floatingip": fip_view(api.cloud.floatingips[oid])}

    @app.delete("/v2.0/floatingips/{oid}", status_code=204)
    async def delete_fip(oid: str, request: Request) -> Response:
        repo.commit([], fips.delete(fips.find(oid, request.state.ctx)))
        return Response(status_code=204)

    return fips

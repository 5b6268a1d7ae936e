"""Neutron security groups and rules: `/v2.0/security-groups`, `/v2.0/security-group-rules`.

Rules live inside their group in the model (a rule change is a new revision of the group),
but keep Neutron's shapes and ids here. Neutron semantics kept:

* Every project has a group named ``default``, created on first use (listing groups,
  creating a port without ``security_groups``) with Neutron's rules: egress allowed for
  IPv4 and IPv6, ingress only from members of the same group. It cannot be renamed or
  created a second time (409), nor deleted except by an admin (409).
* A new group gets the two egress allow-all rules. A group used by a port cannot be
  deleted (409); a rule is unique in its group (409 names the existing rule).
* Rule validation, each error a 400 naming the field: direction, ethertype, protocol (a
  name Neutron knows or 0-255), port ranges (tcp/udp/sctp/dccp/udplite 1-65535 with
  min <= max; ICMP type/code 0-255; ports without such a protocol), remote_ip_prefix
  (a CIDR of the rule's ethertype), remote_ip_prefix with remote_group_id. Unknown groups
  are 404.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import Request
from fastapi.responses import Response

from routeflow.tenant import ipam
from routeflow.tenant.identity import Context
from routeflow.tenant.model import KEY_MAX, Kind, Port, SecurityGroup, SecurityGroupRule
from routeflow.tenant.secgroups import PROTOCOLS, protocol_number

if TYPE_CHECKING:
    from fastapi import FastAPI

    from routeflow.tenant.api import NeutronAPI
    from routeflow.tenant.repo import Repository

DEFAULT = "default"

PORT_PROTOCOLS = {6, 17, 132, 33, 136}  # tcp, udp, sctp, dccp, udplite
ICMP_PROTOCOLS = {1, 58}
ANY_PROTOCOL = ("any", "0")  # Neutron: no protocol match

RULE_FIELDS = {
    "security_group_id", "direction", "ethertype", "protocol", "port_range_min",
    "port_range_max", "remote_ip_prefix", "remote_group_id", "remote_address_group_id",
    "description", "tenant_id", "project_id", "normalized_cidr",
}  # fmt: skip
GROUP_FIELDS = {"name", "description", "tenant_id", "project_id", "stateful", "shared", "tags"}


# --- views ------------------------------------------------------------------------------


def rule_view(r: SecurityGroupRule, group_id: str) -> dict:
    cidr = None
    if r.remote_ip_prefix is not None:
        cidr = str(ipaddress.ip_network(r.remote_ip_prefix, strict=False))
    return {
        "id": r.id,
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "security_group_id": group_id,
        "direction": r.direction,
        "ethertype": r.ethertype,
        "protocol": r.protocol,
        "port_range_min": r.port_range_min,
        "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix,
        "remote_group_id": r.remote_group_id,
        "remote_address_group_id": None,
        "normalized_cidr": cidr,
        "description": r.description,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "revision_number": r.revision_number,
        "tags": [],
    }


def group_view(g: SecurityGroup) -> dict:
    return {
        "id": g.id,
        "name": g.name,
        "tenant_id": g.project_id,
        "project_id": g.project_id,
        "description": g.description,
        "tags": list(g.tags),
        "created_at": g.created_at,
        "updated_at": g.updated_at,
        "revision_number": g.revision_number,
        "stateful": g.stateful,
        "shared": g.shared,
        "security_group_rules": [rule_view(r, g.id) for r in g.rules],
    }


# --- rules --------------------------------------------------------------------------------


def _err(status: int, kind: str, message: str) -> Exception:
    from routeflow.tenant.api import NeutronError

    return NeutronError(status, kind, message)


def _bad(message: str) -> Exception:
    return _err(400, "BadRequest", message)


def group_not_found(oid: object) -> Exception:
    return _err(404, "SecurityGroupNotFound", f"Security group {oid} does not exist")


def rule_not_found(oid: object) -> Exception:
    return _err(404, "SecurityGroupRuleNotFound", f"Security group rule {oid} does not exist")


def _port(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"Invalid input for {field}. Reason: '{value}' is not an integer.")
    return value  # the range depends on the protocol (check_rule)


def _protocol(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _err(
            400,
            "SecurityGroupRuleInvalidProtocol",
            f"Security group rule protocol {value} not supported. Only protocol values "
            f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.",
        )
    text = value.strip().lower()
    if text in PROTOCOLS or text == "any":
        return text
    if text.isdigit() and 0 <= int(text) <= 255:
        return str(int(text))
    raise _err(
        400,
        "SecurityGroupRuleInvalidProtocol",
        f"Security group rule protocol {value} not supported. Only protocol values "
        f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.",
    )


def check_rule(body: dict, group: SecurityGroup, groups: dict[str, SecurityGroup]) -> dict:
    """The attributes of a new rule from its body; Neutron's 400s and 404s."""
    extra = sorted(set(body) - RULE_FIELDS)
    if extra:
        raise _bad(f"Unrecognized attribute(s) '{', '.join(extra)}' for security_group_rule")
    direction = body.get("direction")
    if direction not in ("ingress", "egress"):
        raise _bad(
            f"Invalid input for direction. Reason: '{direction}' is not in ['ingress', 'egress']."
        )
    ethertype = body.get("ethertype", "IPv4")
    if ethertype is None:
        ethertype = "IPv4"
    if not isinstance(ethertype, str) or ethertype.lower() not in ("ipv4", "ipv6"):
        raise _err(
            400,
            "SecurityGroupRuleInvalidEtherType",
            f"Security group rule for ethertype '{ethertype}' not supported. Allowed values "
            f"are ['IPv4', 'IPv6'].",
        )
    ethertype = "IPv4" if ethertype.lower() == "ipv4" else "IPv6"
    protocol = _protocol(body.get("protocol"))
    number = protocol_number(protocol)
    if ethertype == "IPv4" and number == 58:
        raise _bad(
            f"Invalid input for protocol. Reason: protocol {protocol} is IPv6 only, the "
            f"ethertype is IPv4."
        )
    pmin = _port(body.get("port_range_min"), "port_range_min")
    pmax = _port(body.get("port_range_max"), "port_range_max")
    if pmin is not None or pmax is not None:
        if number is None:
            raise _err(
                400,
                "SecurityGroupProtocolRequiredWithPorts",
                "Must also specify protocol if port range is given.",
            )
        if number in PORT_PROTOCOLS:
            for field, v in (("port_range_min", pmin), ("port_range_max", pmax)):
                if v is not None and not 1 <= v <= 65535:
                    raise _err(
                        400,
                        "SecurityGroupInvalidPortValue",
                        f"Invalid value for port {v} ({field}): ports are 1 to 65535.",
                    )
            if pmin is None or pmax is None or pmin > pmax:
                raise _err(
                    400,
                    "SecurityGroupInvalidPortRange",
                    "For TCP/UDP protocols, port_range_min must be <= port_range_max (both given).",
                )
        elif number in ICMP_PROTOCOLS:
            for field, what, v in (
                ("port_range_min", "type", pmin),
                ("port_range_max", "code", pmax),
            ):
                if v is not None and not 0 <= v <= 255:
                    raise _err(
                        400,
                        "SecurityGroupInvalidIcmpValue",
                        f"Invalid value for ICMP {what} ({field.replace('_', '-')}): {v}. "
                        f"It must be 0 to 255.",
                    )
            if pmin is None and pmax is not None:
                raise _err(
                    400,
                    "SecurityGroupMissingIcmpType",
                    f"ICMP code (port-range-max) {pmax} is provided but ICMP type "
                    f"(port-range-min) is missing.",
                )
        else:
            raise _err(
                400,
                "SecurityGroupInvalidProtocolForPort",
                f"Invalid protocol {protocol} for port range, only supported for TCP, UDP, "
                f"UDPLITE, SCTP, DCCP and ICMP.",
            )
    prefix = body.get("remote_ip_prefix")
    remote_group = body.get("remote_group_id")
    if prefix is not None and remote_group is not None:
        raise _err(
            400,
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
            "Only remote_ip_prefix or remote_group_id may be provided.",
        )
    if prefix is not None:
        try:
            if not isinstance(prefix, str):
                raise ValueError
            cidr = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise _bad(
                f"Invalid input for remote_ip_prefix. Reason: '{prefix}' is not a valid IP prefix."
            ) from None
        if cidr.version != (4 if ethertype == "IPv4" else 6):
            raise _err(
                400,
                "SecurityGroupRuleParameterConflict",
                f"Conflicting value ethertype {ethertype} for CIDR {prefix}",
            )
        # As given (Neutron keeps host bits; normalized_cidr shows the network).
        prefix = str(ipaddress.ip_interface(prefix)) if "/" in prefix else str(cidr)
    if remote_group is not None and (
        not isinstance(remote_group, str) or remote_group not in groups
    ):
        raise group_not_found(remote_group)
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 255:
        raise _bad("Invalid input for description. Reason: not a string of at most 255.")
    return {
        "direction": direction,
        "ethertype": ethertype,
        "protocol": protocol,
        "port_range_min": pmin,
        "port_range_max": pmax,
        "remote_ip_prefix": prefix,
        "remote_group_id": remote_group,
        "description": description,
    }


def _same(a: SecurityGroupRule, attrs: dict) -> bool:
    def proto(p: str | None) -> int | None:
        return protocol_number(p)

    return (
        a.direction == attrs["direction"]
        and a.ethertype == attrs["ethertype"]
        and proto(a.protocol) == proto(attrs["protocol"])
        and a.port_range_min == attrs["port_range_min"]
        and a.port_range_max == attrs["port_range_max"]
        and a.remote_ip_prefix == attrs["remote_ip_prefix"]
        and a.remote_group_id == attrs["remote_group_id"]
    )


# --- the resources ---------------------------------------------------------------------


class SecurityGroups:
    """Neutron's security-group rules over the API's repository snapshot."""

    def __init__(self, api: NeutronAPI, clock: Callable[[], str] = lambda: ""):
        self.api = api
        self.clock = clock

    @property
    def groups(self) -> dict[str, SecurityGroup]:
        return dict(self.api.cloud.security_groups)

    def _new_uuid(self) -> str:
        from routeflow.tenant.api import _uuid

        return _uuid()

    def _rule_keys(self, extra: tuple[SecurityGroupRule, ...] = ()) -> set[int]:
        keys = {r.key for g in self.api.cloud.security_groups.values() for r in g.rules}
        return keys | {r.key for r in extra}

    def _rule(self, project: str, attrs: dict, taken: set[int]) -> SecurityGroupRule:
        key = ipam.lowest_free(taken, 1, KEY_MAX, "security group rule key")
        taken.add(key)
        now = self.clock()
        return SecurityGroupRule(
            id=self._new_uuid(),
            project_id=project,
            key=key,
            created_at=now,
            updated_at=now,
            **attrs,
        )

    def new_group(self, project: str, name: str, description: str, default: bool) -> SecurityGroup:
        """A group with Neutron's initial rules (the default group's include ingress from
        itself)."""
        gid = self._new_uuid()
        keys = self._rule_keys()
        gkey = ipam.lowest_free(
            {g.key for g in self.api.cloud.security_groups.values()}, 1, KEY_MAX, "group key"
        )
        rules = []
        for eth in ("IPv4", "IPv6"):
            rules.append(self._rule(project, _rule_attrs("egress", eth, None), keys))
        if default:
            for eth in ("IPv4", "IPv6"):
                rules.append(self._rule(project, _rule_attrs("ingress", eth, gid), keys))
        return SecurityGroup(
            id=gid,
            name=name,
            description=description,
            project_id=project,
            key=gkey,
            rules=tuple(rules),
        )

    def default_of(self, project: str) -> SecurityGroup | None:
        for g in self.api.cloud.security_groups.values():
            if g.project_id == project and g.name == DEFAULT:
                return g
        return None

    def ensure_default(self, project: str, repo: Repository) -> SecurityGroup:
        """The project's default group, created (and committed) on first use."""
        found = self.default_of(project)
        if found is not None:
            return found
        group = self.new_group(project, DEFAULT, "Default security group", default=True)
        repo.commit([group])
        return self.api.cloud.security_groups[group.id]

    def _visible(self, g: SecurityGroup, ctx: Context) -> bool:
        return ctx.admin or g.project_id == ctx.project_id or g.shared

    def find(self, oid: str, ctx: Context) -> SecurityGroup:
        g = self.api.cloud.security_groups.get(oid)
        if g is None or not self._visible(g, ctx):
            raise group_not_found(oid)
        return g

    def owned(self, oid: str, ctx: Context) -> SecurityGroup:
        g = self.find(oid, ctx)
        if not ctx.admin and g.project_id != ctx.project_id:
            raise group_not_found(oid)
        return g

    def find_rule(self, oid: str, ctx: Context) -> tuple[SecurityGroup, SecurityGroupRule]:
        for g in self.api.cloud.security_groups.values():
            for r in g.rules:
                if r.id == oid and self._visible(g, ctx):
                    return g, r
        raise rule_not_found(oid)

    def _name(self, body: dict) -> str:
        name = body.get("name", "")
        if name is None:
            name = ""
        if not isinstance(name, str) or len(name) > 255:
            raise _bad("Invalid input for name. Reason: not a string of at most 255.")
        return name

    def _description(self, body: dict) -> str:
        d = body.get("description", "")
        if d is None:
            d = ""
        if not isinstance(d, str) or len(d) > 255:
            raise _bad("Invalid input for description. Reason: not a string of at most 255.")
        return d

    def _check_group_body(self, body: dict) -> None:
        extra = sorted(set(body) - GROUP_FIELDS)
        if extra:
            raise _bad(f"Unrecognized attribute(s) '{', '.join(extra)}' for security_group")
        if "stateful" in body and body["stateful"] is not True:
            raise _bad("Invalid input for stateful. Reason: only stateful groups are supported.")

    def create_group(self, body: dict, ctx: Context, repo: Repository) -> list[Any]:
        self._check_group_body(body)
        project = self.api._project(body, ctx)
        name = self._name(body)
        if name == DEFAULT:
            if self.default_of(project) is None:
                self.ensure_default(project, repo)
            raise _err(
                409,
                "SecurityGroupDefaultAlreadyExists",
                "Default security group already exists.",
            )
        self.ensure_default(project, repo)
        return [self.new_group(project, name, self._description(body), default=False)]

    def update_group(self, g: SecurityGroup, body: dict) -> list[Any]:
        self._check_group_body(body)
        if "project_id" in body or "tenant_id" in body:
            raise _bad("Cannot update read-only attribute project_id")
        attrs: dict[str, Any] = {}
        if "name" in body:
            name = self._name(body)
            if g.name == DEFAULT and name != DEFAULT:
                raise _err(
                    409,
                    "SecurityGroupCannotUpdateDefault",
                    "Updating default security group not allowed.",
                )
            if name == DEFAULT and g.name != DEFAULT:
                raise _err(
                    409,
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                )
            attrs["name"] = name
        if "description" in body:
            attrs["description"] = self._description(body)
        return [msgspec.structs.replace(g, **attrs)]

    def delete_group(self, g: SecurityGroup, ctx: Context) -> list[tuple[Kind, str]]:
        if g.name == DEFAULT and not ctx.admin:
            raise _err(
                409,
                "SecurityGroupCannotRemoveDefault",
                "Removing default security group not allowed.",
            )
        users = [p.id for p in self.api.cloud.ports.values() if g.id in p.security_groups]
        if users:
            raise _err(
                409,
                "SecurityGroupInUse",
                f"Security Group {g.id} in use by port(s) {', '.join(sorted(users))}.",
            )
        return [(Kind.SECURITY_GROUP, g.id)]

    def create_rule(self, body: dict, ctx: Context) -> tuple[SecurityGroup, SecurityGroupRule]:
        gid = body.get("security_group_id")
        if not isinstance(gid, str):
            raise _bad("Invalid input for security_group_id. Reason: it is required.")
        g = self.owned(gid, ctx)
        project = self.api._project(body, ctx)
        attrs = check_rule(body, g, self.groups)
        remote = attrs["remote_group_id"]
        if remote is not None:
            self.find(remote, ctx)
        for r in g.rules:
            if _same(r, attrs):
                raise _err(
                    409,
                    "SecurityGroupRuleExists",
                    f"Security group rule already exists. Rule id is {r.id}.",
                )
        rule = self._rule(project or g.project_id, attrs, self._rule_keys())
        return msgspec.structs.replace(g, rules=(*g.rules, rule)), rule

    def delete_rule(self, oid: str, ctx: Context) -> SecurityGroup:
        g, r = self.find_rule(oid, ctx)
        if not ctx.admin and g.project_id != ctx.project_id and r.project_id != ctx.project_id:
            raise rule_not_found(oid)
        return msgspec.structs.replace(g, rules=tuple(x for x in g.rules if x.id != oid))

    # Ports.

    def port_groups(
        self,
        body: dict,
        ctx: Context,
        project: str,
        port_security: bool,
        owner: str,
        base: Port | None,
        repo: Repository,
    ) -> tuple[str, ...]:
        """A port's ``security_groups`` after this request (Neutron's rules)."""
        given = "security_groups" in body
        if given:
            raw = body["security_groups"]
            if raw is None:
                raw = []
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                raise _bad("Invalid input for security_groups. Reason: not a list of ids.")
            groups = tuple(dict.fromkeys(raw))
            for gid in groups:
                g = self.api.cloud.security_groups.get(gid)
                if g is None or not (ctx.admin or g.project_id == project or g.shared):
                    raise group_not_found(gid)
        elif base is not None:
            groups = base.security_groups
        elif port_security and not owner.startswith("network:"):
            groups = (self.ensure_default(project, repo).id,)
        else:
            groups = ()
        if groups and not port_security:
            if base is None or given:
                raise _err(
                    400,
                    "PortSecurityAndIPRequiredForSecurityGroups",
                    "Port security must be enabled and port must have an IP address in order "
                    "to use security groups.",
                )
            raise _err(
                409,
                "PortSecurityPortHasSecurityGroup",
                "Port has security group associated. Cannot disable port security or IP "
                "address until security group is removed.",
            )
        return groups


def _rule_attrs(direction: str, ethertype: str, remote_group: str | None) -> dict:
    return {
        "direction": direction,
        "ethertype": ethertype,
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "remote_group_id": remote_group,
        "description": "",
    }


def secgroup_routes(app: FastAPI, api: NeutronAPI, repo: Repository) -> SecurityGroups:
    """Register the two collections on ``app`` (before the generic collection routes)."""
    from routeflow.tenant.api import _body, _fields, _matches, _resource_body

    sgs = SecurityGroups(api, repo.clock)

    def _query(request: Request) -> tuple[dict[str, list[str]], list[str]]:
        from routeflow.tenant.api import NOT_FILTERS

        filters: dict[str, list[str]] = {}
        fields: list[str] = []
        for key, value in request.query_params.multi_items():
            if key == "fields":
                fields.append(value)
            elif key not in NOT_FILTERS:
                filters.setdefault(key, []).append(value)
        return filters, fields

    @app.get("/v2.0/security-groups")
    async def list_groups(request: Request) -> dict:
        ctx: Context = request.state.ctx
        if ctx.project_id:
            sgs.ensure_default(ctx.project_id, repo)
        filters, fields = _query(request)
        out = []
        for g in sorted(api.cloud.security_groups.values(), key=lambda g: (g.created_at, g.id)):
            if sgs._visible(g, ctx):
                view = group_view(g)
                if _matches(view, filters):
                    out.append(_fields(view, fields))
        return {"security_groups": out}

    @app.get("/v2.0/security-groups/{oid}")
    async def show_group(oid: str, request: Request) -> dict:
        view = group_view(sgs.find(oid, request.state.ctx))
        return {"security_group": _fields(view, request.query_params.getlist("fields"))}

    @app.post("/v2.0/security-groups", status_code=201)
    async def create_group(request: Request) -> dict:
        ctx = request.state.ctx
        body = _resource_body(await _body(request), "security_group")
        puts = sgs.create_group(body, ctx, repo)
        repo.commit(puts)
        return {"security_group": group_view(api.cloud.security_groups[puts[0].id])}

    @app.put("/v2.0/security-groups/{oid}")
    async def update_group(oid: str, request: Request) -> dict:
        ctx = request.state.ctx
        g = sgs.owned(oid, ctx)
        body = _resource_body(await _body(request), "security_group")
        repo.commit(sgs.update_group(g, body))
        return {"security_group": group_view(api.cloud.security_groups[oid])}

    @app.delete("/v2.0/security-groups/{oid}", status_code=204)
    async def delete_group(oid: str, request: Request) -> Response:
        ctx = request.state.ctx
        repo.commit([], sgs.delete_group(sgs.owned(oid, ctx), ctx))
        return Response(status_code=204)

    @app.get("/v2.0/security-group-rules")
    async def list_rules(request: Request) -> dict:
        ctx: Context = request.state.ctx
        filters, fields = _query(request)
        out = []
        for g in sorted(api.cloud.security_groups.values(), key=lambda g: (g.created_at, g.id)):
            if not sgs._visible(g, ctx):
                continue
            for r in g.rules:
                view = rule_view(r, g.id)
                if _matches(view, filters):
                    out.append(_fields(view, fields))
        return {"security_group_rules": out}

    @app.get("/v2.0/security-group-rules/{oid}")
    async def show_rule(oid: str, request: Request) -> dict:
        g, r = sgs.find_rule(oid, request.state.ctx)
        view = rule_view(r, g.id)
        return {"security_group_rule": _fields(view, request.query_params.getlist("fields"))}

    @app.post("/v2.0/security-group-rules", status_code=201)
    async def create_rule(request: Request) -> dict:
        ctx = request.state.ctx
        body = await _body(request)
        if isinstance(body, dict) and isinstance(body.get("security_group_rules"), list):
            created = []
            for item in body["security_group_rules"]:
                if not isinstance(item, dict):
                    raise _bad("Invalid bulk security_group_rules body.")
                g, rule = sgs.create_rule(item, ctx)
                repo.commit([g])
                created.append(rule.id)
            views = []
            for rid in created:
                owner, stored = sgs.find_rule(rid, ctx)
                views.append(rule_view(stored, owner.id))
            return {"security_group_rules": views}
        g, rule = sgs.create_rule(_resource_body(body, "security_group_rule"), ctx)
        repo.commit([g])
        g2, stored = sgs.find_rule(rule.id, ctx)
        return {"security_group_rule": rule_view(stored, g2.id)}

    @app.put("/v2.0/security-group-rules/{oid}")
    async def update_rule(oid: str, request: Request) -> dict:
        sgs.find_rule(oid, request.state.ctx)
        raise _bad("Security group rules cannot be updated: delete and create instead.")

    @app.delete("/v2.0/security-group-rules/{oid}", status_code=204)
    async def delete_rule(oid: str, request: Request) -> Response:
        repo.commit([sgs.delete_rule(oid, request.state.ctx)])
        return Response(status_code=204)

    return sgs

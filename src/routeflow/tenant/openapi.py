"""The tenant API's OpenAPI document: one path per Neutron collection, with request bodies.

The app routes every collection through one generic `/v2.0/{coll}` handler that reads
the raw JSON itself (Neutron's own error bodies, not FastAPI's 422), so the document
FastAPI derives says nothing about bodies. This one is built from it: the generic paths
become `/v2.0/networks`, `/v2.0/subnets/{id}`..., and every create, update and router
interface call gets the body schema of the attributes the API accepts. Clients and
schemathesis (tests/unit/tenant/test_api_schema.py) read it at `/openapi.json`.

The schemas say what a well-formed request looks like (types, enums, ranges); the API
checks more (overlaps, foreign networks, addresses in range) and answers those with a
Neutron-shaped 4xx naming the field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["BODIES", "document"]

_STR = {"type": "string", "maxLength": 255}
_NSTR = {"type": ["string", "null"], "maxLength": 255}
_BOOL = {"type": "boolean"}
_IDS = {"type": "array", "items": {"type": "string"}}
_ROUTES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"destination": {"type": "string"}, "nexthop": {"type": "string"}},
        "required": ["destination", "nexthop"],
        "additionalProperties": False,
    },
}
_STANDARD = {"name": _STR, "description": _STR, "project_id": _STR, "tenant_id": _STR}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": not props,  # closed unless nothing is described
    }


#: Collection -> (singular, create attributes, attributes required on create).
BODIES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "networks": (
        "network",
        {
            **_STANDARD,
            "admin_state_up": _BOOL,
            "shared": _BOOL,
            "router:external": _BOOL,
            "port_security_enabled": _BOOL,
            "mtu": {"type": "integer", "minimum": 68, "maximum": 9000},
        },
        (),
    ),
    "subnets": (
        "subnet",
        {
            **_STANDARD,
            "network_id": _STR,
            "ip_version": {"enum": [4, 6]},
            "cidr": _STR,
            "gateway_ip": _NSTR,
            "enable_dhcp": _BOOL,
            "allocation_pools": {
                "type": "array",
                "items": _obj({"start": _STR, "end": _STR}, ("start", "end")),
            },
            "dns_nameservers": {"type": "array", "items": _STR},
            "host_routes": _ROUTES,
        },
        ("network_id", "cidr"),
    ),
    "ports": (
        "port",
        {
            **_STANDARD,
            "network_id": _STR,
            "admin_state_up": _BOOL,
            "mac_address": _STR,
            "fixed_ips": {
                "type": "array",
                "items": _obj({"subnet_id": _STR, "ip_address": _STR}),
            },
            "device_id": _STR,
            "device_owner": _STR,
            "binding:host_id": _STR,
            "security_groups": _IDS,
            "port_security_enabled": _BOOL,
            "allowed_address_pairs": {
                "type": "array",
                "items": _obj({"ip_address": _STR, "mac_address": _STR}, ("ip_address",)),
            },
        },
        ("network_id",),
    ),
    "routers": (
        "router",
        {
            **_STANDARD,
            "admin_state_up": _BOOL,
            "external_gateway_info": {
                "type": ["object", "null"],
                "properties": {
                    "network_id": _STR,
                    "enable_snat": _BOOL,
                    "external_fixed_ips": {
                        "type": "array",
                        "items": _obj({"subnet_id": _STR, "ip_address": _STR}),
                    },
                },
                "additionalProperties": False,
            },
            "routes": _ROUTES,
        },
        (),
    ),
    "floatingips": (
        "floatingip",
        {
            "description": _STR,
            "project_id": _STR,
            "tenant_id": _STR,
            "floating_network_id": _STR,
            "floating_ip_address": _STR,
            "subnet_id": _STR,
            "port_id": _NSTR,
            "fixed_ip_address": _NSTR,
        },
        ("floating_network_id",),
    ),
    "security-groups": (
        "security_group",
        {**_STANDARD, "stateful": _BOOL},
        (),
    ),
    "security-group-rules": (
        "security_group_rule",
        {
            "description": _STR,
            "project_id": _STR,
            "tenant_id": _STR,
            "security_group_id": _STR,
            "direction": {"enum": ["ingress", "egress"]},
            "ethertype": {"enum": ["IPv4", "IPv6"]},
            "protocol": {"type": ["string", "integer", "null"]},
            "port_range_min": {"type": ["integer", "null"]},
            "port_range_max": {"type": ["integer", "null"]},
            "remote_ip_prefix": _NSTR,
            "remote_group_id": _NSTR,
        },
        ("security_group_id", "direction"),
    ),
}
#: Attributes a PUT may not change (Neutron: 400 "Cannot update read-only attribute").
_CREATE_ONLY = {
    "network_id", "ip_version", "cidr", "project_id", "tenant_id", "security_group_id",
    "floating_network_id", "floating_ip_address", "subnet_id",
}  # fmt: skip
_INTERFACE = {
    "type": "object",
    "properties": {"subnet_id": _STR, "port_id": _STR},
    "additionalProperties": False,
}


def _body(singular: str, props: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    schema = _obj({singular: _obj(props, required)}, (singular,))
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(operation_id: str, summary: str, responses: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": operation_id, "summary": summary, "responses": {}}
    for code in responses:
        out["responses"][str(code)] = {"description": _REASONS[code]}
    return out


_REASONS = {
    200: "OK",
    201: "Created",
    204: "Deleted",
    400: "Bad request (NeutronError names the field)",
    401: "No or wrong X-Auth-Token",
    403: "Not allowed for this project",
    404: "Not found",
    409: "Conflict (in use, address taken)",
}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _collection_paths(coll: str, singular: str, create: dict[str, Any]) -> dict[str, Any]:
    props, required = create["props"], create["required"]
    update = {k: v for k, v in props.items() if k not in _CREATE_ONLY}
    base = f"/v2.0/{coll}"
    op = coll.replace("-", "_")
    listing = _op(f"list_{op}", f"List {coll}", (200, 400, 401))
    listing["parameters"] = [
        {"name": "fields", "in": "query", "required": False, "schema": {"type": "string"}}
    ]
    post = _op(f"create_{singular}", f"Create a {singular}", (201, 400, 401, 403, 404, 409))
    post["requestBody"] = _body(singular, props, required)
    show = _op(f"show_{singular}", f"Show a {singular}", (200, 401, 404))
    put = _op(f"update_{singular}", f"Update a {singular}", (200, 400, 401, 403, 404, 409))
    put["requestBody"] = _body(singular, update, ())
    delete = _op(f"delete_{singular}", f"Delete a {singular}", (204, 401, 403, 404, 409))
    for item in (show, put, delete):
        item["parameters"] = copy.deepcopy(_ID)
    return {base: {"get": listing, "post": post}, f"{base}/{{id}}": {
        "get": show, "put": put, "delete": delete}}  # fmt: skip


def document(app: FastAPI, collections: Mapping[str, str] = {}) -> dict:
    """FastAPI's document with the generic collection routes made concrete.

    ``collections`` (collection -> singular) are the app's generic ones: those without a
    schema in BODIES yet are described with an open body rather than left out.
    """
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    bodies = dict(BODIES)
    for coll, singular in collections.items():
        bodies.setdefault(coll, (singular, {}, ()))
    paths: dict[str, Any] = {
        path: ops
        for path, ops in doc.get("paths", {}).items()
        if "{coll}" not in path and not path.startswith(tuple(f"/v2.0/{c}" for c in bodies))
    }
    for coll, (singular, props, required) in bodies.items():
        paths.update(_collection_paths(coll, singular, {"props": props, "required": required}))
    for verb in ("add", "remove"):
        op = _op(f"{verb}_router_interface", f"{verb.title()} a router interface",
                 (200, 400, 401, 404, 409))  # fmt: skip
        op["parameters"] = copy.deepcopy(_ID)
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _INTERFACE}},
        }
        paths[f"/v2.0/routers/{{id}}/{verb}_router_interface"] = {"put": op}
    doc["paths"] = paths
    doc.setdefault("components", {})["securitySchemes"] = {
        "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
    }
    doc["security"] = [{"token": []}]
    return doc

"""schemathesis over the tenant API's served OpenAPI document: never a 5xx, and every
4xx is a Neutron error body (type and message), whatever the body, path or query.

Each case starts from the same small world (a network with a subnet, a router on it,
a security group, a port) so generated bodies reach the deeper checks: an id field
that schemathesis fills with a string is, for half the cases, the id of a real object
of the right kind (a subnet on another network, a group of the same project...).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from routeflow.rflib.store import MemoryStore
from routeflow.tenant.api import create_app
from routeflow.tenant.identity import Auth
from routeflow.tenant.repo import Repository

TOKEN = "schema-token"
#: A few seconds in CI; hunt longer by hand with ROUTEFLOW_SCHEMA_EXAMPLES=500 (random).
EXAMPLES = int(os.environ.get("ROUTEFLOW_SCHEMA_EXAMPLES", "8"))
H = {"X-Auth-Token": TOKEN}


def _world() -> tuple[FastAPI, Repository, MemoryStore, dict[str, str]]:
    """An app over a memory store with one object of each kind; their ids by field."""
    store = MemoryStore()
    repo = Repository(store)
    app = create_app(repo, Auth(static_token=TOKEN))
    c = TestClient(app)
    net = c.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=H).json()
    other = c.post("/v2.0/networks", json={"network": {"name": "o"}}, headers=H).json()
    sub = c.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": net["network"]["id"], "cidr": "10.0.0.0/24"}},
        headers=H,
    ).json()["subnet"]
    c.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": other["network"]["id"], "cidr": "10.9.0.0/24"}},
        headers=H,
    )
    router = c.post("/v2.0/routers", json={"router": {"name": "r"}}, headers=H).json()["router"]
    c.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]},
          headers=H)  # fmt: skip
    group = c.post(
        "/v2.0/security-groups", json={"security_group": {"name": "g"}}, headers=H
    ).json()["security_group"]
    port = c.post(
        "/v2.0/ports", json={"port": {"network_id": other["network"]["id"]}}, headers=H
    ).json()["port"]
    rule = c.get("/v2.0/security-group-rules", headers=H).json()["security_group_rules"][0]
    ids = {
        "network_id": net["network"]["id"],
        "subnet_id": sub["id"],  # on `net`: a port on `other` naming it is foreign
        "port_id": port["id"],
        "security_group_id": group["id"],
        "remote_group_id": group["id"],
        "networks": net["network"]["id"],
        "subnets": sub["id"],
        "ports": port["id"],
        "routers": router["id"],
        "security-groups": group["id"],
        "security-group-rules": rule["id"],
    }
    return app, repo, store, ids


APP, REPO, STORE, IDS = _world()
WORLD, KV = REPO.snapshot(), dict(STORE._kv)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def _reset() -> None:
    """Back to the world as built (each case starts from it; the Cloud is immutable)."""
    STORE._kv = dict(KV)
    REPO._cloud = WORLD


def _swap(value: Any, ids: dict[str, str], flip: bool) -> Any:
    """Put real ids into id fields (in place, recursively) when ``flip``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ids and isinstance(item, str) and flip:
                value[key] = ids[key]
            elif key == "security_groups" and isinstance(item, list) and flip:
                value[key] = [ids["security_group_id"]]
            else:
                _swap(item, ids, not flip if isinstance(item, dict) else flip)
    elif isinstance(value, list):
        for item in value:
            _swap(item, ids, flip)
    return value


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES == 8,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_5xx_and_every_4xx_is_a_neutron_error(case: Any) -> None:
    _reset()
    ids = IDS
    flip = len(json.dumps(case.body, default=str)) % 2 == 0
    case.headers = {**(case.headers or {}), **H}
    if case.path_parameters and "id" in case.path_parameters and flip:
        coll = case.path.split("/")[2]
        case.path_parameters["id"] = ids.get(coll, case.path_parameters["id"])
    if isinstance(case.body, dict):
        _swap(case.body, ids, flip)
    response = case.call(timeout=30)
    where = f"{case.method} {case.formatted_path} {case.body!r}"
    assert response.status_code < 500, f"{where} -> {response.status_code} {response.text}"
    if 400 <= response.status_code < 500 and case.path.startswith("/v2.0"):
        err = response.json().get("NeutronError")
        assert isinstance(err, dict), f"{where} -> {response.text}"
        assert isinstance(err.get("type"), str) and isinstance(err.get("message"), str), where


BAD = [
    # (what, method, path, body (str: sent as is), status, words the message must hold)
    ("malformed JSON", "post", "/v2.0/networks", '{"network": {"name": ', 400, ["JSON"]),
    ("body not an object", "post", "/v2.0/networks", "[1, 2]", 400, ["network"]),
    ("overlapping CIDRs", "post", "/v2.0/subnets",
     {"subnet": {"network_id": IDS["network_id"], "cidr": "10.0.0.128/25"}}, 400,
     ["cidr", "overlaps"]),
    ("port without a network", "post", "/v2.0/ports", {"port": {"name": "p"}}, 400,
     ["network_id"]),
    ("bad rule protocol", "post", "/v2.0/security-group-rules",
     {"security_group_rule": {"security_group_id": IDS["security_group_id"],
                              "direction": "ingress", "protocol": "tcpx"}}, 400, ["protocol"]),
    ("bad rule port range", "post", "/v2.0/security-group-rules",
     {"security_group_rule": {"security_group_id": IDS["security_group_id"],
                              "direction": "ingress", "protocol": "udp",
                              "port_range_min": 53, "port_range_max": 70000}}, 400,
     ["port_range_max"]),
    ("unknown attribute", "post", "/v2.0/routers", {"router": {"colour": "red"}}, 400,
     ["colour"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "status", "words"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_input_is_a_neutron_4xx_naming_the_field(
    what: str, method: str, path: str, body: Any, status: int, words: list[str]
) -> None:
    _reset()
    c = TestClient(APP)
    kw: dict[str, Any] = {"content": body} if isinstance(body, str) else {"json": body}
    r = c.request(method.upper(), path, headers={**H, "Content-Type": "application/json"}, **kw)
    assert r.status_code == status, r.text
    err = r.json()["NeutronError"]
    assert err["type"] and all(w in err["message"] for w in words), err


def test_a_port_naming_a_subnet_of_another_network_is_refused() -> None:
    _reset()
    c = TestClient(APP)
    other = next(n for n in REPO.snapshot().networks.values() if n.id != IDS["network_id"])
    body = {"port": {"network_id": other.id, "fixed_ips": [{"subnet_id": IDS["subnet_id"]}]}}
    r = c.post("/v2.0/ports", json=body, headers=H)
    assert r.status_code == 400, r.text
    message = r.json()["NeutronError"]["message"]
    assert "fixed_ips" in message and IDS["subnet_id"] in message, message

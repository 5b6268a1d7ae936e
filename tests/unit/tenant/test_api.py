"""The tenant API's Neutron rules through FastAPI's TestClient (memory store)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.store import MemoryStore
from routeflow.tenant.api import create_app
from routeflow.tenant.identity import Auth, User
from routeflow.tenant.repo import Repository

USERS = [
    User("alice", "pw-a", "proj-a"),
    User("bob", "pw-b", "proj-b"),
    User("root", "pw-r", "admin", ("admin", "member")),
]


@pytest.fixture
def client() -> TestClient:
    repo = Repository(MemoryStore(), clock=lambda: "2026-12-05T00:00:00Z")
    return TestClient(create_app(repo, Auth(static_token="tok", users=USERS)))


def login(c: TestClient, name: str, password: str) -> dict[str, str]:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": name, "password": password, "domain": {"id": "default"}}
                },
            }
        }
    }
    r = c.post("/identity/v3/auth/tokens", json=body)
    assert r.status_code == 201
    catalog = r.json()["token"]["catalog"]
    assert any(e["type"] == "network" for e in catalog)
    return {"X-Auth-Token": r.headers["X-Subject-Token"]}


ADMIN = {"X-Auth-Token": "tok"}


def test_version_document_needs_no_token(client: TestClient) -> None:
    assert client.get("/").json()["versions"][0]["id"] == "v2.0"
    assert client.get("/v2.0/networks").status_code == 401
    assert client.get("/v2.0/networks", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert client.get("/identity/v3").status_code == 200
    bad = {"auth": {"identity": {"password": {"user": {"name": "alice", "password": "x"}}}}}
    assert client.post("/identity/v3/auth/tokens", json=bad).status_code == 401


def test_project_scoping(client: TestClient) -> None:
    alice, bob = login(client, "alice", "pw-a"), login(client, "bob", "pw-b")
    own = client.post("/v2.0/networks", json={"network": {"name": "a"}}, headers=alice).json()
    ext = client.post(
        "/v2.0/networks", json={"network": {"name": "pub", "router:external": True}}, headers=ADMIN
    ).json()
    names = {n["name"] for n in client.get("/v2.0/networks", headers=bob).json()["networks"]}
    assert names == {"pub"}
    assert client.get(f"/v2.0/networks/{own['network']['id']}", headers=bob).status_code == 404
    assert client.delete(f"/v2.0/networks/{ext['network']['id']}", headers=bob).status_code == 404
    r = client.post("/v2.0/networks", json={"network": {"router:external": True}}, headers=bob)
    assert r.status_code == 403


def test_cascades_and_conflicts(client: TestClient) -> None:
    h = ADMIN
    net = client.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=h).json()[
        "network"
    ]
    assert net["mtu"] == 1450 and net["router:external"] is False
    sub = client.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24"}},
        headers=h,
    ).json()["subnet"]
    other = client.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.128/25"}},
        headers=h,
    )
    assert other.status_code == 400 and "cidr" in other.json()["NeutronError"]["message"]
    r1 = client.post("/v2.0/routers", json={"router": {"name": "r"}}, headers=h).json()["router"]
    r = client.put(
        f"/v2.0/routers/{r1['id']}/add_router_interface", json={"subnet_id": sub["id"]}, headers=h
    )
    assert r.status_code == 200 and r.json()["subnet_ids"] == [sub["id"]]
    r = client.put(f"/v2.0/routers/{r1['id']}/add_router_interface", json={}, headers=h)
    assert r.status_code == 400
    assert client.delete(f"/v2.0/routers/{r1['id']}", headers=h).status_code == 409
    assert client.delete(f"/v2.0/subnets/{sub['id']}", headers=h).status_code == 409
    assert client.delete(f"/v2.0/networks/{net['id']}", headers=h).status_code == 409
    port = client.get(f"/v2.0/ports?device_id={r1['id']}", headers=h).json()["ports"][0]
    assert port["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    assert client.delete(f"/v2.0/ports/{port['id']}", headers=h).status_code == 409
    r = client.put(
        f"/v2.0/routers/{r1['id']}/remove_router_interface",
        json={"subnet_id": sub["id"]},
        headers=h,
    )
    assert r.status_code == 200
    r = client.put(
        f"/v2.0/routers/{r1['id']}",
        json={"router": {"external_gateway_info": {"network_id": net["id"]}}},
        headers=h,
    )
    assert r.status_code == 400  # not an external network
    vm = client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}}, headers=h).json()[
        "port"
    ]
    assert vm["fixed_ips"][0]["ip_address"] == "10.0.0.2"
    assert client.delete(f"/v2.0/networks/{net['id']}", headers=h).status_code == 409
    assert client.delete(f"/v2.0/ports/{vm['id']}", headers=h).status_code == 204
    assert client.delete(f"/v2.0/networks/{net['id']}", headers=h).status_code == 204
    assert client.get(f"/v2.0/subnets/{sub['id']}", headers=h).status_code == 404


def test_fields_and_filters(client: TestClient) -> None:
    for name in ("x", "y"):
        client.post("/v2.0/networks", json={"network": {"name": name}}, headers=ADMIN)
    r = client.get("/v2.0/networks?name=y&fields=name&fields=id", headers=ADMIN).json()
    assert len(r["networks"]) == 1 and set(r["networks"][0]) == {"name", "id"}
    assert client.get("/v2.0/extensions/security-group", headers=ADMIN).status_code == 200
    assert client.get("/v2.0/extensions/floatingip-pools", headers=ADMIN).status_code == 404
    aliases = {
        e["alias"] for e in client.get("/v2.0/extensions", headers=ADMIN).json()["extensions"]
    }
    assert {"router", "security-group", "port-security"} <= aliases
    assert "floatingip-pools" not in aliases


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60)
@given(
    st.sampled_from(["networks", "subnets", "ports", "routers"]),
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "network_id",
                "cidr",
                "gateway_ip",
                "allocation_pools",
                "fixed_ips",
                "mac_address",
                "external_gateway_info",
                "admin_state_up",
                "mtu",
                "dns_nameservers",
                "host_routes",
                "routes",
                "ip_version",
                "shared",
            ]
        ),
        json_values,
        max_size=5,
    ),
)
def test_bad_input_never_500(coll: str, body: dict) -> None:
    repo = Repository(MemoryStore())
    c = TestClient(create_app(repo), raise_server_exceptions=False)
    singular = coll[:-1]
    r = c.post(f"/v2.0/{coll}", json={singular: body})
    assert r.status_code in (201, 400, 403, 404, 409), r.text
    if r.status_code != 201:
        assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}

"""Floating IPs and router gateways through the API (Neutron's shapes and 4xx)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.unit.tenant.test_api import ADMIN, client, login  # noqa: F401 (fixture)

FIPS = "/v2.0/floatingips"


def _post(c: TestClient, h: dict, coll: str, body: dict) -> dict:
    singular = coll[:-1]
    r = c.post(f"/v2.0/{coll}", json={singular: body}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()[singular]


def _setup(c: TestClient, h: dict) -> dict:
    """public (external, admin) + a project's net, router with gateway, one VM port."""
    pub = _post(c, ADMIN, "networks", {"name": "public", "router:external": True})
    psub = _post(
        c,
        ADMIN,
        "subnets",
        {
            "network_id": pub["id"],
            "cidr": "203.0.113.0/24",
            "gateway_ip": "203.0.113.1",
            "allocation_pools": [{"start": "203.0.113.10", "end": "203.0.113.20"}],
        },
    )
    net = _post(c, h, "networks", {"name": "n"})
    sub = _post(c, h, "subnets", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    router = _post(
        c, h, "routers", {"name": "r", "external_gateway_info": {"network_id": pub["id"]}}
    )
    r = c.put(
        f"/v2.0/routers/{router['id']}/add_router_interface",
        json={"subnet_id": sub["id"]},
        headers=h,
    )
    assert r.status_code == 200
    port = _post(c, h, "ports", {"network_id": net["id"]})
    port2 = _post(c, h, "ports", {"network_id": net["id"]})
    return {"pub": pub, "psub": psub, "net": net, "sub": sub, "router": router, "port": port,
            "port2": port2}  # fmt: skip


def test_gateway_allocates_from_external_subnet(client: TestClient) -> None:  # noqa: F811
    alice = login(client, "alice", "pw-a")
    s = _setup(client, alice)
    gw = s["router"]["external_gateway_info"]
    assert gw["network_id"] == s["pub"]["id"] and gw["enable_snat"] is True
    assert gw["external_fixed_ips"] == [
        {"subnet_id": s["psub"]["id"], "ip_address": "203.0.113.10"}
    ]


def test_floatingip_lifecycle(client: TestClient) -> None:  # noqa: F811
    alice = login(client, "alice", "pw-a")
    s = _setup(client, alice)
    fip = _post(client, alice, "floatingips", {"floating_network_id": s["pub"]["id"]})
    assert fip["floating_ip_address"] == "203.0.113.11"  # .10 is the router's gateway
    assert (fip["port_id"], fip["router_id"], fip["status"]) == (None, None, "DOWN")
    # Associate, show, list with a filter.
    r = client.put(f"{FIPS}/{fip['id']}", json={"floatingip": {"port_id": s["port"]["id"]}},
                   headers=alice)  # fmt: skip
    assert r.status_code == 200, r.text
    got = r.json()["floatingip"]
    assert got["router_id"] == s["router"]["id"] and got["status"] == "ACTIVE"
    assert got["fixed_ip_address"] == s["port"]["fixed_ips"][0]["ip_address"]
    listed = client.get(f"{FIPS}?port_id={s['port']['id']}", headers=alice).json()["floatingips"]
    assert [f["id"] for f in listed] == [fip["id"]]
    # Bob sees nothing of it.
    bob = login(client, "bob", "pw-b")
    assert client.get(f"{FIPS}/{fip['id']}", headers=bob).status_code == 404
    assert client.get(FIPS, headers=bob).json()["floatingips"] == []
    # A second floating IP on the same fixed IP: 409; on the other port: fine.
    fip2 = _post(client, alice, "floatingips", {"floating_network_id": s["pub"]["id"]})
    r = client.put(f"{FIPS}/{fip2['id']}", json={"floatingip": {"port_id": s["port"]["id"]}},
                   headers=alice)  # fmt: skip
    assert r.status_code == 409
    assert r.json()["NeutronError"]["type"] == "FloatingIPPortAlreadyAssociated"
    # The router's gateway and interface are in use now.
    r = client.put(f"/v2.0/routers/{s['router']['id']}",
                   json={"router": {"external_gateway_info": {}}}, headers=alice)  # fmt: skip
    assert r.status_code == 409
    r = client.put(f"/v2.0/routers/{s['router']['id']}/remove_router_interface",
                   json={"subnet_id": s["sub"]["id"]}, headers=alice)  # fmt: skip
    assert r.status_code == 409
    # The external network cannot go while the address is held.
    assert client.delete(f"/v2.0/networks/{s['pub']['id']}", headers=ADMIN).status_code == 409
    # Re-associate (move), then delete the port: disassociated, not deleted.
    r = client.put(f"{FIPS}/{fip['id']}", json={"floatingip": {"port_id": s["port2"]["id"]}},
                   headers=alice)  # fmt: skip
    assert r.json()["floatingip"]["fixed_ip_address"] == s["port2"]["fixed_ips"][0]["ip_address"]
    assert client.delete(f"/v2.0/ports/{s['port2']['id']}", headers=alice).status_code == 204
    got = client.get(f"{FIPS}/{fip['id']}", headers=alice).json()["floatingip"]
    assert (got["port_id"], got["router_id"], got["status"]) == (None, None, "DOWN")
    # Delete frees the address.
    assert client.delete(f"{FIPS}/{fip['id']}", headers=alice).status_code == 204
    assert client.get(f"{FIPS}/{fip['id']}", headers=alice).status_code == 404
    body = {"floating_network_id": s["pub"]["id"], "floating_ip_address": "203.0.113.11"}
    again = _post(client, alice, "floatingips", body)
    assert again["floating_ip_address"] == "203.0.113.11"


def test_floatingip_errors_name_the_field(client: TestClient) -> None:  # noqa: F811
    alice = login(client, "alice", "pw-a")
    s = _setup(client, alice)

    def post(body: object) -> tuple[int, dict]:
        r = client.post(FIPS, json={"floatingip": body}, headers=alice)
        return r.status_code, r.json().get("NeutronError", {})

    code, err = post({})
    assert code == 400 and "floating_network_id" in err["message"]
    code, err = post({"floating_network_id": "nope"})
    assert code == 404 and err["type"] == "NetworkNotFound"
    code, err = post({"floating_network_id": s["net"]["id"]})
    assert code == 400 and "external" in err["message"]
    code, err = post({"floating_network_id": s["pub"]["id"], "floating_ip_address": "x"})
    assert code == 400 and "floating_ip_address" in err["message"]
    code, err = post({"floating_network_id": s["pub"]["id"], "floating_ip_address": "203.0.113.10"})
    assert code == 409 and err["type"] == "IpAddressInUse"
    code, err = post({"floating_network_id": s["pub"]["id"], "port_id": "nope"})
    assert code == 404 and err["type"] == "PortNotFound"
    code, err = post({"floating_network_id": s["pub"]["id"], "port_id": s["port"]["id"],
                      "fixed_ip_address": "10.9.9.9"})  # fmt: skip
    assert code == 400 and "fixed ip" in err["message"]
    code, err = post({"floating_network_id": s["pub"]["id"], "bogus": 1})
    assert code == 400 and "bogus" in err["message"]
    # A port on a network no router joins to public: 404.
    other = _post(client, alice, "networks", {"name": "o"})
    _post(client, alice, "subnets", {"network_id": other["id"], "cidr": "10.1.0.0/24"})
    lonely = _post(client, alice, "ports", {"network_id": other["id"]})
    code, err = post({"floating_network_id": s["pub"]["id"], "port_id": lonely["id"]})
    assert code == 404 and err["type"] == "ExternalGatewayForFloatingIPNotFound"
    # Nothing was allocated by the failures.
    assert client.get(FIPS, headers=alice).json()["floatingips"] == []
    fip = _post(client, alice, "floatingips", {"floating_network_id": s["pub"]["id"]})
    r = client.put(f"{FIPS}/{fip['id']}", json={"floatingip": {"floating_ip_address": "1.2.3.4"}},
                   headers=alice)  # fmt: skip
    assert r.status_code == 400
    assert client.put(f"{FIPS}/nope", json={"floatingip": {}}, headers=alice).status_code == 404
    assert client.get("/v2.0/extensions/router", headers=alice).status_code == 200
    assert client.get("/v2.0/extensions/floatingip-pools", headers=alice).status_code == 404

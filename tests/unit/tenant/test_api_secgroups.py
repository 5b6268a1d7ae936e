"""Security groups and rules through the API (Neutron's shapes, defaults and 4xx)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.unit.tenant.test_api import ADMIN, client, login  # noqa: F401 (fixture)

SG = "/v2.0/security-groups"
RULES = "/v2.0/security-group-rules"


def _net(c: TestClient, h: dict) -> str:
    net = c.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=h).json()["network"]
    sub = {"network_id": net["id"], "cidr": "10.0.0.0/24"}
    assert c.post("/v2.0/subnets", json={"subnet": sub}, headers=h).status_code == 201
    return net["id"]


def _rule(c: TestClient, h: dict, **body: object) -> tuple[int, dict]:
    r = c.post(RULES, json={"security_group_rule": body}, headers=h)
    return r.status_code, r.json() if r.content else {}


def test_default_group_on_first_use(client: TestClient) -> None:  # noqa: F811
    alice = login(client, "alice", "pw-a")
    groups = client.get(SG, headers=alice).json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
    default = groups[0]
    rules = {
        (r["direction"], r["ethertype"], r["remote_group_id"])
        for r in default["security_group_rules"]
    }
    assert rules == {
        ("egress", "IPv4", None),
        ("egress", "IPv6", None),
        ("ingress", "IPv4", default["id"]),
        ("ingress", "IPv6", default["id"]),
    }
    # Listing again creates nothing; a port without groups gets the default one.
    assert len(client.get(SG, headers=alice).json()["security_groups"]) == 1
    net = _net(client, alice)
    port = client.post("/v2.0/ports", json={"port": {"network_id": net}}, headers=alice).json()
    assert port["port"]["security_groups"] == [default["id"]]
    assert port["port"]["port_security_enabled"] is True
    # A second default, renaming or deleting it: 409.
    r = client.post(SG, json={"security_group": {"name": "default"}}, headers=alice)
    assert r.status_code == 409
    r = client.put(f"{SG}/{default['id']}", json={"security_group": {"name": "x"}}, headers=alice)
    assert r.status_code == 409
    assert client.delete(f"{SG}/{default['id']}", headers=alice).status_code == 409
    # Bob sees only his own default.
    bob = login(client, "bob", "pw-b")
    assert client.get(f"{SG}/{default['id']}", headers=bob).status_code == 404
    bobs = client.get(SG, headers=bob).json()["security_groups"]
    assert [g["name"] for g in bobs] == ["default"]
    assert bobs[0]["project_id"] not in (default["project_id"], "")


def test_group_and_rule_lifecycle(client: TestClient) -> None:  # noqa: F811
    h = ADMIN
    web = client.post(SG, json={"security_group": {"name": "web"}}, headers=h).json()
    gid = web["security_group"]["id"]
    assert {r["direction"] for r in web["security_group"]["security_group_rules"]} == {"egress"}
    code, body = _rule(
        client, h, security_group_id=gid, direction="ingress", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.5",
    )  # fmt: skip
    assert code == 201, body
    rule = body["security_group_rule"]
    assert rule["remote_ip_prefix"] == "10.0.0.5/32" and rule["protocol"] == "tcp"
    assert rule["security_group_id"] == gid and rule["created_at"]
    # The same rule again (protocol by number): 409 naming the rule.
    code, body = _rule(
        client, h, security_group_id=gid, direction="ingress", protocol="6",
        port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.5/32",
    )  # fmt: skip
    assert code == 409 and rule["id"] in body["NeutronError"]["message"]
    assert client.get(f"{RULES}/{rule['id']}", headers=h).json()["security_group_rule"] == rule
    listed = client.get(f"{RULES}?security_group_id={gid}&direction=ingress", headers=h).json()
    assert [r["id"] for r in listed["security_group_rules"]] == [rule["id"]]
    group = client.get(f"{SG}/{gid}", headers=h).json()["security_group"]
    assert group["revision_number"] == 2
    # In use by a port: 409; after the port goes, deleted.
    net = _net(client, h)
    port = client.post(
        "/v2.0/ports", json={"port": {"network_id": net, "security_groups": [gid]}}, headers=h
    ).json()["port"]
    assert client.delete(f"{SG}/{gid}", headers=h).status_code == 409
    assert client.delete(f"{RULES}/{rule['id']}", headers=h).status_code == 204
    assert client.get(f"{RULES}/{rule['id']}", headers=h).status_code == 404
    assert client.delete(f"/v2.0/ports/{port['id']}", headers=h).status_code == 204
    assert client.delete(f"{SG}/{gid}", headers=h).status_code == 204
    assert client.get(f"{SG}/{gid}", headers=h).status_code == 404


BAD_RULES = [
    ({"direction": "sideways"}, 400, "direction"),
    ({"direction": "ingress", "ethertype": "IPv5"}, 400, "ethertype"),
    ({"direction": "ingress", "protocol": "bogus"}, 400, "protocol"),
    ({"direction": "ingress", "protocol": 256}, 400, "protocol"),
    ({"direction": "ingress", "protocol": "tcp", "port_range_min": 80,
      "port_range_max": 22}, 400, "port_range_min"),
    ({"direction": "ingress", "port_range_min": 22, "port_range_max": 22}, 400, "protocol"),
    ({"direction": "ingress", "protocol": "gre", "port_range_min": 1,
      "port_range_max": 2}, 400, "protocol"),
    ({"direction": "ingress", "protocol": "tcp", "port_range_min": 1,
      "port_range_max": 70000}, 400, "port_range_max"),
    ({"direction": "ingress", "protocol": "icmp", "port_range_min": 300}, 400, "ICMP type"),
    ({"direction": "ingress", "protocol": "icmp", "port_range_min": 1,
      "port_range_max": 256}, 400, "port-range-max"),
    ({"direction": "ingress", "protocol": "tcp", "port_range_min": -16,
      "port_range_max": 80}, 400, "Invalid value for port -16 (port_range_min)"),
    ({"direction": "ingress", "protocol": "icmp", "port_range_max": 0}, 400, "ICMP"),
    ({"direction": "ingress", "remote_ip_prefix": "2001:db8::/64"}, 400, "ethertype"),
    ({"direction": "ingress", "remote_ip_prefix": "10.0.0.0/33"}, 400, "remote_ip_prefix"),
    ({"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8",
      "remote_group_id": "x"}, 400, "remote_group_id"),
    ({"direction": "ingress", "remote_group_id": "nope"}, 404, "nope"),
    ({"direction": "ingress", "colour": "red"}, 400, "colour"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "named"), BAD_RULES)
def test_bad_rules_get_neutron_errors(
    client: TestClient,  # noqa: F811
    body: dict,
    status: int,
    named: str,
) -> None:
    gid = client.post(SG, json={"security_group": {"name": "g"}}, headers=ADMIN).json()[
        "security_group"
    ]["id"]
    code, out = _rule(client, ADMIN, security_group_id=gid, **body)
    assert code == status, out
    assert named in out["NeutronError"]["message"], out


def test_rule_on_an_unknown_or_foreign_group_is_404(client: TestClient) -> None:  # noqa: F811
    code, _ = _rule(client, ADMIN, security_group_id="nope", direction="ingress")
    assert code == 404
    alice, bob = login(client, "alice", "pw-a"), login(client, "bob", "pw-b")
    gid = client.post(SG, json={"security_group": {"name": "a"}}, headers=alice).json()[
        "security_group"
    ]["id"]
    code, _ = _rule(client, bob, security_group_id=gid, direction="ingress")
    assert code == 404


def test_port_security(client: TestClient) -> None:  # noqa: F811
    h = ADMIN
    net = _net(client, h)
    # Off at create with no groups: no groups at all.
    off = client.post(
        "/v2.0/ports", json={"port": {"network_id": net, "port_security_enabled": False}}, headers=h
    ).json()["port"]
    assert off["security_groups"] == [] and off["port_security_enabled"] is False
    gid = client.post(SG, json={"security_group": {"name": "g"}}, headers=h).json()[
        "security_group"
    ]["id"]
    # Off together with groups: 400; turning it off while groups stay: 409.
    r = client.post(
        "/v2.0/ports",
        json={
            "port": {"network_id": net, "port_security_enabled": False, "security_groups": [gid]}
        },
        headers=h,
    )
    assert r.status_code == 400 and "security" in r.json()["NeutronError"]["message"].lower()
    on = client.post("/v2.0/ports", json={"port": {"network_id": net}}, headers=h).json()["port"]
    url = f"/v2.0/ports/{on['id']}"
    r = client.put(url, json={"port": {"port_security_enabled": False}}, headers=h)
    assert r.status_code == 409
    r = client.put(
        url, json={"port": {"port_security_enabled": False, "security_groups": []}}, headers=h
    )
    assert r.status_code == 200 and r.json()["port"]["security_groups"] == []
    r = client.put(url, json={"port": {"security_groups": ["missing"]}}, headers=h)
    assert r.status_code == 404
    # A network with port security off gives its ports none by default.
    n2 = client.post(
        "/v2.0/networks", json={"network": {"name": "open", "port_security_enabled": False}},
        headers=h,
    ).json()["network"]["id"]  # fmt: skip
    p2 = client.post("/v2.0/ports", json={"port": {"network_id": n2}}, headers=h).json()["port"]
    assert p2["port_security_enabled"] is False and p2["security_groups"] == []

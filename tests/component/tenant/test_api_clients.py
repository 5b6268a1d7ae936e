"""The tenant API driven by real clients: openstacksdk and the `openstack` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from tests.component.tenant.conftest import TOKEN, VENV_BIN, TenantServer

openstack = pytest.importorskip("openstack")


def sdk(server: TenantServer):
    return openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": server.url, "token": TOKEN},
        network_endpoint_override=server.url + "/",
        region_name="RegionOne",
    )


def cli(server: TenantServer, *commands: str) -> str:
    """Run `commands` in one interactive `openstack` process (its start-up costs seconds)."""
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(server.clouds_yaml()), OS_CLOUD="rf")
    done = subprocess.run(
        [str(VENV_BIN / "openstack")],
        input="\n".join(commands) + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Interactive mode exits 1 at end of input whatever happened: judge by stderr and state.
    assert "Error" not in done.stderr and "Failed" not in done.stderr, done.stderr
    return done.stdout


def raw(
    server: TenantServer, method: str, path: str, body: object = None, token: str | None = TOKEN
):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_cli_workflow(tenant_server: TenantServer) -> None:
    s = tenant_server
    cli(
        s,
        "network create public --external",
        "subnet create public-v4 --network public --subnet-range 203.0.113.0/24"
        " --gateway 203.0.113.254 --allocation-pool start=203.0.113.10,end=203.0.113.100",
        "network create net-a",
        "subnet create sub-a --network net-a --subnet-range 10.10.0.0/24"
        " --dns-nameserver 192.0.2.53",
        "router create r1",
        "router add subnet r1 sub-a",
        "router set r1 --external-gateway public",
        "port create vm1 --network net-a --fixed-ip subnet=sub-a,ip-address=10.10.0.11",
    )
    net = raw(s, "GET", "/v2.0/networks?name=net-a")[1]["networks"][0]
    assert net["mtu"] == 1450
    sub = raw(s, "GET", "/v2.0/subnets?name=sub-a")[1]["subnets"][0]
    assert sub["gateway_ip"] == "10.10.0.1"
    assert sub["allocation_pools"] == [{"start": "10.10.0.2", "end": "10.10.0.254"}]
    router = raw(s, "GET", "/v2.0/routers?name=r1")[1]["routers"][0]
    assert router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == "203.0.113.10"
    port = raw(s, "GET", "/v2.0/ports?name=vm1")[1]["ports"][0]
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.10.0.11"}]
    assert port["mac_address"].startswith("fa:16:3e:")
    out = cli(
        s,
        "router unset r1 --external-gateway",
        "router remove subnet r1 sub-a",
        "port delete vm1",
        "network delete net-a",
        "router delete r1",
        "network list -f value -c Name",
    )
    assert "net-a" not in out and "public" in out
    assert raw(s, "GET", "/v2.0/routers?name=r1")[1]["routers"] == []
    assert raw(s, "GET", "/v2.0/subnets?name=sub-a")[1]["subnets"] == []


def test_sdk_workflow_errors_and_sigkill(tenant_server: TenantServer) -> None:
    s = tenant_server
    conn = sdk(s)
    net = conn.network.create_network(name="sdk-net")
    sub = conn.network.create_subnet(
        network_id=net.id, cidr="10.20.0.0/24", ip_version=4, name="sdk-sub"
    )
    router = conn.network.create_router(name="sdk-r")
    conn.network.add_interface_to_router(router, subnet_id=sub.id)
    ports = [conn.network.create_port(network_id=net.id, name=f"p{i}") for i in range(5)]
    assert [p.fixed_ips[0]["ip_address"] for p in ports] == [f"10.20.0.{i}" for i in range(2, 7)]
    assert conn.network.find_network("sdk-net").id == net.id
    assert conn.network.find_network("nope") is None

    # Neutron-shaped errors: 404, 409, 400 naming the field, 401 without a token.
    code, body = raw(s, "GET", "/v2.0/networks/nope")
    assert code == 404 and body["NeutronError"]["type"] == "NetworkNotFound"
    code, body = raw(s, "DELETE", f"/v2.0/subnets/{sub.id}")
    assert code == 409 and body["NeutronError"]["type"] == "SubnetInUse"
    code, body = raw(s, "DELETE", f"/v2.0/routers/{router.id}")
    assert code == 409 and body["NeutronError"]["type"] == "RouterInUse"
    code, body = raw(s, "POST", "/v2.0/subnets", {"subnet": {"network_id": net.id, "cidr": "bad"}})
    assert code == 400 and "cidr" in body["NeutronError"]["message"]
    code, body = raw(s, "POST", "/v2.0/ports", {"port": {"network_id": net.id, "mac_address": 5}})
    assert code == 400 and "mac_address" in body["NeutronError"]["message"]
    code, body = raw(s, "GET", "/v2.0/networks", token=None)
    assert code == 401
    code, body = raw(s, "GET", "/v2.0/extensions/qos")
    assert code == 404

    before = raw(s, "GET", "/v2.0/ports")[1]
    s.restart(kill=True)  # SIGKILL: every acknowledged write must survive
    assert raw(s, "GET", "/v2.0/ports")[1] == before
    conn = sdk(s)
    conn.network.remove_interface_from_router(router, subnet_id=sub.id)
    for p in ports:
        conn.network.delete_port(p)
    conn.network.delete_router(router)
    conn.network.delete_network(net)  # takes its subnet along
    assert conn.network.find_subnet("sdk-sub") is None


def test_port_create_rate(tenant_server: TenantServer) -> None:
    """Not a timed assertion: prints the rate for the report (target >= 150/s)."""
    conn = sdk(tenant_server)
    net = conn.network.create_network(name="bench")
    conn.network.create_subnet(network_id=net.id, cidr="10.30.0.0/22", ip_version=4)
    n = 100
    start = time.perf_counter()
    ports = [conn.network.create_port(network_id=net.id) for _ in range(n)]
    rate = n / (time.perf_counter() - start)
    print(f"port creates/s, one sequential openstacksdk client, sqlite: {rate:.0f}")
    assert len({p.mac_address for p in ports}) == n
    for p in ports:
        conn.network.delete_port(p)
    conn.network.delete_network(net)


def test_cli_security_groups(tenant_server: TenantServer) -> None:
    """The README's security group commands, through the `openstack` CLI."""
    s = tenant_server
    cli(
        s,
        "security group create web",
        "security group rule create web --ingress --protocol tcp --dst-port 22"
        " --remote-ip 0.0.0.0/0",
        "security group rule create web --ingress --protocol icmp --remote-group web",
        "network create net-sg",
        "subnet create sub-sg --network net-sg --subnet-range 10.20.0.0/24",
        "port create vm-sg --network net-sg --security-group web",
        "port create vm-def --network net-sg",
        "port set vm-def --no-security-group --disable-port-security",
    )
    web = raw(s, "GET", "/v2.0/security-groups?name=web")[1]["security_groups"][0]
    rules = {
        (r["direction"], r["protocol"], r["port_range_min"], r["remote_group_id"])
        for r in web["security_group_rules"]
    }
    assert ("ingress", "tcp", 22, None) in rules and ("ingress", "icmp", None, web["id"]) in rules
    port = raw(s, "GET", "/v2.0/ports?name=vm-sg")[1]["ports"][0]
    assert port["security_groups"] == [web["id"]]
    plain = raw(s, "GET", "/v2.0/ports?name=vm-def")[1]["ports"][0]
    assert plain["security_groups"] == [] and plain["port_security_enabled"] is False
    bad = {
        "security_group_rule": {
            "security_group_id": web["id"],
            "direction": "ingress",
            "protocol": "tcp",
            "port_range_min": 80,
            "port_range_max": 22,
        }
    }
    code, body = raw(s, "POST", "/v2.0/security-group-rules", bad)
    assert code == 400 and "port_range_min" in body["NeutronError"]["message"]
    code, body = raw(s, "DELETE", f"/v2.0/security-groups/{web['id']}")
    assert code == 409 and body["NeutronError"]["type"] == "SecurityGroupInUse"

"""Floating IPs and router gateways driven by real clients: the `openstack` CLI, openstacksdk."""

from __future__ import annotations

import pytest
from tests.component.tenant.conftest import TenantServer
from tests.component.tenant.test_api_clients import cli, raw, sdk

pytest.importorskip("openstack")


def test_cli_floating_ips(tenant_server: TenantServer) -> None:
    """The README's commands: external network, gateway, floating IP create/set/unset
    (two CLI processes: each start costs seconds)."""
    s = tenant_server
    out = cli(
        s,
        "network create fip-public --external",
        "subnet create fip-public-v4 --network fip-public --subnet-range 192.0.2.0/24"
        " --gateway 192.0.2.1 --allocation-pool start=192.0.2.10,end=192.0.2.99",
        "network create fip-net",
        "subnet create fip-sub --network fip-net --subnet-range 10.40.0.0/24",
        "router create fip-r",
        "router add subnet fip-r fip-sub",
        "router set fip-r --external-gateway fip-public",
        "port create fip-vm1 --network fip-net",
        "port create fip-vm2 --network fip-net",
        "floating ip create fip-public --port fip-vm1 --floating-ip-address 192.0.2.50",
        "floating ip set 192.0.2.50 --port fip-vm2",
        "floating ip list -f value -c Port",
    )
    router = raw(s, "GET", "/v2.0/routers?name=fip-r")[1]["routers"][0]
    gw = router["external_gateway_info"]
    assert gw["enable_snat"] is True and gw["external_fixed_ips"][0]["ip_address"] == "192.0.2.10"
    vm2 = raw(s, "GET", "/v2.0/ports?name=fip-vm2")[1]["ports"][0]
    assert vm2["id"] in out
    fip = raw(s, "GET", "/v2.0/floatingips?floating_ip_address=192.0.2.50")[1]["floatingips"][0]
    assert fip["port_id"] == vm2["id"] and fip["router_id"] == router["id"]
    assert fip["fixed_ip_address"] == vm2["fixed_ips"][0]["ip_address"]
    assert fip["status"] == "ACTIVE"
    # 409 while a floating IP uses the gateway.
    code, body = raw(
        s, "PUT", f"/v2.0/routers/{router['id']}", {"router": {"external_gateway_info": {}}}
    )
    assert code == 409 and body["NeutronError"]["type"] == "RouterExternalGatewayInUseByFloatingIp"
    out = cli(
        s,
        "floating ip unset 192.0.2.50 --port",
        "floating ip show 192.0.2.50 -f value -c status",
        "floating ip delete 192.0.2.50",
        "router unset fip-r --external-gateway",
        "router remove subnet fip-r fip-sub",
        "port delete fip-vm1 fip-vm2",
        "router delete fip-r",
        "network delete fip-net fip-public",
    )
    assert "DOWN" in out
    assert raw(s, "GET", "/v2.0/floatingips")[1]["floatingips"] == []
    assert raw(s, "GET", "/v2.0/networks?name=fip-public")[1]["networks"] == []


def test_sdk_floating_ips(tenant_server: TenantServer) -> None:
    s = tenant_server
    conn = sdk(s)
    pub = conn.network.create_network(name="sdk-pub", is_router_external=True)
    conn.network.create_subnet(network_id=pub.id, cidr="198.18.0.0/24", ip_version=4)
    net = conn.network.create_network(name="sdk-fnet")
    sub = conn.network.create_subnet(network_id=net.id, cidr="10.41.0.0/24", ip_version=4)
    router = conn.network.create_router(
        name="sdk-fr", external_gateway_info={"network_id": pub.id, "enable_snat": True}
    )
    conn.network.add_interface_to_router(router, subnet_id=sub.id)
    port = conn.network.create_port(network_id=net.id)
    fip = conn.network.create_ip(floating_network_id=pub.id, port_id=port.id)
    assert fip.router_id == router.id and fip.fixed_ip_address == port.fixed_ips[0]["ip_address"]
    assert conn.network.get_ip(fip.id).floating_ip_address == fip.floating_ip_address
    assert [f.id for f in conn.network.ips(port_id=port.id)] == [fip.id]
    fip = conn.network.update_ip(fip, port_id=None)
    assert fip.port_id is None and fip.router_id is None
    conn.network.delete_ip(fip)
    assert conn.network.find_ip(fip.id) is None
    conn.network.remove_interface_from_router(router, subnet_id=sub.id)
    conn.network.update_router(router, external_gateway_info={})
    conn.network.delete_port(port)
    conn.network.delete_router(router)
    conn.network.delete_network(net)
    conn.network.delete_network(pub)

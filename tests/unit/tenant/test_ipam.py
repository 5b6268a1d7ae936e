"""IPAM: Neutron's defaults and checks, and properties of allocation."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routeflow.tenant import ipam
from routeflow.tenant.model import AllocationPool


def test_defaults_gateway_first_host_pool_the_rest() -> None:
    net = ipam.parse_cidr("10.10.0.0/24")
    gw = ipam.default_gateway(net)
    assert gw == "10.10.0.1"
    assert ipam.default_pools(net, gw) == (AllocationPool("10.10.0.2", "10.10.0.254"),)
    assert ipam.default_pools(net, "10.10.0.254") == (AllocationPool("10.10.0.1", "10.10.0.253"),)


@pytest.mark.parametrize(
    ("pools", "gateway", "field"),
    [
        ([AllocationPool("10.0.0.10", "10.0.1.5")], None, "allocation_pools"),
        ([AllocationPool("10.0.0.10", "10.0.0.5")], None, "allocation_pools"),
        (
            [AllocationPool("10.0.0.2", "10.0.0.20"), AllocationPool("10.0.0.20", "10.0.0.30")],
            None,
            "allocation_pools",
        ),
        ([AllocationPool("10.0.0.1", "10.0.0.20")], "10.0.0.1", "gateway_ip"),
        ([AllocationPool("nope", "10.0.0.20")], None, "allocation_pools"),
    ],
)
def test_bad_pools_name_the_field(pools, gateway, field) -> None:
    with pytest.raises(ipam.IpamError) as err:
        ipam.check_pools(ipam.parse_cidr("10.0.0.0/24"), pools, gateway)
    assert err.value.field == field


def test_bad_cidr_and_gateway() -> None:
    with pytest.raises(ipam.IpamError, match="cidr"):
        ipam.parse_cidr("10.0.0.1/24")
    with pytest.raises(ipam.IpamError, match="IPv4"):
        ipam.parse_cidr("2001:db8::/64")
    with pytest.raises(ipam.IpamError) as err:
        ipam.check_gateway(ipam.parse_cidr("10.0.0.0/24"), "10.0.1.1")
    assert err.value.field == "gateway_ip"


def test_allocate_requested_and_next_free() -> None:
    pools = (AllocationPool("10.0.0.2", "10.0.0.4"),)
    assert ipam.allocate_ip("10.0.0.0/24", pools, {"10.0.0.2"}) == "10.0.0.3"
    assert ipam.allocate_ip("10.0.0.0/24", pools, set(), requested="10.0.0.99") == "10.0.0.99"
    with pytest.raises(ipam.IpAddressInUse):
        ipam.allocate_ip("10.0.0.0/24", pools, {"10.0.0.99"}, requested="10.0.0.99")
    with pytest.raises(ipam.IpamError):
        ipam.allocate_ip("10.0.0.0/24", pools, set(), requested="10.0.1.1")
    with pytest.raises(ipam.Exhausted):
        ipam.allocate_ip("10.0.0.0/24", pools, {"10.0.0.2", "10.0.0.3", "10.0.0.4"})


@given(st.integers(min_value=8, max_value=30), st.sets(st.integers(min_value=0, max_value=300)))
def test_allocated_ip_is_free_and_in_pool(prefix: int, used_offsets: set[int]) -> None:
    net = ipaddress.ip_network(f"10.0.0.0/{prefix}")
    gw = ipam.default_gateway(net)
    pools = ipam.default_pools(net, gw)
    used = {str(net.network_address + o) for o in used_offsets if net.network_address + o in net}
    try:
        ip = ipam.allocate_ip(str(net), pools, used)
    except ipam.Exhausted:
        hosts = {str(h) for h in net.hosts()} - {gw}
        assert hosts <= used
        return
    assert ip not in used and ip != gw
    assert any(
        int(ipaddress.ip_address(p.start))
        <= int(ipaddress.ip_address(ip))
        <= int(ipaddress.ip_address(p.end))
        for p in pools
    )


@given(st.integers(min_value=8, max_value=30))
def test_default_pools_pass_their_own_checks(prefix: int) -> None:
    net = ipaddress.ip_network(f"10.0.0.0/{prefix}")
    gw = ipam.default_gateway(net)
    ipam.check_pools(net, ipam.default_pools(net, gw), gw)


@given(st.integers(min_value=0, max_value=(1 << 24) - 1))
def test_macs_are_unicast_local_prefix_and_distinct(seed: int) -> None:
    mac = ipam.make_mac(seed)
    assert mac.startswith("fa:16:3e:") and ipam.check_mac(mac) == mac
    assert ipam.make_mac(seed) == mac  # deterministic
    assert ipam.make_mac(seed + 1) != mac
    assert ipam.allocate_mac(seed, {mac}) != mac


@given(st.sets(st.integers(min_value=1, max_value=50)))
def test_lowest_free(used: set[int]) -> None:
    value = ipam.lowest_free(used, 1, 100)
    assert value not in used and all(v in used for v in range(1, value))


def test_overlapping() -> None:
    assert ipam.overlapping(["10.0.0.0/24", "10.1.0.0/24"]) is None
    assert ipam.overlapping(["10.0.0.0/16", "10.0.5.0/24"]) == ("10.0.0.0/16", "10.0.5.0/24")

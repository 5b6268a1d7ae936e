"""The cloud section of lab files: derived addresses and every problem named by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from routeflow.lab.cloud import (
    CloudLab,
    isolation_pairs,
    routed_pairs,
    run_names,
    same_network_pairs,
    shared_address_pairs,
)
from routeflow.lab.model import LabError, load_lab, parse_lab

LABS = Path(__file__).resolve().parents[3] / "labs"


def test_the_shipped_cloud_lab() -> None:
    lab = load_lab(LABS / "cloud.yaml")
    assert lab.switches == () and lab.cloud is not None
    cloud = lab.cloud
    assert [n.tunnel_ip for n in cloud.nodes] == [
        "198.51.100.1/24",
        "198.51.100.2/24",
        "198.51.100.3/24",
    ]
    assert cloud.mtu == 1450
    a, b = cloud.tenants
    assert [n.cidr for n in a.networks] == [n.cidr for n in b.networks]  # overlapping on purpose
    assert a.networks[0].gateway_ip == "10.0.1.1"
    assert {vm.node for t in cloud.tenants for vm in t.vms} == {"c1", "c2", "c3"}


def test_no_switches_without_a_cloud_is_still_an_error() -> None:
    with pytest.raises(LabError, match="at least one switch"):
        parse_lab("name: x\nswitches: []\n")


BAD = """
name: bad
switches: []
cloud:
  underlay: 198.51.100.0/30
  underlay_mtu: 1400
  mtu: 1400
  nodes: [{name: c1}, {name: c1}, {name: C_3}]
  tenants:
    - name: t
      networks:
        - {name: n1, cidr: 10.0.0.0/24}
        - {name: n2, cidr: 10.0.0.128/25}
        - {name: n3, cidr: nope}
      routers: [{name: r, networks: [n1, other]}]
      vms: [{name: v1, network: n9, node: c7}, {name: v1, network: n1, node: c1}]
"""


def test_problems_are_named_by_path() -> None:
    with pytest.raises(LabError) as info:
        parse_lab(BAD)
    text = str(info.value)
    for needle in [
        "cloud.underlay: 198.51.100.0/30 has no room for 3 nodes",
        "cloud.mtu: 1400 does not fit the underlay: at most 1350",
        "cloud.tenants[0].networks[1].cidr: 10.0.0.128/25 overlaps networks[0]",
        "cloud.tenants[0].networks[2].cidr: 'nope' is not an IPv4 network",
        "cloud.tenants[0].routers[0].networks: 'other' is not a network of tenant 't'",
        "cloud.tenants[0].vms[0].network: 'n9' is not a network",
        "cloud.tenants[0].vms[1].name: duplicate VM 'v1'",
    ]:
        assert needle in text, text


def test_node_names_and_unknown_fields() -> None:
    with pytest.raises(LabError) as info:
        parse_lab("name: x\nswitches: []\ncloud: {nodes: [{name: c1}, {name: c1}, {name: C_3}]}\n")
    text = str(info.value)
    assert "cloud.nodes[1].name: duplicate node 'c1'" in text
    assert "cloud.nodes[2].name: 'C_3' must be" in text
    with pytest.raises(LabError, match="unknown field 'nodez'"):
        parse_lab("name: x\nswitches: []\ncloud: {nodez: []}\n")


VM_IPS = """
name: x
switches: []
cloud:
  nodes: [{name: c1}]
  tenants:
    - name: t
      networks: [{name: n1, cidr: 10.0.0.0/24}]
      vms:
        - {name: v1, network: n1, node: c1, ip: 10.0.0.1}
        - {name: v2, network: n1, node: c1, ip: 10.0.1.5}
        - {name: v3, network: n1, node: c1, ip: 10.0.0.9}
        - {name: v4, network: n1, node: c1, ip: 10.0.0.9}
        - {name: v5, network: n1, node: c1, ip: banana}
        - {name: v6, network: n1, node: c1, ip: 10.0.0.255}
"""


def test_vm_addresses_are_checked() -> None:
    with pytest.raises(LabError) as info:
        parse_lab(VM_IPS)
    text = str(info.value)
    for needle in [
        "cloud.tenants[0].vms[0].ip: 10.0.0.1 is the gateway (router interface) of n1",
        "cloud.tenants[0].vms[1].ip: 10.0.1.5 is not a host of n1 (10.0.0.0/24)",
        "cloud.tenants[0].vms[3].ip: 10.0.0.9 is also v3's",
        "cloud.tenants[0].vms[4].ip: 'banana' is not an IPv4 address",
        "cloud.tenants[0].vms[5].ip: 10.0.0.255 is not a host of n1",
    ]:
        assert needle in text, text
    assert "vms[2]" not in text


def _shipped() -> CloudLab:
    cloud = load_lab(LABS / "cloud.yaml").cloud
    assert cloud is not None
    return cloud


def test_run_names_are_short_unique_and_tagged() -> None:
    long = parse_lab(
        "name: x\nswitches: []\ncloud:\n  nodes: [{name: computenode1}, {name: computenode2}]\n"
    ).cloud
    assert long is not None
    for cloud in (_shipped(), long):
        names = run_names(cloud, "ab12")
        spaces = [names.underlay, *names.nodes.values(), *names.vms.values()]
        assert len(set(spaces)) == len(spaces)
        assert all("ab12" in ns and len(ns) <= 14 for ns in spaces)
        # lab/ovsnode.py derives interface names by cutting u<ns>/t<ns> at 15 bytes
        assert len({f"u{ns}"[:15] for ns in names.nodes.values()}) == len(names.nodes)
    with pytest.raises(ValueError, match="run tag"):
        run_names(_shipped(), "AB-12")


def test_the_shipped_lab_s_stage_plan() -> None:
    cloud = _shipped()
    assert same_network_pairs(cloud) == [("a1", "a2"), ("b1", "b2")]
    assert routed_pairs(cloud) == [("a1", "a3"), ("a3", "a1"), ("b1", "b3"), ("b3", "b1")]
    ips = {vm.name: vm.ip for t in cloud.tenants for vm in t.vms if vm.ip}
    blocked = isolation_pairs(cloud, ips)
    assert ("a1", "10.0.1.22") in blocked and ("b1", "10.0.1.12") in blocked
    assert all(ip != "10.0.1.11" for _vm, ip in blocked)  # both tenants have it
    assert shared_address_pairs(cloud, ips) == [("a2", "a1", "b1"), ("b2", "b1", "a1")]


def test_udhcpc_s_lease_file() -> None:
    from routeflow.lab.cloudrun import CloudFailure, parse_lease

    lease = parse_lease(
        "interface=eth0\nip=10.0.1.11\nmask=24\nrouter=10.0.1.1 10.0.1.2\nmtu=1450\n", 0.1
    )
    got = (lease.ip, lease.prefixlen, lease.router, lease.mtu)
    assert got == ("10.0.1.11", 24, "10.0.1.1", 1450)
    assert parse_lease("ip=10.0.0.5\n", 0.2).router is None
    with pytest.raises(CloudFailure, match="no address"):
        parse_lease("interface=eth0\n", 0.1)
    with pytest.raises(CloudFailure, match="bad mask or MTU"):
        parse_lease("ip=10.0.0.5\nmtu=big\n", 0.1)


def test_the_external_network_section() -> None:
    lab = load_lab(str(Path(__file__).resolve().parents[3] / "labs" / "cloud-external.yaml"))
    assert lab.cloud is not None and lab.cloud.external is not None
    assert lab.cloud.external.floating_ips == ("a1",)
    assert [n.name for n in lab.cloud.nodes if n.gateway] == ["gw1", "gw2"]
    bad = """
name: x
switches: [{name: A, dpid: 5}]
hosts: [{name: h1, switch: A, ip: 172.31.1.100/24}]
cloud:
  nodes: [{name: c1}]
  external: {host: h1, outside: nope, mode: nat, floating_ips: [v9]}
  tenants:
    - name: t
      networks: [{name: n, cidr: 10.0.0.0/24}]
      vms: [{name: v1, network: n, node: c1}]
"""
    with pytest.raises(LabError) as info:
        parse_lab(bad)
    text = str(info.value)
    for needle in [
        "cloud.external.mode: 'nat': 'connected' or 'bgp'",
        "cloud.nodes: an external network needs a node with gateway: true",
        "cloud.external.floating_ips[0]: 'v9' is not a VM of the cloud",
    ]:
        assert needle in text, text


def test_the_external_network_in_bgp_mode() -> None:
    from routeflow.lab.cloud import uplink_address
    from routeflow.lab.model import plan

    lab = load_lab(str(Path(__file__).resolve().parents[3] / "labs" / "cloud-bgp.yaml"))
    assert lab.cloud is not None and lab.cloud.external is not None
    x = lab.cloud.external
    assert (x.mode, x.pool, x.gateways) == (
        "bgp",
        "198.18.0.0/24",
        (("gw1", "gx1"), ("gw2", "gx2")),
    )
    p = plan(lab)
    # The VMs of the gateways' switches peer with their speakers with BFD.
    a = {n.address: n for n in p.vm("A").bgp_neighbors}
    assert a["172.31.10.2"].peer == "speaker" and a["172.31.10.2"].bfd
    assert not any(n.bfd for n in p.vm("B").bgp_neighbors)
    from routeflow.lab import frr

    conf = frr.frr_config(p, "A")
    assert " neighbor 172.31.10.2 bfd profile rf-fast" in conf
    assert " neighbor 10.0.0.2 advertisement-interval 0" in conf
    assert frr.daemons_for(p, "A") == ["zebra", "bfdd", "bgpd"]
    assert frr.daemons_for(p, "B") == ["zebra", "bgpd"]
    assert uplink_address("172.31.10.2/24", {"172.31.10.2", "172.31.10.1"}) == "172.31.10.3"
    bad = """
name: x
routing: bgp
switches: [{name: A, dpid: 5}]
hosts: [{name: h1, switch: A, ip: 172.31.1.100/24}]
speakers: [{name: s1, switch: A, ip: 172.31.2.2/24, asn: 65100}]
cloud:
  nodes: [{name: c1}, {name: g1, gateway: true}, {name: g2, gateway: true}]
  external: {host: h1, outside: h1, mode: bgp, pool: 198.18.0.0/30,
             gateways: {g1: s1, c1: s1}}
"""
    with pytest.raises(LabError) as info:
        parse_lab(bad)
    text = str(info.value)
    for needle in [
        "cloud.external.host: bgp mode has no external host",
        "cloud.external.pool: '198.18.0.0/30': a /8 to /29",
        "cloud.external.gateways.c1: is not a node with gateway: true",
        "cloud.external.gateways: gateway node 'g2' has no speaker",
        "cloud.external.gateways: two gateway nodes name the same speaker",
    ]:
        assert needle in text, text
    unknown = (
        bad.replace("host: h1, ", "")
        .replace("/30", "/24")
        .replace("{g1: s1, c1: s1}", "{g1: s1, g2: s9}")
    )
    with pytest.raises(LabError) as info:
        parse_lab(unknown)
    assert "cloud.external.gateways.g2: 's9' is not a speaker" in str(info.value)


def test_the_failover_gap_is_the_longest_after_the_kill() -> None:
    from routeflow.lab.pingwatch import outage, parse_ping

    lines = [f"[{100 + 0.02 * i:.6f}] 64 bytes from 198.18.0.11: icmp_seq={i} ttl=61 time=1 ms"
             for i in range(1, 11)]  # fmt: skip
    lines += ["[100.221000] 64 bytes from 198.18.0.11: icmp_seq=11 ttl=61 time=1 ms"]  # in flight
    lines += [f"[{100 + 0.02 * i:.6f}] 64 bytes from 198.18.0.11: icmp_seq={i} ttl=61 time=1 ms"
              for i in range(30, 40)]  # fmt: skip
    replies = parse_ping(["PING 198.18.0.11 56(84) bytes of data.", *lines])
    assert len(replies) == 21
    gap, lost = outage(replies, 100.21)  # type: ignore[misc]
    assert abs(gap - (100.6 - 100.221)) < 1e-6 and lost == 18
    assert outage(replies[:11], 100.3) is None

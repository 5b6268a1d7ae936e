"""The cloud section of lab files: derived addresses and every problem named by path."""

from __future__ import annotations

from pathlib import Path

import pytest

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

"""The one reader of VM routes (checks.kernel_route_table) and the answers built on it,
fed `ip -j route` output as iproute2 prints it; and a host's address per IP family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routeflow.lab import chaos, checks
from routeflow.lab.model import load_lab, plan
from routeflow.lab.paths import Hop

LABS = Path(__file__).resolve().parents[3] / "labs"

ROUTES4 = [
    {"dst": "default", "gateway": "10.0.0.2", "dev": "eth2", "protocol": "ospf", "metric": 20},
    {"dst": "10.0.0.0/30", "dev": "eth2", "protocol": "kernel", "scope": "link"},
    {
        "dst": "172.31.4.0/24",
        "protocol": "ospf",
        "metric": 20,
        "nexthops": [
            {"gateway": "10.0.0.6", "dev": "eth3", "weight": 1},
            {"gateway": "10.0.0.2", "dev": "eth2", "weight": 1},
        ],
    },
    {"dst": "10.9.9.9", "gateway": "10.0.0.2", "dev": "eth2", "protocol": "ospf"},
    {"dst": "10.8.0.0/16", "dev": "lo", "protocol": "static"},
    {"type": "blackhole", "dst": "192.0.2.0/24", "protocol": "static"},
]
ROUTES6 = [
    {"dst": "fd00:1::/64", "dev": "eth1", "protocol": "kernel", "pref": "medium"},
    {"dst": "fe80::/64", "dev": "eth1", "protocol": "kernel", "pref": "medium"},
    {"type": "multicast", "dst": "ff00::/8", "dev": "eth1", "table": "local"},
    {"dst": "default", "gateway": "fe80::b", "dev": "eth2", "protocol": "ospf"},
]


class FakeNode:
    def __init__(self, outputs: dict[str, object]) -> None:
        self.outputs = outputs

    def cmd(self, command: str) -> str:
        return json.dumps(self.outputs[command.removesuffix(" 2>/dev/null")])


class FakeRun:
    def __init__(self, ipv6: bool = False) -> None:
        self.plan = plan(load_lab(LABS / ("rftest2-v6.yaml" if ipv6 else "rftest2.yaml")))
        self.node = FakeNode(
            {
                "ip -4 -j route show table main": ROUTES4,
                "ip -6 -j route show table main": ROUTES6,
            }
        )

    def vm_node(self, switch: str) -> FakeNode:
        return self.node


def test_route_table_normalizes_destinations_and_keeps_every_hop() -> None:
    routes = {r.prefix: r for r in checks.kernel_route_table(FakeRun(), "A", 4)}
    assert list(routes) == [
        "0.0.0.0/0",
        "10.0.0.0/30",
        "172.31.4.0/24",
        "10.9.9.9/32",
        "10.8.0.0/16",
        "192.0.2.0/24",
    ]
    assert routes["172.31.4.0/24"].hops == (("10.0.0.6", "eth3"), ("10.0.0.2", "eth2"))
    assert routes["10.0.0.0/30"].hops == (("", "eth2"),)
    assert routes["192.0.2.0/24"].type == "blackhole" and not routes["192.0.2.0/24"].hops[0][1]
    assert routes["10.8.0.0/16"].out_of_vm_ports() is False


def test_kernel_routes_first_gateway_or_connected_via_vm_ports() -> None:
    assert checks.kernel_routes(FakeRun(), "A") == {
        "0.0.0.0/0": "10.0.0.2",
        "10.0.0.0/30": "connected",
        "172.31.4.0/24": "10.0.0.6",
        "10.9.9.9/32": "10.0.0.2",
    }


def test_kernel_next_hops_per_family() -> None:
    hops4 = checks.kernel_next_hops(FakeRun(), "A", 4)
    assert hops4["172.31.4.0/24"] == {Hop(3, "10.0.0.6", ""), Hop(2, "10.0.0.2", "")}
    assert hops4["10.0.0.0/30"] == frozenset()
    assert "10.8.0.0/16" not in hops4 and "192.0.2.0/24" not in hops4
    hops6 = checks.kernel_next_hops(FakeRun(), "A", 6)
    assert hops6["::/0"] == {Hop(2, "", "")}  # IPv6: the port says it all


def test_kernel_lines_change_iff_the_route_does() -> None:
    run = FakeRun(ipv6=True)
    before = chaos.kernel_lines(run, "A")
    assert "ff00::/8" not in before and "fd00:1::/64" in before and "0.0.0.0/0" in before
    ROUTES4[2]["nexthops"].pop()  # type: ignore[attr-defined]
    try:
        after = chaos.kernel_lines(run, "A")
    finally:
        ROUTES4[2]["nexthops"].append({"gateway": "10.0.0.2", "dev": "eth2", "weight": 1})  # type: ignore[attr-defined]
    assert {p for p in before if before[p] != after.get(p)} == {"172.31.4.0/24"}


def test_host_address_and_gateway_per_family() -> None:
    h = plan(load_lab(LABS / "rftest2-v6.yaml")).hosts[0]
    assert (h.address_of(4), h.gateway_of(4)) == (h.address, h.gateway)
    assert (h.address_of(6), h.gateway_of(6)) == (h.address6, h.gateway6)
    assert h.address_of(6) is not None
    v4 = plan(load_lab(LABS / "rftest2.yaml")).hosts[0]
    assert v4.address_of(6) is None and v4.gateway_of(6) is None
    with pytest.raises(ValueError, match="family must be 4 or 6"):
        h.address_of(5)

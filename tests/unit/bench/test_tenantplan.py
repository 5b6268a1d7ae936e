"""The tenant benchmark's plan and figures (pure): the same job for both systems."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routeflow.bench import tenantplan as tp


@given(st.integers(2, 16), st.integers(1, 200))
def test_every_measured_port_pings_across_nodes_through_the_router(nodes: int, ports: int) -> None:
    sc = tp.scenario(nodes, ports, 0)
    assert len(sc.ports) == ports
    indexes = [v.index for v in (*sc.anchors, *sc.ports)]
    assert len(set(indexes)) == len(indexes)
    assert len({v.name for v in (*sc.anchors, *sc.ports)}) == len(indexes)
    for vm in sc.ports:
        target = sc.target(vm)
        assert target in sc.anchors
        assert target.node != vm.node and target.network != vm.network
        assert {vm.network, target.network} == set(tp.ROUTED)


def test_ports_spread_over_nodes_and_both_routed_networks() -> None:
    sc = tp.scenario(3, 12, 0)
    assert {v.node for v in sc.ports} == set(sc.nodes)
    for node in sc.nodes:
        assert {v.network for v in sc.ports if v.node == node} == set(tp.ROUTED)


def test_the_last_node_has_no_port_of_the_isolated_network() -> None:
    for nodes in (2, 3, 5):
        sc = tp.scenario(nodes, 4, 0)
        assert sc.nodes_of(tp.ISOLATED) == set(sc.nodes[:-1])
        assert sc.nodes_of("net1") == set(sc.nodes)


@pytest.mark.parametrize(
    ("args", "flag"), [((1, 5, 0), "--nodes"), ((3, 0, 0), "--ports"), ((3, 5, -1), "--api-ports")]
)
def test_bad_sizes_name_the_option(args: tuple[int, int, int], flag: str) -> None:
    with pytest.raises(tp.PlanError, match=flag):
        tp.scenario(*args)


def test_addresses_and_macs() -> None:
    assert tp.gateway("net1") == "10.1.0.1"
    assert tp.address("net1", 1) == "10.1.0.2"
    assert tp.address("iso", 253) == "10.3.0.254"
    with pytest.raises(tp.PlanError, match="iso"):
        tp.address("iso", 254)
    assert tp.mac(0x010203) == "fa:16:3e:01:02:03"
    sc = tp.scenario(16, 2000, 0)
    for vm in (*sc.anchors, *sc.ports):
        ip = ipaddress.ip_address(tp.address(vm.network, vm.index))
        assert ip in ipaddress.ip_network(tp.CIDRS[vm.network])
        assert str(ip) != tp.gateway(vm.network)


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert tp.percentile(values, 50) == 50
    assert tp.percentile(values, 95) == 95
    assert tp.percentile([7.0], 95) == 7.0
    assert tp.percentile([], 50) is None
    timings = [tp.PortTiming(0.001 * i, 0.002 * i, 0.003 * i, 0.004 * i, 0.005 * i) for i in (1, 2)]
    summary = tp.summarize(timings)
    assert summary["ping"] == {"p50": 5.0, "p95": 10.0, "max": 10.0}
    assert tp.summarize([])["api"] == {"p50": None, "p95": None, "max": None}


def test_ratio() -> None:
    assert tp.ratio(10, 4) == 2.5
    assert tp.ratio(None, 4) is None
    assert tp.ratio(1, 0) is None


def test_flows_per_port_by_where_they_are() -> None:
    counts = {
        "a": {"n1": 13, "n2": 4},  # net1 on n1; n2 has only net2: through the router
        "b": {"n2": 13, "n3": 3},  # net2 on n2; n1 and n3 have net1: through the router
        "c": {"n1": 12, "n3": 1},  # iso on n1: n3 has no iso port and no router to it
        "x": {"n1": 9},  # not one of ours: left out
    }
    out = tp.flows_per_port(
        counts,
        node_of={"a": "n1", "b": "n2", "c": "n1"},
        network_of={"a": "net1", "b": "net2", "c": "iso"},
        nodes_with={"net1": {"n1", "n3"}, "net2": {"n2"}, "iso": {"n1", "n2"}},
        routed_with={"net1": {"net2"}, "net2": {"net1"}},
    )
    assert out.own == [13, 13, 12]
    assert out.same_network == [0, 0]  # a on n3, c on n2: a node missing from counts has 0
    assert sorted(out.via_router) == [0, 3, 4]
    assert out.elsewhere == 1  # c on n3
    assert out.summary()["own_max"] == 13

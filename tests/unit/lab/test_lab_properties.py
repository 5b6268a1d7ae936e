"""Properties of plans over random valid topologies."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.lab.frr import daemons_for, frr_config
from routeflow.lab.model import LabPlan, parse_lab, plan

ROUTINGS = ["ospf", "bgp", "static"]


@st.composite
def lab_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A random connected lab: spanning tree plus extra (possibly parallel) links."""
    n = draw(st.integers(1, 15))
    names = [f"s{i}" for i in range(n)]
    dpids = draw(
        st.lists(
            st.integers(0, 2**64 - 1),
            min_size=n,
            max_size=n,
            unique_by=lambda d: d & 0xFFFFFF,  # vm_id defaults to dpid; MACs use 24 bits
        )
    )
    routing = draw(st.sampled_from(ROUTINGS))
    switches: list[dict[str, Any]] = []
    for name, dpid in zip(names, dpids, strict=True):
        sw: dict[str, Any] = {"name": name, "dpid": dpid}
        if draw(st.booleans()) and draw(st.booleans()):
            sw["routing"] = draw(st.sampled_from(ROUTINGS))
        switches.append(sw)

    pairs = [(i, draw(st.integers(0, i - 1))) for i in range(1, n)]
    if n > 1:
        extra = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
            lambda t: t[0] != t[1]
        )
        pairs += draw(st.lists(extra, max_size=2 * n))
    pairs = draw(st.permutations(pairs))
    links: list[Any] = []
    for k, (i, j) in enumerate(pairs):
        ends = [names[i], names[j]] if draw(st.booleans()) else [names[j], names[i]]
        form = draw(st.sampled_from(["list", "dict", "subnet"]))
        if form == "list":
            links.append(ends)
        elif form == "dict":
            links.append({"ends": ends})
        else:
            prefix = draw(st.integers(22, 30))
            links.append({"ends": ends, "subnet": f"100.64.{4 * k}.0/{prefix}"})

    hosts: list[dict[str, Any]] = []
    for i in range(n):
        for _ in range(draw(st.integers(0, 2))):
            k = len(hosts)
            prefix = draw(st.integers(16, 30)) if k == 0 else draw(st.integers(24, 30))
            base = "172.16.0.0" if k == 0 else f"172.31.{k}.0"
            net = ipaddress.IPv4Network(f"{base}/{prefix}")
            offset = draw(st.integers(2, net.num_addresses - 2))
            hosts.append({"name": f"h{k}", "switch": names[i], "ip": f"{net[offset]}/{prefix}"})
    pool = draw(st.sampled_from(["10.0.0.0/16", "192.168.0.0/24", "172.31.0.0/16"]))
    return {
        "name": "random",
        "routing": routing,
        "switches": switches,
        "links": links,
        "hosts": hosts,
        "link_pool": pool,
    }


def build(doc: dict[str, Any]) -> LabPlan:
    return plan(parse_lab(yaml.safe_dump(doc, sort_keys=False), "random.yaml"))


@settings(max_examples=150, deadline=None)
@given(lab_docs())
def test_plan_invariants(doc: dict[str, Any]) -> None:
    p = build(doc)
    ifaces = [(vm, i) for vm in p.vms for i in vm.interfaces]

    # ports are 1..k on every switch, and each VM port is described once in config entries
    for vm in p.vms:
        assert [i.port for i in vm.interfaces] == list(range(1, len(vm.interfaces) + 1))
        assert [i.ifname for i in vm.interfaces] == [f"eth{i.port}" for i in vm.interfaces]
    entries = p.config_entries()
    assert len(entries) == len(ifaces) == len(p.hosts) + 2 * len(doc["links"])
    assert len({e.vm_key for e in entries}) == len({e.dp_key for e in entries}) == len(entries)

    # addresses: unique across VMs and hosts
    ips = [i.ip for _, i in ifaces] + [h.address for h in p.hosts]
    assert len(set(ips)) == len(ips)

    # MACs: unique across VMs and hosts
    macs = [i.mac for _, i in ifaces] + [h.mac for h in p.hosts]
    assert len(set(macs)) == len(macs)

    # both ends of a link sit in the link's subnet, and see each other as peers
    for ln in p.links:
        subnet = ipaddress.IPv4Network(ln.subnet)
        for end in (ln.a, ln.b):
            assert ipaddress.IPv4Interface(end.address).network == subnet
        a = p.vm(ln.a.switch).interface(ln.a.port)
        b = p.vm(ln.b.switch).interface(ln.b.port)
        assert (a.peer, a.peer_port, b.peer, b.peer_port) == (
            ln.b.switch,
            ln.b.port,
            ln.a.switch,
            ln.a.port,
        )

    # hosts sit in their gateway's subnet, on the port that faces them
    for h in p.hosts:
        gw = p.vm(h.switch).interface(h.dp_port)
        assert (gw.kind, gw.peer, gw.ip) == ("host", h.name, h.gateway)
        assert gw.subnet == h.subnet

    # no two distinct subnets overlap
    subnets = {ipaddress.IPv4Network(i.subnet) for _, i in ifaces}
    for x, y in itertools.combinations(subnets, 2):
        assert not x.overlaps(y)

    # every VM gets a config its routing daemon can run
    for vm in p.vms:
        conf = frr_config(p, vm.switch)
        assert f"hostname {vm.name}" in conf
        assert daemons_for(p, vm.switch)[0] == "zebra"
        if vm.routing == "ospf":
            for i in vm.interfaces:
                assert f" network {i.subnet} area 0" in conf


@settings(max_examples=100, deadline=None)
@given(lab_docs())
def test_static_routes_reach_every_subnet(doc: dict[str, Any]) -> None:
    doc["routing"] = "static"
    for sw in doc["switches"]:
        sw.pop("routing", None)
    p = build(doc)
    owner = {i.ip: vm.switch for vm in p.vms for i in vm.interfaces}
    subnets = {i.subnet for vm in p.vms for i in vm.interfaces}
    for vm in p.vms:
        local = {i.subnet for i in vm.interfaces}
        assert {r.prefix for r in vm.static_routes} == subnets - local
        for target in subnets:
            here, hops = vm.switch, 0
            while target not in {i.subnet for i in p.vm(here).interfaces}:
                route = next(r for r in p.vm(here).static_routes if r.prefix == target)
                out = p.vm(here).interface(route.port)
                assert owner[route.next_hop] == out.peer
                assert route.hops >= 1
                here = out.peer
                hops += 1
                assert hops <= len(p.vms), "routing loop"

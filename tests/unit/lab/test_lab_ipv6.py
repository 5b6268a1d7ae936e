"""Dual-stack labs (ipv6: true): the derived IPv6 plan and the OSPFv3 configuration."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given, settings

from routeflow.lab.frr import config_file, daemons_for, frr_config, ospf6_config
from routeflow.lab.model import LabError, LabPlan, ipv6_prefix, load_lab, parse_lab, plan

from .test_lab_properties import build, lab_docs

LABS = Path(__file__).resolve().parents[3] / "labs"
IPV6_KEYS = {"address6", "ip6", "gateway6", "subnet6", "ipv6_prefix"}


def rftest2_v6(**changes: Any) -> LabPlan:
    doc = yaml.safe_load((LABS / "rftest2-v6.yaml").read_text())
    doc.update(changes)
    return plan(parse_lab(yaml.safe_dump(doc, sort_keys=False), "rftest2-v6.yaml"))


def problems(text: str) -> list[str]:
    with pytest.raises(LabError) as info:
        parse_lab(textwrap.dedent(text), "lab.yaml")
    return list(info.value.problems)


def without_ipv6(p: LabPlan) -> Any:
    """The plan as builtins with every IPv6 field dropped (and the lab's name and file)."""

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in IPV6_KEYS | {"name", "source"}}
        if isinstance(o, (list, tuple)):
            return [strip(x) for x in o]
        return o

    return strip(msgspec.to_builtins(p))


def block(config: str, header: str) -> list[str]:
    lines = config.splitlines()
    start = lines.index(header)
    end = lines.index("!", start)
    return lines[start + 1 : end]


# -- the plan -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rftest1", "rftest2", "ring12", "bgp-table", "rftest2-ha"])
def test_ipv4_labs_have_no_ipv6_anywhere(name: str) -> None:
    p = plan(load_lab(LABS / f"{name}.yaml"))
    assert not p.ipv6 and p.ipv6_prefix is None
    assert all(i.address6 is None and i.ip6 is None for vm in p.vms for i in vm.interfaces)
    assert all(h.ip6 is None and h.gateway6 is None for h in p.hosts)
    assert all(ln.subnet6 is None and ln.a.address6 is None for ln in p.links)
    assert all("ospf6d" not in daemons_for(p, vm.switch) for vm in p.vms)


def test_explicit_ipv6_false_is_the_default() -> None:
    text = (LABS / "rftest2.yaml").read_text()
    assert plan(parse_lab(text + "ipv6: false\n")) == plan(parse_lab(text))


def test_rftest2_v6_is_rftest2_plus_ipv6() -> None:
    """Turning IPv6 on changes no IPv4 address, port, MAC or mapping."""
    v4 = plan(load_lab(LABS / "rftest2.yaml"))
    v6 = plan(load_lab(LABS / "rftest2-v6.yaml"))
    assert v6.ipv6 and not v4.ipv6
    assert without_ipv6(v6) == without_ipv6(v4)
    assert v6.config_entries() == v4.config_entries()


def test_prefix_is_a_ula_48_derived_from_the_name() -> None:
    expected_id = hashlib.sha256(b"routeflow-lab:rftest2-v6").digest()[:5]
    prefix = ipv6_prefix("rftest2-v6")
    assert prefix.prefixlen == 48
    assert prefix.network_address.packed[:6] == b"\xfd" + expected_id
    assert prefix.subnet_of(ipaddress.IPv6Network("fc00::/7"))
    assert ipv6_prefix("rftest2-v6") == prefix  # the same on every run and machine
    assert ipv6_prefix("ring12") != prefix
    assert rftest2_v6().ipv6_prefix == str(prefix)


def test_rftest2_v6_addresses_follow_the_documented_scheme() -> None:
    p = rftest2_v6()
    net = ipaddress.IPv6Network(p.ipv6_prefix)
    base = int(net.network_address)

    def at(subnet_id: int, iid: int) -> str:
        return str(ipaddress.IPv6Address(base | subnet_id << 64 | iid))

    for i, name in enumerate(["h1", "h2", "h3", "h4"]):
        h = p.host(name)
        assert h.ip6 == f"{at(i + 1, 0x100)}/64"
        assert h.gateway6 == at(i + 1, 1)
        gw = p.vm(h.switch).interface(h.dp_port)
        assert gw.address6 == f"{h.gateway6}/64"
        assert gw.subnet6 == h.subnet6 == f"{at(i + 1, 0)}/64"
    for j, link in enumerate(p.links):
        assert link.subnet6 == f"{at(0x8000 + j, 0)}/64"
        assert link.a.address6 == f"{at(0x8000 + j, 1)}/64"
        assert link.b.address6 == f"{at(0x8000 + j, 2)}/64"
        assert p.vm(link.a.switch).interface(link.a.port).address6 == link.a.address6
        assert p.vm(link.b.switch).interface(link.b.port).address6 == link.b.address6
    # rftest2's first link is A-B: A is end a
    assert p.vm("A").interface(2).ip6 == at(0x8000, 1)
    assert p.vm("B").interface(2).ip6 == at(0x8000, 2)


def test_ipv6_with_every_routing() -> None:
    text = (LABS / "rftest2-v6.yaml").read_text()
    # static: IPv6 static routes next to the IPv4 ones (test_lab_frr has their shape)
    static = plan(parse_lab(text.replace("routing: ospf", "routing: static", 1)))
    assert any(":" in r.prefix for r in static.vm("A").static_routes)
    # MP-BGP: IPv6 unicast over the IPv4 sessions, the next hop a global IPv6 address
    bgp = plan(parse_lab(text.replace("routing: ospf", "routing: bgp", 1)))
    conf = frr_config(bgp, "A")
    v6 = conf[conf.index("address-family ipv6 unicast") :]
    for n in bgp.vm("A").bgp_neighbors:
        assert f"neighbor {n.address} activate" in v6
    assert "ospf6d" not in daemons_for(bgp, "A")
    # an explicit ospf override is fine
    ok = text.replace("{name: B, dpid: 6}", "{name: B, dpid: 6, routing: ospf}")
    assert plan(parse_lab(ok)).ipv6


def test_ipv6_must_be_a_boolean() -> None:
    text = (LABS / "rftest2-v6.yaml").read_text().replace("ipv6: true", "ipv6: maybe")
    assert problems(text) == [
        "$.ipv6: Expected bool, got str"
        " (write true or false; yes/no/on/off are plain words here, as in YAML 1.2)"
    ]


@settings(max_examples=100, deadline=None)
@given(lab_docs())
def test_ipv6_plan_invariants(doc: dict[str, Any]) -> None:
    doc["routing"] = "ospf"
    for sw in doc["switches"]:
        sw.pop("routing", None)
    v4 = build(doc)
    doc["ipv6"] = True
    p = build(doc)
    assert without_ipv6(p) == without_ipv6(v4)
    prefix = ipaddress.IPv6Network(p.ipv6_prefix)
    ifaces = [i for vm in p.vms for i in vm.interfaces]
    addrs = [ipaddress.IPv6Interface(i.address6) for i in ifaces]
    addrs += [ipaddress.IPv6Interface(h.ip6) for h in p.hosts]
    assert len({a.ip for a in addrs}) == len(addrs)
    for a in addrs:
        assert a.network.prefixlen == 64 and a.network.subnet_of(prefix)
        assert a.ip not in (a.network.network_address, a.network.broadcast_address)
    # one /64 per IPv4 subnet, and the other way round
    pairs = {(i.subnet, i.subnet6) for i in ifaces}
    assert len({s4 for s4, _ in pairs}) == len({s6 for _, s6 in pairs}) == len(pairs)
    for h in p.hosts:
        gw = p.vm(h.switch).interface(h.dp_port)
        assert gw.ip6 == h.gateway6 and gw.subnet6 == h.subnet6
    for ln in p.links:
        nets = {ipaddress.IPv6Interface(e.address6).network for e in (ln.a, ln.b)}
        assert nets == {ipaddress.IPv6Network(ln.subnet6)}
    for x, y in itertools.combinations({ipaddress.IPv6Network(s) for _, s in pairs}, 2):
        assert not x.overlaps(y)


# -- FRR ------------------------------------------------------------------------------------


def test_daemons_and_their_files() -> None:
    p = rftest2_v6()
    assert daemons_for(p, "A") == ["zebra", "ospfd", "ospf6d"]
    bfd = rftest2_v6(ospf={"hello": 1, "dead": 4, "bfd": True})
    assert daemons_for(bfd, "A") == ["zebra", "bfdd", "ospfd", "ospf6d"]
    assert config_file("ospf6d") == "ospf6d.conf"
    assert config_file("ospfd") == "frr.conf"
    assert config_file("zebra") == "zebra.conf"


def test_ospfd_config_is_the_ipv4_labs() -> None:
    """ospfd's file of a dual-stack lab is rftest2's, but for the lab's name."""
    v4 = plan(load_lab(LABS / "rftest2.yaml"))
    v6 = rftest2_v6()
    for vm in v6.vms:
        assert frr_config(v6, vm.switch) == frr_config(v4, vm.switch).replace(
            "in lab rftest2\n", "in lab rftest2-v6\n"
        )
        assert "ospf6" not in frr_config(v6, vm.switch)


def test_ospf6_config_rftest2_v6() -> None:
    p = rftest2_v6()
    conf = ospf6_config(p, "A")
    lines = conf.splitlines()
    assert "hostname vm-A" in lines
    assert "frr defaults traditional" in lines
    assert block(conf, "router ospf6") == [
        " ospf6 router-id 10.255.0.1",
        " timers throttle spf 0 50 1000",
        " timers lsa min-arrival 0",
    ]
    assert block(conf, "interface eth1") == [" ipv6 ospf6 area 0", " ipv6 ospf6 passive"]
    for port in (2, 3, 4):
        assert block(conf, f"interface eth{port}") == [
            " ipv6 ospf6 area 0",
            " ipv6 ospf6 network point-to-point",
            " ipv6 ospf6 cost 1",
            " ipv6 ospf6 hello-interval 1",
            " ipv6 ospf6 dead-interval 4",
        ]
    assert f"!   eth2 {p.vm('A').interface(2).address6}: link to B port 2" in lines
    assert "exit" not in conf
    # the same router id as OSPFv2 on every VM
    for vm in p.vms:
        assert f" ospf6 router-id {vm.router_id}" in ospf6_config(p, vm.switch).splitlines()


def test_ospf6_timers_and_bfd_follow_the_lab() -> None:
    p = rftest2_v6(ospf={"hello": 2, "dead": 7, "bfd": True})
    conf = ospf6_config(p, "D")
    assert conf.count(" ipv6 ospf6 hello-interval 2") == 3
    assert conf.count(" ipv6 ospf6 dead-interval 7") == 3
    assert conf.count(" ipv6 ospf6 bfd\n") == 3
    assert conf.count(" ipv6 ospf6 bfd profile rf-fast") == 3
    assert "bfd" not in "\n".join(block(conf, "interface eth1"))

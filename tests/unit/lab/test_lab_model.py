"""Lab file parsing, validation messages and the derived plan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from routeflow.lab.model import (
    Lab,
    LabError,
    LabPlan,
    host_mac,
    load_lab,
    parse_lab,
    plan,
    vm_mac,
)
from routeflow.rflib.types import ConfigEntry

LABS = Path(__file__).resolve().parents[3] / "labs"

RFTEST2 = """\
name: rftest2
switches: [{name: A, dpid: 5}, {name: B, dpid: 6}, {name: C, dpid: 7}, {name: D, dpid: 8}]
links: [[A, B], [B, D], [D, C], [C, A], [A, D]]
hosts:
  - {name: h1, switch: A, ip: 172.31.1.100/24}
  - {name: h2, switch: B, ip: 172.31.2.100/24}
  - {name: h3, switch: C, ip: 172.31.3.100/24}
  - {name: h4, switch: D, ip: 172.31.4.100/24}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(LabError) as info:
        parse_lab(textwrap.dedent(text), "lab.yaml")
    assert info.value.source == "lab.yaml"
    assert str(info.value).splitlines() == [f"lab.yaml: {p}" for p in info.value.problems]
    return list(info.value.problems)


def edited(**changes: object) -> str:
    """RFTEST2 with some top-level keys replaced (None removes the key)."""
    doc = yaml.safe_load(RFTEST2)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return yaml.safe_dump(doc, sort_keys=False)


# -- shipped labs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rftest1", "rftest2", "ring12"])
def test_shipped_labs_load_and_plan(name: str) -> None:
    lab = load_lab(LABS / f"{name}.yaml")
    assert isinstance(lab, Lab)
    assert lab.name == name
    p = plan(lab)
    assert isinstance(p, LabPlan)
    assert p.source.endswith(f"{name}.yaml")


def test_rftest1_hex_dpid() -> None:
    p = plan(load_lab(LABS / "rftest1.yaml"))
    (vm,) = p.vms
    assert vm.dp_id == 0x99 == vm.vm_id
    assert [i.address for i in vm.interfaces] == ["172.31.1.1/24", "172.31.2.1/24"]
    assert p.neighbors("s1") == []
    assert len(p.config_entries()) == 2


def test_rftest2_port_numbering() -> None:
    p = plan(load_lab(LABS / "rftest2.yaml"))
    a = p.vm("A")
    assert [(i.port, i.ifname, i.kind, i.peer) for i in a.interfaces] == [
        (1, "eth1", "host", "h1"),
        (2, "eth2", "link", "B"),
        (3, "eth3", "link", "C"),
        (4, "eth4", "link", "D"),
    ]
    assert p.neighbors("A") == [(2, "B", 2), (3, "C", 3), (4, "D", 4)]
    assert p.neighbors("D") == [(2, "B", 3), (3, "C", 2), (4, "A", 4)]
    assert p.host("h1").dp_port == 1
    assert p.host("h1").gateway == "172.31.1.1"


def test_rftest2_historic_addresses() -> None:
    p = plan(load_lab(LABS / "rftest2.yaml"))
    got = {vm.switch: [i.address for i in vm.link_ports] for vm in p.vms}
    assert got == {
        "A": ["10.0.0.1/24", "30.0.0.1/24", "50.0.0.1/24"],
        "B": ["10.0.0.2/24", "40.0.0.2/24"],
        "C": ["20.0.0.3/24", "30.0.0.3/24"],
        "D": ["40.0.0.4/24", "20.0.0.4/24", "50.0.0.4/24"],
    }


def test_rftest2_config_entries() -> None:
    p = plan(load_lab(LABS / "rftest2.yaml"))
    entries = p.config_entries()
    assert len(entries) == 4 + 2 * 5  # one per host port and two per link
    assert ConfigEntry(vm_id=5, vm_port=4, ct_id=1, dp_id=5, dp_port=4) in entries
    assert all(e.vm_port == e.dp_port for e in entries)
    assert len(set(entries)) == len(entries)


def test_ring12() -> None:
    p = plan(load_lab(LABS / "ring12.yaml"))
    assert [vm.dp_id for vm in p.vms] == list(range(0x101, 0x10D))
    assert len(p.links) == 14
    assert len(p.hosts) == 12
    assert [h.ip for h in p.hosts] == [f"172.31.{n}.100/24" for n in range(1, 13)]
    assert len(p.config_entries()) == 12 + 2 * 14
    assert len(p.all_host_pairs()) == 66
    # pooled /30s, consecutive, first end .1
    assert p.links[0].subnet == "10.0.0.0/30"
    assert p.links[0].a.address == "10.0.0.1/30"
    assert p.links[0].b.address == "10.0.0.2/30"
    assert p.links[13].subnet == "10.0.0.52/30"


def test_defaults() -> None:
    p = plan(parse_lab(RFTEST2))
    assert [c.ct_id for c in p.controllers] == [1]
    assert [vm.ct_id for vm in p.vms] == [1, 1, 1, 1]
    assert [vm.vm_id for vm in p.vms] == [5, 6, 7, 8]
    assert [vm.name for vm in p.vms] == ["vm-A", "vm-B", "vm-C", "vm-D"]
    assert [vm.router_id for vm in p.vms] == [f"10.255.0.{n}" for n in range(1, 5)]
    assert [vm.asn for vm in p.vms] == [65001, 65002, 65003, 65004]
    assert [vm.routing for vm in p.vms] == ["ospf"] * 4
    assert (p.ospf.hello, p.ospf.dead) == (1, 4)
    assert p.links[0].subnet == "10.0.0.0/30"


def test_overrides() -> None:
    text = edited(
        routing="bgp",
        controllers=[{"ct_id": 3, "name": "left"}, {"ct_id": 4}],
        switches=[
            {"name": "A", "dpid": 5, "routing": "ospf", "ct_id": 4, "vm_id": 77},
            {"name": "B", "dpid": 6, "router_id": "192.0.2.2", "asn": 64999},
            {"name": "C", "dpid": 7},
            {"name": "D", "dpid": 8},
        ],
        link_pool="192.168.0.0/24",
        ospf={"hello": 2, "dead": 8},
    )
    p = plan(parse_lab(text))
    a, b, c, _ = p.vms
    assert (a.routing, a.ct_id, a.vm_id, a.dp_id) == ("ospf", 4, 77, 5)
    assert (b.routing, b.ct_id, b.router_id, b.asn) == ("bgp", 3, "192.0.2.2", 64999)
    assert c.asn == 65003
    assert [(ct.ct_id, ct.name) for ct in p.controllers] == [(3, "left"), (4, "ct4")]
    assert p.links[1].subnet == "192.168.0.4/30"
    assert (p.ospf.hello, p.ospf.dead) == (2, 8)
    # config entries carry the VM id, not the dpid
    assert ConfigEntry(vm_id=77, vm_port=1, ct_id=4, dp_id=5, dp_port=1) in p.config_entries()


def test_link_forms_and_parallel_links() -> None:
    text = edited(
        links=[
            ["A", "B"],
            {"ends": ["A", "B"]},
            {"ends": ["B", "C"], "subnet": "192.168.9.0/29"},
            {
                "ends": ["C", "D"],
                "subnet": "192.168.8.0/24",
                "addresses": ["192.168.8.9", "192.168.8.7"],
            },
        ]
    )
    p = plan(parse_lab(text))
    assert [ln.subnet for ln in p.links] == [
        "10.0.0.0/30",
        "10.0.0.4/30",
        "192.168.9.0/29",
        "192.168.8.0/24",
    ]
    assert p.neighbors("A") == [(2, "B", 2), (3, "B", 3)]
    assert p.links[2].a.address == "192.168.9.1/29"
    assert p.links[2].b.address == "192.168.9.2/29"
    assert p.links[3].a.address == "192.168.8.9/24"
    assert p.links[3].b.address == "192.168.8.7/24"


def test_pool_skips_subnets_in_use() -> None:
    text = edited(
        links=[["A", "B"], {"ends": ["B", "C"], "subnet": "10.0.0.4/30"}, ["C", "D"]],
        hosts=[{"name": "h1", "switch": "A", "ip": "10.0.0.10/30"}],
    )
    p = plan(parse_lab(text))
    assert [ln.subnet for ln in p.links] == ["10.0.0.0/30", "10.0.0.4/30", "10.0.0.12/30"]


def test_explicit_gateway() -> None:
    text = edited(
        hosts=[{"name": "h1", "switch": "A", "ip": "172.31.1.1/24", "gateway": "172.31.1.254"}]
    )
    p = plan(parse_lab(text))
    assert p.host("h1").gateway == "172.31.1.254"
    assert p.vm("A").interface(1).address == "172.31.1.254/24"


def test_macs_unique_and_deterministic() -> None:
    for name in ["rftest1", "rftest2", "ring12"]:
        p = plan(load_lab(LABS / f"{name}.yaml"))
        macs = [i.mac for vm in p.vms for i in vm.interfaces] + [h.mac for h in p.hosts]
        assert len(set(macs)) == len(macs)
        for mac in macs:
            first = int(mac.split(":")[0], 16)
            assert first & 0b10 and not first & 0b1  # locally administered, unicast
    assert vm_mac(0x12345678, 3) == "02:34:56:78:00:03"
    assert vm_mac(5, 0x1234) == "02:00:00:05:12:34"
    assert host_mac(5, 1) == "06:00:00:05:00:01"
    assert plan(load_lab(LABS / "rftest2.yaml")).vm("A").interface(2).mac == "02:00:00:05:00:02"


def test_all_host_pairs() -> None:
    p = plan(parse_lab(RFTEST2))
    pairs = [(a.name, b.name) for a, b in p.all_host_pairs()]
    assert pairs == [
        ("h1", "h2"),
        ("h1", "h3"),
        ("h1", "h4"),
        ("h2", "h3"),
        ("h2", "h4"),
        ("h3", "h4"),
    ]


def test_plan_is_pure() -> None:
    lab = parse_lab(RFTEST2)
    assert plan(lab) == plan(lab)
    with pytest.raises(AttributeError):
        plan(lab).name = "x"  # type: ignore[misc]


# -- routing derivations --------------------------------------------------------------------


def test_bgp_neighbors() -> None:
    p = plan(parse_lab(edited(routing="bgp")))
    a = p.vm("A")
    assert [(n.switch, n.address, n.remote_as, n.port) for n in a.bgp_neighbors] == [
        ("B", "10.0.0.2", 65002, 2),
        ("C", "10.0.0.13", 65003, 3),
        ("D", "10.0.0.18", 65004, 4),
    ]
    assert a.static_routes == ()


def test_bgp_neighbors_only_towards_bgp_peers() -> None:
    text = edited(
        routing="bgp",
        switches=[
            {"name": "A", "dpid": 5},
            {"name": "B", "dpid": 6, "routing": "ospf"},
            {"name": "C", "dpid": 7},
            {"name": "D", "dpid": 8},
        ],
    )
    p = plan(parse_lab(text))
    assert [n.switch for n in p.vm("A").bgp_neighbors] == ["C", "D"]
    assert p.vm("B").bgp_neighbors == ()


def static_rftest2() -> LabPlan:
    text = (LABS / "rftest2.yaml").read_text().replace("routing: ospf", "routing: static", 1)
    return plan(parse_lab(text, "rftest2.yaml"))


def test_static_routes_rftest2() -> None:
    p = static_rftest2()
    a = p.vm("A")
    routes = {r.prefix: r for r in a.static_routes}
    r = routes["172.31.4.0/24"]
    assert (r.next_hop, r.port, r.hops) == ("50.0.0.4", 4, 1)
    # B-D link: both B and D are one hop away; B comes first in the lab file
    assert (routes["40.0.0.0/24"].next_hop, routes["40.0.0.0/24"].port) == ("10.0.0.2", 2)
    # directly connected subnets need no route
    assert "172.31.1.0/24" not in routes
    assert "10.0.0.0/24" not in routes
    # B to h3 (on C): two hops either way round, via A (first in switch order)
    b = {r.prefix: r for r in p.vm("B").static_routes}
    assert (b["172.31.3.0/24"].next_hop, b["172.31.3.0/24"].hops) == ("10.0.0.1", 2)


def walk(p: LabPlan, switch: str, subnet: str) -> int:
    """Follow static routes from switch until a VM attached to subnet; return hops taken."""
    owner = {i.ip: vm.switch for vm in p.vms for i in vm.interfaces}
    here, hops = switch, 0
    while subnet not in {i.subnet for i in p.vm(here).interfaces}:
        routes = {r.prefix: r for r in p.vm(here).static_routes}
        route = routes[subnet]
        out = p.vm(here).interface(route.port)
        assert owner[route.next_hop] == out.peer  # next hop is the neighbour on that port
        assert p.vm(out.peer).interface(out.peer_port or 0).ip == route.next_hop
        here = out.peer
        hops += 1
        assert hops <= len(p.vms), "routing loop"
    return hops


def test_static_routes_reach_every_subnet() -> None:
    p = static_rftest2()
    subnets = {i.subnet for vm in p.vms for i in vm.interfaces}
    for vm in p.vms:
        for h in p.hosts:
            walk(p, vm.switch, h.subnet)
        for s in subnets:
            walk(p, vm.switch, s)
        assert len(vm.static_routes) == len(subnets) - len(vm.interfaces)


def test_static_routes_ring12_take_the_chord() -> None:
    text = (LABS / "ring12.yaml").read_text().replace("routing: ospf", "routing: static", 1)
    p = plan(parse_lab(text))
    s1 = {r.prefix: r for r in p.vm("s1").static_routes}
    assert s1["172.31.7.0/24"].hops == 1
    assert s1["172.31.7.0/24"].port == p.neighbors("s1")[2][0]  # eth4, the s1-s7 chord
    assert s1["172.31.4.0/24"].hops == 3
    assert s1["172.31.10.0/24"].hops == 3  # s1-s12-s11-s10
    for vm in p.vms:
        for h in p.hosts:
            assert walk(p, vm.switch, h.subnet) <= 4


# -- validation errors ----------------------------------------------------------------------


def test_unknown_switch_in_link_names_file_and_path() -> None:
    text = RFTEST2.replace("[D, C]", "[D, E]")
    with pytest.raises(LabError) as info:
        parse_lab(text, "rftest2.yaml")
    assert str(info.value) == "rftest2.yaml: links[2]: unknown switch 'E'"


def test_load_lab_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(RFTEST2.replace("[D, C]", "[D, E]"))
    with pytest.raises(LabError, match=r"bad\.yaml: links\[2\]: unknown switch 'E'"):
        load_lab(path)
    with pytest.raises(LabError, match="cannot read lab file"):
        load_lab(tmp_path / "missing.yaml")


def test_duplicate_dpid() -> None:
    text = RFTEST2.replace("{name: D, dpid: 8}", "{name: D, dpid: 5}")
    assert problems(text) == ["switches[3].dpid: duplicate dpid 5 (also switches[0])"]


def test_host_overlaps_link_subnet() -> None:
    text = edited(links=[{"ends": ["A", "B"], "subnet": "172.31.1.0/30"}, ["B", "C"], ["C", "D"]])
    assert problems(text) == ["hosts[0].ip: 172.31.1.100/24 overlaps links[0] subnet 172.31.1.0/30"]


def test_hosts_may_not_share_a_subnet() -> None:
    text = RFTEST2.replace("172.31.2.100/24", "172.31.1.101/24")
    assert problems(text) == ["hosts[1].ip: 172.31.1.101/24 overlaps hosts[0] subnet 172.31.1.0/24"]


def test_link_subnets_overlap() -> None:
    text = edited(
        links=[
            {"ends": ["A", "B"], "subnet": "10.1.0.0/16"},
            {"ends": ["B", "C"], "subnet": "10.1.2.0/24"},
            ["C", "D"],
        ]
    )
    assert problems(text) == ["links[1].subnet: 10.1.2.0/24 overlaps links[0] subnet 10.1.0.0/16"]


def test_host_ip_is_its_gateway() -> None:
    text = RFTEST2.replace("172.31.1.100/24", "172.31.1.1/24")
    (msg,) = problems(text)
    assert msg.startswith("hosts[0].ip: 172.31.1.1/24 is the subnet's default gateway 172.31.1.1")
    text = RFTEST2.replace("172.31.1.100/24}", "172.31.1.100/24, gateway: 172.31.1.100}")
    assert problems(text) == ["hosts[0].gateway: 172.31.1.100 is the host's own address"]


def test_host_gateway_outside_subnet() -> None:
    text = RFTEST2.replace("172.31.1.100/24}", "172.31.1.100/24, gateway: 172.31.9.1}")
    assert problems(text) == [
        "hosts[0].gateway: 172.31.9.1 is not a usable address of 172.31.1.0/24"
    ]


@pytest.mark.parametrize(
    ("ip", "message"),
    [
        ("172.31.1.0/24", "hosts[0].ip: 172.31.1.0/24 is not a usable address of 172.31.1.0/24"),
        (
            "172.31.1.255/24",
            "hosts[0].ip: 172.31.1.255/24 is not a usable address of 172.31.1.0/24",
        ),
        ("172.31.1.100", "hosts[0].ip: '172.31.1.100' needs a prefix length, e.g. 172.31.1.100/24"),
        ("172.31.1.300/24", "hosts[0].ip: '172.31.1.300/24' is not an IPv4 address with prefix"),
        ("172.31.1.100/31", "hosts[0].ip: 172.31.1.100/31 leaves no room for a gateway"),
    ],
)
def test_bad_host_ip(ip: str, message: str) -> None:
    (msg,) = problems(RFTEST2.replace("172.31.1.100/24", ip))
    assert msg.startswith(message)


def test_host_on_unknown_switch() -> None:
    text = RFTEST2.replace("{name: h4, switch: D,", "{name: h4, switch: X,")
    assert problems(text) == ["hosts[3].switch: unknown switch 'X'"]
    text = RFTEST2.replace("{name: h4, switch: D,", "{name: h4, switch: h1,")
    assert problems(text) == ["hosts[3].switch: unknown switch 'h1' (that is a host)"]


def test_self_link() -> None:
    text = RFTEST2.replace("[B, D]", "[B, B]")
    assert problems(text) == ["links[1]: self-link on switch 'B'"]


def test_duplicate_names_share_one_namespace() -> None:
    text = RFTEST2.replace("{name: h3,", "{name: B,")
    assert problems(text) == ["hosts[2].name: duplicate name 'B' (also switches[1])"]
    text = RFTEST2.replace("{name: D, dpid: 8}", "{name: A, dpid: 8}")
    assert "switches[3].name: duplicate name 'A' (also switches[0])" in problems(text)


def test_bad_names() -> None:
    text = RFTEST2.replace("name: rftest2", "name: RF Test").replace("{name: h1,", "{name: 1h,")
    msgs = problems(text)
    assert msgs[0] == "name: 'RF Test' must be 1-24 characters of [a-z0-9_-]"
    assert msgs[1].startswith("hosts[0].name: '1h' must start with a letter")
    long = "h" * 33
    text = RFTEST2.replace("{name: h1,", f"{{name: {long},")
    assert problems(text)[0].startswith(f"hosts[0].name: '{long}' must start with a letter")


def test_link_subnet_too_small_or_malformed() -> None:
    text = edited(links=[{"ends": ["A", "B"], "subnet": "10.9.0.0/31"}, ["B", "C"], ["C", "D"]])
    assert problems(text) == [
        "links[0].subnet: 10.9.0.0/31 is too small for a link (needs /30 or larger)"
    ]
    text = edited(links=[{"ends": ["A", "B"], "subnet": "10.9.0.1/24"}, ["B", "C"], ["C", "D"]])
    (msg,) = problems(text)
    assert msg.startswith("links[0].subnet: '10.9.0.1/24' is not a valid IPv4 subnet")
    assert "host bits set" in msg


def test_link_addresses_override_errors() -> None:
    def links(**over: object) -> str:
        return edited(links=[{"ends": ["A", "B"], **over}, ["B", "C"], ["C", "D"]])

    assert problems(links(addresses=["10.0.0.1", "10.0.0.2"])) == [
        "links[0].addresses: needs an explicit subnet"
    ]
    assert problems(links(subnet="10.9.0.0/24", addresses=["10.9.0.1", "10.9.1.2"])) == [
        "links[0].addresses[1]: 10.9.1.2 is not a usable address of 10.9.0.0/24"
    ]
    assert problems(links(subnet="10.9.0.0/24", addresses=["10.9.0.1", "10.9.0.1"])) == [
        "links[0].addresses: both ends have address 10.9.0.1"
    ]
    assert problems(links(subnet="10.9.0.0/24", addresses=["10.9.0.1"])) == [
        "links[0].addresses: needs two addresses, got 1"
    ]


def test_link_needs_two_ends() -> None:
    text = edited(links=[["A", "B", "C"], {"ends": ["C"]}, ["A", "D"], ["B", "C"]])
    assert problems(text) == [
        "links[0]: a link has exactly two ends, got 3",
        "links[1].ends: a link has exactly two ends, got 1",
    ]


def test_pool_exhausted() -> None:
    text = edited(link_pool="10.0.0.0/29")
    assert problems(text) == ["link_pool: 10.0.0.0/29 is exhausted: no free /30 left for links[2]"]
    text = edited(link_pool="10.0.0.0/31")
    assert problems(text) == ["link_pool: 10.0.0.0/31 is smaller than one /30"]


def test_disconnected_topology() -> None:
    text = edited(links=[["A", "B"], ["C", "D"]])
    assert problems(text) == ["links: switches unreachable from 'A': C, D"]


def test_switch_level_errors() -> None:
    text = edited(
        routing="bgp",
        controllers=[{"ct_id": 1}, {"ct_id": 1}],
        switches=[
            {"name": "A", "dpid": 5, "ct_id": 9},
            {"name": "B", "dpid": 6, "vm_id": 5},
            {"name": "C", "dpid": 7, "vm_id": 0x1000005, "router_id": "10.255.0.1"},
            {"name": "D", "dpid": 8, "router_id": "not-an-ip", "asn": 65001},
        ],
    )
    assert problems(text) == [
        "controllers[1].ct_id: duplicate ct_id 1 (also controllers[0])",
        "switches[0].ct_id: unknown controller ct_id 9",
        "switches[1].vm_id: duplicate vm_id 5 (also switches[0])",
        "switches[2].vm_id: vm_id 0x1000005 has the same low 24 bits as switches[0] "
        "(they make up the VM's MAC addresses)",
        "switches[3].router_id: 'not-an-ip' is not an IPv4 address",
        "switches[2].router_id: duplicate router_id 10.255.0.1 (also switches[0])",
        "switches[3].asn: duplicate asn 65001 (also switches[0])",
    ]


def test_duplicate_asn_only_matters_for_bgp() -> None:
    text = edited(
        switches=[
            {"name": "A", "dpid": 5, "asn": 65001},
            {"name": "B", "dpid": 6, "asn": 65001},
            {"name": "C", "dpid": 7},
            {"name": "D", "dpid": 8},
        ]
    )
    parse_lab(text)


def test_ospf_timers() -> None:
    assert problems(edited(ospf={"hello": 4, "dead": 4})) == [
        "ospf.dead: 4 must be greater than ospf.hello (4)"
    ]
    assert problems(edited(ospf={"hello": 0})) == ["ospf.hello: 0 is out of range 1-65535"]


def test_multiple_errors_are_collected() -> None:
    text = RFTEST2.replace("[D, C]", "[D, E]").replace("dpid: 8", "dpid: 5")
    text = text.replace("switch: C,", "switch: Q,")
    assert problems(text) == [
        "switches[3].dpid: duplicate dpid 5 (also switches[0])",
        "links[2]: unknown switch 'E'",
        "hosts[2].switch: unknown switch 'Q'",
    ]


def test_needs_a_switch() -> None:
    assert problems("name: x\nswitches: []\n") == ["switches: at least one switch is required"]


# -- decoding errors ------------------------------------------------------------------------


def test_wrong_type_carries_msgspec_path() -> None:
    text = RFTEST2.replace("dpid: 5}", "dpid: five}")
    with pytest.raises(LabError) as info:
        parse_lab(text, "rftest2.yaml")
    assert str(info.value) == "rftest2.yaml: $.switches[0].dpid: Expected int, got str"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{name: A, dpid: 5}",
            "{name: A, dpid: 5, colour: red}",
            "$.switches[0]: Object contains unknown field 'colour'",
        ),
        ("name: rftest2", "name: rftest2\nrouting: rip", "$.routing: Invalid enum value 'rip'"),
        ("name: rftest2\n", "", "$: Object missing required field 'name'"),
        ("name: rftest2", "name: rftest2\nspeed: 10", "$: Object contains unknown field 'speed'"),
        (
            "[A, B]",
            "[A, 5]",
            "$.links[0][1]: Expected str, got int (quote it to use it as a name)",
        ),
        ("[A, B]", "{ends: [A, B], mtu: 9000}", "$.links[0]: Object contains unknown field 'mtu'"),
        ("[A, B]", "3", "$.links[0]: Expected object | array, got int"),
        (
            "{name: A, dpid: 5}",
            "{name: true, dpid: 5}",
            "$.switches[0].name: Expected str, got bool (quote it to use it as a name)",
        ),
    ],
)
def test_decode_errors(old: str, new: str, message: str) -> None:
    assert old in RFTEST2
    assert problems(RFTEST2.replace(old, new, 1)) == [message]


def test_invalid_yaml_has_line_number() -> None:
    text = "name: x\nswitches:\n  - {name: A, dpid: 1}\n   bad: [\n"
    (msg,) = problems(text)
    assert msg.startswith("line 4, column 4: invalid YAML: ")


def test_duplicate_yaml_key() -> None:
    assert problems("name: x\nswitches: []\nname: y\n") == [
        "line 3, column 1: invalid YAML: duplicate key 'name' (first at line 1)"
    ]


def test_not_a_mapping() -> None:
    assert problems("") == ["empty lab file"]
    assert problems("- a\n") == ["expected a mapping at the top level, got a list"]


def test_defaulted_vm_id_clash_says_where_it_came_from() -> None:
    text = RFTEST2.replace("{name: A, dpid: 5}", "{name: A, dpid: 5, vm_id: 6}")
    assert problems(text) == [
        "switches[1].vm_id: duplicate vm_id 6, from the dpid (also switches[0])"
    ]


def test_controller_replicas() -> None:
    text = edited(controllers=[{"ct_id": 1, "replicas": 2}, {"ct_id": 2}])
    p = plan(parse_lab(text))
    assert [(ct.ct_id, ct.replicas) for ct in p.controllers] == [(1, 2), (2, 1)]
    assert [ct.replica_names for ct in p.controllers] == [("ct1a", "ct1b"), ("ct2",)]
    roles = plan(load_lab(LABS / "rftest2-roles.yaml"))
    assert roles.controllers[0].replica_names == ("ct1a", "ct1b")
    assert {vm.ct_id for vm in roles.vms} == {1}


def test_controller_replicas_out_of_range() -> None:
    text = edited(controllers=[{"ct_id": 1, "replicas": 0}, {"ct_id": 2, "replicas": 5}])
    assert problems(text) == [
        "controllers[0].replicas: 0 is out of range 1-4",
        "controllers[1].replicas: 5 is out of range 1-4",
    ]

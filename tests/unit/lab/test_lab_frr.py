"""FRR configuration generated from lab plans."""

from __future__ import annotations

from pathlib import Path

from routeflow.lab.frr import daemons_for, frr_config, ospf6_config
from routeflow.lab.model import LabPlan, load_lab, parse_lab, plan

LABS = Path(__file__).resolve().parents[3] / "labs"


def rftest2(routing: str = "ospf") -> LabPlan:
    text = (LABS / "rftest2.yaml").read_text()
    return plan(parse_lab(text.replace("routing: ospf", f"routing: {routing}", 1)))


def block(config: str, header: str) -> list[str]:
    """The lines of the stanza starting with header, up to the closing "!"."""
    lines = config.splitlines()
    start = lines.index(header)
    end = lines.index("!", start)
    return lines[start + 1 : end]


def test_ospf_config_rftest2() -> None:
    conf = frr_config(rftest2(), "A")
    assert "hostname vm-A" in conf.splitlines()
    assert "frr defaults traditional" in conf.splitlines()
    assert block(conf, "router ospf") == [
        " ospf router-id 10.255.0.1",
        " timers throttle spf 0 50 1000",
        " timers throttle lsa all 0",
        " timers lsa min-arrival 0",
        " network 172.31.1.0/24 area 0",
        " network 10.0.0.0/24 area 0",
        " network 30.0.0.0/24 area 0",
        " network 50.0.0.0/24 area 0",
    ]
    # host port: advertised but passive (FRR 8.4's replacement for passive-interface)
    assert block(conf, "interface eth1") == [" ip ospf passive"]
    for port in (2, 3, 4):
        assert block(conf, f"interface eth{port}") == [
            " ip ospf network point-to-point",
            " ip ospf cost 1",
            " ip ospf hello-interval 1",
            " ip ospf dead-interval 4",
        ]
    assert "!   eth2 10.0.0.1/24: link to B port 2" in conf.splitlines()


def test_no_exit_lines() -> None:
    """A daemon lacking a stanza's node would take "exit" as leaving configure mode."""
    for routing in ["ospf", "bgp", "static"]:
        p = rftest2(routing)
        for vm in p.vms:
            assert "exit" not in frr_config(p, vm.switch).replace("exit-address-family", "")


def test_no_addresses_in_frr_config() -> None:
    for routing in ["ospf", "bgp", "static"]:
        p = rftest2(routing)
        for vm in p.vms:
            assert "ip address" not in frr_config(p, vm.switch)


def test_ospf_timers_follow_the_lab() -> None:
    text = (LABS / "ring12.yaml").read_text().replace("{hello: 1, dead: 4}", "{hello: 2, dead: 7}")
    p = plan(parse_lab(text))
    conf = frr_config(p, "s1")
    assert " ip ospf hello-interval 2" in conf.splitlines()
    assert " ip ospf dead-interval 7" in conf.splitlines()
    assert conf.count("ip ospf network point-to-point") == 3  # s2, s12 and the chord to s7


def test_ospf_link_towards_non_ospf_peer_is_passive() -> None:
    text = (
        (LABS / "rftest2.yaml")
        .read_text()
        .replace("{name: B, dpid: 6}", "{name: B, dpid: 6, routing: static}")
    )
    p = plan(parse_lab(text))
    conf = frr_config(p, "A")
    assert block(conf, "interface eth2") == [" ip ospf passive"]
    assert " network 10.0.0.0/24 area 0" in block(conf, "router ospf")
    assert daemons_for(p, "B") == ["zebra", "staticd"]


def test_bgp_config_rftest2() -> None:
    conf = frr_config(rftest2("bgp"), "A")
    bgp = block(conf, "router bgp 65001")
    assert bgp[:2] == [" bgp router-id 10.255.0.1", " no bgp ebgp-requires-policy"]
    for address, asn in [("10.0.0.2", 65002), ("30.0.0.3", 65003), ("50.0.0.4", 65004)]:
        assert f" neighbor {address} remote-as {asn}" in bgp
        assert f" neighbor {address} timers 3 9" in bgp
        assert f" neighbor {address} timers connect 1" in bgp
        assert f"  neighbor {address} activate" in bgp
    af = bgp.index(" address-family ipv4 unicast")
    assert bgp[af + 1] == "  redistribute connected"
    assert bgp[-1] == " exit-address-family"
    assert "router ospf" not in conf


def test_bgp_unnumbered_peers_over_interfaces_and_links_get_no_ipv4() -> None:
    """``bgp: {unnumbered: true}``: every VM-VM session names its interface (FRR's BGP
    unnumbered: link-local transport, extended next hop), speakers stay numbered, and
    the links' interfaces get no IPv4 address (hosts' ones do)."""
    from routeflow.lab import commands

    lab = plan(load_lab(LABS / "rftest2-unnumbered.yaml"))
    assert lab.bgp.unnumbered
    conf = frr_config(lab, "A")
    bgp = block(conf, "router bgp 65001")
    vm = lab.vm("A")
    for i in vm.link_ports:
        asn = lab.vm(i.peer).asn
        assert f" neighbor {i.ifname} interface remote-as {asn}" in bgp
        assert f" neighbor {i.ifname} timers 3 9" in bgp
        assert f"  neighbor {i.ifname} activate" in bgp
    assert not any("remote-as" in line and "interface" not in line for line in bgp)
    lines = commands.vm_addresses(vm, ipv6=False, unnumbered=True)
    (host,) = [i for i in vm.interfaces if i.kind == "host"]
    assert [ln for ln in lines if ln.startswith("addr")] == [
        f"addr replace {host.address} dev {host.ifname}"
    ]
    numbered = commands.vm_addresses(vm, ipv6=False)
    assert len([ln for ln in numbered if ln.startswith("addr")]) == len(vm.interfaces)


def test_static_routes_in_both_families() -> None:
    """A dual-stack static lab: every subnet a VM is not on, IPv4 and IPv6, through the
    first hop of a shortest path; IPv6 through the peer's global address on the link."""
    lab = plan(load_lab(LABS / "rftest2-v6-static.yaml"))
    vm = lab.vm("A")
    v6 = [r for r in vm.static_routes if ":" in r.prefix]
    v4 = [r for r in vm.static_routes if ":" not in r.prefix]
    assert len(v6) == len(v4) == 5  # 3 other hosts' subnets, 2 links A is not on
    conf = frr_config(lab, "A")
    for r in v6:
        port = vm.interface(r.port)
        peer = lab.vm(port.peer).interface(port.peer_port)
        assert r.next_hop == peer.ip6
        assert f"ipv6 route {r.prefix} {r.next_hop}" in conf.splitlines()
    for r in v4:
        assert f"ip route {r.prefix} {r.next_hop}" in conf.splitlines()


def test_static_config_rftest2() -> None:
    conf = frr_config(rftest2("static"), "A")
    routes = [line for line in conf.splitlines() if line.startswith("ip route ")]
    assert "ip route 172.31.4.0/24 50.0.0.4" in routes
    assert "ip route 172.31.2.0/24 10.0.0.2" in routes
    assert "ip route 172.31.3.0/24 30.0.0.3" in routes
    assert len(routes) == 5  # 3 host subnets + B-D and D-C links
    assert "router " not in conf


def test_daemons_for() -> None:
    assert daemons_for(rftest2("ospf"), "A") == ["zebra", "ospfd"]
    assert daemons_for(rftest2("bgp"), "A") == ["zebra", "bgpd"]
    assert daemons_for(rftest2("static"), "A") == ["zebra", "staticd"]


def test_single_switch_lab() -> None:
    p = plan(load_lab(LABS / "rftest1.yaml"))
    conf = frr_config(p, "s1")
    assert block(conf, "interface eth1") == block(conf, "interface eth2") == [" ip ospf passive"]
    assert block(conf, "router ospf") == [
        " ospf router-id 10.255.0.1",
        " timers throttle spf 0 50 1000",
        " timers throttle lsa all 0",
        " timers lsa min-arrival 0",
        " network 172.31.1.0/24 area 0",
        " network 172.31.2.0/24 area 0",
    ]


def test_link_cost_on_both_ends_in_both_protocols() -> None:
    text = (LABS / "rftest2-v6.yaml").read_text()
    text = text.replace("{ends: [A, D],", "{ends: [A, D], cost: 7,")
    p = plan(parse_lab(text))
    for switch, port in (("A", 4), ("D", 4)):
        assert " ip ospf cost 7" in block(frr_config(p, switch), f"interface eth{port}")
        assert " ipv6 ospf6 cost 7" in block(ospf6_config(p, switch), f"interface eth{port}")
    assert " ip ospf cost 1" in block(frr_config(p, "A"), "interface eth2")

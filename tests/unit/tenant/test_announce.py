"""What a gateway node announces in bgp mode (tenant/announce.py), and the relay's lines.

The model in, a set of /32s out: over clouds with two gateway nodes (either may be
down), two routers with or without a gateway and floating IPs on either, every served
address is announced by exactly one node that is up, the one that NATs for it.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.tenant import announce, nat, sample
from routeflow.tenant.model import (
    DEVICE_ROUTER_GATEWAY,
    Cloud,
    ExternalFixedIP,
    FixedIP,
    FloatingIP,
    GatewayInfo,
    Node,
    Port,
)

BASE = sample.cloud_external()
EXT = sample.EXTERNAL[0]
RB_GW = "203.0.113.11"
FIPS = {"a1": "203.0.113.21", "a3": "203.0.113.20", "b2": "203.0.113.22"}
ROUTER_OF = {"a1": "RA", "a2": "RA", "a3": "RA", "b2": "RB"}


def _cloud(g1_up: bool, g2_up: bool, ra_gw: bool, rb_gw: bool, fips: dict[str, str]) -> Cloud:
    nodes = dict(BASE.nodes)
    nodes["g1"] = msgspec.structs.replace(nodes["g1"], up=g1_up)
    nodes["g2"] = Node(id="g2", name="g2", tunnel_ip="198.51.100.10", gateway=True, up=g2_up)
    routers = dict(BASE.routers)
    ports = dict(BASE.ports)
    if not ra_gw:
        routers["RA"] = msgspec.structs.replace(routers["RA"], external_gateway_info=None)
        del ports["gw-RA"]
    if rb_gw:
        routers["RB"] = msgspec.structs.replace(
            routers["RB"],
            external_gateway_info=GatewayInfo(
                network_id=EXT, external_fixed_ips=(ExternalFixedIP(f"s{EXT}", RB_GW),)
            ),
        )
        ports["gw-RB"] = Port(
            id="gw-RB",
            network_id=EXT,
            mac_address=sample.mac(201),
            fixed_ips=(FixedIP(f"s{EXT}", RB_GW),),
            device_id="RB",
            device_owner=DEVICE_ROUTER_GATEWAY,
            key=201,
        )
    floating = {}
    for i, (vm, fip) in enumerate(sorted(fips.items())):
        floating[f"fip-{vm}"] = FloatingIP(
            id=f"fip-{vm}",
            project_id="p",
            floating_network_id=EXT,
            floating_ip_address=fip,
            port_id=vm,
            fixed_ip_address=sample.VMS[vm][2],
            router_id=ROUTER_OF[vm],
            status="ACTIVE",
            key=10 + i,
        )
    return msgspec.structs.replace(
        BASE, nodes=nodes, routers=routers, ports=ports, floatingips=floating
    )


def test_the_sample_gateway_announces_its_router_and_floating_ip() -> None:
    assert announce.addresses(BASE, "g1") == {
        f"{sample.ROUTER_GATEWAY_IP}/32",
        f"{sample.FLOATING_IP[1]}/32",
    }
    assert announce.addresses(BASE, "n1") == frozenset()
    assert announce.addresses(BASE, "nowhere") == frozenset()


@settings(max_examples=150, deadline=None)
@given(
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.dictionaries(st.sampled_from(sorted(FIPS)), st.just(""), max_size=3),
)
def test_every_served_address_is_announced_once_by_the_node_that_nats_it(
    g1_up: bool, g2_up: bool, ra_gw: bool, rb_gw: bool, which: dict[str, str]
) -> None:
    cloud = _cloud(g1_up, g2_up, ra_gw, rb_gw, {vm: FIPS[vm] for vm in which})
    per_node = {n: announce.addresses(cloud, n) for n in cloud.nodes}
    # Only gateway nodes that are up announce; no address twice.
    for name, got in per_node.items():
        node = cloud.nodes[name]
        if not (node.gateway and node.up):
            assert got == frozenset(), name
    every = [a for got in per_node.values() for a in got]
    assert len(every) == len(set(every))
    # Exactly the served addresses: gateway IPs and their routers' floating IPs.
    with_gw = {r for r, on in (("RA", ra_gw), ("RB", rb_gw)) if on}
    want = set()
    if g1_up or g2_up:
        want |= {f"{ip}/32" for r, ip in (("RA", sample.ROUTER_GATEWAY_IP), ("RB", RB_GW))
                 if r in with_gw}  # fmt: skip
        want |= {f"{FIPS[vm]}/32" for vm in which if ROUTER_OF[vm] in with_gw}
    assert set(every) == want
    # A floating IP is announced where its router's SNAT address is: the node NATing it.
    for vm in which:
        router = cloud.routers[ROUTER_OF[vm]]
        gw = nat.gateway_of(cloud, router)
        if gw is not None:
            assert f"{FIPS[vm]}/32" in per_node[gw.node.id]
            assert f"{gw.ip}/32" in per_node[gw.node.id]


def test_a_node_going_down_moves_its_routers_announcements_to_the_other() -> None:
    both = _cloud(True, True, True, True, {"a3": FIPS["a3"]})
    by_node = {n: announce.addresses(both, n) for n in ("g1", "g2")}
    assert by_node["g1"] and by_node["g2"]  # RA on one, RB on the other (key modulo 2)
    only_g2 = _cloud(False, True, True, True, {"a3": FIPS["a3"]})
    assert announce.addresses(only_g2, "g1") == frozenset()
    assert announce.addresses(only_g2, "g2") == by_node["g1"] | by_node["g2"]


def test_commands_withdraw_first_then_announce() -> None:
    assert announce.commands({"1.1.1.1/32", "2.2.2.2/32"}, {"2.2.2.2/32", "3.3.3.3/32"}, "h") == [
        "withdraw route 1.1.1.1/32 next-hop h",
        "announce route 3.3.3.3/32 next-hop h",
    ]
    assert announce.commands({"1.1.1.1/32"}, {"1.1.1.1/32"}, "h") == []
    # A new next hop re-announces everything.
    assert announce.transition({"1.1.1.1/32"}, "a", {"1.1.1.1/32"}, "b") == [
        "withdraw route 1.1.1.1/32 next-hop a",
        "announce route 1.1.1.1/32 next-hop b",
    ]


def test_state_file_round_trip(tmp_path) -> None:
    path = str(tmp_path / "announce.json")
    assert announce.read_state(path) is None
    announce.write_state(path, {"198.18.0.5/32"}, "172.31.10.2")
    assert announce.read_state(path) == (frozenset({"198.18.0.5/32"}), "172.31.10.2")
    for bad in (b"", b"[]", b'{"prefixes": [1], "next_hop": "x"}', b'{"prefixes": []}'):
        assert announce.decode(bad) is None

"""SNAT, floating IPs and gateway nodes compiled and run in ofsim, conntrack with NAT.

The sample cloud plus ``sample.external_objects()``: router RA has its gateway
203.0.113.10 on the external network EXT (VNI 900), NATed on gateway node g1; a3
(10.0.2.13, node n2) has the floating IP 203.0.113.20. A connection is followed across
nodes and packets: a run's tunnelled output is the next node's input, its ``commits``
the gateway's conntrack for the next run.
"""

from __future__ import annotations

import msgspec

from routeflow.rflib import ofsim
from routeflow.tenant import nat, sample
from routeflow.tenant import pipeline as p
from routeflow.tenant.compiler import NodeContext, compile_node
from routeflow.tenant.model import Change, Cloud, Kind

CLOUD = sample.cloud_external()
IP = {name: ip for name, (_, _, ip) in sample.VMS.items()}
MAC = {port.id: port.mac_address for port in CLOUD.ports.values()}
GW_MAC = MAC["gw-RA"]
HOP_MAC = "02:00:5e:00:00:01"  # the external subnet's gateway (a routeflow switch)
OUTSIDE = "192.0.2.99"
EXT_VNI = sample.EXTERNAL[1]
G1_TUNNEL = sample.GATEWAY_NODE[1]


def pipe(cloud: Cloud, node: str, learned: bool = True) -> ofsim.Pipeline:
    if node == "g1":
        hops = {sample.EXTERNAL[3]: HOP_MAC} if learned else {}
        ctx = NodeContext("g1", {}, external_ofport=p.EXTERNAL_OFPORT, neighbours=hops)
    else:
        ctx = NodeContext(node, sample.bindings(node))
    return ofsim.Pipeline(compile_node(cloud, ctx))


def from_vm(vm: str, dst: str, sport: int = 40000, dport: int = 80) -> dict:
    node = sample.VMS[vm][1]
    router_mac = MAC[f"ri-{sample.VMS[vm][0]}"]
    return {
        "in_port": sample.bindings(node)[vm], "eth_src": MAC[vm], "eth_dst": router_mac,
        "eth_type": 0x0800, "ip_proto": 6, "ipv4_src": IP[vm], "ipv4_dst": dst,
        "nw_ttl": 64, "tcp_src": sport, "tcp_dst": dport,
    }  # fmt: skip


def from_outside(dst: str, sport: int = 80, dport: int = 40000) -> dict:
    return {
        "in_port": p.EXTERNAL_OFPORT, "eth_src": HOP_MAC, "eth_dst": GW_MAC,
        "eth_type": 0x0800, "ip_proto": 6, "ipv4_src": OUTSIDE, "ipv4_dst": dst,
        "nw_ttl": 60, "tcp_src": sport, "tcp_dst": dport,
    }  # fmt: skip


def tunnelled(out: ofsim.Outcome) -> dict:
    """The frame a tunnelled output becomes on the receiving node."""
    tunnel = dict(out.tunnel)
    return {**out.packet, "in_port": p.TUNNEL_OFPORT, "tunnel_id": tunnel["tunnel_id"]}


def only(result: ofsim.Result) -> ofsim.Outcome:
    assert len(result.outputs) == 1, result.outcomes
    return result.outputs[0]


def test_snat_through_the_gateway_node_and_back() -> None:
    # a1 on n1: routed on n1 (ttl 63), tunnelled to g1 on the external VNI.
    first = only(pipe(CLOUD, "n1").run(from_vm("a1", OUTSIDE)))
    assert dict(first.tunnel) == {"tunnel_id": EXT_VNI, "tun_ipv4_dst": G1_TUNNEL}
    assert first.packet["eth_dst"] == GW_MAC and first.packet["nw_ttl"] == 63
    # g1: SNAT to the router's gateway address, out of the external port to the next hop.
    g1 = pipe(CLOUD, "g1")
    res = g1.run(tunnelled(first))
    out = only(res)
    assert out.port == p.EXTERNAL_OFPORT
    assert out.packet["ipv4_src"] == sample.ROUTER_GATEWAY_IP
    assert (out.packet["eth_src"], out.packet["eth_dst"]) == (GW_MAC, HOP_MAC)
    assert out.packet["nw_ttl"] == 63  # one routing hop in the whole cloud
    zones = {entry[0] for entry in res.commits}
    assert zones == {nat.nat_zone(CLOUD.routers["RA"])}
    # The reply: un-SNAT on g1, routed there, tunnelled to a1's node on a1's VNI.
    back = only(g1.run(from_outside(sample.ROUTER_GATEWAY_IP), conntrack=res.commits))
    assert dict(back.tunnel) == {"tunnel_id": 101, "tun_ipv4_dst": sample.NODES["n1"]}
    assert back.packet["ipv4_dst"] == IP["a1"] and back.packet["eth_dst"] == MAC["a1"]
    assert back.packet["eth_src"] == MAC["ri-A1"]
    # Nothing comes in to the gateway address uninvited.
    assert g1.run(from_outside(sample.ROUTER_GATEWAY_IP, dport=40001), res.commits).dropped


def test_floating_ip_dnat_and_its_own_source() -> None:
    g1 = pipe(CLOUD, "g1")
    fip = sample.FLOATING_IP[1]
    res = g1.run(from_outside(fip, sport=50000, dport=22))
    out = only(res)
    assert dict(out.tunnel) == {"tunnel_id": 102, "tun_ipv4_dst": sample.NODES["n2"]}
    assert out.packet["ipv4_dst"] == IP["a3"] and out.packet["ipv4_src"] == OUTSIDE
    assert out.packet["nw_ttl"] == 59
    # a3's answer leaves with the floating IP as its source.
    reply = from_vm("a3", OUTSIDE, sport=22, dport=50000)
    first = only(pipe(CLOUD, "n2").run(reply, conntrack=()))  # egress SG: allowed (open)
    back = only(g1.run(tunnelled(first), conntrack=res.commits))
    assert back.port == p.EXTERNAL_OFPORT and back.packet["ipv4_src"] == fip
    # A connection a3 opens also leaves from the floating IP, not the router's address.
    new = only(g1.run(tunnelled(only(pipe(CLOUD, "n2").run(from_vm("a3", OUTSIDE))))))
    assert new.packet["ipv4_src"] == fip
    # a2 (no floating IP) leaves from the router's address.
    a2 = only(g1.run(tunnelled(only(pipe(CLOUD, "n2").run(from_vm("a2", OUTSIDE))))))
    assert a2.packet["ipv4_src"] == sample.ROUTER_GATEWAY_IP


def test_arp_on_the_external_port() -> None:
    g1 = pipe(CLOUD, "g1")

    def who_has(ip: str) -> dict:
        return {
            "in_port": p.EXTERNAL_OFPORT, "eth_src": HOP_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff",
            "eth_type": 0x0806, "arp_op": 1, "arp_spa": sample.EXTERNAL[3], "arp_tpa": ip,
            "arp_sha": HOP_MAC, "arp_tha": "00:00:00:00:00:00",
        }  # fmt: skip

    for ip in (sample.ROUTER_GATEWAY_IP, sample.FLOATING_IP[1]):
        out = only(g1.run(who_has(ip)))
        assert out.port == p.EXTERNAL_OFPORT and out.packet["arp_op"] == 2
        assert out.packet["arp_sha"] == GW_MAC and out.packet["arp_spa"] == ip
    assert g1.run(who_has("203.0.113.77")).dropped
    answer = {**who_has(sample.ROUTER_GATEWAY_IP), "arp_op": 2, "eth_dst": GW_MAC}
    assert g1.run(answer).punted  # the agent learns its next hop


def test_without_a_next_hop_nothing_leaves() -> None:
    first = only(pipe(CLOUD, "n1").run(from_vm("a1", OUTSIDE)))
    assert pipe(CLOUD, "g1", learned=False).run(tunnelled(first)).dropped


def test_floating_ip_moves_and_goes() -> None:
    fid, fip, _ = sample.FLOATING_IP
    moved = msgspec.structs.replace(CLOUD.floatingips[fid], port_id="a1", fixed_ip_address=IP["a1"])
    cloud = msgspec.structs.replace(CLOUD, floatingips={fid: moved})
    out = only(pipe(cloud, "g1").run(from_outside(fip)))
    assert out.packet["ipv4_dst"] == IP["a1"]
    assert dict(out.tunnel)["tun_ipv4_dst"] == sample.NODES["n1"]
    gone = msgspec.structs.replace(CLOUD, floatingips={})
    assert pipe(gone, "g1").run(from_outside(fip)).dropped


def test_gateway_node_choice_and_nodes_without_nat() -> None:
    # No gateway node: no default route anywhere, no NAT flows.
    nodes = {k: v for k, v in CLOUD.nodes.items() if k != "g1"}
    cloud = msgspec.structs.replace(CLOUD, nodes=nodes)
    assert pipe(cloud, "n1").run(from_vm("a1", OUTSIDE)).dropped
    # A gateway node with nothing to serve compiles nothing; tenant B's node has no route.
    plain_ra = msgspec.structs.replace(CLOUD.routers["RA"], external_gateway_info=None)
    without = msgspec.structs.replace(CLOUD, routers={**CLOUD.routers, "RA": plain_ra})
    assert compile_node(without, NodeContext("g1")) == frozenset()
    flows = compile_node(CLOUD, NodeContext("n3", sample.bindings("n3")))
    assert not [f for f in flows if f.table in (p.SNAT, p.UNSNAT, p.EXT_OUT)]


def test_incremental_compile_equals_full_with_gateways() -> None:
    """Deltas that add a gateway, a floating IP, move it and remove the gateway node,
    applied one by one: the incremental compiler equals a full compile at every step."""
    from routeflow.tenant.incremental import NodeCompiler

    objs = sample.objects()
    changes = sample.changes(objs) + sample.changes(sample.external_objects(), len(objs) + 1)
    cloud = Cloud().apply_all(changes)
    fid = sample.FLOATING_IP[0]
    moved_fip = msgspec.structs.replace(
        cloud.floatingips[fid], port_id="a1", fixed_ip_address=IP["a1"]
    )
    n = len(changes)
    changes += sample.changes([moved_fip], n + 1)
    changes.append(Change(kind=Kind.NODE, id="g1", revision=n + 2))
    changes.append(Change(kind=Kind.PORT, id="gw-RA", revision=n + 3))
    contexts = [
        NodeContext("n1", sample.bindings("n1")),
        NodeContext("n2", sample.bindings("n2")),
        NodeContext(
            "g1", {}, external_ofport=p.EXTERNAL_OFPORT, neighbours={"203.0.113.1": HOP_MAC}
        ),
    ]
    for ctx in contexts:
        nc, cloud = NodeCompiler(), Cloud()
        for change in changes:
            cloud = cloud.apply(change)
            nc.update(cloud, ctx, {(change.kind, change.id)})
            assert nc.flows == compile_node(cloud, ctx), (ctx.name, change.kind, change.id)


# --- bgp mode: the gateway node's uplink --------------------------------------------

UPLINK = nat.Uplink("172.31.10.2", "172.31.10.1")
UP_HOP_MAC = "02:00:5e:00:00:0a"


def bgp_g1(cloud: Cloud) -> ofsim.Pipeline:
    ctx = NodeContext(
        "g1",
        {},
        external_ofport=p.EXTERNAL_OFPORT,
        neighbours={UPLINK.next_hop: UP_HOP_MAC},
        uplink=UPLINK,
    )
    return ofsim.Pipeline(compile_node(cloud, ctx))


def test_bgp_mode_snat_leaves_from_the_uplink_to_its_next_hop() -> None:
    first = only(pipe(CLOUD, "n1").run(from_vm("a1", OUTSIDE)))
    g1 = bgp_g1(CLOUD)
    res = g1.run(tunnelled(first))
    out = only(res)
    assert out.port == p.EXTERNAL_OFPORT and out.packet["ipv4_src"] == sample.ROUTER_GATEWAY_IP
    assert (out.packet["eth_src"], out.packet["eth_dst"]) == (UPLINK.mac, UP_HOP_MAC)
    # The reply comes to the uplink's MAC (the fabric routes the /32 to the uplink IP).
    reply = {**from_outside(sample.ROUTER_GATEWAY_IP), "eth_dst": UPLINK.mac}
    back = only(g1.run(reply, conntrack=res.commits))
    assert back.packet["ipv4_dst"] == IP["a1"]
    # A floating IP through the uplink.
    fip = {**from_outside(sample.FLOATING_IP[1], sport=5, dport=22), "eth_dst": UPLINK.mac}
    assert only(g1.run(fip)).packet["ipv4_dst"] == IP["a3"]
    # Not to the uplink: nothing (the pool is on-link nowhere, no ARP answers for it).
    assert g1.run(from_outside(sample.FLOATING_IP[1])).dropped


def test_bgp_mode_arp_answers_the_uplink_only_even_with_nothing_served() -> None:
    def who_has(ip: str) -> dict:
        return {
            "in_port": p.EXTERNAL_OFPORT, "eth_src": UP_HOP_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff",
            "eth_type": 0x0806, "arp_op": 1, "arp_spa": UPLINK.next_hop, "arp_tpa": ip,
            "arp_sha": UP_HOP_MAC, "arp_tha": "00:00:00:00:00:00",
        }  # fmt: skip

    plain_ra = msgspec.structs.replace(CLOUD.routers["RA"], external_gateway_info=None)
    idle = msgspec.structs.replace(CLOUD, routers={**CLOUD.routers, "RA": plain_ra})
    for cloud in (CLOUD, idle):
        g1 = bgp_g1(cloud)
        out = only(g1.run(who_has(UPLINK.ip)))
        assert out.packet["arp_sha"] == UPLINK.mac and out.packet["arp_spa"] == UPLINK.ip
        assert g1.run(who_has(sample.FLOATING_IP[1])).dropped
        answer = {**who_has(UPLINK.ip), "arp_op": 2, "eth_dst": UPLINK.mac}
        assert g1.run(answer).punted  # the agent learns its next hop before it serves
    assert nat.next_hops(idle, "g1", UPLINK) == [(UPLINK.next_hop, UPLINK.ip, UPLINK.mac)]


def test_a_gateway_node_that_is_down_serves_nothing() -> None:
    down = msgspec.structs.replace(CLOUD.nodes["g1"], up=False)
    cloud = msgspec.structs.replace(CLOUD, nodes={**CLOUD.nodes, "g1": down})
    assert nat.served_routers(cloud, "g1") == []
    assert pipe(cloud, "n1").run(from_vm("a1", OUTSIDE)).dropped


def test_incremental_compile_equals_full_in_bgp_mode() -> None:
    from routeflow.tenant.incremental import NodeCompiler

    objs = sample.objects()
    changes = sample.changes(objs) + sample.changes(sample.external_objects(), len(objs) + 1)
    n = len(changes)
    down = msgspec.structs.replace(Cloud().apply_all(changes).nodes["g1"], up=False)
    changes += sample.changes([down], n + 1)
    ctx = NodeContext(
        "g1", {}, external_ofport=p.EXTERNAL_OFPORT,
        neighbours={UPLINK.next_hop: UP_HOP_MAC}, uplink=UPLINK,
    )  # fmt: skip
    nc, cloud = NodeCompiler(), Cloud()
    for change in changes:
        cloud = cloud.apply(change)
        nc.update(cloud, ctx, {(change.kind, change.id)})
        assert nc.flows == compile_node(cloud, ctx), (change.kind, change.id)


def test_a_standby_gateway_node_punts_arp_replies_and_nothing_else() -> None:
    """A gateway node serving nothing (RA without a gateway) classifies its external port:
    the reply to its ARP probe goes to the agent; traffic to a gateway port it does not
    serve is dropped; a compute node's context (no external port) compiles nothing."""
    plain_ra = msgspec.structs.replace(CLOUD.routers["RA"], external_gateway_info=None)
    cloud = msgspec.structs.replace(CLOUD, routers={**CLOUD.routers, "RA": plain_ra})
    assert nat.served_routers(cloud, "g1") == []
    standby = nat.standby_mac("g1")
    assert nat.next_hops(cloud, "g1") == [(sample.EXTERNAL[3], "0.0.0.0", standby)]
    g1 = pipe(cloud, "g1")
    answer = {
        "in_port": p.EXTERNAL_OFPORT, "eth_src": HOP_MAC, "eth_dst": standby,
        "eth_type": 0x0806, "arp_op": 2, "arp_spa": sample.EXTERNAL[3], "arp_tpa": "0.0.0.0",
        "arp_sha": HOP_MAC, "arp_tha": standby,
    }  # fmt: skip
    assert g1.run(answer).punted
    assert g1.run(from_outside(sample.FLOATING_IP[1])).dropped
    ctx = NodeContext("g1", {}, external_ofport=p.EXTERNAL_OFPORT)
    assert not [f for f in compile_node(cloud, ctx) if f.table in (p.SNAT, p.UNSNAT, p.EXT_OUT)]

"""A gateway node's external next hops: ARP requests when due, MACs learned, recompiled."""

from __future__ import annotations

from routeflow.rflib import ofsim
from routeflow.tenant import extarp, sample, wire
from routeflow.tenant import pipeline as p
from routeflow.tenant.compiler import NodeContext, compile_node
from routeflow.tenant.model import Change, Cloud, Kind
from routeflow.tenant.nodecore import DhcpReply, InstallFlows, NodeCore, NodeView

HOP, HOP_MAC = sample.EXTERNAL[3], "02:00:5e:00:00:01"


def reply(ip: str, mac: str, to: str = "fa:16:3e:00:00:c8") -> bytes:
    """An ARP reply frame from (ip, mac)."""
    req = extarp.request("203.0.113.10", ip, mac)  # same layout, then made a reply
    frame = bytearray(req)
    frame[0:6] = bytes(int(x, 16) for x in to.split(":"))
    frame[20:22] = b"\x00\x02"
    return bytes(frame)


def test_request_and_reply_frames() -> None:
    frame = extarp.request(HOP, "203.0.113.10", "fa:16:3e:00:00:c8")
    assert len(frame) == 42 and frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert extarp.parse_reply(frame) is None  # a request, not a reply
    assert extarp.parse_reply(reply(HOP, HOP_MAC)) == (HOP, HOP_MAC)
    assert extarp.parse_reply(b"\x00" * 10) is None


def test_resolver_asks_until_answered_then_refreshes() -> None:
    r = extarp.Resolver(retry=1.0, refresh=30.0, first_retry=0.125)
    hops = [(HOP, "203.0.113.10", "fa:16:3e:00:00:c8")]
    # Unanswered: asked at once, after 1/8 s, then 1/4, 1/2, 1 s later, then every 1 s.
    asked = [t / 1000 for t in range(0, 4000, 5) if r.due(hops, t / 1000)]
    assert asked == [0.0, 0.125, 0.375, 0.875, 1.875, 2.875, 3.875]
    assert not r.learn(reply("203.0.113.99", HOP_MAC), [HOP])  # not a next hop we want
    assert r.learn(reply(HOP, HOP_MAC), [HOP])
    assert not r.learn(reply(HOP, HOP_MAC), [HOP])  # nothing new
    assert r.neighbours == {HOP: HOP_MAC}
    assert r.due(hops, 5.0) == [] and len(r.due(hops, 33.875)) == 1  # refreshed after 30 s


def compile_view(cloud: Cloud, view: NodeView) -> frozenset[ofsim.Flow]:
    ctx = NodeContext(
        view.name, dict(view.bindings), view.tunnel_ofport,
        external_ofport=view.external_ofport, neighbours=dict(view.neighbours),
    )  # fmt: skip
    return compile_node(cloud, ctx)


def gateway_core(name: str, tunnel_ip: str) -> NodeCore[ofsim.Flow]:
    """A gateway node's core with its external port, its switch connected and empty."""
    core: NodeCore[ofsim.Flow] = NodeCore(
        name=name, tunnel_ip=tunnel_ip, compile=compile_view, gateway=True,
        external_ofport=p.EXTERNAL_OFPORT,
    )  # fmt: skip
    core.vifs_read({}, p.TUNNEL_OFPORT)
    core.switch_connected(frozenset())
    return core


def test_gateway_core_learns_its_next_hop_and_opens_the_way_out() -> None:
    core = gateway_core("g1", sample.GATEWAY_NODE[1])
    install, *garps = core.changes(wire.full_state(sample.cloud_external()))
    assert isinstance(install, InstallFlows)
    assert not [f for f in install.add if f.table == p.EXT_OUT]  # no next hop yet
    assert len(garps) == 2  # its gateway IP and floating IP, announced (rule 7)
    *again, ask = core.arp_tick(0.0)
    assert again == garps  # announced once more on the next tick
    assert isinstance(ask, DhcpReply) and ask.ofport == p.EXTERNAL_OFPORT
    assert extarp.parse_reply(ask.frame) is None and ask.frame[38:42] == bytes([203, 0, 113, 1])
    (learned,) = core.arp_reply(reply(HOP, HOP_MAC))
    assert isinstance(learned, InstallFlows)
    (out,) = [f for f in learned.add if f.table == p.EXT_OUT]
    assert ofsim.SetField("eth_dst", HOP_MAC) in out.instructions[0].actions  # type: ignore[union-attr]
    assert core.arp_reply(reply(HOP, HOP_MAC)) == []
    # A compute node never asks.
    plain: NodeCore[ofsim.Flow] = NodeCore(name="n1", tunnel_ip="x", compile=compile_view)
    plain.changes(wire.full_state(sample.cloud_external()))
    assert plain.arp_tick(0.0) == []


def test_gratuitous_arp_frame() -> None:
    frame = extarp.gratuitous("203.0.113.20", "fa:16:3e:00:00:c8")
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("fa163e0000c8")
    assert frame[20:22] == b"\x00\x01"  # a request ...
    assert frame[28:32] == frame[38:42] == bytes([203, 0, 113, 20])  # ... for itself
    assert frame[22:28] == bytes.fromhex("fa163e0000c8")


def two_gateways(g1_up: bool = True) -> Cloud:
    """cloud_external with a second gateway node g2; RA recorded on g1."""
    import msgspec

    from routeflow.tenant.model import Node

    cloud = sample.cloud_external()
    g2 = Node(id="g2", name="g2", tunnel_ip="198.51.100.10", gateway=True)
    ra = msgspec.structs.replace(cloud.routers["RA"], gateway_node="g1")
    g1 = msgspec.structs.replace(cloud.nodes["g1"], up=g1_up)
    r = cloud.revision
    return cloud.apply_all(
        [
            Change(kind=Kind.NODE, id="g2", revision=r + 1, obj=g2),
            Change(kind=Kind.ROUTER, id="RA", revision=r + 2, obj=ra),
            Change(kind=Kind.NODE, id="g1", revision=r + 3, obj=g1),
        ]
    )


def test_claimed_addresses_follow_the_router() -> None:
    from routeflow.tenant import nat

    mac = sample.mac(200)
    both = {(sample.ROUTER_GATEWAY_IP, mac), (sample.FLOATING_IP[1], mac)}
    up = two_gateways()
    assert nat.claimed_addresses(up, "g1") == both and nat.claimed_addresses(up, "g2") == set()
    down = two_gateways(g1_up=False)  # g1 down: RA falls to g2, which claims the same pair
    assert nat.claimed_addresses(down, "g1") == set() and nat.claimed_addresses(down, "g2") == both
    uplink = nat.Uplink("172.31.10.3", "172.31.10.1")
    assert nat.claimed_addresses(down, "g2", uplink) == set()  # bgp mode: /32s instead


def test_a_standby_node_knows_the_next_hop_and_announces_what_it_takes_over() -> None:
    """g2 serves nothing: it still asks for the external subnet's gateway, by ARP probe
    from its own MAC (never the gateway port's), at once, and learns it. Then RA moves to
    it (g1 down): the first install already holds the way out (EXT_OUT to the known MAC),
    then come gratuitous ARPs for RA's gateway and floating IP at the gateway port's MAC."""
    from routeflow.tenant import nat

    core = gateway_core("g2", "198.51.100.10")
    up = two_gateways()
    install, probe = core.changes(wire.full_state(up), now=0.0)
    assert isinstance(install, InstallFlows) and isinstance(probe, DhcpReply)
    assert not [f for f in install.add if f.table in (p.SNAT, p.EXT_OUT)]  # no NAT here
    mine = bytes(int(x, 16) for x in nat.standby_mac("g2").split(":"))
    assert probe.frame[6:12] == mine and probe.frame[22:28] == mine
    assert probe.frame[28:32] == bytes(4) and probe.frame[38:42] == bytes([203, 0, 113, 1])
    assert core.arp_tick(0.05) == []  # asked 50 ms ago
    assert core.arp_reply(reply(HOP, HOP_MAC, to=nat.standby_mac("g2"))) == []  # no flow
    assert core.arp.neighbours == {HOP: HOP_MAC}  # but known
    down = two_gateways(g1_up=False)
    g1 = down.nodes["g1"]  # up=False, as the server registers it
    delta = wire.delta(Change(kind=Kind.NODE, id="g1", revision=up.revision + 1, obj=g1))
    install, *garps = core.changes(delta, now=10.0)
    assert isinstance(install, InstallFlows)
    (out,) = [f for f in install.add if f.table == p.EXT_OUT]
    assert ofsim.SetField("eth_dst", HOP_MAC) in out.instructions[0].actions  # type: ignore[union-attr]
    announced = {extarp.gratuitous(ip, mac) for ip, mac in nat_claims(down, "g2")}
    assert {g.frame for g in garps if isinstance(g, DhcpReply)} == announced and len(garps) == 2
    # The next tick repeats the announcement once, then nothing (the hop is known).
    assert {g.frame for g in core.arp_tick(10.1) if isinstance(g, DhcpReply)} == announced
    assert core.arp_tick(10.2) == []


def test_an_unknown_next_hop_is_asked_on_the_model_change() -> None:
    """Without a clock (the unit tests' calls) only the timer asks; the shell hands the
    clock, and a hop the model just made needed is asked at once."""
    core = gateway_core("g1", sample.GATEWAY_NODE[1])
    *_, ask = core.changes(wire.full_state(sample.cloud_external()), now=5.0)
    assert isinstance(ask, DhcpReply) and ask.frame[38:42] == bytes([203, 0, 113, 1])
    assert ask.frame[28:32] == bytes([203, 0, 113, 10])  # served: from RA's gateway IP


def nat_claims(cloud: Cloud, node: str) -> frozenset[tuple[str, str]]:
    from routeflow.tenant import nat

    return nat.claimed_addresses(cloud, node)

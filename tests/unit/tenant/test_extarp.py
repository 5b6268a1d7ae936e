"""A gateway node's external next hops: ARP requests when due, MACs learned, recompiled."""

from __future__ import annotations

from routeflow.rflib import ofsim
from routeflow.tenant import extarp, sample, wire
from routeflow.tenant import pipeline as p
from routeflow.tenant.compiler import NodeContext, compile_node
from routeflow.tenant.model import Cloud
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
    r = extarp.Resolver(retry=1.0, refresh=30.0)
    hops = [(HOP, "203.0.113.10", "fa:16:3e:00:00:c8")]
    assert len(r.due(hops, 0.0)) == 1
    assert r.due(hops, 0.5) == []
    assert len(r.due(hops, 1.0)) == 1
    assert not r.learn(reply("203.0.113.99", HOP_MAC), [HOP])  # not a next hop we want
    assert r.learn(reply(HOP, HOP_MAC), [HOP])
    assert not r.learn(reply(HOP, HOP_MAC), [HOP])  # nothing new
    assert r.neighbours == {HOP: HOP_MAC}
    assert r.due(hops, 2.0) == [] and len(r.due(hops, 31.0)) == 1


def compile_view(cloud: Cloud, view: NodeView) -> frozenset[ofsim.Flow]:
    ctx = NodeContext(
        view.name, dict(view.bindings), view.tunnel_ofport,
        external_ofport=view.external_ofport, neighbours=dict(view.neighbours),
    )  # fmt: skip
    return compile_node(cloud, ctx)


def test_gateway_core_learns_its_next_hop_and_opens_the_way_out() -> None:
    core: NodeCore[ofsim.Flow] = NodeCore(
        name="g1", tunnel_ip=sample.GATEWAY_NODE[1], compile=compile_view, gateway=True,
        external_ofport=p.EXTERNAL_OFPORT,
    )  # fmt: skip
    core.vifs_read({}, p.TUNNEL_OFPORT)
    core.switch_connected(frozenset())
    (install,) = core.changes(wire.full_state(sample.cloud_external()))
    assert isinstance(install, InstallFlows)
    assert not [f for f in install.add if f.table == p.EXT_OUT]  # no next hop yet
    (ask,) = core.arp_tick(0.0)
    assert isinstance(ask, DhcpReply) and ask.ofport == p.EXTERNAL_OFPORT
    (learned,) = core.arp_reply(reply(HOP, HOP_MAC))
    assert isinstance(learned, InstallFlows)
    (out,) = [f for f in learned.add if f.table == p.EXT_OUT]
    assert ofsim.SetField("eth_dst", HOP_MAC) in out.instructions[0].actions  # type: ignore[union-attr]
    assert core.arp_reply(reply(HOP, HOP_MAC)) == []
    # A compute node never asks.
    plain: NodeCore[ofsim.Flow] = NodeCore(name="n1", tunnel_ip="x", compile=compile_view)
    plain.changes(wire.full_state(sample.cloud_external()))
    assert plain.arp_tick(0.0) == []

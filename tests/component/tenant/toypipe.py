"""A toy pipeline for the node agent's component test (the real one is the tenant compiler).

One flow per local VIF (in_port -> tunnel port) and one per network (drop,
matched on tun_id): enough to see what the agent writes and reads back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from routeflow.tenant.model import Cloud
from routeflow.tenant.nodecore import NodeView

COOKIE = 0x7E00_0000_0000_0000
MASK = 0xFF00_0000_0000_0000

Flow = tuple[str, int, int]  # (kind, match value, output port or 0)


def compile_view(cloud: Cloud, view: NodeView) -> frozenset[Flow]:
    flows: set[Flow] = {("net", n.segmentation_id, 0) for n in cloud.networks.values()}
    for port_id, ofport in view.bindings.items():
        if port_id in cloud.ports and view.tunnel_ofport:
            flows.add(("vif", ofport, view.tunnel_ofport))
    return frozenset(flows)


class Codec:
    cookie = COOKIE
    cookie_mask = MASK

    def from_stats(self, stats: Iterable[Any]) -> frozenset[Flow]:
        out: set[Flow] = set()
        for s in stats:
            if "in_port" in s.match:
                out.add(("vif", s.match["in_port"], s.instructions[0].actions[0].port))
            elif "tunnel_id" in s.match:
                out.add(("net", s.match["tunnel_id"], 0))
        return frozenset(out)

    def flow_mods(self, dp: Any, add: frozenset[Flow], delete: frozenset[Flow]) -> list[Any]:
        parser, ofp = dp.ofproto_parser, dp.ofproto
        msgs = []
        for flow, command in [(f, ofp.OFPFC_DELETE_STRICT) for f in delete] + [
            (f, ofp.OFPFC_ADD) for f in add
        ]:
            kind, value, out = flow
            if kind == "vif":
                match = parser.OFPMatch(in_port=value)
                inst = [
                    parser.OFPInstructionActions(
                        ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(out)]
                    )
                ]
            else:
                match = parser.OFPMatch(tunnel_id=value)
                inst = []
            msgs.append(
                parser.OFPFlowMod(
                    dp,
                    cookie=COOKIE,
                    command=command,
                    priority=100,
                    match=match,
                    instructions=inst,
                    out_port=ofp.OFPP_ANY,
                    out_group=ofp.OFPG_ANY,
                )
            )
        return msgs


def codec() -> Codec:
    return Codec()

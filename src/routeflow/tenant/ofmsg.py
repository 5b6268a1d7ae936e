"""Compiled tenant flows as a switch takes them: os-ken messages and ovs-ofctl text.

The node agent and the lab check import this; the API is five functions:

* ``flow_mod(dp, flow)`` -> ``OFPFlowMod`` (OpenFlow 1.3 ADD, Nicira ``NXActionRegMove``
  for moves; registers and ``tun_ipv4_dst`` as Nicira OXM fields, as os-ken 4.2 has them).
  An ADD of a flow whose (table, priority, match) exists replaces it: send the ``add``
  list of ``compiler.diff`` as ADDs.
* ``flow_delete(dp, flow)`` -> ``OFPFlowMod`` DELETE_STRICT of exactly that flow
  (table, priority, match; cookie checked under the full mask), for ``diff``'s deletes.
* ``flow_text(flow)`` / ``flows_text(flows)`` -> lines for
  ``ovs-ofctl -O OpenFlow13 --bundle add-flows br-int FILE``.
* ``same_flows(expected, dumped_text)`` -> a list of problems (empty: equal) between the
  compiler's output and ``ovs-ofctl -O OpenFlow13 dump-flows br-int``; only tenant flows
  (``pipeline.TENANT`` cookies) of the dump are compared.
* ``tenant_cookie_filter()`` -> ``(cookie, cookie_mask)`` to dump or delete every tenant
  flow (a reconcile reads them with an ``OFPFlowStatsRequest`` under this filter).

``datapath`` is any os-ken datapath (it needs ``.ofproto`` and ``.ofproto_parser``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from routeflow.rflib import ofsim, ovstext
from routeflow.tenant import pipeline

_FULL64 = (1 << 64) - 1


def tenant_cookie_filter() -> tuple[int, int]:
    return pipeline.TENANT, pipeline.TENANT_MASK


def _value(name: str, value: int, mask: int) -> Any:
    v = ofsim.render(name, value)
    full = (1 << ofsim.FIELDS[name][1]) - 1
    if mask == full:
        return v
    return (v, ofsim.render(name, mask))


def match(parser: Any, flow: ofsim.Flow) -> Any:
    return parser.OFPMatch(**{name: _value(name, v, m) for name, v, m in flow.match})


def _action(ofp: Any, parser: Any, a: ofsim.Action) -> Any:
    if isinstance(a, ofsim.Output):
        port = ofp.OFPP_IN_PORT if a.port == ofsim.IN_PORT else a.port
        max_len = ofp.OFPCML_NO_BUFFER if a.port == ofsim.CONTROLLER else 0
        return parser.OFPActionOutput(port, max_len)
    if isinstance(a, ofsim.SetField):
        return parser.OFPActionSetField(**{a.field: ofsim.render(a.field, int(a.value))})
    if isinstance(a, ofsim.Move):
        return parser.NXActionRegMove(
            src_field=a.src, dst_field=a.dst, n_bits=a.n_bits, src_ofs=a.src_ofs,
            dst_ofs=a.dst_ofs,
        )  # fmt: skip
    if isinstance(a, ofsim.DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(a, ofsim.PushVlan):
        return parser.OFPActionPushVlan(a.ethertype)
    if isinstance(a, ofsim.PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(a, ofsim.Group):
        return parser.OFPActionGroup(a.group_id)
    if isinstance(a, ofsim.Ct):
        zone_src, zone = ("", a.zone) if a.zone_src is None else (a.zone_src, (0 << 6) | 15)
        nat = []
        if a.nat is not None:
            addr = ofsim.render("ipv4_src", int(a.nat.address)) if a.nat.kind else ""
            flags = {"": 0, "src": 1, "dst": 2}[a.nat.kind]  # NX_NAT_F_SRC / NX_NAT_F_DST
            nat = [parser.NXActionNAT(flags, range_ipv4_min=addr, range_ipv4_max=addr)]
        return parser.NXActionCT(
            flags=1 if a.commit else 0, zone_src=zone_src, zone_ofs_nbits=zone,
            recirc_table=0xFF if a.table is None else a.table, alg=0, actions=nat,
        )  # fmt: skip
    if isinstance(a, ofsim.Conjunction):
        # On the wire the clause counts from 0 (ovs-ofctl prints it from 1).
        return parser.NXActionConjunction(a.clause - 1, a.n_clauses, a.id)
    raise ValueError(f"no OpenFlow action for {a!r}")


def instructions(ofp: Any, parser: Any, flow: ofsim.Flow) -> list[Any]:
    out = []
    for i in flow.instructions:
        if isinstance(i, ofsim.ApplyActions | ofsim.WriteActions):
            kind = ofp.OFPIT_APPLY_ACTIONS
            if isinstance(i, ofsim.WriteActions):
                kind = ofp.OFPIT_WRITE_ACTIONS
            out.append(
                parser.OFPInstructionActions(kind, [_action(ofp, parser, a) for a in i.actions])
            )
        elif isinstance(i, ofsim.ClearActions):
            out.append(parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []))
        elif isinstance(i, ofsim.WriteMetadata):
            out.append(parser.OFPInstructionWriteMetadata(i.value, i.mask))
        elif isinstance(i, ofsim.GotoTable):
            out.append(parser.OFPInstructionGotoTable(i.table))
    return out


def flow_mod(datapath: Any, flow: ofsim.Flow) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(
        datapath=datapath,
        cookie=flow.cookie,
        table_id=flow.table,
        command=ofp.OFPFC_ADD,
        priority=flow.priority,
        match=match(parser, flow),
        instructions=instructions(ofp, parser, flow),
    )


def flow_delete(datapath: Any, flow: ofsim.Flow) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(
        datapath=datapath,
        cookie=flow.cookie,
        cookie_mask=_FULL64,
        table_id=flow.table,
        command=ofp.OFPFC_DELETE_STRICT,
        priority=flow.priority,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=match(parser, flow),
    )


def flow_text(flow: ofsim.Flow) -> str:
    return ovstext.flow_text(flow)


def _order(f: ofsim.Flow) -> tuple[int, int, str]:
    return (f.table, -f.priority, repr(f.match))


def flows_text(flows: Iterable[ofsim.Flow]) -> str:
    """Every flow, one line each, in table and priority order (for ``--bundle add-flows``)."""
    return "".join(flow_text(f) + "\n" for f in sorted(flows, key=_order))


def same_flows(expected: Iterable[ofsim.Flow], dumped_text: str) -> list[str]:
    """What differs between the compiled flows and a switch's dump (tenant cookies only)."""
    problems: list[str] = []
    try:
        dumped = ovstext.parse_flows(dumped_text)
    except ofsim.SimError as e:
        return [f"the dump does not parse: {e}"]
    held: dict[tuple[int, int, tuple[ofsim.MatchItem, ...]], ofsim.Flow] = {}
    for f in dumped:
        if pipeline.cookie_kind(f.cookie) is None:
            continue
        key = (f.table, f.priority, f.match)
        if key in held:
            problems.append(f"twice on the switch: {flow_text(f)}")
        held[key] = f
    want = {(f.table, f.priority, f.match): f for f in expected}
    for key in sorted(want.keys() - held.keys(), key=lambda k: _order(want[k])):
        problems.append(f"missing: {flow_text(want[key])}")
    for key in sorted(held.keys() - want.keys(), key=lambda k: _order(held[k])):
        problems.append(f"unexpected: {flow_text(held[key])}")
    for key in sorted(want.keys() & held.keys(), key=lambda k: _order(want[k])):
        if want[key] != held[key]:
            problems.append(f"differs: want {flow_text(want[key])} have {flow_text(held[key])}")
    return problems

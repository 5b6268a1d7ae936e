"""The renderers' pure half: flows as ovs-ofctl text and the dump comparison."""

from __future__ import annotations

from routeflow.rflib import ofsim
from routeflow.tenant import ofmsg, sample
from routeflow.tenant.compiler import NodeContext, compile_node

FLOWS = compile_node(sample.cloud(), NodeContext("n1", sample.bindings("n1")))


def _dump(flows) -> str:
    # What dump-flows prints: stats first, other tenants' or other apps' flows mixed in.
    lines = [f" duration=1.0s, n_packets=0, {ofmsg.flow_text(f)}" for f in flows]
    lines.append(" cookie=0x1, table=0, priority=1 actions=drop")  # not a tenant flow
    return "OFPST_FLOW reply (OF1.3):\n" + "\n".join(lines)


def test_text_round_trips_to_the_same_flows():
    assert ofmsg.same_flows(FLOWS, _dump(FLOWS)) == []
    lines = ofmsg.flows_text(FLOWS).splitlines()
    assert len(lines) == len(FLOWS) and lines[0].startswith("table=0,")


def test_differences_are_named():
    flows = sorted(FLOWS, key=lambda f: (f.table, -f.priority, repr(f.match)))
    gone, changed = flows[0], flows[1]
    other = ofsim.Flow(changed.table, changed.priority, changed.match, (), changed.cookie)
    extra = ofsim.Flow(99, 1, {"reg7": 77}, (), changed.cookie)
    held = [f for f in flows if f not in (gone, changed)] + [other, extra]
    problems = ofmsg.same_flows(FLOWS, _dump(held))
    assert [p.split(":", 1)[0] for p in problems] == ["missing", "unexpected", "differs"]
    assert ofmsg.same_flows(FLOWS, "table=0 actions=frobnicate")[0].startswith("the dump")

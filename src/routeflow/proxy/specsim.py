"""routeflow's FlowSpecs and GroupSpecs as an ofsim pipeline (pure).

The translation follows the os-ken layer (ofmsg.py ``flow_mod``/``group_mod``):
a spec's actions become one apply-actions instruction, its Goto a goto-table,
ToController an output to CONTROLLER; a GroupSpec is select or indirect. So
the simulator runs what rfproxy would install, and tests of the forwarding
design need no switch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from routeflow.proxy import openflow as of
from routeflow.rflib import ofsim
from routeflow.rflib.protocol import FibEntry, NextHopMod


def sim_actions(actions: Iterable[of.Action]) -> tuple[ofsim.Action, ...]:
    out: list[ofsim.Action] = []
    for a in actions:
        if isinstance(a, of.Output):
            out.append(ofsim.Output(a.port))
        elif isinstance(a, of.ToController):
            out.append(ofsim.Output(ofsim.CONTROLLER))
        elif isinstance(a, of.Group):
            out.append(ofsim.Group(a.group_id))
        elif isinstance(a, of.SetEthSrc):
            out.append(ofsim.SetField("eth_src", a.mac))
        elif isinstance(a, of.SetEthDst):
            out.append(ofsim.SetField("eth_dst", a.mac))
        elif isinstance(a, of.DecTtl):
            out.append(ofsim.DecTtl())
        elif isinstance(a, of.PushVlan):
            out.append(ofsim.PushVlan())
        elif isinstance(a, of.SetVlanVid):
            out.append(ofsim.SetField("vlan_vid", of.OFPVID_PRESENT | a.vid))
        elif isinstance(a, of.PopVlan):
            out.append(ofsim.PopVlan())
        elif not isinstance(a, of.Goto):
            raise ofsim.SimError(f"no simulation of {a!r}")
    return tuple(out)


def sim_flow(spec: of.FlowSpec) -> ofsim.Flow:
    instructions: list[ofsim.Instruction] = []
    applied = sim_actions(spec.actions)
    if applied:
        instructions.append(ofsim.ApplyActions(applied))
    instructions += [ofsim.GotoTable(a.table) for a in spec.actions if isinstance(a, of.Goto)]
    return ofsim.Flow(spec.table, spec.priority, spec.match, tuple(instructions), spec.cookie)


def sim_group(spec: of.GroupSpec) -> ofsim.GroupEntry:
    buckets = tuple(
        ofsim.Bucket(sim_actions(actions), weight if spec.select else 1)  # indirect: unused
        for actions, weight in spec.buckets
    )
    return ofsim.GroupEntry(spec.group_id, "select" if spec.select else "indirect", buckets)


def switch_specs(router_ports: Mapping[int, str], fib: Iterable[FibEntry]) -> list[of.FlowSpec]:
    """Every flow rfproxy wants on a physical switch (as its reconciliation composes them)."""
    specs = list(of.base_flows())
    for dp_port, mac in router_ports.items():
        specs.extend(of.router_port_flows(dp_port, mac))
    for entry in fib:
        specs.extend(of.fib_flows(entry))
    return specs


def switch_pipeline(
    router_ports: Mapping[int, str],
    fib: Iterable[FibEntry],
    nexthops: Iterable[NextHopMod],
) -> ofsim.Pipeline:
    """A physical switch as rfproxy programs it: router ports (port -> MAC), FIB, next hops
    (each with the shards its routes use, no other group: see openflow.GROUP_SHARDS)."""
    fib = list(fib)
    used = of.used_groups(fib)
    return ofsim.Pipeline(
        [sim_flow(s) for s in switch_specs(router_ports, fib)],
        [
            sim_group(g)
            for m in nexthops
            for g in of.nexthop_groups(
                m, [gid for gid in of.nexthop_group_ids(m.nexthop_id) if gid in used]
            )
        ],
    )

"""What to change on a switch so it holds exactly the desired state (pure).

A proxy that restarts, or a switch that reconnects, must not be flushed:
with fail-mode secure the switch has kept forwarding on its flows, and wiping
them would cut traffic until everything is re-sent. Instead the proxy reads
the switch's flows and groups, and this module computes the difference.

Flows and groups are compared in a normalised text form (match and actions
as the switch reports them), so "same" means what the switch would do, not
how we happened to build the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: (table, priority, normalised match) identifies a flow on a switch.
FlowKey = tuple[int, int, str]


@dataclass
class FlowDiff:
    add: list[FlowKey] = field(default_factory=list)  # missing, or actions differ
    delete: list[FlowKey] = field(default_factory=list)  # ours on the switch, not desired
    unchanged: int = 0


@dataclass
class GroupDiff:
    add: list[int] = field(default_factory=list)
    modify: list[int] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    unchanged: int = 0


def diff_flows(
    desired: dict[FlowKey, str],
    actual: dict[FlowKey, tuple[str, int]],
    is_ours,
) -> FlowDiff:
    """desired: key -> actions; actual: key -> (actions, cookie).

    Flows that are not ours (by cookie) are left alone unless we want the
    same key, in which case ours replaces them.
    """
    d = FlowDiff()
    for key, actions in desired.items():
        have = actual.get(key)
        if have is not None and have[0] == actions:
            d.unchanged += 1
        else:
            d.add.append(key)
    for key, (_actions, cookie) in actual.items():
        if key not in desired and is_ours(cookie):
            d.delete.append(key)
    return d


def diff_groups(desired: dict[int, str], actual: dict[int, str]) -> GroupDiff:
    """Both map group id -> normalised (type, buckets) text."""
    d = GroupDiff()
    for gid, text in desired.items():
        have = actual.get(gid)
        if have is None:
            d.add.append(gid)
        elif have != text:
            d.modify.append(gid)
        else:
            d.unchanged += 1
    d.delete = [gid for gid in actual if gid not in desired]
    return d

"""What passes between the proxy core and its shell: values in, actions out (pure).

The core (core.py) takes plain values (``Port``) and returns these actions;
the shell (app.py) carries them out with os-ken (ofmsg.py) and ServerLink.
A reconciliation's handles (``SwitchRead``, ``Stream``) and its plan are
here too: the core makes them, the shell's writing thread holds them.
Kept apart from the rules, as h11 keeps its events apart from its state
machine, so that both sides read one vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from routeflow.proxy import openflow as of
from routeflow.proxy import reconcile
from routeflow.rflib import protocol as p

__all__ = [
    "Action",
    "Barrier",
    "ClosePipe",
    "DeleteFlow",
    "Notice",
    "OpenPipe",
    "PacketOut",
    "Port",
    "ReadSwitch",
    "ReconcileCounts",
    "ReconcilePlan",
    "RequestFlowStats",
    "SendRole",
    "StartStream",
    "Stream",
    "SwitchRead",
    "ToServer",
    "WriteFlows",
    "WriteGroup",
    "debug",
    "error",
    "info",
    "warning",
]
# --- values in --------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    """A switch port as its switch describes it."""

    port_no: int
    hw_addr: str
    name: str
    up: bool


@dataclass(eq=False)
class SwitchRead:
    """A reconciliation reading the switch: its flows and groups, as the replies come in."""

    conn: object
    flow_xid: int
    group_xid: int
    #: The switch's flows, folded in by the shell reply part by reply part.
    actual: reconcile.ActualFlows = field(default_factory=dict)
    #: Group id -> normalised text (reconcile.group_text's form).
    groups: dict[int, str] = field(default_factory=dict)
    flows_done: bool = False
    groups_done: bool = False


@dataclass(eq=False)
class Stream:
    """A reconciliation writing to one switch (from a thread of the shell)."""

    dp_id: int
    conn: object
    cancelled: bool = False
    #: The connection a reconciliation was asked for while this one ran: started when it ends.
    again: object = None


# --- actions out --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToServer:
    """Send to rfserver (after the lock: the socket may wait)."""

    messages: tuple[p.Message, ...]


@dataclass(frozen=True)
class PacketOut:
    """Emit ``frame`` out of ``port`` of switch ``dp_id`` (after the lock)."""

    dp_id: int
    port: int
    frame: bytes


@dataclass(frozen=True)
class RequestFlowStats:
    """Ask the switch for the flows of ``table`` (0xFF: all), after the lock."""

    dp_id: int
    table: int


@dataclass(frozen=True)
class SendRole:
    dp_id: int
    master: bool
    generation: int


@dataclass(frozen=True)
class WriteFlows:
    dp_id: int
    flows: tuple[of.FlowSpec, ...]
    delete: bool = False


@dataclass(frozen=True)
class WriteGroup:
    dp_id: int
    group: of.GroupSpec
    command: str  # "add", "modify" or "delete"


@dataclass(frozen=True)
class DeleteFlow:
    """DELETE_STRICT of a flow the switch reported, with the ofp_match it reported."""

    dp_id: int
    table: int
    priority: int
    match: bytes


@dataclass(frozen=True)
class Barrier:
    dp_id: int


@dataclass(frozen=True)
class OpenPipe:
    """A new FlowPipe for the switch's connection (closing the previous one)."""

    dp_id: int


@dataclass(frozen=True)
class ClosePipe:
    dp_id: int


@dataclass(frozen=True)
class ReadSwitch:
    """Request the switch's flows and groups; tell the core the xids (``read_started``)."""

    dp_id: int


@dataclass(frozen=True)
class StartStream:
    """Plan and write a reconciliation from a thread of its own (see app.py)."""

    stream: Stream
    read: SwitchRead


@dataclass(frozen=True)
class Notice:
    """A log line: ``text % args`` at ``level`` (logging's levels).

    ``ids`` are the log fields of what it is about (rflib.logs: dp_id, vm_id, ...);
    they do not take part in comparisons (a test matches the line).
    """

    level: int
    text: str
    args: tuple[object, ...] = ()
    ids: tuple[tuple[str, int], ...] = field(default=(), compare=False)


def info(text: str, *args: object, **ids: int) -> Notice:
    return Notice(logging.INFO, text, args, tuple(ids.items()))


def warning(text: str, *args: object, **ids: int) -> Notice:
    return Notice(logging.WARNING, text, args, tuple(ids.items()))


def error(text: str, *args: object) -> Notice:
    return Notice(logging.ERROR, text, args)


def debug(text: str, *args: object) -> Notice:
    return Notice(logging.DEBUG, text, args)


Action = (
    ToServer
    | PacketOut
    | RequestFlowStats
    | SendRole
    | WriteFlows
    | WriteGroup
    | DeleteFlow
    | Barrier
    | OpenPipe
    | ClosePipe
    | ReadSwitch
    | StartStream
    | Notice
)


# --- reconciliation plan ------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileCounts:
    flows_add: int
    flows_delete: int
    flows_unchanged: int
    groups_add: int
    groups_modify: int
    groups_delete: int
    groups_unchanged: int


@dataclass
class ReconcilePlan:
    """What a reconciliation writes, in order.

    ``first`` (under the lock, through os-ken): groups added and modified
    (flows may point at them), then the classifier's flows and the FIB
    flows of unusual shape. Then ``flows``' raw part (route adds and stale
    FIB flows, streamed through the pipe). Last the stale groups that are
    still not desired then (``finish``): nothing points at them any more.
    """

    dp_id: int
    first: list[Action]
    flows: reconcile.FlowPlan
    stale_groups: list[int]
    counts: ReconcileCounts

    def notices(self) -> list[Notice]:
        """The log lines of a reconciliation that completed."""
        c = self.counts
        out = [
            info(
                "reconciled switch %#x: flows +%d -%d =%d, groups +%d ~%d -%d =%d",
                self.dp_id,
                c.flows_add,
                c.flows_delete,
                c.flows_unchanged,
                c.groups_add,
                c.groups_modify,
                c.groups_delete,
                c.groups_unchanged,
            )
        ]
        plan = self.flows
        added = [reconcile.spec_flow(s)[0] for s in plan.add_now[:5]]
        added += [reconcile.spec_flow(of.fib_flows(e)[0])[0] for e in plan.add_routes[:5]]
        deleted = [key for key, _m in plan.delete_now[:5]] + [
            key for key, _m in plan.delete_fib[:5]
        ]
        for what, keys, total in (
            ("re-added", added, c.flows_add),
            ("deleted", deleted, c.flows_delete),
        ):
            if total:
                text = "; ".join(f"table={t},priority={pr},{m}" for t, pr, m in keys[:5])
                more = f" and {total - 5} more" if total > 5 else ""
                out.append(info("switch %#x: flows %s: %s%s", self.dp_id, what, text, more))
        return out

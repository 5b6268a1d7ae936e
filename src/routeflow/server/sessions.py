"""rfserver's session rules (pure): what each message of a connected peer means.

The shell (service.py) owns the sockets; it feeds every received message to
the peer's session object and carries out the actions that come back, in
order. No sockets, tasks, clocks or logging here, so every rule below is a
unit test away.

A client session (one rfclient; ``vm_id`` is what its hello claimed):

1. ``Resync(begin)`` starts a full-state dump: route and neighbour *adds* are
   collected, not applied. A second ``begin`` starts the collection again.
2. ``Resync(end)`` after a ``begin`` replaces everything the VM had with what
   was collected, in one ``ReplaceVm`` (a diff reaches the switches, not a
   flush), then ``Resynced``. An ``end`` without a ``begin`` does nothing.
3. Deletes are applied at once, inside a dump too. (rfclient sends none
   there: its dump is one snapshot; a delete after it comes after ``end``.)
4. Outside a dump, adds and deletes are applied as they come.
5. A ``PortRegister`` for another VM is refused: a client speaks for itself
   only. Its own is recorded (``VmPortSeen``, for operators) and then goes to
   the association table.
6. Anything else from a client is refused with a reason.

A controller session (one rfproxy replica of controller ``ct_id``):

7. Only the master replica's reports count: the switches as a slave (or a
   replica not yet elected) sees them are dropped (``NotMaster``).
8. ``DatapathStats`` and ``DatapathPortStatus`` about another controller are
   dropped without a word (they are periodic; one log line each would flood).
9. ``DatapathPortRegister`` and ``DatapathDown`` about another controller are
   refused: a controller speaks for itself only.
10. A ``DatapathPortRegister`` is recorded (``DpPortSeen``: its port name),
    a ``DatapathDown`` forgets the switch (``DatapathLeft``: its ports and
    stats); then these and ``VirtualPlaneMap`` go to the association table.
11. Anything else from a controller is refused with a reason.
12. ``DatapathLink`` and ``DatapathLinks`` (discovered links) go to the
    discovered topology (``TopologyReport``); about another controller, or
    with a field out of range, they are refused naming the field.

Link states are server-wide, kept by ``server.links.LinkStates``.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from routeflow.rflib import protocol as p
from routeflow.server.association import AssociationTable
from routeflow.server.discovered import check_message

__all__ = [
    "AddRoutes",
    "ClientSession",
    "ControllerSession",
    "DatapathLeft",
    "DeleteNeighbours",
    "DeleteRoutes",
    "DpPortSeen",
    "LinkReport",
    "NotMaster",
    "Refused",
    "ReplaceVm",
    "Resynced",
    "SetNeighbours",
    "StatsSeen",
    "ToTable",
    "TopologyReport",
    "VmPortSeen",
    "awaiting_resync",
]


# --- actions ---------------------------------------------------------------


class AddRoutes(msgspec.Struct, frozen=True):
    vm_id: int
    routes: list[p.Route]


class DeleteRoutes(msgspec.Struct, frozen=True):
    vm_id: int
    prefixes: list[str]


class SetNeighbours(msgspec.Struct, frozen=True):
    vm_id: int
    neighbours: list[p.Neighbour]


class DeleteNeighbours(msgspec.Struct, frozen=True):
    vm_id: int
    neighbours: list[p.Neighbour]


class ReplaceVm(msgspec.Struct, frozen=True):
    """The VM's whole routing state, from a completed Resync."""

    vm_id: int
    routes: list[p.Route]
    neighbours: list[p.Neighbour]


class Resynced(msgspec.Struct, frozen=True):
    """The VM has resent its full state (a waiting full-state dump may go)."""

    vm_id: int


class ToTable(msgspec.Struct, frozen=True):
    """An event for the association table."""

    event: p.PortRegister | p.DatapathPortRegister | p.DatapathDown | p.VirtualPlaneMap


class VmPortSeen(msgspec.Struct, frozen=True):
    """What a VM port said about itself (its interface name), for operators."""

    port: p.PortRegister


class DpPortSeen(msgspec.Struct, frozen=True):
    """What a switch port said about itself (its name), for operators."""

    port: p.DatapathPortRegister


class DatapathLeft(msgspec.Struct, frozen=True):
    """A switch left its controller: forget its ports and its stats."""

    ct_id: int
    dp_id: int


class StatsSeen(msgspec.Struct, frozen=True):
    stats: p.DatapathStats


class NotMaster(msgspec.Struct, frozen=True):
    """A report from a replica that is not its controller's master: dropped."""

    ct_id: int
    replica: str
    message: p.Message


class Refused(msgspec.Struct, frozen=True):
    """A message the peer had no business sending; worth one warning."""

    reason: str


class LinkReport(msgspec.Struct, frozen=True):
    """A switch port's link state as its master reported it (see server.links)."""

    status: p.DatapathPortStatus


class TopologyReport(msgspec.Struct, frozen=True):
    """Discovered links as the master reported them (see server.discovered)."""

    report: p.DatapathLink | p.DatapathLinks


Action = (
    AddRoutes
    | DeleteRoutes
    | SetNeighbours
    | DeleteNeighbours
    | ReplaceVm
    | Resynced
    | ToTable
    | VmPortSeen
    | DpPortSeen
    | DatapathLeft
    | StatsSeen
    | NotMaster
    | Refused
    | LinkReport
    | TopologyReport
)


# --- client ----------------------------------------------------------------


class ClientSession:
    """The rules of one rfclient connection (1-6 above)."""

    def __init__(self, vm_id: int) -> None:
        self.vm_id = vm_id
        #: The dump being collected (routes, neighbours), or None outside one.
        self._dump: tuple[list[p.Route], list[p.Neighbour]] | None = None
        self._handlers: dict[type, Callable[..., list[Action]]] = {
            p.Resync: self._resync,
            p.PortRegister: self._port_register,
            p.RouteMod: self._route_mod,
            p.NeighbourMod: self._neighbour_mod,
        }

    @property
    def in_resync(self) -> bool:
        return self._dump is not None

    def handle(self, msg: p.Message) -> list[Action]:
        handler = self._handlers.get(type(msg))
        if handler is None:
            return [Refused(f"vm {self.vm_id:#x} sent unexpected {type(msg).__name__}")]
        return handler(msg)

    def _resync(self, msg: p.Resync) -> list[Action]:
        if msg.phase == "begin":
            self._dump = ([], [])
            return []
        if msg.phase == "end" and self._dump is not None:
            routes, neighbours = self._dump
            self._dump = None
            return [ReplaceVm(self.vm_id, routes, neighbours), Resynced(self.vm_id)]
        return []

    def _port_register(self, msg: p.PortRegister) -> list[Action]:
        if msg.vm_id != self.vm_id:
            return [Refused(f"vm {self.vm_id:#x} registered a port of vm {msg.vm_id:#x}; ignored")]
        return [VmPortSeen(msg), ToTable(msg)]

    def _route_mod(self, msg: p.RouteMod) -> list[Action]:
        if msg.mod != p.Mod.ADD:
            return [DeleteRoutes(self.vm_id, [r.prefix for r in msg.routes])]
        if self._dump is not None:
            self._dump[0].extend(msg.routes)
            return []
        return [AddRoutes(self.vm_id, list(msg.routes))]

    def _neighbour_mod(self, msg: p.NeighbourMod) -> list[Action]:
        if msg.mod != p.Mod.ADD:
            return [DeleteNeighbours(self.vm_id, list(msg.neighbours))]
        if self._dump is not None:
            self._dump[1].extend(msg.neighbours)
            return []
        return [SetNeighbours(self.vm_id, list(msg.neighbours))]


# --- controller ------------------------------------------------------------


class ControllerSession:
    """The rules of one rfproxy replica's connection (7-11 above)."""

    def __init__(self, ct_id: int, replica: str) -> None:
        self.ct_id = ct_id
        self.replica = replica
        self._handlers: dict[type, Callable[..., list[Action]]] = {
            p.DatapathStats: self._stats,
            p.DatapathPortStatus: self._port_status,
            p.DatapathPortRegister: self._port_register,
            p.DatapathDown: self._datapath_down,
            p.VirtualPlaneMap: self._virtual_plane_map,
            p.DatapathLink: self._topology,
            p.DatapathLinks: self._topology,
        }

    def handle(self, msg: p.Message, *, is_master: bool) -> list[Action]:
        """``is_master``: this replica is the one programming the switches now."""
        if not is_master:
            return [NotMaster(self.ct_id, self.replica, msg)]
        handler = self._handlers.get(type(msg))
        if handler is None:
            return [Refused(f"controller {self.ct_id} sent unexpected {type(msg).__name__}")]
        return handler(msg)

    def _stats(self, msg: p.DatapathStats) -> list[Action]:
        return [StatsSeen(msg)] if msg.ct_id == self.ct_id else []

    def _port_status(self, msg: p.DatapathPortStatus) -> list[Action]:
        return [LinkReport(msg)] if msg.ct_id == self.ct_id else []

    def _foreign(self, ct_id: int) -> list[Action]:
        return [Refused(f"controller {self.ct_id} spoke for controller {ct_id}; ignored")]

    def _port_register(self, msg: p.DatapathPortRegister) -> list[Action]:
        if msg.ct_id != self.ct_id:
            return self._foreign(msg.ct_id)
        return [DpPortSeen(msg), ToTable(msg)]

    def _datapath_down(self, msg: p.DatapathDown) -> list[Action]:
        if msg.ct_id != self.ct_id:
            return self._foreign(msg.ct_id)
        return [DatapathLeft(msg.ct_id, msg.dp_id), ToTable(msg)]

    def _topology(self, msg: p.DatapathLink | p.DatapathLinks) -> list[Action]:
        if msg.ct_id != self.ct_id:
            return self._foreign(msg.ct_id)
        why = check_message(msg)
        if why is not None:
            return [Refused(f"controller {self.ct_id}: bad {type(msg).__name__}: {why}")]
        return [TopologyReport(msg)]

    def _virtual_plane_map(self, msg: p.VirtualPlaneMap) -> list[Action]:
        return [ToTable(msg)]  # names a VM port, no controller: the table checks it


# --- full-state dumps ------------------------------------------------------


def awaiting_resync(table: AssociationTable, ct_id: int, resynced: set[int]) -> set[int]:
    """VMs behind controller ``ct_id`` whose routes a full-state dump would miss.

    After a server restart the table is back from the store but the routes
    are not: a dump sent before those VMs resync would make the proxy remove
    their flows.
    """
    return {
        e.vm_id
        for e in table.entries()
        if e.ct_id == ct_id and e.vm_id is not None and e.dp_id is not None
    } - resynced

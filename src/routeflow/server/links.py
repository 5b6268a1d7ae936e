"""Switch port link states (pure): which links are down, and what VMs must hear.

rfproxy reports OFPT_PORT_STATUS as DatapathPortStatus; the VM interface
behind the port follows it, so routing in the VM reacts at once instead of
after its protocol timers. The rules are at ``LinkStates``.
"""

from __future__ import annotations

import msgspec

from routeflow.rflib import protocol as p
from routeflow.server.association import AssociationTable

DpKey = tuple[int, int, int]


class LinkChanged(msgspec.Struct, frozen=True):
    """A switch port's link went down or came back (not a repeated report)."""

    ct_id: int
    dp_id: int
    dp_port: int
    up: bool


class LinkStates:
    """Which switch ports' links are down, and what their VMs must hear.

    1. A port status that changes a port's link state is a ``LinkChanged``;
       a repeated one is not (switches repeat themselves).
    2. Every status, changed or not, is passed on to the VM port associated
       with the switch port (``PortConfig`` LINK_UP / LINK_DOWN): the VM
       interface follows the switch port. A port nobody is associated with
       only changes the state.
    3. A (re)connected VM is told which of its ports' links are down
       (``for_vm``); links that are up need no word, VM interfaces start up.
    """

    def __init__(self) -> None:
        #: (ct_id, dp_id, dp_port) of switch ports whose link is down.
        self.down: set[DpKey] = set()

    def is_up(self, ct_id: int | None, dp_id: int | None, dp_port: int | None) -> bool:
        return (ct_id, dp_id, dp_port) not in self.down

    def update(
        self, msg: p.DatapathPortStatus, table: AssociationTable
    ) -> list[LinkChanged | p.PortConfig]:
        key = (msg.ct_id, msg.dp_id, msg.dp_port)
        was_up = key not in self.down
        if msg.up:
            self.down.discard(key)
        else:
            self.down.add(key)
        out: list[LinkChanged | p.PortConfig] = []
        if was_up != msg.up:
            out.append(LinkChanged(*key, up=msg.up))
        entry = table.by_dp_port(*key)
        if entry is not None and entry.vm_id is not None and entry.vm_port is not None:
            op = p.PortOperation.LINK_UP if msg.up else p.PortOperation.LINK_DOWN
            out.append(p.PortConfig(vm_id=entry.vm_id, vm_port=entry.vm_port, operation_id=op))
        return out

    def for_vm(self, vm_id: int, table: AssociationTable) -> list[p.PortConfig]:
        out = []
        for key in sorted(self.down):
            entry = table.by_dp_port(*key)
            if entry is not None and entry.vm_id == vm_id and entry.vm_port is not None:
                out.append(
                    p.PortConfig(
                        vm_id=vm_id, vm_port=entry.vm_port, operation_id=p.PortOperation.LINK_DOWN
                    )
                )
        return out

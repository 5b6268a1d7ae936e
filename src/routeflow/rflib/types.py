"""Types shared by the association table, the state store and the web view."""

from __future__ import annotations

import enum

import msgspec


class ConfigEntry(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """One line of the operator's mapping: this VM port is that switch port."""

    vm_id: int
    vm_port: int
    ct_id: int
    dp_id: int
    dp_port: int

    @property
    def vm_key(self) -> tuple[int, int]:
        return (self.vm_id, self.vm_port)

    @property
    def dp_key(self) -> tuple[int, int, int]:
        return (self.ct_id, self.dp_id, self.dp_port)


class EntryState(enum.StrEnum):
    """The four states of the RouteFlow association wiki, derived from which fields are set."""

    IDLE_CLIENT_PORT = "idle client port"
    IDLE_DATAPATH_PORT = "idle datapath port"
    ASSOCIATED = "client-datapath association"
    ACTIVE = "active client-datapath association"


class AssociationEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the live association table; unset sides are None."""

    vm_id: int | None = None
    vm_port: int | None = None
    ct_id: int | None = None
    dp_id: int | None = None
    dp_port: int | None = None
    vs_id: int | None = None
    vs_port: int | None = None
    hwaddress: str | None = None  # MAC of the VM interface, once registered

    @property
    def state(self) -> EntryState:
        has_vm = self.vm_id is not None
        has_dp = self.dp_id is not None
        if has_vm and has_dp:
            if self.vs_id is not None:
                return EntryState.ACTIVE
            return EntryState.ASSOCIATED
        if has_vm:
            return EntryState.IDLE_CLIENT_PORT
        return EntryState.IDLE_DATAPATH_PORT

    @property
    def vm_key(self) -> tuple[int, int] | None:
        if self.vm_id is None or self.vm_port is None:
            return None
        return (self.vm_id, self.vm_port)

    @property
    def dp_key(self) -> tuple[int, int, int] | None:
        if self.ct_id is None or self.dp_id is None or self.dp_port is None:
            return None
        return (self.ct_id, self.dp_id, self.dp_port)

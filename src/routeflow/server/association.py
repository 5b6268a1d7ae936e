"""The RouteFlow association table, as a pure state machine.

The association rules are where RouteFlow's hard-to-reproduce bugs lived: ports
registering in the "wrong" order, datapaths that come back, VMs that vanish,
an operator editing the mapping under a running network. So the rules live here
with no sockets, threads, clocks or logging: the server feeds events in and
carries out the actions that come back. Every ordering of events can then be
tested, and the server, the state store and the routing layer all follow one
authoritative sequence of changes.

Events in: the protocol messages that drive the table (PortRegister,
DatapathPortRegister, VirtualPlaneMap, DatapathDown) plus ClientDown and
ConfigReplaced, which the server synthesises. Actions out: messages to send
(PortConfig to a VM, DataPlaneMap / DataPlaneUnmap to a controller),
EntryChanged for every row change, and Notice for things worth a log line.

Order of the actions of one event: a DataPlaneMap comes before the EntryChanged
that activates the row, and DataPlaneUnmap / PortConfig come after the
EntryChanged that deactivates it. A routing layer that reacts to EntryChanged
as it goes therefore installs forwarding state only on mapped ports and
withdraws it before the port is unmapped. Notices come last.

Invariants kept after every event (and checked on resumed entries):

* a VM port, a datapath port and a virtual switch port each appear in at most
  one row;
* every row with both sides is a line of the config;
* no config line has both of its sides sitting idle in separate rows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

import msgspec
from msgspec.structs import replace

from routeflow.rflib.protocol import (
    DatapathDown,
    DatapathPortRegister,
    DataPlaneMap,
    DataPlaneUnmap,
    PortConfig,
    PortOperation,
    PortRegister,
    VirtualPlaneMap,
)
from routeflow.rflib.types import AssociationEntry, ConfigEntry, EntryState

__all__ = [
    "Action",
    "AssociationTable",
    "ClientDown",
    "ConfigReplaced",
    "EntryChanged",
    "Event",
    "Notice",
    "NoticeCode",
    "data_plane_map",
]

VmKey = tuple[int, int]
DpKey = tuple[int, int, int]
VsKey = tuple[int, int]


# --- local events and actions ---------------------------------------------


class ClientDown(msgspec.Struct, frozen=True):
    """The rfclient of ``vm_id`` is gone (connection closed, VM stopped).

    The original RouteFlow never noticed this, so a dead VM's ports stayed
    associated and the switch kept relaying traffic to nowhere.
    """

    vm_id: int


class ConfigReplaced(msgspec.Struct, frozen=True):
    """The operator reloaded the mapping; ``entries`` is the whole new config.

    An event rather than a setter so that the breaking and making of
    associations it causes comes back as actions like any other change.
    """

    entries: tuple[ConfigEntry, ...]


class EntryChanged(msgspec.Struct, frozen=True):
    """One row changed: ``before`` None is a new row, ``after`` None a removed one.

    The state store deletes ``before`` and writes ``after``; the routing layer
    compares their states. Two idle rows merging into an association (after a
    config change) are reported as two changes: the idle datapath row removed,
    then the idle client row becoming the association.
    """

    before: AssociationEntry | None
    after: AssociationEntry | None


class NoticeCode(enum.StrEnum):
    UNCONFIGURED_VM_PORT = "unconfigured vm port"
    UNCONFIGURED_DP_PORT = "unconfigured dp port"
    NOT_ASSOCIATED = "mapping for unassociated vm port"
    VS_PORT_MOVED = "virtual switch port moved"


class Notice(msgspec.Struct, frozen=True):
    """Something the operator may want in the log; it changes nothing by itself.

    Kept as an action (not a logging call) so the table stays pure and tests
    can assert on what would have been reported.
    """

    code: NoticeCode
    detail: str


Event = (
    PortRegister
    | DatapathPortRegister
    | VirtualPlaneMap
    | DatapathDown
    | ClientDown
    | ConfigReplaced
)
Action = PortConfig | DataPlaneMap | DataPlaneUnmap | EntryChanged | Notice


# --- helpers ----------------------------------------------------------------


def _fmt_vm(key: VmKey) -> str:
    return f"vm port (0x{key[0]:x}, {key[1]})"


def _fmt_dp(key: DpKey) -> str:
    return f"dp port (0x{key[0]:x}, 0x{key[1]:x}, {key[2]})"


def _vs_key(row: AssociationEntry) -> VsKey | None:
    if row.vs_id is None or row.vs_port is None:
        return None
    return (row.vs_id, row.vs_port)


def _index_config(
    config: tuple[ConfigEntry, ...],
) -> tuple[dict[VmKey, ConfigEntry], dict[DpKey, ConfigEntry]]:
    """Index a config both ways; ValueError names the first duplicate found."""
    by_vm: dict[VmKey, ConfigEntry] = {}
    by_dp: dict[DpKey, ConfigEntry] = {}
    for line in config:
        if not isinstance(line, ConfigEntry):
            raise TypeError(f"config lines must be ConfigEntry, got {type(line).__name__}")
        if line.vm_key in by_vm:
            raise ValueError(
                f"duplicate {_fmt_vm(line.vm_key)} in config: {by_vm[line.vm_key]!r} and {line!r}"
            )
        if line.dp_key in by_dp:
            raise ValueError(
                f"duplicate {_fmt_dp(line.dp_key)} in config: {by_dp[line.dp_key]!r} and {line!r}"
            )
        by_vm[line.vm_key] = line
        by_dp[line.dp_key] = line
    return by_vm, by_dp


def _pair(row: AssociationEntry) -> ConfigEntry:
    """The config line an association row embodies (row must have both sides)."""
    assert row.vm_id is not None and row.vm_port is not None
    assert row.ct_id is not None and row.dp_id is not None and row.dp_port is not None
    return ConfigEntry(
        vm_id=row.vm_id,
        vm_port=row.vm_port,
        ct_id=row.ct_id,
        dp_id=row.dp_id,
        dp_port=row.dp_port,
    )


def _client_side(row: AssociationEntry) -> AssociationEntry:
    return AssociationEntry(vm_id=row.vm_id, vm_port=row.vm_port, hwaddress=row.hwaddress)


def _datapath_side(row: AssociationEntry) -> AssociationEntry:
    return AssociationEntry(ct_id=row.ct_id, dp_id=row.dp_id, dp_port=row.dp_port)


def _join(client: AssociationEntry, datapath: AssociationEntry) -> AssociationEntry:
    return AssociationEntry(
        vm_id=client.vm_id,
        vm_port=client.vm_port,
        hwaddress=client.hwaddress,
        ct_id=datapath.ct_id,
        dp_id=datapath.dp_id,
        dp_port=datapath.dp_port,
    )


def _send_mapping(row: AssociationEntry) -> PortConfig:
    assert row.vm_id is not None and row.vm_port is not None
    return PortConfig(
        vm_id=row.vm_id, vm_port=row.vm_port, operation_id=PortOperation.SEND_MAPPING_PACKET
    )


def _reset(row: AssociationEntry) -> PortConfig:
    assert row.vm_id is not None and row.vm_port is not None
    return PortConfig(vm_id=row.vm_id, vm_port=row.vm_port, operation_id=PortOperation.RESET)


def _unmap(row: AssociationEntry) -> DataPlaneUnmap:
    assert row.ct_id is not None and row.dp_id is not None and row.dp_port is not None
    return DataPlaneUnmap(ct_id=row.ct_id, dp_id=row.dp_id, dp_port=row.dp_port)


def data_plane_map(row: AssociationEntry) -> DataPlaneMap:
    """The DataPlaneMap that tells a controller about an active entry."""
    assert row.ct_id is not None and row.dp_id is not None and row.dp_port is not None
    assert row.vs_id is not None and row.vs_port is not None and row.hwaddress is not None
    return DataPlaneMap(
        ct_id=row.ct_id,
        dp_id=row.dp_id,
        dp_port=row.dp_port,
        vs_id=row.vs_id,
        vs_port=row.vs_port,
        hwaddress=row.hwaddress,
    )


def _sort_key(row: AssociationEntry) -> tuple[bool, VmKey, bool, DpKey]:
    # Rows with a VM side first, by VM port; idle datapath ports after, by dp port.
    vm = row.vm_key
    dp = row.dp_key
    return (vm is None, vm or (0, 0), dp is None, dp or (0, 0, 0))


# --- the table ----------------------------------------------------------------


class AssociationTable:
    """Which VM port is which switch port, and how far each pair has come up.

    One instance is the server's single source of truth; the indexes make the
    per-packet and per-route lookups O(1). The only way to change it is
    :meth:`handle`, so every change is visible as an action.
    """

    def __init__(
        self,
        config: Iterable[ConfigEntry] = (),
        entries: Iterable[AssociationEntry] = (),
    ) -> None:
        """Build a table from a config and, optionally, a persisted set of rows.

        Raises ValueError if the config maps a VM port or a dp port twice, or
        if ``entries`` break an invariant of the module (duplicate ports, an
        association the config does not contain, a configured pair left idle).
        A restarted server whose config may have changed meanwhile should use
        :meth:`resume` instead, which reconciles rather than refuses.
        """
        self._by_vm: dict[VmKey, AssociationEntry] = {}
        self._by_dp: dict[DpKey, AssociationEntry] = {}
        self._by_vs: dict[VsKey, AssociationEntry] = {}
        self._vm_ports: dict[int, set[int]] = {}
        self._dp_ports: dict[tuple[int, int], set[int]] = {}
        self._sorted: list[AssociationEntry] | None = None
        self._handlers: dict[type, Callable[..., list[Action]]] = {
            PortRegister: self._port_register,
            DatapathPortRegister: self._datapath_port_register,
            VirtualPlaneMap: self._virtual_plane_map,
            DatapathDown: self._datapath_down,
            ClientDown: self._client_down,
            ConfigReplaced: self._config_replaced,
        }

        for row in entries:
            self._check_shape(row)
            self._check_free(row)
            self._insert(row)

        self._config = tuple(config)
        self._cfg_by_vm, self._cfg_by_dp = _index_config(self._config)

        for vm_key, row in self._by_vm.items():
            if row.dp_key is not None and self._cfg_by_vm.get(vm_key) != _pair(row):
                raise ValueError(f"entries: association {_pair(row)!r} is not in the config")
        for line in self._config:
            vm_row = self._by_vm.get(line.vm_key)
            dp_row = self._by_dp.get(line.dp_key)
            if vm_row is not None and dp_row is not None and vm_row is not dp_row:
                raise ValueError(
                    f"entries: {_fmt_vm(line.vm_key)} and {_fmt_dp(line.dp_key)} are "
                    f"configured together but both idle"
                )

    @classmethod
    def resume(
        cls,
        config: Iterable[ConfigEntry],
        entries: Iterable[AssociationEntry],
    ) -> tuple[AssociationTable, list[Action]]:
        """Rebuild a persisted table under a config that may have changed meanwhile.

        Returns the table and the actions that bring the network in line with
        the new config (exactly what ConfigReplaced would have produced had the
        server been running when the config changed).
        """
        rows = list(entries)
        current = [_pair(r) for r in rows if r.vm_key is not None and r.dp_key is not None]
        new_config = tuple(config)
        _index_config(new_config)  # refuse a bad config before looking at the rows
        table = cls(current, rows)
        actions = table.handle(ConfigReplaced(new_config))
        return table, actions

    # --- queries ------------------------------------------------------------

    @property
    def config(self) -> tuple[ConfigEntry, ...]:
        return self._config

    def entries(self) -> list[AssociationEntry]:
        """All rows, VM-side rows by VM port first, then idle datapath ports by dp port.

        The order depends only on the contents, never on event order.
        """
        if self._sorted is None:
            rows = list(self._by_vm.values())
            rows.extend(r for r in self._by_dp.values() if r.vm_key is None)
            rows.sort(key=_sort_key)
            self._sorted = rows
        return list(self._sorted)

    def __len__(self) -> int:
        return len(self._by_vm) + sum(1 for r in self._by_dp.values() if r.vm_key is None)

    def by_vm_port(self, vm_id: int, vm_port: int) -> AssociationEntry | None:
        """The row of a VM port, whatever its state."""
        return self._by_vm.get((vm_id, vm_port))

    def active_by_vm_port(self, vm_id: int, vm_port: int) -> AssociationEntry | None:
        """The row of a VM port if it is ACTIVE (usable for forwarding), else None."""
        row = self._by_vm.get((vm_id, vm_port))
        if row is None or row.vs_id is None:
            return None
        return row

    def by_dp_port(self, ct_id: int, dp_id: int, dp_port: int) -> AssociationEntry | None:
        """The row of a datapath port, whatever its state."""
        return self._by_dp.get((ct_id, dp_id, dp_port))

    def by_vs_port(self, vs_id: int, vs_port: int) -> AssociationEntry | None:
        """The ACTIVE row mapped to a virtual switch port (only ACTIVE rows have one)."""
        return self._by_vs.get((vs_id, vs_port))

    def unmapped_again(
        self, waiting: set[VmKey], connected: Iterable[int]
    ) -> tuple[set[VmKey], list[PortConfig]]:
        """(VM ports unmapped now, a new mapping request for each also unmapped at ``waiting``).

        A lost mapping packet would leave its association waiting forever: the
        server calls this periodically, keeps the first value for the next
        call, and sends the requests to the ``connected`` clients.
        """
        now = {key for key, row in self._by_vm.items() if row.state == EntryState.ASSOCIATED}
        online = set(connected)
        again = [_send_mapping(self._by_vm[key]) for key in sorted(now & waiting)]
        return now, [m for m in again if m.vm_id in online]

    # --- events ---------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return what the server must send and what changed.

        Raises TypeError for an event type the table does not know, and
        ValueError for a ConfigReplaced with duplicate ports (the table is then
        left unchanged).
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"AssociationTable cannot handle {type(event).__name__}")
        return handler(event)

    def _port_register(self, ev: PortRegister) -> list[Action]:
        key = (ev.vm_id, ev.vm_port)
        row = self._by_vm.get(key)
        if row is not None:
            if row.hwaddress == ev.hwaddress:
                return []
            if row.dp_key is None:
                new = replace(row, hwaddress=ev.hwaddress)
                self._replace(row, new)
                return [EntryChanged(row, new)]
            # The interface changed under an association: whatever the proxy was
            # told about the old MAC is wrong, so unmap and ask for a new mapping.
            new = replace(row, hwaddress=ev.hwaddress, vs_id=None, vs_port=None)
            self._replace(row, new)
            actions: list[Action] = [EntryChanged(row, new)]
            if row.vs_id is not None:
                actions.append(_unmap(row))
            actions.append(_send_mapping(new))
            return actions

        client = AssociationEntry(vm_id=ev.vm_id, vm_port=ev.vm_port, hwaddress=ev.hwaddress)
        line = self._cfg_by_vm.get(key)
        if line is None:
            self._insert(client)
            return [
                EntryChanged(None, client),
                Notice(
                    NoticeCode.UNCONFIGURED_VM_PORT,
                    f"{_fmt_vm(key)} registered but has no config line; kept idle",
                ),
            ]
        datapath = self._by_dp.get(line.dp_key)
        if datapath is None:
            self._insert(client)
            return [EntryChanged(None, client)]
        assert datapath.vm_key is None, "configured dp port associated elsewhere"
        assoc = _join(client, datapath)
        self._replace(datapath, assoc)
        return [EntryChanged(datapath, assoc), _send_mapping(assoc)]

    def _datapath_port_register(self, ev: DatapathPortRegister) -> list[Action]:
        key = (ev.ct_id, ev.dp_id, ev.dp_port)
        if key in self._by_dp:
            return []
        datapath = AssociationEntry(ct_id=ev.ct_id, dp_id=ev.dp_id, dp_port=ev.dp_port)
        line = self._cfg_by_dp.get(key)
        if line is None:
            self._insert(datapath)
            return [
                EntryChanged(None, datapath),
                Notice(
                    NoticeCode.UNCONFIGURED_DP_PORT,
                    f"{_fmt_dp(key)} registered but has no config line; kept idle",
                ),
            ]
        client = self._by_vm.get(line.vm_key)
        if client is None:
            self._insert(datapath)
            return [EntryChanged(None, datapath)]
        assert client.dp_key is None, "configured vm port associated elsewhere"
        assoc = _join(client, datapath)
        self._replace(client, assoc)
        return [EntryChanged(client, assoc), _send_mapping(assoc)]

    def _virtual_plane_map(self, ev: VirtualPlaneMap) -> list[Action]:
        key = (ev.vm_id, ev.vm_port)
        row = self._by_vm.get(key)
        if row is None or row.dp_key is None:
            state = "unknown" if row is None else "idle"
            return [
                Notice(
                    NoticeCode.NOT_ASSOCIATED,
                    f"mapping packet from {state} {_fmt_vm(key)} on virtual switch "
                    f"port (0x{ev.vs_id:x}, {ev.vs_port}) ignored",
                )
            ]
        vs = (ev.vs_id, ev.vs_port)
        if _vs_key(row) == vs:
            return []
        actions: list[Action] = []
        notices: list[Action] = []
        holder = self._by_vs.get(vs)
        if holder is not None:
            # The virtual switch says this port now belongs to another VM port;
            # the newest mapping packet wins and the old holder must map again.
            demoted = replace(holder, vs_id=None, vs_port=None)
            self._replace(holder, demoted)
            actions += [EntryChanged(holder, demoted), _unmap(holder), _send_mapping(demoted)]
            assert holder.vm_key is not None
            notices.append(
                Notice(
                    NoticeCode.VS_PORT_MOVED,
                    f"virtual switch port (0x{vs[0]:x}, {vs[1]}) moved from "
                    f"{_fmt_vm(holder.vm_key)} to {_fmt_vm(key)}",
                )
            )
        active = replace(row, vs_id=ev.vs_id, vs_port=ev.vs_port)
        self._replace(row, active)
        actions += [data_plane_map(active), EntryChanged(row, active)]
        return actions + notices

    def _datapath_down(self, ev: DatapathDown) -> list[Action]:
        actions: list[Action] = []
        for port in sorted(self._dp_ports.get((ev.ct_id, ev.dp_id), ())):
            row = self._by_dp[(ev.ct_id, ev.dp_id, port)]
            if row.vm_key is None:
                self._remove(row)
                actions.append(EntryChanged(row, None))
                continue
            client = _client_side(row)
            self._replace(row, client)
            actions.append(EntryChanged(row, client))
            if row.vs_id is not None:
                actions.append(_unmap(row))
            actions.append(_reset(row))
        return actions

    def _client_down(self, ev: ClientDown) -> list[Action]:
        actions: list[Action] = []
        for port in sorted(self._vm_ports.get(ev.vm_id, ())):
            row = self._by_vm[(ev.vm_id, port)]
            if row.dp_key is None:
                self._remove(row)
                actions.append(EntryChanged(row, None))
                continue
            datapath = _datapath_side(row)
            self._replace(row, datapath)
            actions.append(EntryChanged(row, datapath))
            if row.vs_id is not None:
                actions.append(_unmap(row))
        return actions

    def _config_replaced(self, ev: ConfigReplaced) -> list[Action]:
        config = tuple(ev.entries)
        by_vm, by_dp = _index_config(config)  # raises before anything changes
        actions: list[Action] = []

        for row in self.entries():
            if row.vm_key is None or row.dp_key is None:
                continue
            if by_vm.get(row.vm_key) == _pair(row):
                continue
            client, datapath = _client_side(row), _datapath_side(row)
            self._replace(row, client)
            self._insert(datapath)
            actions += [EntryChanged(row, client), EntryChanged(None, datapath)]
            if row.vs_id is not None:
                actions.append(_unmap(row))
            actions.append(_reset(row))

        self._config, self._cfg_by_vm, self._cfg_by_dp = config, by_vm, by_dp

        for line in config:
            vm_row = self._by_vm.get(line.vm_key)
            dp_row = self._by_dp.get(line.dp_key)
            if vm_row is None or dp_row is None or vm_row is dp_row:
                continue
            assert vm_row.dp_key is None and dp_row.vm_key is None
            assoc = _join(vm_row, dp_row)
            self._remove(dp_row)
            self._replace(vm_row, assoc)
            actions += [EntryChanged(dp_row, None), EntryChanged(vm_row, assoc)]
            actions.append(_send_mapping(assoc))
        return actions

    # --- index maintenance ---------------------------------------------------

    @staticmethod
    def _check_shape(row: AssociationEntry) -> None:
        if not isinstance(row, AssociationEntry):
            raise TypeError(f"entries must be AssociationEntry, got {type(row).__name__}")
        vm = (row.vm_id, row.vm_port)
        dp = (row.ct_id, row.dp_id, row.dp_port)
        vs = (row.vs_id, row.vs_port)
        problems = []
        if any(v is None for v in vm) and any(v is not None for v in vm):
            problems.append("vm side half set")
        if any(v is None for v in dp) and any(v is not None for v in dp):
            problems.append("dp side half set")
        if any(v is None for v in vs) and any(v is not None for v in vs):
            problems.append("vs side half set")
        if row.vm_key is None and row.dp_key is None:
            problems.append("neither vm nor dp side")
        if row.vm_key is not None and row.hwaddress is None:
            problems.append("vm side without hwaddress")
        if row.vm_key is None and row.hwaddress is not None:
            problems.append("hwaddress without vm side")
        if _vs_key(row) is not None and row.state is not EntryState.ACTIVE:
            problems.append("vs side without an association")
        if problems:
            raise ValueError(f"entries: malformed row {row!r}: {', '.join(problems)}")

    def _check_free(self, row: AssociationEntry) -> None:
        if row.vm_key is not None and row.vm_key in self._by_vm:
            raise ValueError(f"entries: {_fmt_vm(row.vm_key)} appears twice")
        if row.dp_key is not None and row.dp_key in self._by_dp:
            raise ValueError(f"entries: {_fmt_dp(row.dp_key)} appears twice")
        vs = _vs_key(row)
        if vs is not None and vs in self._by_vs:
            raise ValueError(f"entries: virtual switch port (0x{vs[0]:x}, {vs[1]}) appears twice")

    def _insert(self, row: AssociationEntry) -> None:
        vm, dp, vs = row.vm_key, row.dp_key, _vs_key(row)
        if vm is not None:
            assert vm not in self._by_vm
            self._by_vm[vm] = row
            self._vm_ports.setdefault(vm[0], set()).add(vm[1])
        if dp is not None:
            assert dp not in self._by_dp
            self._by_dp[dp] = row
            self._dp_ports.setdefault((dp[0], dp[1]), set()).add(dp[2])
        if vs is not None:
            assert vs not in self._by_vs
            self._by_vs[vs] = row
        self._sorted = None

    def _remove(self, row: AssociationEntry) -> None:
        vm, dp, vs = row.vm_key, row.dp_key, _vs_key(row)
        if vm is not None:
            del self._by_vm[vm]
            ports = self._vm_ports[vm[0]]
            ports.discard(vm[1])
            if not ports:
                del self._vm_ports[vm[0]]
        if dp is not None:
            del self._by_dp[dp]
            ports = self._dp_ports[(dp[0], dp[1])]
            ports.discard(dp[2])
            if not ports:
                del self._dp_ports[(dp[0], dp[1])]
        if vs is not None:
            del self._by_vs[vs]
        self._sorted = None

    def _replace(self, old: AssociationEntry, new: AssociationEntry) -> None:
        self._remove(old)
        self._insert(new)

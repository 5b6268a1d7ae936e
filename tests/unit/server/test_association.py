"""The association rules, one scenario per rule, then properties over event orders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.protocol import (
    DatapathDown,
    DatapathPortRegister,
    DataPlaneMap,
    DataPlaneUnmap,
    PortConfig,
    PortOperation,
    PortRegister,
    RouteMod,
    VirtualPlaneMap,
)
from routeflow.rflib.types import AssociationEntry, ConfigEntry, EntryState
from routeflow.server.association import (
    AssociationTable,
    ClientDown,
    ConfigReplaced,
    EntryChanged,
    Notice,
    NoticeCode,
)

SEND = PortOperation.SEND_MAPPING_PACKET
RESET = PortOperation.RESET

VM_A = 0x12A0A0A0A0A0
VM_B = 0x12A0A0A0A0B0
DP_1 = 0x99
DP_2 = 0xAA
MAC_A1 = "02:a0:00:00:00:01"
MAC_A2 = "02:a0:00:00:00:02"
MAC_B1 = "02:b0:00:00:00:01"
VS = 0x7266767370


def cfg(vm_id, vm_port, dp_id, dp_port, ct_id=0) -> ConfigEntry:
    return ConfigEntry(vm_id=vm_id, vm_port=vm_port, ct_id=ct_id, dp_id=dp_id, dp_port=dp_port)


def preg(vm_id, vm_port, hwaddress) -> PortRegister:
    return PortRegister(vm_id=vm_id, vm_port=vm_port, hwaddress=hwaddress)


def dreg(dp_id, dp_port, ct_id=0) -> DatapathPortRegister:
    return DatapathPortRegister(ct_id=ct_id, dp_id=dp_id, dp_port=dp_port)


def vmap(vm_id, vm_port, vs_port, vs_id=VS) -> VirtualPlaneMap:
    return VirtualPlaneMap(vm_id=vm_id, vm_port=vm_port, vs_id=vs_id, vs_port=vs_port)


def port_config(vm_id, vm_port, op) -> PortConfig:
    return PortConfig(vm_id=vm_id, vm_port=vm_port, operation_id=op)


def unmap(dp_id, dp_port, ct_id=0) -> DataPlaneUnmap:
    return DataPlaneUnmap(ct_id=ct_id, dp_id=dp_id, dp_port=dp_port)


def client_row(vm_id, vm_port, hwaddress) -> AssociationEntry:
    return AssociationEntry(vm_id=vm_id, vm_port=vm_port, hwaddress=hwaddress)


def dp_row(dp_id, dp_port, ct_id=0) -> AssociationEntry:
    return AssociationEntry(ct_id=ct_id, dp_id=dp_id, dp_port=dp_port)


def assoc_row(vm_id, vm_port, hwaddress, dp_id, dp_port, ct_id=0, vs_port=None, vs_id=VS):
    return AssociationEntry(
        vm_id=vm_id,
        vm_port=vm_port,
        hwaddress=hwaddress,
        ct_id=ct_id,
        dp_id=dp_id,
        dp_port=dp_port,
        vs_id=None if vs_port is None else vs_id,
        vs_port=vs_port,
    )


def messages(actions):
    return [a for a in actions if not isinstance(a, (EntryChanged, Notice))]


def changes(actions):
    return [a for a in actions if isinstance(a, EntryChanged)]


def notices(actions):
    return [a for a in actions if isinstance(a, Notice)]


LAB = (cfg(VM_A, 1, DP_1, 1), cfg(VM_A, 2, DP_1, 2), cfg(VM_B, 1, DP_2, 1))


def active_lab() -> AssociationTable:
    """VM_A.1 ACTIVE, VM_A.2 ASSOCIATED, VM_B.1 idle client, DP_1.3 unconfigured idle."""
    t = AssociationTable(LAB)
    t.handle(dreg(DP_1, 1))
    t.handle(dreg(DP_1, 2))
    t.handle(dreg(DP_1, 3))
    t.handle(preg(VM_A, 1, MAC_A1))
    t.handle(preg(VM_A, 2, MAC_A2))
    t.handle(preg(VM_B, 1, MAC_B1))
    t.handle(vmap(VM_A, 1, 10))
    return t


# --- registration ------------------------------------------------------------------


def test_vm_port_first_then_datapath_port():
    t = AssociationTable(LAB)
    actions = t.handle(preg(VM_A, 1, MAC_A1))
    assert actions == [EntryChanged(None, client_row(VM_A, 1, MAC_A1))]
    assert t.by_vm_port(VM_A, 1).state is EntryState.IDLE_CLIENT_PORT

    actions = t.handle(dreg(DP_1, 1))
    assoc = assoc_row(VM_A, 1, MAC_A1, DP_1, 1)
    assert actions == [
        EntryChanged(client_row(VM_A, 1, MAC_A1), assoc),
        port_config(VM_A, 1, SEND),
    ]
    assert t.entries() == [assoc]
    assert t.by_vm_port(VM_A, 1) is t.by_dp_port(0, DP_1, 1)
    assert t.by_vm_port(VM_A, 1).state is EntryState.ASSOCIATED
    assert t.active_by_vm_port(VM_A, 1) is None


def test_datapath_port_first_then_vm_port():
    t = AssociationTable(LAB)
    assert t.handle(dreg(DP_1, 1)) == [EntryChanged(None, dp_row(DP_1, 1))]
    assert t.by_dp_port(0, DP_1, 1).state is EntryState.IDLE_DATAPATH_PORT

    actions = t.handle(preg(VM_A, 1, MAC_A1))
    assoc = assoc_row(VM_A, 1, MAC_A1, DP_1, 1)
    assert actions == [EntryChanged(dp_row(DP_1, 1), assoc), port_config(VM_A, 1, SEND)]
    assert t.entries() == [assoc]


def test_both_orders_give_the_same_table():
    a, b = AssociationTable(LAB), AssociationTable(LAB)
    for ev in (preg(VM_A, 1, MAC_A1), dreg(DP_1, 1), dreg(DP_2, 1), preg(VM_B, 1, MAC_B1)):
        a.handle(ev)
    for ev in (dreg(DP_2, 1), preg(VM_B, 1, MAC_B1), preg(VM_A, 1, MAC_A1), dreg(DP_1, 1)):
        b.handle(ev)
    assert a.entries() == b.entries()


def test_datapath_port_of_another_controller_is_not_the_configured_one():
    t = AssociationTable(LAB)
    t.handle(preg(VM_A, 1, MAC_A1))
    actions = t.handle(dreg(DP_1, 1, ct_id=1))
    assert messages(actions) == []
    assert [n.code for n in notices(actions)] == [NoticeCode.UNCONFIGURED_DP_PORT]
    assert t.by_dp_port(1, DP_1, 1) == dp_row(DP_1, 1, ct_id=1)
    assert t.by_dp_port(0, DP_1, 1) is None


def test_unconfigured_ports_stay_idle_and_are_reported():
    t = AssociationTable(LAB)
    actions = t.handle(preg(VM_A, 9, MAC_A1))
    assert changes(actions) == [EntryChanged(None, client_row(VM_A, 9, MAC_A1))]
    assert messages(actions) == []
    (notice,) = notices(actions)
    assert notice.code is NoticeCode.UNCONFIGURED_VM_PORT
    assert "(0x12a0a0a0a0a0, 9)" in notice.detail

    actions = t.handle(dreg(DP_1, 9))
    assert changes(actions) == [EntryChanged(None, dp_row(DP_1, 9))]
    assert messages(actions) == []
    assert [n.code for n in notices(actions)] == [NoticeCode.UNCONFIGURED_DP_PORT]
    assert t.entries() == [client_row(VM_A, 9, MAC_A1), dp_row(DP_1, 9)]


# --- mapping packet -------------------------------------------------------------------


def test_mapping_packet_activates_and_maps_with_vm_mac():
    t = AssociationTable(LAB)
    t.handle(preg(VM_A, 1, MAC_A1))
    t.handle(dreg(DP_1, 1))
    before = t.by_vm_port(VM_A, 1)
    actions = t.handle(vmap(VM_A, 1, 10))
    active = assoc_row(VM_A, 1, MAC_A1, DP_1, 1, vs_port=10)
    assert actions == [
        DataPlaneMap(ct_id=0, dp_id=DP_1, dp_port=1, vs_id=VS, vs_port=10, hwaddress=MAC_A1),
        EntryChanged(before, active),
    ]
    assert active.state is EntryState.ACTIVE
    assert t.active_by_vm_port(VM_A, 1) == active
    assert t.by_vs_port(VS, 10) == active
    assert t.by_dp_port(0, DP_1, 1) == active


def test_mapping_packet_for_unknown_or_idle_port_is_ignored_and_reported():
    t = AssociationTable(LAB)
    actions = t.handle(vmap(VM_A, 1, 10))
    assert [n.code for n in actions] == [NoticeCode.NOT_ASSOCIATED]
    assert "unknown" in actions[0].detail
    t.handle(preg(VM_A, 1, MAC_A1))
    actions = t.handle(vmap(VM_A, 1, 10))
    assert [n.code for n in actions] == [NoticeCode.NOT_ASSOCIATED]
    assert "idle" in actions[0].detail
    assert t.entries() == [client_row(VM_A, 1, MAC_A1)]
    assert t.by_vs_port(VS, 10) is None


def test_repeated_mapping_packet_is_idempotent():
    t = active_lab()
    assert t.handle(vmap(VM_A, 1, 10)) == []


def test_mapping_packet_with_new_vs_port_remaps():
    t = active_lab()
    before = t.by_vm_port(VM_A, 1)
    actions = t.handle(vmap(VM_A, 1, 11))
    after = assoc_row(VM_A, 1, MAC_A1, DP_1, 1, vs_port=11)
    assert actions == [
        DataPlaneMap(ct_id=0, dp_id=DP_1, dp_port=1, vs_id=VS, vs_port=11, hwaddress=MAC_A1),
        EntryChanged(before, after),
    ]
    assert t.by_vs_port(VS, 10) is None
    assert t.by_vs_port(VS, 11) == after


def test_vs_port_claimed_by_another_vm_port_moves_to_the_newest_mapping():
    t = active_lab()
    old_holder = t.by_vm_port(VM_A, 1)
    assoc_a2 = t.by_vm_port(VM_A, 2)
    actions = t.handle(vmap(VM_A, 2, 10))
    demoted = assoc_row(VM_A, 1, MAC_A1, DP_1, 1)
    winner = assoc_row(VM_A, 2, MAC_A2, DP_1, 2, vs_port=10)
    assert actions[:-1] == [
        EntryChanged(old_holder, demoted),
        unmap(DP_1, 1),
        port_config(VM_A, 1, SEND),
        DataPlaneMap(ct_id=0, dp_id=DP_1, dp_port=2, vs_id=VS, vs_port=10, hwaddress=MAC_A2),
        EntryChanged(assoc_a2, winner),
    ]
    assert actions[-1].code is NoticeCode.VS_PORT_MOVED
    assert t.by_vs_port(VS, 10) == winner


# --- datapath down -------------------------------------------------------------------------


def test_datapath_down_resets_vms_unmaps_active_and_drops_idle_ports():
    t = active_lab()
    active = t.by_vm_port(VM_A, 1)
    assoc = t.by_vm_port(VM_A, 2)
    actions = t.handle(DatapathDown(ct_id=0, dp_id=DP_1))
    assert actions == [
        EntryChanged(active, client_row(VM_A, 1, MAC_A1)),
        unmap(DP_1, 1),
        port_config(VM_A, 1, RESET),
        EntryChanged(assoc, client_row(VM_A, 2, MAC_A2)),
        port_config(VM_A, 2, RESET),
        EntryChanged(dp_row(DP_1, 3), None),
    ]
    assert t.entries() == [
        client_row(VM_A, 1, MAC_A1),
        client_row(VM_A, 2, MAC_A2),
        client_row(VM_B, 1, MAC_B1),
    ]
    assert t.by_vs_port(VS, 10) is None
    assert t.by_dp_port(0, DP_1, 1) is None


def test_datapath_down_leaves_other_datapaths_alone():
    t = active_lab()
    t.handle(dreg(DP_2, 1))
    b = t.by_vm_port(VM_B, 1)
    t.handle(DatapathDown(ct_id=0, dp_id=DP_1))
    t.handle(DatapathDown(ct_id=1, dp_id=DP_2))  # same dp id, other controller
    assert t.by_vm_port(VM_B, 1) == b
    assert b.state is EntryState.ASSOCIATED


def test_unknown_datapath_down_is_a_no_op():
    t = active_lab()
    before = t.entries()
    assert t.handle(DatapathDown(ct_id=0, dp_id=0x1234)) == []
    assert t.entries() == before


def test_datapath_back_restores_the_same_association():
    t = active_lab()
    before = t.entries()
    t.handle(DatapathDown(ct_id=0, dp_id=DP_1))
    pcs = []
    for port in (3, 2, 1):
        pcs += [a for a in t.handle(dreg(DP_1, port)) if isinstance(a, PortConfig)]
    assert pcs == [port_config(VM_A, 2, SEND), port_config(VM_A, 1, SEND)]
    assert t.by_vm_port(VM_A, 1) == assoc_row(VM_A, 1, MAC_A1, DP_1, 1)
    actions = t.handle(vmap(VM_A, 1, 10))
    assert messages(actions) == [
        DataPlaneMap(ct_id=0, dp_id=DP_1, dp_port=1, vs_id=VS, vs_port=10, hwaddress=MAC_A1)
    ]
    assert t.entries() == before


# --- client down -------------------------------------------------------------------------


def test_client_down_frees_datapath_ports_and_unmaps_active():
    t = active_lab()
    active = t.by_vm_port(VM_A, 1)
    assoc = t.by_vm_port(VM_A, 2)
    t.handle(preg(VM_A, 7, MAC_A1))  # unconfigured, idle
    actions = t.handle(ClientDown(VM_A))
    assert actions == [
        EntryChanged(active, dp_row(DP_1, 1)),
        unmap(DP_1, 1),
        EntryChanged(assoc, dp_row(DP_1, 2)),
        EntryChanged(client_row(VM_A, 7, MAC_A1), None),
    ]
    assert t.entries() == [
        client_row(VM_B, 1, MAC_B1),
        dp_row(DP_1, 1),
        dp_row(DP_1, 2),
        dp_row(DP_1, 3),
    ]
    assert t.handle(ClientDown(VM_A)) == []


def test_client_back_restores_the_same_association():
    t = active_lab()
    before = t.entries()
    t.handle(ClientDown(VM_A))
    assert messages(t.handle(preg(VM_A, 2, MAC_A2))) == [port_config(VM_A, 2, SEND)]
    assert messages(t.handle(preg(VM_A, 1, MAC_A1))) == [port_config(VM_A, 1, SEND)]
    t.handle(vmap(VM_A, 1, 10))
    assert t.entries() == before


# --- idempotency and changed registrations ----------------------------------------------------


def test_reregistration_of_unchanged_ports_does_nothing():
    t = active_lab()
    before = t.entries()
    for ev in (preg(VM_A, 1, MAC_A1), preg(VM_A, 2, MAC_A2), preg(VM_B, 1, MAC_B1)):
        assert t.handle(ev) == []
    for port in (1, 2, 3):
        assert t.handle(dreg(DP_1, port)) == []
    assert t.entries() == before


def test_new_mac_on_active_port_unmaps_and_asks_for_a_new_mapping():
    t = active_lab()
    active = t.by_vm_port(VM_A, 1)
    new_mac = "02:a0:00:00:00:99"
    actions = t.handle(preg(VM_A, 1, new_mac))
    assoc = assoc_row(VM_A, 1, new_mac, DP_1, 1)
    assert actions == [EntryChanged(active, assoc), unmap(DP_1, 1), port_config(VM_A, 1, SEND)]
    assert t.active_by_vm_port(VM_A, 1) is None
    assert t.by_vs_port(VS, 10) is None

    assert messages(t.handle(vmap(VM_A, 1, 10))) == [
        DataPlaneMap(ct_id=0, dp_id=DP_1, dp_port=1, vs_id=VS, vs_port=10, hwaddress=new_mac)
    ]


def test_new_mac_on_associated_port_asks_for_mapping_again():
    t = active_lab()
    assoc = t.by_vm_port(VM_A, 2)
    actions = t.handle(preg(VM_A, 2, "02:00:00:00:00:aa"))
    after = assoc_row(VM_A, 2, "02:00:00:00:00:aa", DP_1, 2)
    assert actions == [EntryChanged(assoc, after), port_config(VM_A, 2, SEND)]


def test_new_mac_on_idle_client_port_only_updates_it():
    t = active_lab()
    actions = t.handle(preg(VM_B, 1, "02:00:00:00:00:bb"))
    assert actions == [
        EntryChanged(client_row(VM_B, 1, MAC_B1), client_row(VM_B, 1, "02:00:00:00:00:bb"))
    ]


# --- config replacement ---------------------------------------------------------------------


def test_config_replace_breaks_removed_makes_new_keeps_unchanged():
    t = active_lab()
    t.handle(dreg(DP_2, 1))  # VM_B.1 <-> DP_2.1 associated
    t.handle(vmap(VM_B, 1, 20))
    kept = t.by_vm_port(VM_A, 2)
    active_a1 = t.by_vm_port(VM_A, 1)
    active_b1 = t.by_vm_port(VM_B, 1)
    # VM_A.1 loses its line; VM_B.1 moves to DP_1.3 (idle); DP_1.1 newly mapped to VM_A.7.
    t.handle(preg(VM_A, 7, MAC_A1))
    new = (cfg(VM_A, 2, DP_1, 2), cfg(VM_B, 1, DP_1, 3), cfg(VM_A, 7, DP_1, 1))
    actions = t.handle(ConfigReplaced(new))
    assert actions == [
        EntryChanged(active_a1, client_row(VM_A, 1, MAC_A1)),
        EntryChanged(None, dp_row(DP_1, 1)),
        unmap(DP_1, 1),
        port_config(VM_A, 1, RESET),
        EntryChanged(active_b1, client_row(VM_B, 1, MAC_B1)),
        EntryChanged(None, dp_row(DP_2, 1)),
        unmap(DP_2, 1),
        port_config(VM_B, 1, RESET),
        EntryChanged(dp_row(DP_1, 3), None),
        EntryChanged(client_row(VM_B, 1, MAC_B1), assoc_row(VM_B, 1, MAC_B1, DP_1, 3)),
        port_config(VM_B, 1, SEND),
        EntryChanged(dp_row(DP_1, 1), None),
        EntryChanged(client_row(VM_A, 7, MAC_A1), assoc_row(VM_A, 7, MAC_A1, DP_1, 1)),
        port_config(VM_A, 7, SEND),
    ]
    assert t.by_vm_port(VM_A, 2) is kept
    assert t.config == new
    assert t.entries() == [
        client_row(VM_A, 1, MAC_A1),
        kept,
        assoc_row(VM_A, 7, MAC_A1, DP_1, 1),
        assoc_row(VM_B, 1, MAC_B1, DP_1, 3),
        dp_row(DP_2, 1),
    ]


def test_config_replace_with_same_config_does_nothing():
    t = active_lab()
    assert t.handle(ConfigReplaced(tuple(reversed(LAB)))) == []


def test_config_replace_rejects_duplicates_and_leaves_table_alone():
    t = active_lab()
    before = t.entries()
    with pytest.raises(ValueError, match=r"duplicate vm port \(0x12a0a0a0a0a0, 1\)"):
        t.handle(ConfigReplaced((cfg(VM_A, 1, DP_1, 1), cfg(VM_A, 1, DP_2, 1))))
    with pytest.raises(ValueError, match=r"duplicate dp port \(0x0, 0x99, 1\)"):
        t.handle(ConfigReplaced((cfg(VM_A, 1, DP_1, 1), cfg(VM_B, 1, DP_1, 1))))
    assert t.entries() == before
    assert t.config == LAB


# --- construction, resume, misc ----------------------------------------------------------------


def test_constructor_rejects_duplicate_config():
    with pytest.raises(ValueError, match=r"duplicate vm port \(0x12a0a0a0a0a0, 1\)"):
        AssociationTable([cfg(VM_A, 1, DP_1, 1), cfg(VM_A, 1, DP_1, 2)])
    with pytest.raises(ValueError, match=r"duplicate dp port \(0x1, 0x99, 1\)"):
        AssociationTable([cfg(VM_A, 1, DP_1, 1, ct_id=1), cfg(VM_A, 2, DP_1, 1, ct_id=1)])


def test_constructor_resumes_persisted_entries_quietly():
    t = active_lab()
    resumed = AssociationTable(t.config, t.entries())
    assert resumed.entries() == t.entries()
    assert resumed.by_vs_port(VS, 10) == t.by_vs_port(VS, 10)
    # Clients and proxies reconnect and register again: nothing to do.
    for ev in (preg(VM_A, 1, MAC_A1), dreg(DP_1, 1), vmap(VM_A, 1, 10)):
        assert resumed.handle(ev) == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([client_row(VM_A, 1, MAC_A1), client_row(VM_A, 1, MAC_A2)], "appears twice"),
        ([dp_row(DP_1, 1), dp_row(DP_1, 1)], "appears twice"),
        (
            [
                assoc_row(VM_A, 1, MAC_A1, DP_1, 1, vs_port=10),
                assoc_row(VM_A, 2, MAC_A2, DP_1, 2, vs_port=10),
            ],
            "appears twice",
        ),
        ([assoc_row(VM_A, 1, MAC_A1, DP_1, 2)], "is not in the config"),
        ([client_row(VM_A, 1, MAC_A1), dp_row(DP_1, 1)], "both idle"),
        ([AssociationEntry(vm_id=VM_A, hwaddress=MAC_A1)], "vm side half set"),
        ([AssociationEntry(vm_id=VM_A, vm_port=1)], "without hwaddress"),
        ([AssociationEntry()], "neither vm nor dp side"),
        (
            [AssociationEntry(vm_id=VM_A, vm_port=1, hwaddress=MAC_A1, vs_id=1, vs_port=1)],
            "vs side without an association",
        ),
    ],
)
def test_constructor_rejects_inconsistent_entries(entries, message):
    with pytest.raises(ValueError, match=message):
        AssociationTable(LAB, entries)


def test_resume_reconciles_with_a_changed_config():
    t = active_lab()
    new = (cfg(VM_B, 1, DP_1, 1), cfg(VM_A, 2, DP_1, 2))
    resumed, actions = AssociationTable.resume(new, t.entries())
    expected = t.handle(ConfigReplaced(new))
    assert actions == expected
    assert resumed.entries() == t.entries()
    assert resumed.config == new


def test_unknown_event_type_is_a_type_error():
    with pytest.raises(TypeError, match="RouteMod"):
        AssociationTable().handle(RouteMod(mod=0, vm_id=1, routes=[]))


def test_len_counts_rows():
    assert len(active_lab()) == 4


# --- properties ---------------------------------------------------------------------------------

VMS = (0xA, 0xB, 0xC)
DATAPATHS = ((0, 1), (0, 2), (1, 2))
PORTS = (1, 2, 3)
VM_PORTS = tuple((vm, p) for vm in VMS for p in PORTS)
DP_PORTS = tuple((ct, dp, p) for ct, dp in DATAPATHS for p in PORTS)


def vs_of(vm_key) -> tuple[int, int]:
    """The virtual switch port a VM port is cabled to (fixed, as in a real lab)."""
    return (VS, VM_PORTS.index(vm_key) + 1)


def mac_of(vm_key, variant=0) -> str:
    return f"02:{variant:02x}:00:{vm_key[0]:02x}:00:{vm_key[1]:02x}"


@st.composite
def configs(draw):
    vm_side = draw(st.permutations(VM_PORTS))
    dp_side = draw(st.permutations(DP_PORTS))
    keep = draw(st.lists(st.booleans(), min_size=len(VM_PORTS), max_size=len(VM_PORTS)))
    return tuple(
        ConfigEntry(vm_id=v[0], vm_port=v[1], ct_id=d[0], dp_id=d[1], dp_port=d[2])
        for v, d, k in zip(vm_side, dp_side, keep, strict=True)
        if k
    )


class World:
    """The table plus models of its followers, checked against it after every event.

    The store applies EntryChanged; the proxy applies DataPlaneMap/Unmap. If the
    actions are complete and consistent, both always mirror the table.
    """

    def __init__(self, config):
        self.table = AssociationTable(config)
        self.store: set[AssociationEntry] = set()
        self.proxy: dict[tuple, tuple] = {}
        self.pending: list[VirtualPlaneMap] = []  # mapping packets in flight

    def handle(self, event):
        actions = self.table.handle(event)
        for a in actions:
            if isinstance(a, EntryChanged):
                assert a.before != a.after
                if a.before is not None:
                    self.store.remove(a.before)
                if a.after is not None:
                    assert a.after not in self.store
                    self.store.add(a.after)
            elif isinstance(a, DataPlaneMap):
                self.proxy[(a.ct_id, a.dp_id, a.dp_port)] = ((a.vs_id, a.vs_port), a.hwaddress)
            elif isinstance(a, DataPlaneUnmap):
                del self.proxy[(a.ct_id, a.dp_id, a.dp_port)]  # never a spurious unmap
            elif isinstance(a, PortConfig) and a.operation_id is SEND:
                row = self.table.by_vm_port(a.vm_id, a.vm_port)
                assert row.state is EntryState.ASSOCIATED
                vs_id, vs_port = vs_of((a.vm_id, a.vm_port))
                self.pending.append(vmap(a.vm_id, a.vm_port, vs_port, vs_id))
            elif isinstance(a, PortConfig):
                # RESET: the port lost its association (a config change may have
                # given it a new one in the same batch, announced by a later SEND).
                later = actions[actions.index(a) + 1 :]
                row = self.table.by_vm_port(a.vm_id, a.vm_port)
                if port_config(a.vm_id, a.vm_port, SEND) not in later:
                    assert row.state is EntryState.IDLE_CLIENT_PORT
        self.check()
        return actions

    def check(self):
        t = self.table
        rows = t.entries()
        vm_keys = [r.vm_key for r in rows if r.vm_key is not None]
        dp_keys = [r.dp_key for r in rows if r.dp_key is not None]
        vs_keys = [(r.vs_id, r.vs_port) for r in rows if r.vs_id is not None]
        assert len(vm_keys) == len(set(vm_keys))
        assert len(dp_keys) == len(set(dp_keys))
        assert len(vs_keys) == len(set(vs_keys))
        assert set(rows) == self.store
        assert len(rows) == len(t)
        active = [r for r in rows if r.state is EntryState.ACTIVE]
        assert self.proxy == {r.dp_key: ((r.vs_id, r.vs_port), r.hwaddress) for r in active}
        for r in rows:
            if r.vm_key is not None:
                assert t.by_vm_port(*r.vm_key) is r
                assert (t.active_by_vm_port(*r.vm_key) is r) == (r in active)
            if r.dp_key is not None:
                assert t.by_dp_port(*r.dp_key) is r
            if r.vs_id is not None:
                assert t.by_vs_port(r.vs_id, r.vs_port) is r
        by_vm = {c.vm_key: c for c in t.config}
        for r in rows:
            if r.vm_key is not None and r.dp_key is not None:
                assert by_vm[r.vm_key].dp_key == r.dp_key
        for c in t.config:
            v, d = t.by_vm_port(*c.vm_key), t.by_dp_port(*c.dp_key)
            assert v is None or d is None or v is d  # no configured pair left idle
        # Every reachable state is one the constructor accepts (a persisted table resumes).
        assert AssociationTable(t.config, rows).entries() == rows

    def drain(self, data):
        while self.pending:
            i = data.draw(st.integers(0, len(self.pending) - 1))
            self.handle(self.pending.pop(i))


def registrations(up_vm: dict, up_dp) -> list:
    return [preg(vm, p, mac) for (vm, p), mac in sorted(up_vm.items())] + [
        dreg(dp, p, ct) for ct, dp, p in sorted(up_dp)
    ]


def fresh_table(config, up_vm, up_dp, data) -> AssociationTable:
    world = World(config)
    for ev in registrations(up_vm, up_dp):
        world.handle(ev)
    world.drain(data)
    return world.table


@settings(max_examples=150, deadline=None)
@given(config=configs(), data=st.data())
def test_final_table_does_not_depend_on_registration_order(config, data):
    up_vm = {k: mac_of(k) for k in VM_PORTS}
    events = data.draw(st.permutations(registrations(up_vm, DP_PORTS)))
    world = World(config)
    queue = list(events)
    i = 0
    while i < len(queue):
        world.pending.clear()
        world.handle(queue[i])
        # The proxy answers each PortConfig with a mapping packet, some time later.
        for mapping in world.pending:
            queue.insert(data.draw(st.integers(i + 1, len(queue))), mapping)
        world.pending.clear()
        i += 1

    expected = set()
    for c in config:
        vs_id, vs_port = vs_of(c.vm_key)
        expected.add(
            assoc_row(
                c.vm_id, c.vm_port, mac_of(c.vm_key), c.dp_id, c.dp_port, c.ct_id, vs_port, vs_id
            )
        )
    configured_vm = {c.vm_key for c in config}
    configured_dp = {c.dp_key for c in config}
    expected |= {client_row(*k, mac_of(k)) for k in VM_PORTS if k not in configured_vm}
    expected |= {dp_row(dp, p, ct) for ct, dp, p in DP_PORTS if (ct, dp, p) not in configured_dp}
    assert set(world.table.entries()) == expected
    # ... and in the same order as a table built in a canonical order.
    assert world.table.entries() == fresh_table(config, up_vm, DP_PORTS, data).entries()


OPS = ("vm_up",) * 3 + ("dp_up",) * 3 + ("deliver",) * 3 + ("dp_down", "vm_down", "config")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_interleavings_end_like_a_fresh_table_of_the_final_up_ports(data):
    candidates = [data.draw(configs()) for _ in range(2)]
    config = candidates[0]
    world = World(config)
    up_vm: dict[tuple[int, int], str] = {}
    up_dp: set[tuple[int, int, int]] = set()
    for _ in range(data.draw(st.integers(0, 80))):
        op = data.draw(st.sampled_from(OPS))
        if op == "vm_up":
            key = data.draw(st.sampled_from(VM_PORTS))
            up_vm[key] = mac_of(key, data.draw(st.integers(0, 1)))
            world.handle(preg(*key, up_vm[key]))
        elif op == "dp_up":
            key = data.draw(st.sampled_from(DP_PORTS))
            up_dp.add(key)
            world.handle(dreg(key[1], key[2], key[0]))
        elif op == "dp_down":
            ct, dp = data.draw(st.sampled_from(DATAPATHS))
            up_dp = {k for k in up_dp if k[:2] != (ct, dp)}
            world.handle(DatapathDown(ct_id=ct, dp_id=dp))
        elif op == "vm_down":
            vm = data.draw(st.sampled_from(VMS))
            up_vm = {k: v for k, v in up_vm.items() if k[0] != vm}
            world.handle(ClientDown(vm))
        elif op == "config":
            config = candidates[data.draw(st.integers(0, 1))]
            world.handle(ConfigReplaced(config))
        elif world.pending:
            world.handle(world.pending.pop(data.draw(st.integers(0, len(world.pending) - 1))))
    world.drain(data)

    assert world.table.entries() == fresh_table(config, up_vm, up_dp, data).entries()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_invariants_hold_after_every_event_even_for_nonsense_input(data):
    """Arbitrary mapping packets (stale, duplicated, clashing vs ports) included."""
    candidates = [data.draw(configs()) for _ in range(2)]
    world = World(candidates[0])
    events = st.one_of(
        st.builds(
            preg,
            st.sampled_from(VMS),
            st.sampled_from(PORTS),
            st.sampled_from(["02:00:00:00:00:01", "02:00:00:00:00:02"]),
        ),
        st.sampled_from(DP_PORTS).map(lambda k: dreg(k[1], k[2], k[0])),
        st.builds(vmap, st.sampled_from(VMS), st.sampled_from(PORTS), st.integers(1, 4)),
        st.sampled_from(DATAPATHS).map(lambda d: DatapathDown(ct_id=d[0], dp_id=d[1])),
        st.sampled_from(VMS).map(ClientDown),
        st.sampled_from(candidates).map(ConfigReplaced),
    )
    for _ in range(data.draw(st.integers(0, 60))):
        world.handle(data.draw(events))
        world.pending.clear()
    # Whatever the history, a resume under another config matches a live reload.
    other = candidates[1]
    resumed, actions = AssociationTable.resume(other, world.table.entries())
    assert actions == world.table.handle(ConfigReplaced(other))
    assert resumed.entries() == world.table.entries()


def test_unmapped_again_asks_connected_clients_for_ports_still_unmapped():
    t = AssociationTable(
        [
            ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1),
            ConfigEntry(vm_id=6, vm_port=1, ct_id=1, dp_id=6, dp_port=1),
        ]
    )
    for vm in (5, 6):
        t.handle(PortRegister(vm_id=vm, vm_port=1, hwaddress=f"02:00:00:00:00:0{vm}"))
        t.handle(DatapathPortRegister(ct_id=1, dp_id=vm, dp_port=1))
    waiting, again = t.unmapped_again(set(), connected={5, 6})
    assert waiting == {(5, 1), (6, 1)} and again == []  # just unmapped: not yet
    waiting, again = t.unmapped_again(waiting, connected={5})
    send = PortOperation.SEND_MAPPING_PACKET
    assert again == [PortConfig(vm_id=5, vm_port=1, operation_id=send)]  # 6 is not connected
    t.handle(VirtualPlaneMap(vm_id=5, vm_port=1, vs_id=9, vs_port=1))
    waiting, again = t.unmapped_again(waiting, connected={5, 6})
    assert waiting == {(6, 1)} and [m.vm_id for m in again] == [6]

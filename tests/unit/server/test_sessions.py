"""Tests for routeflow.server.sessions: the rules of rfclient and rfproxy sessions, no sockets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import protocol as p
from routeflow.rflib.types import ConfigEntry
from routeflow.server.association import AssociationTable
from routeflow.server.sessions import (
    AddRoutes,
    ClientSession,
    ControllerSession,
    DatapathLeft,
    DeleteNeighbours,
    DeleteRoutes,
    DpPortSeen,
    LinkReport,
    NotMaster,
    Refused,
    ReplaceVm,
    Resynced,
    SetNeighbours,
    StatsSeen,
    ToTable,
    VmPortSeen,
    awaiting_resync,
)

VM = 5


def route(prefix: str) -> p.Route:
    return p.Route(prefix=prefix, nexthops=[p.NextHop(vm_port=1)])


def neighbour(addr: str) -> p.Neighbour:
    return p.Neighbour(vm_port=1, address=addr, hwaddress="02:00:00:00:00:01")


def route_mod(mod: p.Mod, *prefixes: str) -> p.RouteMod:
    return p.RouteMod(mod=mod, vm_id=VM, routes=[route(x) for x in prefixes])


def neigh_mod(mod: p.Mod, *addrs: str) -> p.NeighbourMod:
    return p.NeighbourMod(mod=mod, vm_id=VM, neighbours=[neighbour(a) for a in addrs])


# --- client ------------------------------------------------------------------


def test_outside_a_dump_every_mod_is_applied_at_once():
    s = ClientSession(VM)
    assert s.handle(route_mod(p.Mod.ADD, "10.0.0.0/8")) == [AddRoutes(VM, [route("10.0.0.0/8")])]
    assert s.handle(route_mod(p.Mod.DELETE, "10.0.0.0/8")) == [DeleteRoutes(VM, ["10.0.0.0/8"])]
    assert s.handle(neigh_mod(p.Mod.ADD, "10.0.0.2")) == [
        SetNeighbours(VM, [neighbour("10.0.0.2")])
    ]
    assert s.handle(neigh_mod(p.Mod.DELETE, "10.0.0.2")) == [
        DeleteNeighbours(VM, [neighbour("10.0.0.2")])
    ]


def test_a_dump_is_collected_and_replaces_the_vm_state_at_its_end():
    s = ClientSession(VM)
    assert s.handle(p.Resync(phase="begin", scope=VM)) == []
    assert s.in_resync
    assert s.handle(route_mod(p.Mod.ADD, "10.0.0.0/8", "10.1.0.0/16")) == []
    assert s.handle(neigh_mod(p.Mod.ADD, "10.0.0.2")) == []
    assert s.handle(route_mod(p.Mod.ADD, "10.2.0.0/16")) == []
    out = s.handle(p.Resync(phase="end", scope=VM))
    assert out == [
        ReplaceVm(
            VM,
            [route("10.0.0.0/8"), route("10.1.0.0/16"), route("10.2.0.0/16")],
            [neighbour("10.0.0.2")],
        ),
        Resynced(VM),
    ]
    assert not s.in_resync
    assert s.handle(route_mod(p.Mod.ADD, "10.3.0.0/16")) == [AddRoutes(VM, [route("10.3.0.0/16")])]


def test_an_end_without_a_begin_does_nothing_and_a_second_begin_starts_again():
    s = ClientSession(VM)
    assert s.handle(p.Resync(phase="end")) == []
    s.handle(p.Resync(phase="begin"))
    s.handle(route_mod(p.Mod.ADD, "10.0.0.0/8"))
    s.handle(p.Resync(phase="begin"))
    assert s.handle(p.Resync(phase="end")) == [ReplaceVm(VM, [], []), Resynced(VM)]


def test_deletes_inside_a_dump_are_applied_at_once():
    s = ClientSession(VM)
    s.handle(p.Resync(phase="begin"))
    assert s.handle(route_mod(p.Mod.DELETE, "10.0.0.0/8")) == [DeleteRoutes(VM, ["10.0.0.0/8"])]


def test_a_client_registers_its_own_ports_only():
    s = ClientSession(VM)
    own = p.PortRegister(vm_id=VM, vm_port=1, hwaddress="02:00:00:00:00:01", ifname="eth1")
    assert s.handle(own) == [VmPortSeen(own), ToTable(own)]
    other = p.PortRegister(vm_id=6, vm_port=1, hwaddress="02:00:00:00:00:01")
    [refused] = s.handle(other)
    assert isinstance(refused, Refused) and "0x6" in refused.reason


def test_a_client_cannot_speak_for_a_controller():
    s = ClientSession(VM)
    [refused] = s.handle(p.DatapathDown(ct_id=1, dp_id=5))
    assert isinstance(refused, Refused) and "DatapathDown" in refused.reason


# A reference reading of a client's message stream, written as a replay of
# the whole sequence: the routes/neighbours a VM holds after each message.
_client_msgs = st.one_of(
    st.builds(lambda ph: p.Resync(phase=ph), st.sampled_from(["begin", "end", "other"])),
    st.builds(
        lambda mod, xs: route_mod(mod, *xs),
        st.sampled_from(list(p.Mod)),
        st.lists(st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"]), max_size=2),
    ),
    st.builds(
        lambda mod, xs: neigh_mod(mod, *xs),
        st.sampled_from(list(p.Mod)),
        st.lists(st.sampled_from(["10.0.0.2", "10.0.0.3"]), max_size=2),
    ),
)


def _run(actions_by_msg: list[list]) -> tuple[set[str], set[str]]:
    routes: set[str] = set()
    neigh: set[str] = set()
    for actions in actions_by_msg:
        for a in actions:
            if isinstance(a, AddRoutes):
                routes |= {r.prefix for r in a.routes}
            elif isinstance(a, DeleteRoutes):
                routes -= set(a.prefixes)
            elif isinstance(a, SetNeighbours):
                neigh |= {n.address for n in a.neighbours}
            elif isinstance(a, DeleteNeighbours):
                neigh -= {n.address for n in a.neighbours}
            elif isinstance(a, ReplaceVm):
                routes = {r.prefix for r in a.routes}
                neigh = {n.address for n in a.neighbours}
    return routes, neigh


def _reference(msgs: list[p.Message]) -> tuple[set[str], set[str]]:
    have: tuple[set[str], set[str]] = (set(), set())  # routes, neighbours
    dump: tuple[set[str], set[str]] | None = None
    for m in msgs:
        if isinstance(m, p.Resync):
            if m.phase == "begin":
                dump = (set(), set())
            elif m.phase == "end" and dump is not None:
                have, dump = dump, None
            continue
        if isinstance(m, p.RouteMod):
            i, xs = 0, {r.prefix for r in m.routes}
        elif isinstance(m, p.NeighbourMod):
            i, xs = 1, {n.address for n in m.neighbours}
        else:
            continue
        if m.mod == p.Mod.DELETE:
            have[i].difference_update(xs)
        else:
            (have if dump is None else dump)[i].update(xs)
    return have


@settings(max_examples=300, deadline=None)
@given(st.lists(_client_msgs, max_size=30))
def test_any_message_stream_leaves_the_vm_state_the_reference_gives(msgs):
    s = ClientSession(VM)
    out = [s.handle(m) for m in msgs]
    assert _run(out) == _reference(msgs)
    flat = [a for actions in out for a in actions]
    assert all(a.vm_id == VM for a in flat)
    ends = sum(1 for a in flat if isinstance(a, Resynced))
    assert ends == sum(1 for a in flat if isinstance(a, ReplaceVm))


# --- controller ------------------------------------------------------------------

CT = 1
REPORTS = [
    p.DatapathStats(ct_id=CT, dp_id=5, flows=[]),
    p.DatapathPortStatus(ct_id=CT, dp_id=5, dp_port=1, up=False),
    p.DatapathPortRegister(ct_id=CT, dp_id=5, dp_port=1, name="s1-eth1"),
    p.DatapathDown(ct_id=CT, dp_id=5),
    p.VirtualPlaneMap(vm_id=VM, vm_port=1, vs_id=9, vs_port=1),
]


def test_a_masters_reports_are_carried_out():
    s = ControllerSession(CT, "ct1a")
    stats, status, reg, down, vpm = REPORTS
    assert s.handle(stats, is_master=True) == [StatsSeen(stats)]
    assert s.handle(status, is_master=True) == [LinkReport(status)]
    assert s.handle(reg, is_master=True) == [DpPortSeen(reg), ToTable(reg)]
    assert s.handle(down, is_master=True) == [DatapathLeft(CT, 5), ToTable(down)]
    assert s.handle(vpm, is_master=True) == [ToTable(vpm)]


def test_only_the_masters_reports_count():
    s = ControllerSession(CT, "ct1b")
    for msg in REPORTS:
        assert s.handle(msg, is_master=False) == [NotMaster(CT, "ct1b", msg)]


def test_reports_about_another_controller():
    s = ControllerSession(CT, "ct1a")
    # Periodic reports: dropped without a word.
    assert s.handle(p.DatapathStats(ct_id=2, dp_id=5, flows=[]), is_master=True) == []
    assert (
        s.handle(p.DatapathPortStatus(ct_id=2, dp_id=5, dp_port=1, up=True), is_master=True) == []
    )
    # Changes to the table: refused (spoofing), nothing recorded.
    for msg in (
        p.DatapathPortRegister(ct_id=2, dp_id=5, dp_port=1),
        p.DatapathDown(ct_id=2, dp_id=5),
    ):
        [refused] = s.handle(msg, is_master=True)
        assert isinstance(refused, Refused) and "controller 2" in refused.reason


def test_a_controller_cannot_send_routes():
    s = ControllerSession(CT, "ct1a")
    [refused] = s.handle(route_mod(p.Mod.ADD, "10.0.0.0/8"), is_master=True)
    assert isinstance(refused, Refused) and "RouteMod" in refused.reason


@settings(max_examples=200, deadline=None)
@given(
    ct=st.integers(1, 3),
    msgs=st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(
                st.builds(
                    p.DatapathPortRegister,
                    ct_id=st.integers(1, 3),
                    dp_id=st.integers(1, 3),
                    dp_port=st.integers(1, 3),
                ),
                st.builds(p.DatapathDown, ct_id=st.integers(1, 3), dp_id=st.integers(1, 3)),
                st.builds(
                    p.DatapathStats,
                    ct_id=st.integers(1, 3),
                    dp_id=st.integers(1, 3),
                    flows=st.just([]),
                ),
            ),
        ),
        max_size=20,
    ),
)
def test_nothing_reaches_the_table_but_the_masters_own_reports(ct, msgs):
    s = ControllerSession(ct, "r")
    for is_master, msg in msgs:
        for a in s.handle(msg, is_master=is_master):
            if isinstance(a, ToTable | DpPortSeen | DatapathLeft | StatsSeen):
                assert is_master
                assert getattr(a, "ct_id", None) in (None, ct)
                inner = (
                    getattr(a, "event", None)
                    or getattr(a, "port", None)
                    or getattr(a, "stats", None)
                )
                assert inner is None or inner.ct_id == ct


# --- full-state dumps --------------------------------------------------------------


def test_a_dump_waits_for_the_associated_vms_of_its_controller_only():
    config = [
        ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1),
        ConfigEntry(vm_id=6, vm_port=1, ct_id=1, dp_id=6, dp_port=1),
        ConfigEntry(vm_id=7, vm_port=1, ct_id=2, dp_id=7, dp_port=1),
    ]
    table = AssociationTable(config)
    assert awaiting_resync(table, 1, set()) == set()  # nothing associated yet
    for vm, ct, dp in ((5, 1, 5), (6, 1, 6), (7, 2, 7)):
        table.handle(p.PortRegister(vm_id=vm, vm_port=1, hwaddress="02:00:00:00:00:01"))
        table.handle(p.DatapathPortRegister(ct_id=ct, dp_id=dp, dp_port=1))
    table.handle(p.PortRegister(vm_id=8, vm_port=1, hwaddress="02:00:00:00:00:08"))  # idle
    assert awaiting_resync(table, 1, set()) == {5, 6}
    assert awaiting_resync(table, 1, {5}) == {6}
    assert awaiting_resync(table, 2, {5, 6}) == {7}

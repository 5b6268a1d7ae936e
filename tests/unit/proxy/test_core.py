"""The proxy core's rules, driven directly: no os-ken, no sockets, no threads.

Switch connections are plain objects here (the core compares them by
identity only); what the core decides is read off the actions it returns.
"""

from __future__ import annotations

from routeflow.proxy import core, fibwriter, reconcile
from routeflow.proxy import openflow as of
from routeflow.proxy.actions import (
    Barrier,
    ClosePipe,
    DeleteFlow,
    Notice,
    OpenPipe,
    PacketOut,
    Port,
    ReadSwitch,
    RequestFlowStats,
    SendRole,
    StartStream,
    ToServer,
    WriteFlows,
    WriteGroup,
)
from routeflow.proxy.core import ProxyCore
from routeflow.rflib import protocol as p
from routeflow.rflib.mapping import encode_mapping_frame
from routeflow.rflib.protocol import FibEntry, RouteKind

VS = of.DEFAULT_VS_DPID
DP = 0x99
MAC = "02:00:00:00:00:01"


def kinds(actions, *types) -> list:
    return [a for a in actions if isinstance(a, types)]


def to_server(actions) -> list[p.Message]:
    return [m for a in kinds(actions, ToServer) for m in a.messages]


def role(c: ProxyCore, name: str = p.MASTER, generation: int = 1) -> list:
    return c.server_message(p.ControllerRole(ct_id=1, role=name, generation=generation))


def dp_map(dp_id: int = DP, port: int = 1, vs_port: int = 1) -> p.DataPlaneMap:
    return p.DataPlaneMap(
        ct_id=1, dp_id=dp_id, dp_port=port, vs_id=VS, vs_port=vs_port, hwaddress=MAC
    )


def nexthop(gid: int, mod: p.Mod = p.Mod.ADD, dp_id: int = DP) -> p.NextHopMod:
    bucket = p.Bucket(dp_port=2, src_hwaddress=MAC, dst_hwaddress="06:00:00:00:00:07")
    return p.NextHopMod(mod=mod, ct_id=1, dp_id=dp_id, nexthop_id=gid, buckets=[bucket])


def route(c: ProxyCore, prefix: str, nexthop_id: int, mod: p.Mod = p.Mod.ADD) -> None:
    """A FibMod of one route, as the shell applies it (fibwriter; nothing encoded)."""
    entry = FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=nexthop_id)
    msg = p.FibMod(mod=mod, ct_id=1, dp_id=DP, entries=[entry])
    for _chunk in fibwriter.fib_chunks(lambda: c.datapath(DP), msg, lambda _s, _d: None):
        pass


def full_state(c: ProxyCore, *msgs: p.Message, fib=()) -> list:
    """rfserver's full state; returns the actions of Resync end."""
    c.server_message(p.Resync(phase="begin"))
    for m in msgs:
        c.server_message(m)
    for entry in fib:
        c.fib(DP)[entry.prefix] = entry  # what fibwriter does with a FibMod
    return c.server_message(p.Resync(phase="end"))


def synced_master(*conns: tuple[int, object]) -> ProxyCore:
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS)
    for dp_id, conn in conns:
        c.switch_connected(dp_id, conn)
    role(c)
    full_state(c, dp_map())
    return c


def read_all(c: ProxyCore, dp_id: int = DP, groups: dict[int, str] | None = None) -> list:
    """The switch answers a reconciliation's read: ``groups`` (default none) and no flows."""
    c.read_started(dp_id, 10, 11)
    assert c.flow_reply(dp_id, 10) is not None and c.flow_reply(dp_id, 12) is None
    assert c.flows_read(dp_id) == []  # the groups are still to come
    return c.group_reply(dp_id, 11, groups or {}, more=False)


# --- the rfserver session -------------------------------------------------------------------


def test_hello_registers_the_role_held_and_the_ports_of_physical_switches():
    c = synced_master((DP, object()), (VS, object()))
    c.ports_described(DP, [Port(1, MAC, "p1", True)])
    c.ports_described(VS, [Port(5, MAC, "vs5", True)])
    hello = c.hello()
    assert hello[0] == p.ControllerRegister(ct_id=1, replica="a", ct_role=p.MASTER)
    assert [(m.dp_id, m.dp_port) for m in hello[1:]] == [(DP, 1)]
    assert not c.synced  # a new session: nothing is written until its full state


def test_nothing_is_written_before_the_full_state_and_all_of_it_is_recorded():
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS)
    c.switch_connected(DP, object())
    role(c)
    c.server_message(p.Resync(phase="begin"))
    assert kinds(c.server_message(dp_map()), WriteFlows) == []
    assert c.server_message(nexthop(7)) == []
    route(c, "10.0.0.0/8", 7)
    assert not c.writes(DP)
    end = c.server_message(p.Resync(phase="end"))
    assert kinds(end, ReadSwitch) == [ReadSwitch(DP)] and c.writes(DP)
    assert c.state[DP].router_ports == {1: MAC} and set(c.state[DP].groups) == {7}
    assert c.state[DP].shards == {of.route_group(7, "10.0.0.0/8")}
    # Synced: changes are written at once.
    assert kinds(c.server_message(nexthop(7)), WriteGroup)[0].command == "modify"
    assert kinds(c.server_message(dp_map(port=2, vs_port=2)), WriteFlows) == [
        WriteFlows(DP, tuple(of.router_port_flows(2, MAC)))
    ]
    unmap = c.server_message(p.DataPlaneUnmap(ct_id=1, dp_id=DP, dp_port=2))
    assert unmap == [WriteFlows(DP, tuple(of.router_port_flows(2, MAC)), delete=True)]
    assert c.server_message(nexthop(7, p.Mod.DELETE))[0].command == "delete"
    assert c.server_message(nexthop(7, p.Mod.DELETE)) == []  # gone already: nothing to delete


def test_resync_begin_forgets_rfservers_state_but_not_the_switches():
    c = synced_master((DP, object()))
    c.ports_described(DP, [Port(1, MAC, "p1", False)])
    c.server_message(nexthop(7))
    route(c, "10.0.0.0/8", 7)
    c.server_message(p.Resync(phase="begin"))
    st = c.state[DP]
    assert (st.router_ports, st.groups, st.fib, st.shards) == ({}, {}, {}, set())
    assert set(st.ports) == {1} and st.link_up == {1: False}
    assert not c.synced


def test_resync_end_drops_relay_mappings_the_full_state_no_longer_has():
    c = synced_master((DP, object()))
    c.server_message(dp_map(port=2, vs_port=2))
    assert len(c.relay.mappings()) == 2
    full_state(c, dp_map())  # port 2 is not in it
    assert c.relay.mappings() == [(DP, 1, VS, 1)]


def test_a_full_state_received_while_not_master_is_ignored():
    c = ProxyCore(ct_id=1, replica="b", vs_dpid=VS)
    c.switch_connected(DP, object())
    role(c, p.SLAVE)
    end = full_state(c, dp_map())
    assert not c.synced and kinds(end, ReadSwitch) == []
    assert "not master" in kinds(end, Notice)[0].text


# --- roles -----------------------------------------------------------------------------------


def test_every_physical_switch_is_told_the_role_and_a_new_master_reports_everything():
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS)
    c.switch_connected(VS, object())
    c.switch_connected(DP, object())
    role(c, p.SLAVE)
    c.ports_described(DP, [Port(1, MAC, "p1", True), Port(2, MAC, "p2", False)])
    out = role(c, p.MASTER, 4)
    assert kinds(out, SendRole) == [SendRole(DP, True, 4)]
    reports = to_server(out)
    assert [type(m).__name__ for m in reports] == [
        "DatapathPortRegister",
        "DatapathPortRegister",
        "DatapathPortStatus",
        "DatapathPortStatus",
    ]
    assert [(m.dp_port, m.up) for m in reports[2:]] == [(1, True), (2, False)]
    # Master again: the switches are told, rfserver has heard it all already.
    again = role(c, p.MASTER, 4)
    assert kinds(again, SendRole) == [SendRole(DP, True, 4)] and to_server(again) == []


def test_a_demoted_replica_stops_writing_and_reconciling():
    c = synced_master((DP, object()))
    c.read_started(DP, 10, 11)
    out = role(c, p.SLAVE, 2)
    assert kinds(out, SendRole) == [SendRole(DP, False, 2)]
    assert not c.synced and not c.writes(DP) and c.flow_reply(DP, 10) is None
    assert c.server_message(nexthop(8)) == [] and c.poll_stats() == []


def test_a_role_for_another_controller_changes_nothing():
    c = synced_master((DP, object()))
    out = c.server_message(p.ControllerRole(ct_id=2, role=p.SLAVE, generation=9))
    assert c.is_master and c.synced and c.generation == 1
    assert [type(a) for a in out] == [Notice]


# --- switches and their ports ---------------------------------------------------------------


def test_connecting_switches():
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS)
    # The virtual switch gets its flows from every replica, synced or not.
    assert kinds(c.switch_connected(VS, object()), WriteFlows) == [
        WriteFlows(VS, tuple(of.virtual_switch_flows()))
    ]
    # No role yet: none is sent; a pipe is opened; nothing to reconcile.
    assert [type(a) for a in c.switch_connected(DP, object()) if type(a) is not Notice] == [
        OpenPipe
    ]
    role(c, p.SLAVE)
    out = c.switch_connected(0x98, object())
    assert kinds(out, SendRole, OpenPipe, ReadSwitch) == [SendRole(0x98, False, 1), OpenPipe(0x98)]
    role(c, p.MASTER, 2)
    full_state(c)
    out = c.switch_connected(0x97, object())
    assert kinds(out, SendRole, OpenPipe, ReadSwitch) == [
        SendRole(0x97, True, 2),
        OpenPipe(0x97),
        ReadSwitch(0x97),
    ]


def test_a_switch_that_leaves_is_forgotten_unless_it_has_reconnected_meanwhile():
    old, new = object(), object()
    c = synced_master((DP, old))
    c.switch_connected(DP, new)  # reconnected before the old connection's end is seen
    assert c.switch_left(DP, old) == []
    assert c.state[DP].router_ports == {1: MAC}
    out = c.switch_left(DP, new)
    assert kinds(out, ClosePipe) == [ClosePipe(DP)]
    assert to_server(out) == [p.DatapathDown(ct_id=1, dp_id=DP)]
    assert DP not in c.state and c.relay.mappings() == [] and not c.writes(DP)


def test_link_states_at_connect_report_only_what_is_down_afterwards_every_change():
    c = synced_master((DP, object()))
    out = c.ports_described(
        DP, [Port(1, MAC, "p1", True), Port(2, MAC, "p2", False), Port(0xFFFFFFFE, MAC, "br", True)]
    )
    msgs = to_server(out)
    assert [m.dp_port for m in msgs if isinstance(m, p.DatapathPortRegister)] == [1, 2]
    assert [(m.dp_port, m.up) for m in msgs if isinstance(m, p.DatapathPortStatus)] == [(2, False)]
    assert to_server(c.port_status(DP, "modify", Port(1, MAC, "p1", True))) == []  # no change
    down = to_server(c.port_status(DP, "modify", Port(1, MAC, "p1", False)))
    assert down == [p.DatapathPortStatus(ct_id=1, dp_id=DP, dp_port=1, up=False)]
    gone = to_server(c.port_status(DP, "delete", Port(2, MAC, "p2", True)))
    assert gone == []  # was down, is gone: still down
    added = to_server(c.port_status(DP, "add", Port(3, MAC, "p3", True)))
    assert [type(m).__name__ for m in added] == ["DatapathPortRegister", "DatapathPortStatus"]
    # A port known down is reported at the next connect even though it is up.
    again = to_server(c.ports_described(DP, [Port(1, MAC, "p1", True)]))
    assert again[-1] == p.DatapathPortStatus(ct_id=1, dp_id=DP, dp_port=1, up=True)


def test_only_the_master_reports_to_rfserver_but_every_replica_records():
    c = ProxyCore(ct_id=1, replica="b", vs_dpid=VS)
    c.switch_connected(DP, object())
    role(c, p.SLAVE)
    assert to_server(c.ports_described(DP, [Port(1, MAC, "p1", False)])) == []
    assert to_server(c.port_status(DP, "modify", Port(1, MAC, "p1", True))) == []
    assert c.state[DP].link_up == {1: True}
    assert to_server(c.switch_left(DP, c.switches[DP])) == []


# --- relay and statistics -------------------------------------------------------------------


def test_only_the_master_relays_and_only_to_connected_switches():
    c = synced_master((DP, object()))
    frame = b"\x02" * 12 + b"\x08\x00" + b"\x00" * 46
    assert c.packet_in(DP, 1, frame) == []  # the virtual switch is not connected
    c.switch_connected(VS, object())
    assert c.packet_in(DP, 1, frame) == [PacketOut(VS, 1, frame)]
    assert c.packet_in(VS, 1, frame) == [PacketOut(DP, 1, frame)]
    mapping = encode_mapping_frame(MAC, 0x42, 3)
    assert to_server(c.packet_in(VS, 9, mapping)) == [
        p.VirtualPlaneMap(vm_id=0x42, vm_port=3, vs_id=VS, vs_port=9)
    ]
    role(c, p.SLAVE, 2)
    assert c.packet_in(DP, 1, frame) == []


def test_statistics_cover_table_0_only_for_a_big_fib():
    c = synced_master((DP, object()), (0x98, object()), (VS, object()))
    for i in range(core.STATS_FIB_LIMIT + 1):
        prefix = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32"
        c.fib(DP)[prefix] = FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=1)
    assert c.poll_stats() == [RequestFlowStats(DP, 0), RequestFlowStats(0x98, 0xFF)]
    (report,) = to_server(c.stats_report(DP, []))
    assert isinstance(report, p.DatapathStats) and report.dp_id == DP


# --- reconciliation -------------------------------------------------------------------------


def test_a_read_completes_when_both_replies_are_in_and_ignores_other_xids():
    c = synced_master((DP, object()))
    c.read_started(DP, 10, 11)
    assert c.group_reply(DP, 99, {1: "x"}, more=False) == []  # not ours
    assert c.group_reply(DP, 11, {1: "a"}, more=True) == []
    (start,) = c.group_reply(DP, 11, {2: "b"}, more=False) + c.flows_read(DP)
    assert isinstance(start, StartStream) and start.read.groups == {1: "a", 2: "b"}
    assert c.streams == {DP: start.stream} and c.reads == {}
    assert c.streaming(start.stream)


def test_a_reconciliation_asked_for_while_one_streams_waits_for_it():
    conn = object()
    c = synced_master((DP, conn))
    (start,) = read_all(c)
    stream = start.stream
    assert kinds(full_state(c, dp_map()), ReadSwitch) == []  # rfserver resent its state
    assert not c.streaming(stream) and stream.again is conn
    assert c.stream_ended(stream) == [ReadSwitch(DP)] and c.streams == {}


def test_a_stream_stops_when_its_switch_reconnects_and_the_new_connection_is_read():
    old, new = object(), object()
    c = synced_master((DP, old))
    (start,) = read_all(c)
    assert kinds(c.switch_connected(DP, new), ReadSwitch) == []  # after the stream
    assert not c.streaming(start.stream)
    assert c.stream_ended(start.stream) == [ReadSwitch(DP)]
    # Had the switch left meanwhile, there would be nothing to read.
    (start,) = read_all(c)
    c.switch_connected(DP, object())
    c.switch_left(DP, c.switches[DP])
    assert c.stream_ended(start.stream) == []


def test_the_plan_writes_groups_first_and_deletes_stale_groups_last_unless_desired_again():
    c = synced_master((DP, object()))
    c.server_message(nexthop(7))
    c.server_message(nexthop(8))
    route(c, "10.0.0.0/8", 7)
    route(c, "10.2.0.0/16", 7)
    route(c, "10.1.0.0/16", 8)
    g7a, g7b = of.route_group(7, "10.0.0.0/8"), of.route_group(7, "10.2.0.0/16")
    g8, unused7 = of.route_group(8, "10.1.0.0/16"), of.route_group(7, "10.3.0.0/16")
    assert len({g7a, g7b, unused7, 7}) == 4 and g8 != 8
    again = of.route_group(10, "10.1.52.0/24")  # shard 0 of next hop 10: group 10
    assert again == 10
    want7 = reconcile.group_text(of.nexthop_group(c.state[DP].groups[7]))
    # The switch has two of 7's shards (one no route uses), 8's shard with other
    # buckets, a group of no next hop (9) and one of an unknown next hop (10).
    have = {g7a: want7, unused7: want7, g8: "indirect[]", 9: "indirect[]", 10: "x"}
    (start,) = read_all(c, groups=have)
    start.read.actual[(0, 300, "in_port=5")] = ("output:CONTROLLER", of.cookie(2, 5), b"m")
    plan = c.plan(start.stream, start.read)
    # Exactly the shards the routes use exist before the flows are written.
    assert [(a.group.group_id, a.command) for a in kinds(plan.first, WriteGroup)] == [
        (g7b, "add"),
        (g8, "modify"),
    ]
    assert all(isinstance(a, WriteGroup) for a in plan.first[:2])
    assert isinstance(plan.first[2], WriteFlows)
    assert kinds(plan.first, DeleteFlow) == [DeleteFlow(DP, 0, 300, b"m")]
    assert sorted(e.prefix for e in plan.flows.add_routes) == [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.2.0.0/16",
    ]
    assert plan.stale_groups == [unused7, 9, 10]
    assert c.state[DP].shards == {g7a, g7b, g8}
    # Desired again while the flows were written: a route made its shard.
    c.server_message(nexthop(10))
    route(c, "10.1.52.0/24", 10)
    assert c.finish(plan) == [
        WriteGroup(DP, of.GroupSpec(unused7, select=False), "delete"),
        WriteGroup(DP, of.GroupSpec(9, select=False), "delete"),
        Barrier(DP),
    ]
    counts = plan.counts
    assert (
        counts.groups_add,
        counts.groups_unchanged,
        counts.groups_modify,
        counts.groups_delete,
    ) == (1, 1, 1, 3)
    assert "reconciled switch 0x99" in plan.notices()[0].text % plan.notices()[0].args


def test_a_next_hops_groups_are_the_shards_its_routes_made():
    """None before its first route; a change rewrites exactly the shards that exist, a
    delete removes exactly them (not every possible shard: openflow.GROUP_SHARDS)."""
    c = synced_master((DP, object()))
    assert c.server_message(nexthop(7)) == []  # no route yet: no group
    route(c, "10.0.0.0/8", 7)
    route(c, "10.1.0.0/16", 7)
    route(c, "10.1.0.0/16", 7)  # the same route again
    shards = sorted({of.route_group(7, "10.0.0.0/8"), of.route_group(7, "10.1.0.0/16")})
    assert sorted(c.state[DP].shards) == shards
    # The MAC changes: one group-mod per shard that exists.
    mac = c.server_message(nexthop(7))
    assert [(a.group.group_id, a.command) for a in kinds(mac, WriteGroup)] == [
        (g, "modify") for g in shards
    ]
    assert {a.group.buckets for a in kinds(mac, WriteGroup)} == {
        of.nexthop_group(nexthop(7)).buckets
    }
    # Another next hop's shards are its own.
    c.server_message(nexthop(8))
    route(c, "10.2.0.0/16", 8)
    gone = c.server_message(nexthop(7, p.Mod.DELETE))
    assert [(a.group.group_id, a.command) for a in kinds(gone, WriteGroup)] == [
        (g, "delete") for g in shards
    ]
    assert c.state[DP].shards == {of.route_group(8, "10.2.0.0/16")}


def test_a_restarted_proxy_keeps_the_shards_the_switch_has():
    """rfproxy restarts: the switch still has the shards (and flows) of the routes
    rfserver sends again; the reconciliation writes no group, deletes none."""
    c = ProxyCore(ct_id=1, replica="b", vs_dpid=VS)
    c.switch_connected(DP, object())
    role(c)
    c.server_message(p.Resync(phase="begin"))
    c.server_message(nexthop(7))
    prefixes = [f"10.{i}.0.0/16" for i in range(40)]
    for prefix in prefixes:
        route(c, prefix, 7)
    assert kinds(c.server_message(p.Resync(phase="end")), ReadSwitch) == [ReadSwitch(DP)]
    text = reconcile.group_text(of.nexthop_group(nexthop(7)))
    shards = {of.route_group(7, prefix) for prefix in prefixes}
    assert 1 < len(shards) < of.GROUP_SHARDS
    c.read_started(DP, 10, 11)
    st = c.reads[DP]
    for prefix in prefixes:
        (spec,) = of.fib_flows(c.state[DP].fib[prefix])
        key, actions = reconcile.spec_flow(spec)
        st.actual[key] = (actions, spec.cookie, b"")
    c.flows_read(DP)
    (start,) = c.group_reply(DP, 11, dict.fromkeys(shards, text), more=False)
    plan = c.plan(start.stream, start.read)
    assert kinds(plan.first, WriteGroup) == [] and plan.flows.add_routes == []
    assert plan.stale_groups == [] and c.finish(plan) == [Barrier(DP)]
    assert (plan.counts.groups_unchanged, plan.counts.flows_unchanged) == (len(shards), 40)
    assert c.state[DP].shards == shards

"""Reconciliation writes route flows raw, and the switch ends exactly as with os-ken.

The old path sent every flow of the diff through os-ken: an OFPFlowMod per
added flow (``ofmsg.flow_mod`` of its spec) and a DELETE_STRICT per stale flow
with the match os-ken parsed from the switch's reply. The new one packs route
adds and FIB-table deletes (reconcile.plan_flows / raw_chunks) and streams
them through the switch's FlowPipe from a thread of its own. Both are applied
to a model switch, decoded with os-ken's parser, and must leave the same flows.
The shell-level tests drive a real RFProxy (not started: no os-ken controller,
no rfserver) through its handlers against a fake datapath: order (groups,
flows, stale groups), FibMods held back while it writes, and a resync in the
middle.
"""

from __future__ import annotations

import struct
import threading
import time
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import app, fastof, ofmsg, reconcile
from routeflow.proxy import openflow as of
from routeflow.proxy.flowpipe import XID_BASE as PIPE_XID_BASE
from routeflow.rflib import protocol as p
from routeflow.rflib.protocol import FibEntry, RouteKind

from .test_reconcile import (
    DP,
    FOREIGN_COOKIE,
    base_specs,
    dual_entries,
    entries,
    old_desired,
    other_actions,
    router_ports,
    stats_entry,
)

P = ofproto_v1_3_parser
OFP = ofproto_v1_3


# --- a model switch ---------------------------------------------------------------------------


def decode_flow_mod(data: bytes, off: int = 0):
    _v, kind, length, xid = struct.unpack_from("!BBHI", data, off)
    assert kind == OFP.OFPT_FLOW_MOD
    return P.OFPFlowMod.parser(DP, 4, kind, length, xid, data[off : off + length]), length


def apply_flow_mod(switch: dict, fm) -> tuple:
    """ADD replaces the flow of the same (table, priority, match); DELETE_STRICT removes it."""
    key = (fm.table_id, fm.priority, ofmsg.format_match(fm.match))
    if fm.command == OFP.OFPFC_ADD:
        switch[key] = (ofmsg.format_instructions(fm.instructions), fm.cookie)
        return ("add", key, switch[key])
    assert fm.command == OFP.OFPFC_DELETE_STRICT
    assert (fm.out_port, fm.out_group, fm.cookie_mask) == (OFP.OFPP_ANY, OFP.OFPG_ANY, 0)
    switch.pop(key, None)
    return ("delete", key)


def _groups_of(fm) -> list[int]:
    """The groups a flow-mod's actions apply."""
    return [
        a.group_id
        for i in fm.instructions
        for a in getattr(i, "actions", ())
        if isinstance(a, P.OFPActionGroup)
    ]


def serialized(msg) -> bytes:
    if msg.xid is None:
        msg.set_xid(1)
    msg.serialize()
    return bytes(msg.buf)


def switch_of(flow_mods: list) -> tuple[dict, bytes]:
    """The model switch holding ``flow_mods``, and its OFPMP_FLOW reply body."""
    body = b"".join(stats_entry(fm) for fm in flow_mods)  # serializes them
    switch: dict = {}
    for fm in flow_mods:
        apply_flow_mod(switch, decode_flow_mod(bytes(fm.buf))[0])
    return switch, body


def perturbed_switch(data, rports, fib, stale_entries) -> list:
    """Desired flows, some missing, changed or someone else's; stale ones; a wiped switch."""
    if data.draw(st.integers(0, 9)) == 0:
        return []
    specs = base_specs(rports)
    for entry in fib:
        specs = specs + of.fib_flows(entry)
    out = []
    for spec in specs:
        fate = data.draw(st.sampled_from(["same", "missing", "missing", "changed", "foreign"]))
        if fate == "missing":
            continue
        if fate == "changed":
            spec = of.FlowSpec(
                spec.table, spec.priority, spec.match, data.draw(other_actions), spec.cookie
            )
        elif fate == "foreign":
            spec = of.FlowSpec(spec.table, spec.priority, spec.match, spec.actions, FOREIGN_COOKIE)
        out.append(ofmsg.flow_mod(DP, spec, False))
    for entry in data.draw(st.lists(stale_entries, max_size=8)):
        for spec in of.fib_flows(entry):
            cookie = data.draw(st.sampled_from([spec.cookie, spec.cookie, FOREIGN_COOKIE]))
            actions = data.draw(st.one_of(st.just(spec.actions), other_actions))
            out.append(ofmsg.flow_mod(DP, of.FlowSpec(*spec.key, actions, cookie), False))
    return out


def old_messages(desired, fdiff, actual) -> list[bytes]:
    """The flow-mods the os-ken path sent for ``fdiff`` (before the raw path)."""
    out = []
    for key in fdiff.add:
        out.append(
            serialized(ofmsg.flow_mod(DP, reconcile.source_spec(key, desired[key][1]), False))
        )
    for key in fdiff.delete:
        match = P.OFPMatch.parser(actual[key][2], 0)
        out.append(serialized(ofmsg.delete_strict(DP, key[0], key[1], match)))
    return out


def new_messages(plan: reconcile.FlowPlan, actual, chunk: int) -> list[bytes]:
    """What rfproxy writes now: the os-ken part at once, then the raw chunks."""
    out = [serialized(ofmsg.flow_mod(DP, spec, False)) for spec in plan.add_now]
    for key, match_bytes in plan.delete_now:
        match = P.OFPMatch.parser(match_bytes, 0)
        out.append(serialized(ofmsg.delete_strict(DP, key[0], key[1], match)))
    for data, count in reconcile.raw_chunks(plan, chunk=chunk):
        off = n = 0
        while off < len(data):
            _fm, length = decode_flow_mod(data, off)
            out.append(data[off : off + length])
            off += length
            n += 1
        assert n == count
    return out


def effects(messages: list[bytes]) -> list[tuple]:
    return [apply_flow_mod({}, decode_flow_mod(m)[0]) for m in messages]


def _same_switch_either_way(rports, fib, data, stale_entries, chunk) -> None:
    switch, body = switch_of(perturbed_switch(data, rports, fib, stale_entries))
    actual: reconcile.ActualFlows = {}
    reconcile.read_flow_stats(body, 0, len(body), actual, ofmsg.parse_flow_stats_entry)
    desired = reconcile.desired_flows(base_specs(rports), fib)
    fdiff = reconcile.diff_flows(desired, actual, of.is_ours)
    plan = reconcile.plan_flows(fdiff, desired, actual)
    assert len(plan.add_now) + len(plan.add_routes) == len(fdiff.add)
    assert len(plan.delete_now) + len(plan.delete_fib) == len(fdiff.delete)

    old = old_messages(desired, fdiff, actual)
    new = new_messages(plan, actual, chunk)
    # The same flow-mods, in effect: same command, key, instructions and cookie.
    assert sorted(effects(new)) == sorted(effects(old))
    old_switch, new_switch = dict(switch), dict(switch)
    for m in old:
        apply_flow_mod(old_switch, decode_flow_mod(m)[0])
    for m in new:
        apply_flow_mod(new_switch, decode_flow_mod(m)[0])
    assert new_switch == old_switch
    # And that is the desired state: every desired flow as wanted, none of ours stale.
    want = old_desired(base_specs(rports), fib)
    assert {k: v[0] for k, v in new_switch.items() if k in want} == want
    assert all(not of.is_ours(c) for k, (_a, c) in new_switch.items() if k not in want)


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(entries, max_size=20), st.data(), st.integers(1, 5))
def test_raw_writes_leave_the_switch_as_os_ken_writes_did(rports, fib, data, chunk):
    _same_switch_either_way(rports, fib, data, entries, chunk)


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(dual_entries, max_size=20), st.data(), st.integers(1, 5))
def test_dual_stack_raw_writes_leave_the_switch_as_os_ken_writes_did(rports, fib, data, chunk):
    _same_switch_either_way(rports, fib, data, dual_entries, chunk)


def test_routes_are_raw_and_the_rest_goes_through_os_ken():
    fib = [
        FibEntry(prefix="10.1.0.0/16", kind=RouteKind.UNICAST, nexthop_id=3),
        FibEntry(prefix="2001:db8:1::/48", kind=RouteKind.UNICAST, nexthop_id=3),
        FibEntry(prefix="0.0.0.0/0", kind=RouteKind.UNICAST, nexthop_id=3),
        FibEntry(prefix="10.2.0.1/32", kind=RouteKind.LOCAL, dp_port=1),
        FibEntry(prefix="10.2.0.0/24", kind=RouteKind.CONNECTED, dp_port=1),
    ]
    stale = [
        *of.fib_flows(FibEntry(prefix="10.9.0.0/16", kind=RouteKind.UNICAST, nexthop_id=3)),
        *of.fib_flows(FibEntry(prefix="10.3.0.1/32", kind=RouteKind.LOCAL, dp_port=2)),
        *of.router_port_flows(7, "02:00:00:00:00:07"),
    ]
    _switch, body = switch_of([ofmsg.flow_mod(DP, s, False) for s in stale])
    actual: reconcile.ActualFlows = {}
    reconcile.read_flow_stats(body, 0, len(body), actual, ofmsg.parse_flow_stats_entry)
    desired = reconcile.desired_flows(of.base_flows(), fib)
    plan = reconcile.plan_flows(reconcile.diff_flows(desired, actual, of.is_ours), desired, actual)
    assert [e.prefix for e in plan.add_routes] == ["10.1.0.0/16", "2001:db8:1::/48"]
    # Base flows, the default route, LOCAL and CONNECTED: os-ken's specs.
    assert len(plan.add_now) == 2 + 1 + 2 + 1
    # Stale: the FIB table raw (the /16 and the LOCAL /32), the classifier through os-ken.
    assert sorted(k[1] for k, _m in plan.delete_fib) == [of.PRIO_ROUTE_BASE + 16, of.PRIO_LOCAL]
    assert {k[0] for k, _m in plan.delete_now} == {of.TABLE_CLASSIFIER}
    assert len(plan.delete_now) == 4 + 1  # the router port's flows, the LOCAL's ARP punt


def test_delete_strict_echoes_the_switch_match_as_os_ken_encodes_it():
    """Every prefix length of both families: the raw DELETE_STRICT is os-ken's, byte for byte."""
    for prefix in [f"10.128.0.0/{n}" for n in range(1, 33)] + [
        f"2001:db8:8000::/{n}" for n in range(1, 129)
    ]:
        (spec,) = of.fib_flows(FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=5))
        fm = ofmsg.flow_mod(DP, spec, False)
        body = stats_entry(fm)
        actual: reconcile.ActualFlows = {}
        reconcile.read_flow_stats(body, 0, len(body), actual, ofmsg.parse_flow_stats_entry)
        ((key, (_a, _c, match)),) = actual.items()
        ours = fastof.flow_delete_strict(1, key[0], key[1], match)
        theirs = serialized(ofmsg.delete_strict(DP, key[0], key[1], P.OFPMatch.parser(match, 0)))
        assert ours == theirs, prefix


# --- RFProxy's reconciliation against a fake datapath ---------------------------------------


class FakeDatapath:
    """Decodes what rfproxy sends into a model switch; answers barriers of the pipe's range.

    Barrier replies go to rfproxy's handler, as os-ken would deliver them.
    With ``hold`` set, they are not answered until ``release``: the
    reconciliation then waits for the switch, as it does for a slow one.
    """

    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser

    def __init__(self, dp_id: int = 0x99) -> None:
        self.id = dp_id
        self.xid = 0
        self.flows: dict = {}
        self.groups: dict[int, int] = {}  # group id -> type
        self.log: list[tuple] = []  # ("flow", effect) / ("group", command, gid) / ("stats",)
        self.requests: dict[int, list[int]] = {}  # multipart type -> xids asked for
        self.raw = 0  # flow-mods of reconciliation's raw range
        self.barriers = 0  # pipe barriers answered
        self.on_barrier = lambda xid: None
        self.hold = False
        self.held: list[int] = []
        self._mutex = threading.Lock()

    def set_xid(self, msg) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg) -> None:
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        self.send(bytes(msg.buf))

    def send(self, data: bytes) -> bool:
        acks = []
        with self._mutex:
            off = 0
            while off < len(data):
                _v, kind, length, xid = struct.unpack_from("!BBHI", data, off)
                if kind == OFP.OFPT_FLOW_MOD:
                    fm, _n = decode_flow_mod(data, off)
                    missing = [g for g in _groups_of(fm) if g not in self.groups]
                    if fm.command == OFP.OFPFC_ADD and missing:
                        # Open vSwitch refuses it (OFPBAC_BAD_OUT_GROUP).
                        self.log.append(("refused", missing))
                    else:
                        self.log.append(("flow", apply_flow_mod(self.flows, fm)))
                    self.raw += reconcile.XID_BASE <= xid < PIPE_XID_BASE
                elif kind == OFP.OFPT_GROUP_MOD:
                    command, gtype, gid = struct.unpack_from("!HBxI", data, off + 8)
                    self.log.append(("group", command, gid))
                    if command == OFP.OFPGC_DELETE:
                        self.groups.pop(gid, None)
                        # Open vSwitch deletes the flows that apply it.
                        applies = f"group:{gid}"
                        for key in [k for k, v in self.flows.items() if applies in v[0].split(",")]:
                            del self.flows[key]
                    elif command == OFP.OFPGC_ADD and gid in self.groups:
                        self.log.append(("refused", [gid]))  # OFPGMFC_GROUP_EXISTS
                    else:
                        self.groups[gid] = gtype
                elif kind == OFP.OFPT_MULTIPART_REQUEST:
                    (mp_type,) = struct.unpack_from("!H", data, off + 8)
                    self.requests.setdefault(mp_type, []).append(xid)
                    if mp_type == OFP.OFPMP_FLOW:
                        self.log.append(("stats",))
                elif kind == OFP.OFPT_BARRIER_REQUEST and xid >= PIPE_XID_BASE:
                    (self.held if self.hold else acks).append(xid)
                off += length
        for xid in acks:
            self._ack(xid)
        return True

    def release(self) -> None:
        with self._mutex:
            self.hold = False
            held, self.held = self.held, []
        for xid in held:
            self._ack(xid)

    def _ack(self, xid: int) -> None:
        self.barriers += 1
        self.on_barrier(xid)


def event(**msg):
    return SimpleNamespace(msg=SimpleNamespace(**msg))


def make_proxy(dp: FakeDatapath, window: int = 256, depth: int = 2) -> app.RFProxy:
    """A master RFProxy, not started (no os-ken controller, no rfserver link)."""
    settings = app.ProxySettings(stats_interval=0, pipe_window=window, pipe_depth=depth)
    proxy = app.RFProxy(settings=settings)
    dp.on_barrier = lambda xid: proxy.barrier_reply_handler(event(datapath=dp, xid=xid))
    proxy.server_message_handler(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    return proxy


def nexthop(gid: int, port: int) -> p.NextHopMod:
    bucket = p.Bucket(
        dp_port=port, src_hwaddress="02:00:00:00:00:01", dst_hwaddress=f"06:00:00:00:00:{gid:02x}"
    )
    return p.NextHopMod(mod=p.Mod.ADD, ct_id=1, dp_id=0x99, nexthop_id=gid, buckets=[bucket])


def routes(n: int, gid: int, v6_every: int = 3) -> list[FibEntry]:
    out = []
    for i in range(n):
        v6 = i % v6_every == 0
        prefix = f"fd00:0:{i:x}::/48" if v6 else f"100.{i >> 8 & 255}.{i & 255}.0/24"
        out.append(FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=gid))
    return out


def resync(proxy, dp: FakeDatapath, fib: list[FibEntry], groups: list[p.NextHopMod]) -> None:
    """rfserver sends its full state: router port 1, ``groups`` and ``fib`` on ``dp``."""
    tell = proxy.server_message_handler
    tell(p.Resync(phase="begin"))
    tell(
        p.DataPlaneMap(
            ct_id=1, dp_id=dp.id, dp_port=1, vs_id=0x5, vs_port=1, hwaddress="02:00:00:00:00:01"
        )
    )
    for g in groups:
        tell(g)
    tell(p.FibMod(mod=p.Mod.ADD, ct_id=1, dp_id=dp.id, entries=fib))
    tell(p.Resync(phase="end"))


def load(proxy, dp: FakeDatapath, fib: list[FibEntry], groups: list[p.NextHopMod]) -> None:
    """The full state, then the switch connects: rfproxy asks for its flows and groups."""
    resync(proxy, dp, fib, groups)
    proxy.switch_features_handler(event(datapath=dp, datapath_id=dp.id))
    assert dp.log == [("stats",)] and dp.flows == {}
    dp.log.clear()


def _reply(dp, mp_type: int, xid: int, body: bytes):
    """A multipart reply from ``dp``, parsed as os-ken parses it (flow statistics stay raw)."""
    head = struct.pack("!BBHIHH4x", 4, OFP.OFPT_MULTIPART_REPLY, 16 + len(body), xid, mp_type, 0)
    raw = head + body
    return P.msg_parser(dp, 4, OFP.OFPT_MULTIPART_REPLY, len(raw), xid, raw)


def reconcile_from(proxy, dp: FakeDatapath, body: bytes, switch_groups: list) -> None:
    """The switch answers rfproxy's last requests: flow stats ``body``, ``switch_groups``."""
    group_desc = b""
    for gm in switch_groups:  # an ofp_group_desc is a group-mod's body after its command
        buf = serialized(gm)
        group_desc += struct.pack("!HBxI", len(buf) - 8, gm.type, gm.group_id) + buf[16:]
    flows = _reply(dp, OFP.OFPMP_FLOW, dp.requests[OFP.OFPMP_FLOW][-1], body)
    groups = _reply(dp, OFP.OFPMP_GROUP_DESC, dp.requests[OFP.OFPMP_GROUP_DESC][-1], group_desc)
    proxy.flow_stats_handler(SimpleNamespace(msg=flows))
    proxy.group_desc_handler(SimpleNamespace(msg=groups))


def wait_done(proxy, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while proxy.core.streams:
        assert time.monotonic() < deadline, "reconciliation still running"
        time.sleep(0.005)


def desired_now(proxy, dp) -> dict:
    st_ = proxy.core.state[dp.id]
    specs = base_specs(st_.router_ports)
    return old_desired(specs, list(st_.fib.values()))


def wait_held(dp: FakeDatapath) -> None:
    deadline = time.monotonic() + 10
    while not dp.held:  # the stream waits for the switch
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_wiped_switch_gets_everything_back_groups_first_and_paced(caplog):
    dp = FakeDatapath()
    proxy = make_proxy(dp)
    fib = [*routes(3000, 7), FibEntry(prefix="10.0.0.1/32", kind=RouteKind.LOCAL, dp_port=1)]
    load(proxy, dp, fib, [nexthop(7, 2), nexthop(8, 3)])
    with caplog.at_level("INFO", logger="routeflow.proxy"):
        reconcile_from(proxy, dp, b"", [])
        wait_done(proxy)
    assert {k: v[0] for k, v in dp.flows.items()} == desired_now(proxy, dp)
    # The shards of 7 its routes use (openflow.GROUP_SHARDS); 8 has no route, no group.
    shards = sorted(of.used_groups(fib))
    assert {of.nexthop_of_group(g) for g in shards} == {7}
    assert dp.groups == dict.fromkeys(shards, OFP.OFPGT_INDIRECT)
    assert not [e for e in dp.log if e[0] == "refused"]
    first_flow = next(i for i, e in enumerate(dp.log) if e[0] == "flow")
    assert all(e[0] == "group" for e in dp.log[:first_flow]) and first_flow == len(shards)
    # Paced: the routes went raw, in windows, each acknowledged; none left over.
    assert dp.raw == 3000 and dp.barriers == -(-3000 // 256) and not dp.held
    assert (
        f"reconciled switch 0x99: flows +3008 -0 =0, groups +{len(shards)} ~0 -0 =0" in caplog.text
    )


def test_stale_flows_go_before_stale_groups_and_foreign_flows_stay():
    dp = FakeDatapath()
    proxy = make_proxy(dp)
    fib = routes(600, 7)
    load(proxy, dp, fib, [nexthop(7, 2)])
    stale_routes = routes(900, 9)[600:]  # same shape, not desired, through a stale group
    match = (("eth_type", 0x0800), ("ipv4_dst", ("198.51.100.0", "255.255.255.0")))
    foreign = of.FlowSpec(1, 1024, match, (), 0x42)
    on_switch = [ofmsg.flow_mod(DP, s, False) for e in fib[:300] for s in of.fib_flows(e)]
    on_switch += [ofmsg.flow_mod(DP, s, False) for e in stale_routes for s in of.fib_flows(e)]
    on_switch.append(ofmsg.flow_mod(DP, foreign, False))
    dp.flows, body = switch_of(on_switch)
    # The switch has every possible shard of 7 (as desired), and 9's (stale):
    # 7's that no route uses (if any) are stale too.
    live = sorted(of.used_groups(fib))
    stale = [g for g in of.nexthop_group_ids(7) if g not in live] + list(of.nexthop_group_ids(9))
    assert 0 < len(live) <= of.GROUP_SHARDS
    dp.groups = dict.fromkeys([*of.nexthop_group_ids(7), *stale], OFP.OFPGT_INDIRECT)
    stale_groups = [
        ofmsg.group_mod(DP, of.GroupSpec(g, False, (((of.Output(5),), 1),)), "add")
        for g in of.nexthop_group_ids(9)
    ]
    live_groups = [ofmsg.group_mod(DP, g, "add") for g in of.nexthop_groups(nexthop(7, 2))]
    reconcile_from(proxy, dp, body, [*live_groups, *stale_groups])
    wait_done(proxy)
    want = desired_now(proxy, dp)
    assert {k: v[0] for k, v in dp.flows.items() if k in want} == want
    assert {k for k, (_a, c) in dp.flows.items() if k not in want} == {
        (1, 1024, "eth_type=2048,ipv4_dst=198.51.100.0/255.255.255.0")
    }
    assert dp.groups == dict.fromkeys(live, OFP.OFPGT_INDIRECT)
    # The live groups were as desired: neither re-added nor modified.
    assert [e for e in dp.log if e[0] == "group"] == [("group", OFP.OFPGC_DELETE, g) for g in stale]
    last_flow = max(i for i, e in enumerate(dp.log) if e[0] == "flow")
    deleted_group = min(dp.log.index(("group", OFP.OFPGC_DELETE, g)) for g in stale)
    assert deleted_group > last_flow
    assert sum(1 for e in dp.log if e[0] == "flow" and e[1][0] == "delete") == 300


def test_a_fibmod_waits_for_the_stream_and_is_not_overtaken():
    dp = FakeDatapath()
    proxy = make_proxy(dp, window=128, depth=1)
    fib = routes(2000, 7)
    load(proxy, dp, fib, [nexthop(7, 2)])
    dp.hold = True
    reconcile_from(proxy, dp, b"", [])
    wait_held(dp)
    gone = fib[5]
    withdraw = p.FibMod(mod=p.Mod.DELETE, ct_id=1, dp_id=dp.id, entries=[gone])
    fibmod = threading.Thread(target=proxy.server_message_handler, args=(withdraw,))
    fibmod.start()
    time.sleep(0.2)
    # Held back: neither the state nor the switch has seen it yet.
    assert fibmod.is_alive() and gone.prefix in proxy.core.state[dp.id].fib
    dp.release()
    wait_done(proxy)
    fibmod.join(10)
    assert not fibmod.is_alive()
    assert gone.prefix not in proxy.core.state[dp.id].fib
    want = desired_now(proxy, dp)
    assert {k: v[0] for k, v in dp.flows.items()} == want
    (key,) = {k for k, _t in reconcile.desired_flows([], [gone]).items()}
    adds = [i for i, e in enumerate(dp.log) if e[0] == "flow" and e[1][:2] == ("add", key)]
    dels = [i for i, e in enumerate(dp.log) if e[0] == "flow" and e[1][:2] == ("delete", key)]
    assert len(adds) == 1 and len(dels) == 1 and adds[0] < dels[0]


def test_a_new_reconciliation_waits_until_the_running_one_has_stopped():
    dp = FakeDatapath()
    proxy = make_proxy(dp, window=128, depth=1)
    fib, groups = routes(2000, 7), [nexthop(7, 2)]
    load(proxy, dp, fib, groups)
    dp.hold = True
    reconcile_from(proxy, dp, b"", [])
    wait_held(dp)
    resync(proxy, dp, fib, groups)  # rfserver resent its full state
    assert ("stats",) not in dp.log  # not while the switch is half-written
    dp.release()
    deadline = time.monotonic() + 10
    while ("stats",) not in dp.log:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    stats = dp.log.index(("stats",))
    assert all(e[0] != "flow" for e in dp.log[stats:])
    # Stopped early: not everything was written, and the new reconciliation's
    # request for the switch's flows is out (its replies will complete it).
    written = sum(1 for e in dp.log if e[0] == "flow")
    assert 0 < written < 2000 + 6
    assert len(dp.requests[OFP.OFPMP_FLOW]) == 2 and not proxy.core.streams


def test_a_nexthopmod_for_a_stale_group_waits_until_the_group_is_deleted():
    """A stale group on the switch must be deleted before a route re-adds it.

    Otherwise the ADD reaches a switch that still has the group (OpenFlow:
    "group exists", the stale buckets stay) and the reconciliation, seeing the
    group desired again, no longer deletes it. A next hop's shard is added by
    the first route through it (fibwriter): 10.1.52.0/24 is on shard 0, group 9.
    """
    dp = FakeDatapath()
    proxy = make_proxy(dp, window=128, depth=1)
    load(proxy, dp, routes(2000, 7), [nexthop(7, 2)])
    dp.groups = {9: OFP.OFPGT_INDIRECT}
    stale_group = ofmsg.group_mod(DP, of.GroupSpec(9, False, (((of.Output(5),), 1),)), "add")
    dp.hold = True
    reconcile_from(proxy, dp, b"", [stale_group])
    wait_held(dp)
    route = FibEntry(prefix="10.1.52.0/24", kind=RouteKind.UNICAST, nexthop_id=9)
    assert of.route_group(9, route.prefix) == 9

    def readd() -> None:
        proxy.server_message_handler(nexthop(9, 3))
        proxy.server_message_handler(p.FibMod(mod=p.Mod.ADD, ct_id=1, dp_id=dp.id, entries=[route]))

    thread = threading.Thread(target=readd)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive() and 9 not in proxy.core.state[dp.id].groups  # held back
    dp.release()
    wait_done(proxy)
    thread.join(10)
    assert not thread.is_alive()
    commands = [e[1] for e in dp.log if e[0] == "group" and e[2] == 9]
    assert commands == [OFP.OFPGC_DELETE, OFP.OFPGC_ADD]
    assert dp.groups[9] == OFP.OFPGT_INDIRECT and 9 in proxy.core.state[dp.id].shards
    assert dp.flows[(1, 1024, "eth_type=2048,ipv4_dst=10.1.52.0/255.255.255.0")][0] == "group:9"

"""FibMods through the chunked writer leave a switch holding exactly the desired FIB flows.

The bytes are decoded with os-ken's own parser and applied to a model switch
(ADD replaces a flow with the same table, priority and match; DELETE_STRICT
removes it; a flow applying a group the switch lacks is refused, as Open
vSwitch refuses it), which must end up equal to the flows of the proxy's FIB
state, with exactly the next-hop shards its routes made.
"""

from __future__ import annotations

import struct
import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import ofmsg
from routeflow.proxy import openflow as of
from routeflow.proxy.core import DatapathState
from routeflow.proxy.fibwriter import fib_chunks
from routeflow.rflib.protocol import Bucket, FibEntry, FibMod, Mod, NextHopMod, RouteKind


class _Datapath:
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


DP = _Datapath()


def slow(spec: of.FlowSpec, delete: bool) -> bytes:
    msg = ofmsg.flow_mod(DP, spec, delete)
    msg.set_xid(1)
    msg.serialize()
    return bytes(msg.buf)


def group_add(spec: of.GroupSpec) -> bytes:
    msg = ofmsg.group_mod(DP, spec, "add")
    msg.set_xid(1)
    msg.serialize()
    return bytes(msg.buf)


def nexthop(nexthop_id: int) -> NextHopMod:
    mac = f"06:00:00:00:00:{nexthop_id:02x}"
    bucket = Bucket(dp_port=2, src_hwaddress="02:00:00:00:00:01", dst_hwaddress=mac)
    return NextHopMod(mod=Mod.ADD, ct_id=1, dp_id=1, nexthop_id=nexthop_id, buckets=[bucket])


def with_nexthops(*ids: int) -> DatapathState:
    """A desired state whose next hops ``ids`` rfserver has described (no route yet)."""
    state = DatapathState()
    state.groups = {n: nexthop(n) for n in ids}
    return state


def apply(switch: dict, data: bytes, groups: dict | None = None) -> int:
    """Apply flow-mods (and group-adds, into ``groups``: group id -> raw buckets) to ``switch``."""
    off = n = 0
    while off < len(data):
        _v, kind, length, xid = struct.unpack_from("!BBHI", data, off)
        if kind == 15:  # OFPT_GROUP_MOD
            assert groups is not None
            command, _type, group_id = struct.unpack_from("!HBxI", data, off + 8)
            assert command == ofproto_v1_3.OFPGC_ADD and group_id not in groups
            groups[group_id] = data[off + 16 : off + length]  # its buckets
            off += length
            n += 1
            continue
        assert kind == 14  # flow-mods only
        fm = ofproto_v1_3_parser.OFPFlowMod.parser(
            DP, 4, kind, length, xid, data[off : off + length]
        )
        key = (fm.table_id, fm.priority, ofmsg.format_match(fm.match))
        if fm.command == ofproto_v1_3.OFPFC_ADD:
            used = [
                a.group_id
                for i in fm.instructions
                for a in getattr(i, "actions", ())
                if isinstance(a, ofproto_v1_3_parser.OFPActionGroup)
            ]
            if groups is not None and any(g not in groups for g in used):
                off += length  # refused: OFPBAC_BAD_OUT_GROUP
                n += 1
                continue
            switch[key] = ofmsg.format_instructions(fm.instructions)
        else:
            assert fm.command == ofproto_v1_3.OFPFC_DELETE_STRICT
            switch.pop(key, None)
        off += length
        n += 1
    return n


def desired(fib: dict[str, FibEntry]) -> dict:
    out = {}
    for entry in fib.values():
        for spec in of.fib_flows(entry):
            fm = ofmsg.flow_mod(DP, spec, False)
            out[(spec.table, spec.priority, ofmsg.format_match(fm.match))] = (
                ofmsg.format_instructions(fm.instructions)
            )
    return out


def fib_mods(prefixes: list[str]):
    """FibMods (adds twice as likely as deletes) of entries of every kind over ``prefixes``."""
    entries = st.builds(
        lambda prefix, kind, nh, port: FibEntry(
            prefix=prefix,
            kind=kind,
            nexthop_id=nh if kind == RouteKind.UNICAST else 0,
            dp_port=port if kind != RouteKind.UNICAST else 0,
        ),
        st.sampled_from(prefixes),
        st.sampled_from(list(RouteKind)),
        st.integers(1, 3),
        st.integers(1, 2),
    )
    return st.builds(
        lambda mod, es: FibMod(mod=mod, ct_id=1, dp_id=1, entries=es),
        st.sampled_from([Mod.ADD, Mod.ADD, Mod.DELETE]),
        st.lists(entries, max_size=8),
    )


def replay_ends_with_the_desired_flows(sequence: list[FibMod], chunk: int) -> None:
    """Every packed chunk applied to a model switch: it ends holding exactly the desired
    flows, and a group for each shard the routes made (each made before its first flow)."""
    state = with_nexthops(1, 2, 3)
    switch: dict = {}
    groups: dict = {}
    lock = threading.RLock()
    for msg in sequence:
        chunks = fib_chunks(lambda: state, msg, slow, group_add=group_add, lock=lock, chunk=chunk)
        for data, count in chunks:
            assert apply(switch, data, groups) == count
    assert switch == desired(state.fib)
    assert set(groups) == state.shards and of.used_groups(state.fib.values()) <= state.shards


mods = fib_mods(
    ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "0.0.0.0/0", "192.0.2.0/25"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(mods, max_size=8), st.integers(1, 4))
def test_switch_ends_with_exactly_the_desired_flows(sequence, chunk):
    replay_ends_with_the_desired_flows(sequence, chunk)


def test_routes_take_the_fast_path_and_state_follows():
    state = with_nexthops(1, 2, 3)
    fib = state.fib
    calls = []

    def counting_slow(spec, delete):
        calls.append(spec)
        return slow(spec, delete)

    add = FibMod(
        mod=Mod.ADD,
        ct_id=1,
        dp_id=1,
        entries=[
            FibEntry(prefix=f"100.{i >> 8}.{i & 255}.0/24", kind=RouteKind.UNICAST, nexthop_id=1)
            for i in range(10_000)
        ],
    )
    out = list(fib_chunks(lambda: state, add, counting_slow))
    assert sum(n for _d, n in out) == 10_000 and len(out) == 3 and not calls
    assert sum(len(d) for d, _n in out) == 10_000 * 88
    assert len(fib) == 10_000
    delete = FibMod(mod=Mod.DELETE, ct_id=1, dp_id=1, entries=add.entries[:5000])
    out = list(fib_chunks(lambda: state, delete, counting_slow))
    assert sum(n for _d, n in out) == 5000 and len(fib) == 5000 and not calls


def test_without_a_switch_the_state_is_still_kept():
    state = DatapathState()
    fib = state.fib
    msg = FibMod(
        mod=Mod.ADD,
        ct_id=1,
        dp_id=1,
        entries=[FibEntry(prefix="172.31.1.0/24", kind=RouteKind.CONNECTED, dp_port=1)],
    )
    assert list(fib_chunks(lambda: state, msg, lambda spec, delete: None)) == []
    assert list(fib) == ["172.31.1.0/24"]


def test_the_default_route_goes_through_os_ken():
    """Its match has no ipv4_dst (a switch stores 0/0 so): not a packed flow-mod."""
    state = with_nexthops(1, 2, 3)
    fib = state.fib
    calls = []

    def counting_slow(spec, delete):
        calls.append((spec.match, delete))
        return slow(spec, delete)

    entry = FibEntry(prefix="0.0.0.0/0", kind=RouteKind.UNICAST, nexthop_id=3)
    for mod in (Mod.ADD, Mod.DELETE):
        msg = FibMod(mod=mod, ct_id=1, dp_id=1, entries=[entry])
        assert sum(n for _d, n in fib_chunks(lambda: state, msg, counting_slow)) == 1
    assert calls == [((("eth_type", 0x0800),), False), ((("eth_type", 0x0800),), True)]
    assert fib == {}


# --- IPv6 (and both families in one FIB) -------------------------------------------------------

dual_mods = fib_mods(
    [
        "10.1.2.0/24",
        "0.0.0.0/0",
        "::/0",
        "2001:db8::/32",
        "2001:db8:1::/64",
        "2001:db8:1::1/128",
        "fe80::1/128",
        "::ffff:c000:200/120",  # Python's form of an IPv4-mapped prefix
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(dual_mods, max_size=8), st.integers(1, 4))
def test_dual_stack_switch_ends_with_exactly_the_desired_flows(sequence, chunk):
    """Packed IPv6 flow-mods replace and delete exactly the flows os-ken's would
    (a route turning into a local address and back, deletes of either kind)."""
    replay_ends_with_the_desired_flows(sequence, chunk)


def test_ipv6_routes_take_the_fast_path_too():
    state = with_nexthops(1, 2, 3)
    fib = state.fib
    calls = []

    def counting_slow(spec, delete):
        calls.append(spec)
        return slow(spec, delete)

    entries = [
        FibEntry(prefix=f"2001:db8:{i:x}::/48", kind=RouteKind.UNICAST, nexthop_id=1)
        for i in range(5000)
    ] + [
        FibEntry(prefix=f"2001:db8::{i:x}/128", kind=RouteKind.UNICAST, nexthop_id=2)
        for i in range(5000)
    ]
    add = FibMod(mod=Mod.ADD, ct_id=1, dp_id=1, entries=entries)
    out = list(fib_chunks(lambda: state, add, counting_slow))
    assert sum(n for _d, n in out) == 10_000 and not calls
    assert sum(len(d) for d, _n in out) == 5000 * 112 + 5000 * 96
    switch: dict = {}
    for data, _n in out:
        apply(switch, data)
    assert switch == desired(fib)
    delete = FibMod(mod=Mod.DELETE, ct_id=1, dp_id=1, entries=entries[::2])
    for data, _n in fib_chunks(lambda: state, delete, counting_slow):
        apply(switch, data)
    assert not calls and len(fib) == 5000 and switch == desired(fib)


def test_the_ipv6_default_route_goes_through_os_ken():
    state = with_nexthops(1, 2, 3)
    fib = state.fib
    calls = []

    def counting_slow(spec, delete):
        calls.append((spec.match, delete))
        return slow(spec, delete)

    entry = FibEntry(prefix="::/0", kind=RouteKind.UNICAST, nexthop_id=3)
    for mod in (Mod.ADD, Mod.DELETE):
        msg = FibMod(mod=mod, ct_id=1, dp_id=1, entries=[entry])
        assert sum(n for _d, n in fib_chunks(lambda: state, msg, counting_slow)) == 1
    assert calls == [((("eth_type", 0x86DD),), False), ((("eth_type", 0x86DD),), True)]
    assert fib == {}


# --- next-hop shards made by their first route ------------------------------------------------


def messages(data: bytes) -> list[tuple[str, int]]:
    """("group", group id) per group-add and ("flow", group applied) per route flow-add."""
    out = []
    off = 0
    while off < len(data):
        _v, kind, length, _xid = struct.unpack_from("!BBHI", data, off)
        if kind == 15:
            out.append(("group", struct.unpack_from("!I", data, off + 12)[0]))
        else:
            switch: dict = {}
            apply(switch, data[off : off + length])
            ((_key, actions),) = switch.items()
            out.append(("flow", int(actions.rpartition("group:")[2])))
        off += length
    return out


def test_a_route_on_a_shard_no_route_used_gets_the_group_first():
    state = with_nexthops(7)
    a, b = "10.1.0.0/16", "10.2.0.0/16"
    assert of.route_group(7, a) != of.route_group(7, b)
    route = [FibEntry(prefix=a, kind=RouteKind.UNICAST, nexthop_id=7)]
    add = FibMod(mod=Mod.ADD, ct_id=1, dp_id=1, entries=route)
    ((data, count),) = fib_chunks(lambda: state, add, slow, group_add=group_add)
    # A next hop with one route has one group: the route's shard, before its flow.
    assert messages(data) == [("group", of.route_group(7, a)), ("flow", of.route_group(7, a))]
    assert count == 2 and state.shards == {of.route_group(7, a)}
    # Again (the same route, and one on another shard): only the new shard is added.
    more = [*route, FibEntry(prefix=b, kind=RouteKind.UNICAST, nexthop_id=7)]
    add = FibMod(mod=Mod.ADD, ct_id=1, dp_id=1, entries=more)
    _first, (data, count) = fib_chunks(lambda: state, add, slow, group_add=group_add, chunk=1)
    assert messages(_first[0]) == [("flow", of.route_group(7, a))]
    assert messages(data) == [("group", of.route_group(7, b)), ("flow", of.route_group(7, b))]
    assert state.shards == {of.route_group(7, a), of.route_group(7, b)}
    # Deleting the routes leaves the shards (they go with their next hop: core.py).
    delete = FibMod(mod=Mod.DELETE, ct_id=1, dp_id=1, entries=more)
    assert [n for _d, n in fib_chunks(lambda: state, delete, slow, group_add=group_add)] == [2]
    assert len(state.shards) == 2


def test_a_default_route_makes_its_shard_too_and_an_unknown_next_hop_none():
    state = with_nexthops(3)
    for prefix in ("0.0.0.0/0", "::/0"):
        add = FibMod(
            mod=Mod.ADD,
            ct_id=1,
            dp_id=1,
            entries=[FibEntry(prefix=prefix, kind=RouteKind.UNICAST, nexthop_id=3)],
        )
        ((data, count),) = fib_chunks(lambda: state, add, slow, group_add=group_add)
        gid = of.route_group(3, prefix)
        assert messages(data) == [("group", gid), ("flow", gid)] and count == 2
    assert state.shards == {of.route_group(3, "0.0.0.0/0"), of.route_group(3, "::/0")}
    unknown = FibMod(
        mod=Mod.ADD,
        ct_id=1,
        dp_id=1,
        entries=[FibEntry(prefix="10.0.0.0/8", kind=RouteKind.UNICAST, nexthop_id=9)],
    )
    ((data, count),) = fib_chunks(lambda: state, unknown, slow, group_add=group_add)
    assert count == 1 and len(state.shards) == 2

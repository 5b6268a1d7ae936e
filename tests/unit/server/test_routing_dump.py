"""RoutingTable.dump_chunks: the full state for a proxy, streamed a chunk at a time.

The chunks together say what the one-piece dump said (the reference below is
the dump as it was before it was streamed); each chunk is bounded; and chunks
interleaved with the messages of changes made between them leave a receiver
with the table as it ends.
"""

from __future__ import annotations

import tracemalloc
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import codec
from routeflow.rflib.protocol import (
    FibEntry,
    FibMod,
    Message,
    Mod,
    Neighbour,
    NextHop,
    NextHopMod,
    Resync,
    Route,
    RouteKind,
)
from routeflow.server.routing import FIB_CHUNK, Binding, RoutingTable, _fib_mods

CT = 1
VMS = (0x5, 0x6)
PREFIXES = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "172.31.1.2/32",
    "172.31.2.0/24",
    "0.0.0.0/0",
    "10.1.2.3/32",
    "100.64.0.0/24",
    "100.64.1.0/24",
    "2001:db8:5::/48",
    "fd00::/8",
]
GATEWAYS = ["172.31.1.2", "172.31.2.2", "10.1.2.3", "2001:db8:f::100"]

nexthops = st.builds(
    lambda port, gw, weight: NextHop(vm_port=port, gateway=gw, weight=weight),
    st.integers(1, 3),
    st.sampled_from([*GATEWAYS, None]),
    st.integers(0, 2),
)
routes = st.builds(
    lambda prefix, kind, nhs: Route(prefix=prefix, kind=kind, nexthops=nhs),
    st.sampled_from(PREFIXES),
    st.sampled_from(list(RouteKind)),
    st.lists(nexthops, min_size=1, max_size=2),
)
neighbours = st.builds(
    lambda port, ip, mac: Neighbour(vm_port=port, address=ip, hwaddress=mac),
    st.integers(1, 3),
    st.sampled_from(GATEWAYS),
    st.sampled_from([None, "aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"]),
)
#: A switch is mirrored by one VM (the mapping file refuses two: server/config.py),
#: so each VM's ports bind to its own switch, under either controller.
SWITCH_OF = {0x5: 0x99, 0x6: 0x98}


def bindings(vm: int):
    return st.one_of(
        st.none(),
        st.builds(
            lambda ct, port, mac: Binding(ct, SWITCH_OF[vm], port, mac),
            st.sampled_from([CT, CT, 2]),
            st.integers(1, 3),
            st.sampled_from(["02:00:00:00:00:01", "02:00:00:00:00:02"]),
        ),
    )


vms = st.sampled_from(VMS)
operations = st.one_of(
    st.tuples(st.just("add"), vms, st.lists(routes, max_size=6)),
    st.tuples(st.just("delete"), vms, st.lists(st.sampled_from(PREFIXES), max_size=4)),
    st.tuples(st.just("neigh"), vms, st.lists(neighbours, max_size=3)),
    vms.flatmap(
        lambda vm: st.tuples(
            st.just("bind"), st.just(vm), st.tuples(st.integers(1, 3), bindings(vm))
        )
    ),
    st.tuples(st.just("forget"), vms, st.none()),
)


def apply(table: RoutingTable, op: str, vm: int, arg) -> list[Message]:
    if op == "add":
        return table.add_routes(vm, arg)
    if op == "delete":
        return table.delete_routes(vm, arg)
    if op == "neigh":
        return table.set_neighbours(vm, arg)
    if op == "bind":
        return table.bind(vm, arg[0], arg[1])
    return table.forget_vm(vm)


def old_dump(t: RoutingTable, ct_id: int, dp_id: int | None = None) -> list[Message]:
    """RoutingTable.dump as it was: the whole list built at once."""
    out: list[Message] = []
    for key, nh in sorted(t._nexthops.items(), key=lambda kv: kv[1].nexthop_id):
        if key[0] == ct_id and (dp_id is None or key[1] == dp_id):
            out.append(
                NextHopMod(
                    mod=Mod.ADD,
                    ct_id=key[0],
                    dp_id=key[1],
                    nexthop_id=nh.nexthop_id,
                    buckets=list(nh.buckets),
                )
            )
    by_dp: dict[tuple[int, int], list[FibEntry]] = defaultdict(list)
    for installed in t._installed.values():
        for prefix, inst in installed.items():
            if inst.ct_id == ct_id and (dp_id is None or inst.dp_id == dp_id):
                by_dp[(inst.ct_id, inst.dp_id)].append(inst.entry(prefix))
    for (ct, dp), entries in sorted(by_dp.items()):
        out += _fib_mods(Mod.ADD, ct, dp, entries)
    return out


def normal(msgs: list[Message]) -> tuple[list[NextHopMod], dict]:
    """The next hops in order, and each switch's FIB entries in order."""
    nhs = [m for m in msgs if isinstance(m, NextHopMod)]
    fib: dict[tuple[int, int], list[FibEntry]] = defaultdict(list)
    for m in msgs:
        if isinstance(m, FibMod):
            fib[(m.ct_id, m.dp_id)].extend(m.entries)
    return nhs, dict(fib)


class Receiver:
    """What a proxy makes of rfserver's messages between Resync begin and end."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, int], NextHopMod] = {}
        self.fib: dict[tuple[int, str], FibEntry] = {}

    def take(self, msgs: list[Message], ct_id: int) -> None:
        for m in msgs:
            if isinstance(m, Resync) and m.phase == "begin":
                self.groups.clear()
                self.fib.clear()
            elif isinstance(m, NextHopMod) and m.ct_id == ct_id:
                if m.mod == Mod.DELETE:
                    self.groups.pop((m.dp_id, m.nexthop_id), None)
                else:
                    self.groups[(m.dp_id, m.nexthop_id)] = m
            elif isinstance(m, FibMod) and m.ct_id == ct_id:
                for e in m.entries:
                    if m.mod == Mod.DELETE:
                        self.fib.pop((m.dp_id, e.prefix), None)
                    else:
                        self.fib[(m.dp_id, e.prefix)] = e

    def state(self) -> tuple[dict, dict]:
        groups = {k: list(m.buckets) for k, m in self.groups.items()}
        return groups, dict(self.fib)


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=14), st.integers(1, 4), st.sampled_from([None, 0x99]))
def test_the_chunks_say_what_the_whole_dump_said(ops, chunk, dp_id):
    t = RoutingTable()
    for op, vm, arg in ops:
        apply(t, op, vm, arg)
    chunks = list(t.dump_chunks(CT, dp_id, chunk=chunk))
    for c in chunks:
        assert c  # no empty chunk
        assert sum(len(m.entries) if isinstance(m, FibMod) else 1 for m in c) <= chunk
    flat = [m for c in chunks for m in c]
    assert normal(flat) == normal(old_dump(t, CT, dp_id))
    assert normal(t.dump(CT, dp_id)) == normal(old_dump(t, CT, dp_id))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(operations, max_size=10),
    st.lists(st.lists(operations, max_size=3), max_size=8),
    st.integers(1, 3),
)
def test_changes_between_chunks_leave_the_receiver_with_the_final_table(before, between, chunk):
    """The server writes a change's messages before the next chunk is made (service._apply)."""
    t = RoutingTable()
    for op, vm, arg in before:
        apply(t, op, vm, arg)
    rx = Receiver()
    rx.take([Resync(phase="begin")], CT)
    pending = list(between)
    for c in t.dump_chunks(CT, chunk=chunk):
        rx.take(c, CT)
        for op, vm, arg in pending.pop(0) if pending else []:
            rx.take(apply(t, op, vm, arg), CT)
    for ops in pending:
        for op, vm, arg in ops:
            rx.take(apply(t, op, vm, arg), CT)
    fresh = Receiver()
    fresh.take([Resync(phase="begin"), *old_dump(t, CT)], CT)
    assert rx.state() == fresh.state()
    # and what it holds is consistent: every route's group exists
    groups, fib = rx.state()
    for (dp, _prefix), e in fib.items():
        if e.kind == RouteKind.UNICAST:
            assert (dp, e.nexthop_id) in groups


def _full_table(n: int) -> RoutingTable:
    t = RoutingTable()
    t.bind(VMS[0], 1, Binding(CT, 0x99, 1, "02:00:00:00:00:01"))
    gw = Neighbour(vm_port=1, address="172.31.1.2", hwaddress="aa:bb:cc:0:0:1")
    t.set_neighbours(VMS[0], [gw])
    nhs = [NextHop(vm_port=1, gateway="172.31.1.2")]
    t.add_routes(
        VMS[0],
        [Route(prefix=f"{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24", nexthops=nhs)
         for i in range(n)],
    )  # fmt: skip
    return t


def test_a_chunk_is_bounded_in_entries_and_bytes():
    n = 2 * FIB_CHUNK + 7
    t = _full_table(n)
    chunks = list(t.dump_chunks(CT))
    assert [sum(len(m.entries) for m in c if isinstance(m, FibMod)) for c in chunks] == [
        0,  # the next hop
        FIB_CHUNK,
        FIB_CHUNK,
        7 + 1,  # and the gateway's host route
    ]
    # about 65 bytes an entry on the wire: 650 kB a chunk, whatever the table
    assert all(len(codec.encode_many(c)) < FIB_CHUNK * 80 for c in chunks)


def test_making_a_chunk_takes_memory_of_a_chunk_not_of_the_table():
    n = 60_000
    t = _full_table(n)
    tracemalloc.start()
    try:
        gen = t.dump_chunks(CT, chunk=1000)
        next(gen)  # the next hops
        tracemalloc.reset_peak()
        first = next(gen)
        _, chunk_peak = tracemalloc.get_traced_memory()
        del first
        tracemalloc.reset_peak()
        whole = t.dump(CT)
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(m.entries) for m in whole if isinstance(m, FibMod)) == n + 1
    # One chunk: 1000 entries (about 100 bytes each) and the list of the VM's
    # prefixes it walks (8 bytes a route); the whole dump holds every entry.
    assert chunk_peak < 1000 * 200 + n * 10
    assert chunk_peak * 8 < whole_peak

"""reconcile.plan_switch: the plan of desired_flows + diff_flows + plan_flows, without
the desired table of the whole FIB.

Same random switches as test_reconcile_write (desired flows missing, changed or
someone else's, stale ones, a wiped switch): the streamed comparison must add,
delete and leave alone exactly what the three-step one did. And it must not
build a table per route: its memory at 20k routes stays a fraction of the old.
"""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.proxy import ofmsg, reconcile
from routeflow.proxy import openflow as of
from routeflow.rflib.protocol import FibEntry, RouteKind

from .test_reconcile import base_specs, dual_entries, entries, router_ports
from .test_reconcile_write import perturbed_switch, switch_of


def _actual(flow_mods) -> reconcile.ActualFlows:
    _switch, body = switch_of(flow_mods)
    actual: reconcile.ActualFlows = {}
    reconcile.read_flow_stats(body, 0, len(body), actual, ofmsg.parse_flow_stats_entry)
    return actual


def _old(specs, fib, actual):
    desired = reconcile.desired_flows(specs, fib)
    diff = reconcile.diff_flows(desired, actual, of.is_ours)
    return reconcile.plan_flows(diff, desired, actual), diff


def _same_plan(rports, fib, data, stale_entries) -> None:
    fib = list({e.prefix: e for e in fib}.values())  # the proxy's FIB: one entry a prefix
    actual = _actual(perturbed_switch(data, rports, fib, stale_entries))
    specs = base_specs(rports)
    old, diff = _old(specs, fib, actual)
    new, counts = reconcile.plan_switch(specs, fib, dict(actual), of.is_ours)
    assert (counts.add, counts.delete, counts.unchanged) == (
        len(diff.add),
        len(diff.delete),
        diff.unchanged,
    )
    # In the FIB's order, but for prefixes inet_ntop writes otherwise than Python
    # (``::1:0`` as ``::0.1.0.0``), which take the general path, after the others.
    assert sorted(new.add_routes, key=repr) == sorted(old.add_routes, key=repr)
    assert new.add_now == old.add_now
    assert sorted(new.delete_now) == sorted(old.delete_now)
    assert sorted(new.delete_fib) == sorted(old.delete_fib)


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(entries, max_size=20), st.data())
def test_the_streamed_plan_is_the_three_step_one(rports, fib, data):
    _same_plan(rports, fib, data, entries)


@settings(max_examples=300, deadline=None)
@given(router_ports, st.lists(dual_entries, max_size=20), st.data())
def test_the_streamed_plan_is_the_three_step_one_dual_stack(rports, fib, data):
    _same_plan(rports, fib, data, dual_entries)


def test_route_flows_are_consumed_and_stale_ones_deleted():
    keep = FibEntry(prefix="10.1.0.0/16", kind=RouteKind.UNICAST, nexthop_id=3)
    moved = FibEntry(prefix="2001:db8:1::/48", kind=RouteKind.UNICAST, nexthop_id=4)
    gone = FibEntry(prefix="10.9.0.0/16", kind=RouteKind.UNICAST, nexthop_id=3)
    new = FibEntry(prefix="10.2.0.0/24", kind=RouteKind.UNICAST, nexthop_id=3)
    was = FibEntry(prefix=moved.prefix, kind=RouteKind.UNICAST, nexthop_id=9)
    on_switch = [*of.base_flows(), *of.fib_flows(keep), *of.fib_flows(was), *of.fib_flows(gone)]
    actual = _actual([ofmsg.flow_mod(ofmsg_dp(), s, False) for s in on_switch])
    plan, counts = reconcile.plan_switch(of.base_flows(), [keep, moved, new], actual, of.is_ours)
    assert plan.add_routes == [moved, new]
    assert [k for k, _m in plan.delete_fib] == [
        (of.TABLE_FIB, of.PRIO_ROUTE_BASE + 16, "eth_type=2048,ipv4_dst=10.9.0.0/255.255.0.0")
    ]
    assert (counts.add, counts.delete, counts.unchanged) == (2, 1, len(of.base_flows()) + 1)
    # The route flows that were met were consumed; the classifier's were compared in place.
    routes_left = [k for k in actual if k[0] == of.TABLE_FIB and k[1] > of.PRIO_ROUTE_BASE]
    assert routes_left == [plan.delete_fib[0][0]]


def ofmsg_dp():
    from .test_reconcile import DP

    return DP


def test_no_desired_table_per_route():
    n = 20_000
    fib = [
        FibEntry(prefix=f"{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24",
                 kind=RouteKind.UNICAST, nexthop_id=1 + i % 4)
        for i in range(n)
    ]  # fmt: skip
    specs = list(of.base_flows())
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        plan, counts = reconcile.plan_switch(specs, fib, {}, of.is_ours)
        _, new_peak = tracemalloc.get_traced_memory()
        groups = len(plan.groups)  # 4 next hops' shards (openflow.GROUP_SHARDS)
        del plan
        tracemalloc.reset_peak()
        old, _diff = _old(specs, fib, {})
        _, old_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.add == len(old.add_routes) + len(old.add_now) == n + len(specs)
    # The streamed plan: a list of the entries to add (8 bytes each) and small
    # change, and a text per group (about 260 bytes each); the old one built a key,
    # a text and a tuple per route.
    assert groups == 4 * of.GROUP_SHARDS
    assert new_peak < n * 20 + groups * 300
    assert new_peak * 10 < old_peak

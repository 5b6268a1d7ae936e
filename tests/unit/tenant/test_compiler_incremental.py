"""The incremental node compiler: after every delta it holds exactly what a full compile
of the same snapshot gives, and its diffs rebuild that on a switch."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import ofsim
from routeflow.tenant import sample
from routeflow.tenant.compiler import NodeContext, compile_node
from routeflow.tenant.incremental import NodeCompiler
from routeflow.tenant.model import (
    KIND_OF,
    AddressPair,
    Change,
    Cloud,
    FixedIP,
    HostRoute,
    Kind,
    Object,
    Port,
    SecurityGroupRule,
)

BASE = sample.objects()
BY_ID = {(KIND_OF[type(o)], o.id): o for o in BASE}


def _variants() -> list[tuple[Kind, str, Object | None]]:
    """Each sample object, a few changed versions of it, and its deletion."""
    out: list[tuple[Kind, str, Object | None]] = []
    rep = msgspec.structs.replace
    for (kind, oid), obj in BY_ID.items():
        out.append((kind, oid, obj))
        out.append((kind, oid, None))
        if isinstance(obj, Port) and obj.is_vif:
            net_ip = obj.fixed_ips[0].ip_address.rsplit(".", 1)[0]
            other_ip = (FixedIP(obj.fixed_ips[0].subnet_id, f"{net_ip}.7"),)
            out += [
                (kind, oid, rep(obj, binding_host_id=h)) for h in ("", "n1", "n2", "n3", "gone")
            ]
            out += [
                (kind, oid, rep(obj, admin_state_up=False)),
                (kind, oid, rep(obj, port_security_enabled=False)),
                (kind, oid, rep(obj, security_groups=())),
                (kind, oid, rep(obj, security_groups=("sg-tenant-a", "sg-tenant-b"))),
                (kind, oid, rep(obj, fixed_ips=other_ip)),
                (kind, oid, rep(obj, allowed_address_pairs=(AddressPair(f"{net_ip}.0/28"),))),
                (kind, oid, rep(obj, network_id="A1" if obj.network_id != "A1" else "A2")),
            ]  # fmt: skip
        elif kind is Kind.NETWORK:
            out += [
                (kind, oid, rep(obj, admin_state_up=False)),
                (kind, oid, rep(obj, segmentation_id=obj.segmentation_id + 1000)),  # type: ignore[union-attr]
            ]  # fmt: skip
        elif kind is Kind.SUBNET:
            out.append((kind, oid, rep(obj, enable_dhcp=False)))
        elif kind is Kind.ROUTER:
            routes = (
                HostRoute("192.0.2.0/24", "10.0.1.12"),
                HostRoute("198.18.0.0/16", "10.0.2.13"),
            )
            out.append((kind, oid, rep(obj, routes=routes)))
            out.append((kind, oid, rep(obj, admin_state_up=False)))
        elif kind is Kind.NODE:
            out.append((kind, oid, rep(obj, tunnel_ip="203.0.113.9")))
        elif kind is Kind.SECURITY_GROUP:
            tcp = SecurityGroupRule(
                id=f"{oid}-ssh", direction="ingress", protocol="tcp", port_range_min=22,
                port_range_max=23, remote_group_id="sg-tenant-b", key=900 + len(out),
            )  # fmt: skip
            rules = obj.rules  # type: ignore[union-attr]
            out += [
                (kind, oid, rep(obj, rules=(*rules, tcp))),
                (kind, oid, rep(obj, rules=rules[:2])),
                (kind, oid, rep(obj, key=obj.key + 50)),  # type: ignore[union-attr]
            ]
    return out


VARIANTS = _variants()
PORTS = sorted(oid for (kind, oid), o in BY_ID.items() if kind is Kind.PORT and o.is_vif)  # type: ignore[union-attr]
step = st.one_of(
    st.tuples(st.just("obj"), st.integers(0, len(VARIANTS) - 1)),
    st.tuples(st.just("bind"), st.sampled_from(PORTS), st.sampled_from([None, 1, 2, 7])),
    st.tuples(st.just("tunnel"), st.sampled_from([100, 101])),
)


def _full_then(order: list[Object]) -> list[Change]:
    return sample.changes(order)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(sample.NODES)),
    st.permutations(BASE),
    st.lists(step, max_size=40),
    st.booleans(),
)
def test_deltas_applied_incrementally_equal_a_full_compile_at_every_step(
    node, order, steps, pass_touched
):
    cloud, inc = Cloud(), NodeCompiler()
    bindings = dict(sample.bindings(node))
    tunnel = 100
    switch: set[ofsim.Flow] = set()

    def check(touched: set[tuple[Kind, str]] | None) -> None:
        ctx = NodeContext(node, dict(bindings), tunnel)
        added, deleted = inc.update(cloud, ctx, touched if pass_touched else None)
        assert not added & deleted
        switch.difference_update(deleted)
        switch.update(added)
        want = compile_node(cloud, ctx)
        assert inc.flows == want
        assert switch == want

    # The objects arrive one by one (as deltas), then random changes, deletes, re-creates.
    for change in _full_then(order):
        cloud = cloud.apply(change)
        check({(change.kind, change.id)})
    for item in steps:
        if item[0] == "obj":
            kind, oid, obj = VARIANTS[item[1]]
            cloud = cloud.apply(Change(kind=kind, id=oid, revision=cloud.revision + 1, obj=obj))
            check({(kind, oid)})
        elif item[0] == "bind":
            _, pid, ofport = item
            if ofport is None:
                bindings.pop(pid, None)
            else:
                bindings[pid] = ofport
            check(set())
        else:
            tunnel = item[1]
            check(set())


@settings(max_examples=20, deadline=None)
@given(st.permutations(BASE), st.sampled_from(sorted(sample.NODES)))
def test_a_full_state_of_equal_objects_recompiles_nothing(order, node):
    ctx = NodeContext(node, sample.bindings(node))
    cloud = Cloud().apply_all(sample.changes(order))
    inc = NodeCompiler()
    inc.update(cloud, ctx)
    again = Cloud.from_changes(cloud.revision, msgspec.msgpack.decode(
        msgspec.msgpack.encode(cloud.changes()), type=list[Change]))  # fmt: skip
    assert inc.update(again, ctx) == (frozenset(), frozenset())
    assert inc.flows == compile_node(cloud, ctx)


def test_a_port_change_recompiles_its_own_fragments_only():
    node = "n1"
    ctx = NodeContext(node, sample.bindings(node))
    cloud = sample.cloud()
    inc = NodeCompiler()
    inc.update(cloud, ctx)
    port = cloud.ports["a4"]
    moved = msgspec.structs.replace(port, fixed_ips=(FixedIP("sA1", "10.0.1.99"),))
    cloud = cloud.apply(Change(kind=Kind.PORT, id="a4", revision=cloud.revision + 1, obj=moved))
    added, deleted = inc.update(cloud, ctx, {(Kind.PORT, "a4")})
    assert added and deleted
    assert inc.recompiled <= 6  # its own, known, and the remote-group rule's member
    assert inc.flows == compile_node(cloud, ctx)

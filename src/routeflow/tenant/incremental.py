"""The tenant flow compiler, incrementally: one node's fragments kept up to date (pure).

``NodeCompiler.update(cloud, node, touched)`` moves to the next snapshot and returns
the flows added and deleted. It recompiles only the fragments (compiler.Fragments) that
read a touched object or a changed binding, found through the ``Index``, and merges
conjunctive flows per (table, priority, match) as ``secgroups.merge`` does, so its
``flows`` equal ``compile_node`` on the same snapshot after every update (a hypothesis
test checks it at every step of random deltas). A change of the node's name or tunnel
port, or of a kind it does not know (floating IPs), rebuilds everything; so does any
change on a gateway node that serves a router (its NAT, tenant/nat.py, reads routers,
ports and floating IPs across tenants; gateway nodes are few). Elsewhere a change of a
node, a router gateway port or an external network recompiles the node's routers
(their default route names the gateway node, its VNI and the gateway port's MAC).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from routeflow.rflib.ofsim import Flow
from routeflow.tenant import nat, secgroups
from routeflow.tenant.compiler import FragKey, Fragments, NodeContext, node_facts
from routeflow.tenant.model import DEVICE_ROUTER_GATEWAY, Cloud, Kind
from routeflow.tenant.nodeindex import Facts, Index, NodeLike

EMPTY: frozenset[Flow] = frozenset()
_HANDLED = {Kind.NETWORK, Kind.SUBNET, Kind.PORT, Kind.ROUTER, Kind.NODE, Kind.SECURITY_GROUP}
Identity = tuple[int, int, object]


def _identity(f: Flow) -> Identity:
    return (f.table, f.priority, f.match)


def changed_objects(old: Cloud, new: Cloud) -> set[tuple[Kind, str]]:
    """(kind, id) of every object that differs between two snapshots (a table that is
    the same object is skipped: ``Cloud.apply`` copies only the table it changes)."""
    out: set[tuple[Kind, str]] = set()
    for kind in Kind:
        a, b = old.table(kind), new.table(kind)
        if a is b:
            continue
        out.update((kind, k) for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return out


class NodeCompiler:
    """``compile_node`` for one node, change by change: ``update`` recompiles only the
    fragments that read a changed object or binding and returns (added, deleted) flows.
    ``flows`` equals ``compile_node(cloud, node)`` after every update."""

    def __init__(self) -> None:
        self.cloud: Cloud | None = None
        self.node: NodeContext | None = None
        self.index = Index()
        self.facts = Facts()
        self.fragments: dict[FragKey, frozenset[Flow]] = {}
        self.flows: set[Flow] = set()
        self.recompiled = 0  # fragments recompiled by the last update (a figure for benches)
        self._contrib: dict[Identity, Counter[Flow]] = {}
        self._out: dict[Identity, frozenset[Flow]] = {}

    def update(
        self,
        cloud: Cloud,
        node: NodeLike,
        touched: Iterable[tuple[Kind, str]] | None = None,
    ) -> tuple[frozenset[Flow], frozenset[Flow]]:
        """Move to ``cloud`` and ``node``; ``touched``: the objects changed since the last
        update (None: found by comparing the snapshots)."""
        ctx = NodeContext(
            node.name, node.bindings, node.tunnel_ofport,
            external_ofport=getattr(node, "external_ofport", 0),
            neighbours=getattr(node, "neighbours", {}),
            uplink=getattr(node, "uplink", None),
        )  # fmt: skip
        old, before = self.cloud, self.node
        if (
            old is None
            or before is None
            or ctx.name != before.name
            or ctx.tunnel_ofport != before.tunnel_ofport
            or ctx.external_ofport != before.external_ofport
            or ctx.neighbours != before.neighbours
            or self.facts.served
            or ctx.standing_by
            or nat.served_routers(cloud, ctx.name)
        ):
            return self._rebuild(cloud, ctx)
        objs = changed_objects(old, cloud) if touched is None else set(touched)
        if any(kind not in _HANDLED for kind, _ in objs):
            return self._rebuild(cloud, ctx)
        self.cloud, self.node = cloud, ctx
        dirty = self._dirty(old, cloud, before, ctx, objs)
        frag = Fragments(cloud, self.index, ctx, self.facts)
        self.recompiled = len(dirty)
        return self._set({key: frag(key) for key in dirty})

    def _rebuild(self, cloud: Cloud, node: NodeContext) -> tuple[frozenset[Flow], frozenset[Flow]]:
        self.cloud, self.node = cloud, node
        self.index = Index.of(cloud)
        self.facts = node_facts(cloud, self.index, node)
        frag = Fragments(cloud, self.index, node, self.facts)
        facts = self.facts
        some = facts.local or facts.served or node.standing_by
        new = {key: frag(key) for key in frag.all_keys()} if some else {}
        for key in self.fragments:
            new.setdefault(key, EMPTY)
        self.recompiled = len(new)
        return self._set(new)

    def _dirty(
        self,
        old: Cloud,
        cloud: Cloud,
        before: NodeContext,
        node: NodeContext,
        objs: set[tuple[Kind, str]],
    ) -> set[FragKey]:
        """The fragments that may read something in ``objs`` or a changed binding."""
        index, facts = self.index, self.facts
        ports: set[str] = set()  # re-examined: local or not, and their own fragments
        nets: set[str] = set()  # every port of these re-examined
        routers: set[str] = set()
        groups: set[str] = set()
        recheck_routers = False
        gateways = False  # something a router's default route reads (tenant/nat.py)
        for kind, oid in objs:
            if kind is Kind.PORT:
                a, b = old.ports.get(oid), cloud.ports.get(oid)
                index.port(a, b)
                ports.add(oid)
                for q in (a, b):
                    if q is not None and q.is_router_interface:
                        routers.add(q.device_id)
                        recheck_routers = True
                    if q is not None and q.device_owner == DEVICE_ROUTER_GATEWAY:
                        gateways = True
            elif kind is Kind.SUBNET:
                sa, sb = old.subnets.get(oid), cloud.subnets.get(oid)
                index.subnet(sa, sb)
                nets.update(s.network_id for s in (sa, sb) if s is not None)
                ports.update(index.ports_by_subnet.get(oid, ()))
            elif kind is Kind.NETWORK:
                nets.add(oid)
                gateways = gateways or any(
                    n is not None and n.external
                    for n in (old.networks.get(oid), cloud.networks.get(oid))
                )
            elif kind is Kind.ROUTER:
                routers.add(oid)
                recheck_routers = True
            elif kind is Kind.NODE:
                ports.update(index.ports_by_host.get(oid, ()))
                gateways = True
            elif kind is Kind.SECURITY_GROUP:
                groups.add(oid)
        if node.bindings != before.bindings:  # the plugged, unplugged and moved VIFs
            ports.update(k for k, _ in before.bindings.items() ^ node.bindings.items())
        if nets:
            recheck_routers = True
            for nid in nets:
                ports.update(index.ports_by_net.get(nid, ()))
        # The node's facts: local ports, routers, routed networks, rules in use.
        had_local = bool(facts.local)
        old_local_nets, old_routed = set(facts.local_by_net), facts.routed_nets
        old_guarded, old_rules = set(facts.guarded), dict(facts.rules)
        relocal: set[str] = set()  # networks whose local ports (or ofports) changed
        port_nets: set[str] = set()
        port_groups: set[str] = set()
        for pid in ports:
            was = (facts._net_of.get(pid), facts.local.get(pid))
            facts.set_local(cloud, node, pid)
            now = (facts._net_of.get(pid), facts.local.get(pid))
            if was != now:
                relocal.update(n for n in (was[0], now[0]) if n is not None)
            for q in (old.ports.get(pid), cloud.ports.get(pid)):
                if q is not None:
                    port_nets.add(q.network_id)
                    port_groups.update(q.security_groups)
        if set(facts.local_by_net) != old_local_nets:
            recheck_routers = True
        old_routers = facts.routers
        if recheck_routers:
            facts.set_routers(cloud, index)
            routers.update(
                r for r in old_routers.keys() | facts.routers.keys()
                if old_routers.get(r) != facts.routers.get(r)
            )  # fmt: skip
        status = (old_local_nets ^ set(facts.local_by_net)) | (old_routed ^ facts.routed_nets)
        if groups or set(facts.guarded) != old_guarded:
            facts.set_rules(cloud)
        all_routers = old_routers.keys() | facts.routers.keys()
        for rid in all_routers:
            ifaces = {*old_routers.get(rid, ()), *facts.routers.get(rid, ())}
            iface_nets = {
                q.network_id for i in ifaces for q in (old.ports.get(i), cloud.ports.get(i)) if q
            }
            routes = any(r.routes for r in (old.routers.get(rid), cloud.routers.get(rid)) if r)
            if status or iface_nets & nets or (routes and iface_nets & port_nets):
                routers.add(rid)

        dirty: set[FragKey] = set()
        if had_local != bool(facts.local):
            dirty.add(("base",))
        for pid in ports:
            dirty.add(("port", pid))
            dirty.add(("known", pid))
        for nid in relocal | nets:
            dirty.add(("net", nid))
        for nid in status:
            dirty.update(("known", q) for q in index.ports_by_net.get(nid, ()))
        if gateways:
            routers.update(old_routers.keys() | facts.routers.keys())
        dirty.update(("router", rid) for rid in routers)
        for g in groups:
            dirty.update(("port", q) for q in index.members.get(g, ()) if q in facts.local)
        for rkey in old_rules.keys() | facts.rules.keys():
            a_r, b_r = old_rules.get(rkey), facts.rules.get(rkey)
            remotes = {r[1].remote_group_id or "" for r in (a_r, b_r) if r is not None}
            owners = {r[0] for r in (a_r, b_r) if r is not None}
            if a_r != b_r or (remotes | owners) & groups:
                dirty.add(("rule", rkey))
                for g in remotes:
                    dirty.update(("member", rkey, q) for q in index.members.get(g, ()))
                dirty.update(("member", rkey, q) for q in ports)
            elif remotes & port_groups:
                dirty.add(("rule", rkey))
                dirty.update(("member", rkey, q) for q in ports)
        return dirty

    def _set(
        self, new: Mapping[FragKey, frozenset[Flow]]
    ) -> tuple[frozenset[Flow], frozenset[Flow]]:
        """Replace fragments; (added, deleted) flows of the merged output."""
        touched: set[Identity] = set()
        contrib = self._contrib
        for key, flows in new.items():
            before = self.fragments.get(key, EMPTY)
            if flows is before or flows == before:
                continue
            if flows:
                self.fragments[key] = flows
            else:
                self.fragments.pop(key, None)
            for f in before - flows:
                ident = _identity(f)
                c = contrib[ident]
                c[f] -= 1
                if c[f] <= 0:
                    del c[f]
                    if not c:
                        del contrib[ident]
                touched.add(ident)
            for f in flows - before:
                ident = _identity(f)
                contrib.setdefault(ident, Counter())[f] += 1
                touched.add(ident)
        added: set[Flow] = set()
        deleted: set[Flow] = set()
        for ident in touched:
            was = self._out.get(ident, EMPTY)
            got = contrib.get(ident)
            now = _merged(got) if got else EMPTY
            if now == was:
                continue
            if now:
                self._out[ident] = now
            else:
                self._out.pop(ident, None)
            added |= now - was
            deleted |= was - now
        self.flows -= deleted
        self.flows |= added
        return frozenset(added), frozenset(deleted)


def _merged(contrib: Mapping[Flow, int]) -> frozenset[Flow]:
    """One identity's flows as ``secgroups.merge`` gives them."""
    if len(contrib) == 1:
        (f,) = contrib
        return frozenset((f,) if not f.conjunctive else (secgroups.join([f]),))
    plain = [f for f in contrib if not f.conjunctive]
    conj = [f for f in contrib if f.conjunctive]
    return frozenset(plain + ([secgroups.join(conj)] if conj else []))

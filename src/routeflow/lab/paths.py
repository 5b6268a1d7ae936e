"""Where traffic must go in a converged lab, from the lab graph alone (pure).

Pingall succeeding proves that packets arrive, not that they take the shortest path: a lab
whose OSPF has not finished still delivers over a longer one. So convergence is judged
against an oracle that knows nothing of FRR or routeflow: the lab's switches and links as a
weighted multigraph (OSPF cost per link, parallel links kept), shortest-path distances by
networkx, and for every VM and every host subnet the set of equal-cost first hops (ECMP).

A first hop is a link, seen from the VM as (its port, the neighbour's address on that link,
the neighbour's MAC): the kernel must route via exactly those ports and gateways, and the
switch must send the subnet's traffic out of exactly those ports rewritten to those MACs.

OSPF computes exactly this set, so in an all-OSPF lab the comparison is equality. BGP picks
one best path among equals and static routes follow one BFS path, so elsewhere a VM's next
hops need only be a non-empty subset of the oracle's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import networkx as nx

from routeflow.lab.model import LabPlan

__all__ = ["Hop", "Oracle", "oracle"]


@dataclass(frozen=True, order=True)
class Hop:
    """One next hop of a VM: out of ``port`` (VM port == switch port) to the neighbour."""

    port: int
    gateway: str  # the neighbour's IPv4 address on the link
    mac: str  # the neighbour VM's MAC on the link (what the switch rewrites eth_dst to)


@dataclass(frozen=True)
class Oracle:
    #: switch -> host subnet (IPv4 and, in dual-stack labs, IPv6) -> first hops; an empty set
    #: means the subnet is on the switch itself.
    hops: dict[str, dict[str, frozenset[Hop]]]
    #: switches whose next hops must equal the oracle's (OSPF); the others: a subset.
    exact: frozenset[str]

    def problems(self, switch: str, prefix: str, have: frozenset[Hop] | None) -> str | None:
        """Why ``have`` (a VM's or switch's next hops for ``prefix``) is wrong, or None.

        ``have`` is None when there is no route at all. Hops compare on what the caller could
        observe: build them with the fields unknown to it set to "" (see Hop.only).
        """
        want = self.hops[switch][prefix]
        if have is None:
            return f"{prefix}: no route (want {_show(want)})"
        if switch in self.exact or not want:  # exact, or on-link: connected either way
            return None if have == want else f"{prefix}: {_show(have)}, want {_show(want)}"
        if have and have <= want:
            return None
        return f"{prefix}: {_show(have)}, want one or more of {_show(want)}"

    def only(self, *, gateway: bool, mac: bool) -> Oracle:
        """The same oracle with the hop fields a probe cannot see blanked out."""
        return Oracle(
            hops={
                sw: {
                    prefix: frozenset(
                        Hop(h.port, h.gateway if gateway else "", h.mac if mac else "")
                        for h in hops
                    )
                    for prefix, hops in table.items()
                }
                for sw, table in self.hops.items()
            },
            exact=self.exact,
        )


def _show(hops: frozenset[Hop]) -> str:
    if not hops:
        return "connected"
    return (
        "{"
        + ", ".join(
            f"eth{h.port}"
            + (f" via {h.gateway}" if h.gateway else "")
            + (f" -> {h.mac}" if h.mac else "")
            for h in sorted(hops)
        )
        + "}"
    )


def graph(plan: LabPlan) -> nx.MultiGraph:
    """Switches and links, each link an edge keyed by its index with its OSPF cost."""
    g = nx.MultiGraph()
    g.add_nodes_from(vm.switch for vm in plan.vms)
    for link in plan.links:
        g.add_edge(link.a.switch, link.b.switch, key=link.index, cost=link.cost)
    return g


def oracle(plan: LabPlan) -> Oracle:
    """Every VM's first hops towards every host subnet of the lab."""
    g = graph(plan)
    # Distances from each switch that has hosts (costs are symmetric, so "from Y" = "to Y").
    targets: dict[str, list[str]] = {}
    for h in plan.hosts:
        subnets = [str(ipaddress.IPv4Interface(h.ip).network)]
        if h.subnet6 is not None:
            subnets.append(h.subnet6)
        targets.setdefault(h.switch, []).extend(subnets)
    dist = {y: nx.single_source_dijkstra_path_length(g, y, weight="cost") for y in targets}
    hops: dict[str, dict[str, frozenset[Hop]]] = {}
    for vm in plan.vms:
        table: dict[str, frozenset[Hop]] = {}
        for y, subnets in targets.items():
            first: set[Hop] = set()
            if y != vm.switch:
                for iface in vm.link_ports:
                    link = next(ln for ln in plan.links if ln.index == iface.link)
                    peer = (
                        link.b
                        if link.a.switch == vm.switch and link.a.port == iface.port
                        else link.a
                    )
                    if link.cost + dist[y][peer.switch] == dist[y][vm.switch]:
                        peer_iface = plan.vm(peer.switch).interface(peer.port)
                        first.add(Hop(iface.port, peer_iface.ip, peer_iface.mac))
            for subnet in subnets:
                table[subnet] = frozenset(first)
        hops[vm.switch] = table
    exact = frozenset(vm.switch for vm in plan.vms if vm.routing == "ospf")
    if any(vm.routing != "ospf" for vm in plan.vms):
        exact = frozenset()  # routes from outside OSPF change which paths OSPF may pick
    return Oracle(hops=hops, exact=exact)

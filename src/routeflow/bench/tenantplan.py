"""What `routeflow bench tenant` asks of both systems, and how it sums up (pure).

The same job for routeflow and for OVN: ``nodes`` compute nodes; two networks joined by
one distributed router (``net1``, ``net2``) and one network on no router (``iso``);
"anchor" VMs plugged before measuring (one per routed network on every node, and one on
``iso`` on every node but the last, so the last node has no port of ``iso`` and must
hold no flow for it); then ``ports`` measured ports, one at a time, spread over the
nodes and the two routed networks. Each measured VM pings, through the router, the
anchor of the other routed network on the next node: the first successful ping crosses
nodes and is routed on the source node.

Addresses: routeflow's IPAM picks them (the API answers with them); OVN is given them,
as Neutron's ML2/OVN does (IPAM is Neutron's, not OVN's), from ``address()``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ROUTED = ("net1", "net2")
ISOLATED = "iso"
BULK = "bulk"  # the network of the API-rate phase: ports with no VM
CIDRS = {"net1": "10.1.0.0/16", "net2": "10.2.0.0/16", "iso": "10.3.0.0/24", "bulk": "10.4.0.0/16"}


class PlanError(ValueError):
    """A bad size; the message names the option."""


@dataclass(frozen=True)
class VmSpec:
    name: str
    network: str
    node: str
    index: int  # unique across the run: addresses and MACs for OVN derive from it


@dataclass(frozen=True)
class Scenario:
    nodes: tuple[str, ...]
    anchors: tuple[VmSpec, ...]
    ports: tuple[VmSpec, ...]
    api_ports: int

    def target(self, vm: VmSpec) -> VmSpec:
        """The anchor ``vm`` pings: the other routed network, on the next node."""
        other = ROUTED[1 - ROUTED.index(vm.network)]
        node = self.nodes[(self.nodes.index(vm.node) + 1) % len(self.nodes)]
        return next(a for a in self.anchors if a.network == other and a.node == node)

    def networks(self) -> tuple[str, ...]:
        return (*ROUTED, ISOLATED)

    def nodes_of(self, network: str) -> set[str]:
        return {v.node for v in (*self.anchors, *self.ports) if v.network == network}


def scenario(nodes: int, ports: int, api_ports: int) -> Scenario:
    if not 2 <= nodes <= 16:
        raise PlanError(f"--nodes {nodes}: 2 to 16 (a ping must cross nodes)")
    if not 1 <= ports <= 2000:
        raise PlanError(f"--ports {ports}: 1 to 2000")
    if not 0 <= api_ports <= 20000:
        raise PlanError(f"--api-ports {api_ports}: 0 to 20000")
    names = tuple(f"n{i + 1}" for i in range(nodes))
    anchors: list[VmSpec] = []
    for node in names:
        for net in ROUTED:
            anchors.append(VmSpec(f"a-{net}-{node}", net, node, len(anchors) + 1))
    for node in names[:-1]:
        anchors.append(VmSpec(f"a-{ISOLATED}-{node}", ISOLATED, node, len(anchors) + 1))
    measured = [
        VmSpec(f"p{i + 1}", ROUTED[(i // nodes) % 2], names[i % nodes], len(anchors) + i + 1)
        for i in range(ports)
    ]
    return Scenario(names, tuple(anchors), tuple(measured), api_ports)


def gateway(network: str) -> str:
    return str(next(ipaddress.ip_network(CIDRS[network]).hosts()))


def prefixlen(network: str) -> int:
    return ipaddress.ip_network(CIDRS[network]).prefixlen


def address(network: str, index: int) -> str:
    """The IP given to OVN for a port (host ``index + 1``: the gateway is host 1)."""
    net = ipaddress.ip_network(CIDRS[network])
    if index + 2 >= net.num_addresses:
        raise PlanError(f"{network} {CIDRS[network]} has no room for port {index}")
    return str(net.network_address + index + 1)


def mac(index: int) -> str:
    """A MAC in Neutron's fa:16:3e prefix, unique per index."""
    if not 0 <= index < 1 << 24:
        raise PlanError(f"port index {index} does not fit a MAC")
    return "fa:16:3e:" + ":".join(f"{(index >> s) & 0xFF:02x}" for s in (16, 8, 0))


# --- figures ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class PortTiming:
    """Seconds from the start of a port's create call (cumulative)."""

    api: float
    plugged: float
    bound: float
    lease: float
    ping: float


STEPS = ("api", "plugged", "bound", "lease", "ping")


def summarize(timings: Sequence[PortTiming]) -> dict[str, dict[str, float | None]]:
    """step -> {p50, p95, max} in ms."""
    out: dict[str, dict[str, float | None]] = {}
    for step in STEPS:
        values = [getattr(t, step) * 1000 for t in timings]
        out[step] = {
            "p50": _round(percentile(values, 50)),
            "p95": _round(percentile(values, 95)),
            "max": _round(max(values) if values else None),
        }
    return out


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None when either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


@dataclass
class FlowsPerPort:
    """Flows carrying ports' cookies, by where they are: the port's own node, other nodes
    with a port of its network, nodes that only reach it through a router, and any other
    node (the issue's rule: that must be 0)."""

    own: list[int] = field(default_factory=list)
    same_network: list[int] = field(default_factory=list)
    via_router: list[int] = field(default_factory=list)
    elsewhere: int = 0

    def summary(self) -> dict[str, float | int | None]:
        return {
            "own_median": _median(self.own),
            "own_max": max(self.own, default=None),
            "same_network_median": _median(self.same_network),
            "via_router_median": _median(self.via_router),
            "elsewhere_total": self.elsewhere,
        }


def _median(values: Sequence[int]) -> float | None:
    return percentile(values, 50)


def flows_per_port(
    counts: dict[str, dict[str, int]],
    node_of: dict[str, str],
    network_of: dict[str, str],
    nodes_with: dict[str, set[str]],
    routed_with: dict[str, set[str]],
) -> FlowsPerPort:
    """Sort ``counts`` (port -> node -> flows, e.g. compiler.flows_per_port or the
    switches' flows by cookie) by where each count is. ``nodes_with``: network -> nodes
    with a port of it; ``routed_with``: network -> the other networks of its routers.
    Ports not in ``node_of`` are left out. A node missing from a port's counts has 0."""
    out = FlowsPerPort()
    nodes = set().union(*nodes_with.values()) if nodes_with else set()
    nodes |= {n for per in counts.values() for n in per}
    for port in sorted(node_of):
        per_node = counts.get(port, {})
        home, net = node_of[port], network_of[port]
        same = nodes_with.get(net, set())
        routed = set().union(*(nodes_with.get(n, set()) for n in routed_with.get(net, set())))
        out.own.append(per_node.get(home, 0))
        for node in sorted(nodes - {home}):
            n = per_node.get(node, 0)
            if node in same:
                out.same_network.append(n)
            elif node in routed:
                out.via_router.append(n)
            else:
                out.elsewhere += n
    return out


# --- results ------------------------------------------------------------------------

API_WITH_NODES = "with the node agents"
API_ALONE = "server alone"


@dataclass
class SystemResult:
    name: str
    setup_s: float | None = None
    #: method -> port creates per second
    api_rate: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    timings: list[PortTiming] = field(default_factory=list)
    failed_ports: list[str] = field(default_factory=list)
    #: measured ports whose first DHCP DISCOVER went unanswered (udhcpc retries after 1 s)
    dhcp_retried: int = 0
    flows_per_node: dict[str, int] = field(default_factory=dict)
    #: routeflow: tenantplan.FlowsPerPort.summary(); OVN: growth per port per chassis
    flows_per_port: dict[str, Any] = field(default_factory=dict)
    #: flows for the isolated network on the node with no port of it
    isolated_flows_elsewhere: int | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    #: --bulk: every port at once (bench/tenantbulk.py): seconds from one clock
    bulk: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: What the run made on the host, all gone at the end (the smoke test checks).
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


@dataclass
class TenantBenchResult:
    nodes: int
    ports: int
    api_ports: int
    ovn_encap: str
    raw_api_rate: float | None = None
    routeflow: SystemResult = field(default_factory=lambda: SystemResult("routeflow"))
    ovn: SystemResult | None = None
    run_dir: str = ""
    command: str = ""
    #: 1-minute load average at the start and at the end (the machine may be shared)
    load: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        systems = [self.routeflow, *([self.ovn] if self.ovn else [])]
        return all(not s.problems and (s.timings or s.bulk.get("up")) for s in systems)


# --- reading switches ----------------------------------------------------------------

_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


def cookies(dump: str) -> list[int]:
    """The cookie of every flow line of ``ovs-ofctl dump-flows``."""
    return [int(m.group(1), 16) for line in dump.splitlines() if (m := _COOKIE.search(line))]


def count_by_port(
    dumps: dict[str, str], port_keys: dict[int, str]
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(port id -> node -> flows with that port's cookie, node -> tenant flows)."""
    from routeflow.tenant import pipeline as p

    per_port: dict[str, dict[str, int]] = {}
    per_node: dict[str, int] = {}
    for node, text in sorted(dumps.items()):
        for cookie in cookies(text):
            kind = p.cookie_kind(cookie)
            if kind is None:
                continue
            per_node[node] = per_node.get(node, 0) + 1
            if kind[0] is p.Kind.PORT and kind[1] in port_keys:
                per = per_port.setdefault(port_keys[kind[1]], {})
                per[node] = per.get(node, 0) + 1
    return per_port, per_node


def metadata_flows(dump: str, key: int) -> int:
    """Flow lines of ``dump`` that match ``metadata=key``."""
    pattern = re.compile(rf"\bmetadata=0x{key:x}\b(?!/)")
    return sum(1 for line in dump.splitlines() if pattern.search(line.split("actions=")[0]))

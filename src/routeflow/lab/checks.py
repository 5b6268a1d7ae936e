"""What 'the lab works' means, measured against the real thing.

Each check reads ground truth from outside routeflow: the VMs' kernels (ip
route), the switches (ovs-ofctl dump-flows / dump-groups) and the hosts
(ping). Our own counters are never the evidence.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from routeflow.lab import paths
from routeflow.lab.model import LabPlan
from routeflow.lab.paths import Hop
from routeflow.lab.poll import poll_until
from routeflow.lab.poll import wait_until as wait_until  # checks.wait_until: its old home
from routeflow.lab.runner import FRR_DIR, LabRun


@dataclass
class FlowCheck:
    ok: bool
    missing: dict[str, list[str]] = field(default_factory=dict)  # switch -> prefixes
    extra: dict[str, list[str]] = field(default_factory=dict)
    bad_rewrite: dict[str, list[str]] = field(default_factory=dict)
    routes: int = 0

    def compare(self, switch: str, want: set[str], flows: dict[str, str]) -> None:
        """Note the prefixes ``switch`` should have a flow for and has not, and the reverse."""
        if missing := sorted(want - set(flows)):
            self.missing[switch] = missing
        if extra := sorted(set(flows) - want):
            self.extra[switch] = extra


def server_status(run: LabRun) -> dict:
    """The leading rfserver's status (see LabRun.server_status)."""
    return run.server_status()


def lab_links(plan) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    """The lab file's links as rfproxy's discovery reports them: both directions."""
    out = set()
    for link in plan.links:
        a = (plan.vm(link.a.switch).dp_id, link.a.port)
        b = (plan.vm(link.b.switch).dp_id, link.b.port)
        out |= {(a, b), (b, a)}
    return out


def discovered_links(run: LabRun) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    """The switch links rfserver says rfproxy discovered (directed, as in its status)."""
    return {
        ((k["src_dp_id"], k["src_port"]), (k["dst_dp_id"], k["dst_port"]))
        for k in server_status(run).get("links", [])
    }


def association_rows(status: dict) -> set[tuple]:
    """The association table of a status, as comparable rows (keys and state)."""
    return {
        (a["vm_id"], a["vm_port"], a["ct_id"], a["dp_id"], a["dp_port"], a["state"])
        for a in status.get("associations", [])
    }


def associations_active(run: LabRun) -> tuple[int, int]:
    st = server_status(run)
    want = sum(len(vm.interfaces) for vm in run.plan.vms)
    active = sum(1 for a in st.get("associations", []) if a["state"].startswith("active"))
    return active, want


@dataclass(frozen=True)
class KernelRoute:
    """One route of a VM's table, as ``ip -j route`` tells it.

    The one reader of the VMs' routes: every question about them (which prefixes, which
    gateways, which ports, did the route change) is answered from these fields.
    """

    prefix: str  # normalized: "0.0.0.0/0" for default, "/32" or "/128" on host routes
    type: str  # "unicast", "local", "broadcast", "multicast", "blackhole", ...
    hops: tuple[tuple[str, str], ...]  # (gateway or "", dev) per next hop, in kernel order
    line: str  # the whole entry as canonical JSON: equal before and after iff unchanged

    def out_of_vm_ports(self) -> bool:
        """Every next hop leaves through a VM port (ethN), none through lo or a tunnel."""
        return bool(self.hops) and all(_VM_PORT.fullmatch(dev) for _gw, dev in self.hops)


def _gateway(hop: dict) -> str:
    """A route's next hop address: ``gateway``, or ``via`` for an IPv4 route through an
    IPv6 neighbour (RFC 5549: ``"via": {"family": "inet6", "host": "fe80::..."}``)."""
    via = hop.get("via")
    return hop.get("gateway") or (via.get("host", "") if isinstance(via, dict) else "")


def kernel_route_table(
    run: LabRun, switch: str, family: int = 4, table: str = "main"
) -> list[KernelRoute]:
    """The routes of one table of the VM's kernel (``ip -FAMILY -j route show table T``)."""
    default = "0.0.0.0/0" if family == 4 else "::/0"
    routes = []
    for r in _ip_json(run, switch, f"ip -{family} -j route show table {table}"):
        dst = default if r["dst"] == "default" else r["dst"]
        hops = tuple((_gateway(h), h.get("dev", "")) for h in r.get("nexthops") or [r])
        routes.append(
            KernelRoute(
                prefix=str(ipaddress.ip_network(dst, strict=False)),
                type=r.get("type", "unicast"),
                hops=hops,
                line=json.dumps(r, sort_keys=True),
            )
        )
    return routes


def route_dst(word: str, family: int) -> str | None:
    """The destination ``ip -FAMILY route`` printed first on a line, as a canonical prefix;
    None if the word is none (a continuation line's ``nexthop``, or ``default``)."""
    if not word or not (word[0].isdigit() or ":" in word):
        return None
    dst = word if "/" in word else f"{word}{'/32' if family == 4 else '/128'}"
    if ":" in dst and "." in dst:  # inet_ntop's embedded IPv4: Python's text instead
        dst = str(ipaddress.ip_network(dst, strict=False))
    return dst


def kernel_bgp_prefixes(run: LabRun, switch: str, family: int = 4) -> set[str]:
    """The VM kernel's BGP routes of ``family`` as canonical prefixes: a text read, not
    JSON, being cheap at a full table (1M routes); continuation lines of multipath
    routes (``\tnexthop via ...``) are not prefixes and are passed over."""
    out = run.vm_node(switch).cmd(f"ip -{family} route show proto bgp")
    routes = set()
    for line in out.splitlines():
        dst = route_dst(line.split(" ", 1)[0], family)
        if dst is not None:
            routes.add(dst)
    return routes


def kernel_routes(run: LabRun, switch: str) -> dict[str, str]:
    """prefix -> 'connected' | gateway (first) of the VM's IPv4 unicast routes via its ports."""
    return {
        r.prefix: next((gw for gw, _dev in r.hops if gw), "connected")
        for r in kernel_route_table(run, switch, 4)
        if r.type == "unicast" and any(_VM_PORT.fullmatch(dev) for _gw, dev in r.hops)
    }


def kernel_neighbours(run: LabRun, switch: str, family: int = 4) -> dict[str, str]:
    out = run.vm_node(switch).cmd(f"ip -{family} neigh show")
    neigh = {}
    for line in out.splitlines():
        m = re.match(r"(\S+) dev eth\d+ lladdr (\S+) (?:router )?(\S+)", line)
        if m and m.group(3) in ("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"):
            neigh[m.group(1)] = m.group(2).lower()
    return neigh


def vm_addresses(run: LabRun, switch: str) -> set[str]:
    """The IPv4 addresses of the VM's ports, read from its kernel (--auto labs: rfserver
    chose them)."""
    return {
        a["local"]
        for link in _ip_json(run, switch, "ip -4 -j addr show")
        if _VM_PORT.fullmatch(link.get("ifname", ""))
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    }


def expected_prefixes(run: LabRun) -> dict[str, set[str]]:
    """Every prefix a converged VM must know: all host and link subnets (with --auto, the
    host subnets: the link subnets are rfserver's choice, not the lab file's)."""
    subnets = {str(ipaddress.IPv4Interface(h.ip).network) for h in run.plan.hosts}
    if not run.auto and not run.plan.bgp.unnumbered:  # unnumbered links have no subnet
        subnets |= {link.subnet for link in run.plan.links}
    return {vm.switch: set(subnets) for vm in run.plan.vms}


def per_switch(run: LabRun, probe, *args) -> dict[str, Any]:
    """``probe(run, switch, *args)`` for every switch, eight at a time: each probe waits on a
    process (``ip`` in a VM, ``ovs-ofctl``), and a backbone has fifty switches."""
    switches = [vm.switch for vm in run.plan.vms]
    with ThreadPoolExecutor(8, thread_name_prefix="probe") as pool:
        results = pool.map(lambda sw: probe(run, sw, *args), switches)
        return dict(zip(switches, results, strict=True))


def routes_converged(run: LabRun) -> tuple[int, int]:
    want = expected_prefixes(run)
    routes = per_switch(run, kernel_routes)
    have = sum(len(prefixes & set(routes[switch])) for switch, prefixes in want.items())
    return have, sum(len(prefixes) for prefixes in want.values())


def _dump(run: LabRun, switch: str, what: str) -> str:
    return run.ovs.ofctl("-O", "OpenFlow13", what, run.bridges[switch])


def prefix_flows(run: LabRun, switch: str, table: int = 1, family: int = 4) -> dict[str, str]:
    """prefix -> the `dump-flows` line of each flow of ``table`` matching a destination.

    ``family`` 4: flows on nw_dst (and the IPv4 default route, no nw_dst); 6: on ipv6_dst.
    """
    field, any_dst, default, host = (
        ("nw_dst", "ip", "0.0.0.0/0", "/32") if family == 4 else ("ipv6_dst", "ipv6", "::/0", "")
    )
    out = {}
    for line in _dump(run, switch, "dump-flows").splitlines():
        if f"table={table}," not in line:
            continue
        m = re.search(rf"{field}=(\S+?)[ ,]", line)
        if m:
            dst = m.group(1) if "/" in m.group(1) else m.group(1) + host
            out[str(ipaddress.ip_network(dst, strict=False))] = line
        elif re.search(rf"[ ,]{any_dst}[ ,]", line):  # any destination: the default route
            out[default] = line
    return out


def _field(line: str, pattern: str) -> str | None:
    m = re.search(pattern, line)
    return m.group(1) if m else None


def fib_flows(run: LabRun, switch: str, family: int = 4) -> dict[str, str]:
    """prefix -> action text of each FIB (table 1) flow on the switch."""
    return {
        prefix: _field(line, r"actions=(\S+)") or ""
        for prefix, line in prefix_flows(run, switch, family=family).items()
        if "priority=0" not in line
    }


def flow_ages(run: LabRun, switch: str, family: int = 4) -> dict[str, float]:
    """FIB prefix -> seconds the flow has existed (a re-installed flow restarts at 0)."""
    return {
        prefix: float(age)
        for prefix, line in prefix_flows(run, switch, family=family).items()
        if (age := _field(line, r"duration=([\d.]+)s")) is not None
    }


def groups(run: LabRun, switch: str) -> dict[int, str]:
    out = {}
    for line in _dump(run, switch, "dump-groups").splitlines():
        m = re.search(r"group_id=(\d+),.*?bucket=(.*)$", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def check_flows(run: LabRun) -> FlowCheck:
    """Every kernel route has its flow on the right switch, and every flow a route.

    Also checks the MAC rewrite of each gateway route: its group must set the
    destination MAC to the gateway's MAC as the VM's neighbour table knows it.
    """
    result = FlowCheck(ok=True)
    unnumbered = run.plan.bgp.unnumbered  # IPv4 routes through IPv6 neighbours
    probed = per_switch(
        run,
        lambda run, sw: (
            kernel_routes(run, sw),
            kernel_neighbours(run, sw),
            fib_flows(run, sw),
            groups(run, sw),
            vm_addresses(run, sw) if run.auto else None,
            kernel_neighbours(run, sw, 6) if unnumbered else {},
        ),
    )
    for vm in run.plan.vms:
        routes, neigh, flows, grp, auto_addresses, neigh6 = probed[vm.switch]
        want = set(routes)
        if auto_addresses is None:  # router addresses
            want |= {f"{iface.ip}/32" for iface in vm.ipv4_interfaces(unnumbered)}
        else:
            want |= {f"{ip}/32" for ip in auto_addresses}
        # Resolved neighbours, but not link-local ones (FRR puts 169.254.0.1 on every
        # unnumbered link for RFC 5549: meaningful per link only, never a host route).
        want |= {f"{ip}/32" for ip in neigh if not ipaddress.ip_address(ip).is_link_local}
        result.routes += len(routes)
        result.compare(vm.switch, want, flows)
        bad = []
        for prefix, gw in routes.items():
            if gw == "connected" or prefix not in flows:
                continue
            m = re.match(r"group:(\d+)", flows[prefix])
            mac = neigh6.get(gw) if ":" in gw else neigh.get(gw)
            if m is None or mac is None:
                bad.append(f"{prefix} via {gw}: {flows[prefix]}")
                continue
            bucket = grp.get(int(m.group(1)), "")
            if f"set_field:{mac}->eth_dst" not in bucket:
                bad.append(f"{prefix} via {gw} ({mac}): group {m.group(1)} is {bucket!r}")
        if bad:
            result.bad_rewrite[vm.switch] = bad
    result.ok = not (result.missing or result.extra or result.bad_rewrite)
    return result


def ping(run: LabRun, src: str, dst_ip: str, count: int = 1, timeout: float = 1.0) -> bool:
    family = "-6 " if ":" in dst_ip else ""  # an IPv6 address: never fall back to IPv4
    out = run.host(src).cmd(f"ping {family}-c {count} -W {timeout:g} -q {dst_ip}")
    m = re.search(r"(\d+) received", out)
    return bool(m and int(m.group(1)) > 0)


_FPING_LINE = re.compile(r"^(\S+)\s*: xmt/rcv/%loss = (\d+)/(\d+)", re.MULTILINE)


#: Echo requests per second all sources of one round send together. The emulated data
#: plane is one ovs-vswitchd thread on a machine the lab's own control plane keeps busy:
#: 69 hosts probing at 1 ms each (69k requests/s, each crossing several switches) lost
#: 4-47 of 4,692 probes per round to socket-buffer overflow (Topology Zoo Uninett2011,
#: nine rounds), with every switch on its shortest paths; at 5k/s, 0 of 4,692 in 6 rounds.
PROBE_RATE = 5000
#: What that thread carries is switch crossings, not probes: the Topology Zoo's Syringa
#: (74 switches in a near-chain, a probe crosses 12.95 switches on average) lost 2-5 % of
#: each round at 5k probes/s (65k crossings/s) and 0 of 4 x 5,402 at 1k/s (13k/s). A round
#: whose probes cross many switches is paced below PROBE_RATE to stay within this.
CROSSING_RATE = 13000


def probe_rate(mean_crossings: float) -> float:
    """Probes per second for a round whose probes cross ``mean_crossings`` switches each."""
    return min(PROBE_RATE, CROSSING_RATE / max(1.0, mean_crossings))


def probe_interval_ms(sources: int, rate: float = PROBE_RATE) -> int:
    """fping's gap between two probes of one source, so ``sources`` together send ``rate``."""
    return max(1, math.ceil(sources * 1000 / rate))


def mean_crossings(plan: LabPlan, pairs: list[tuple[str, str]]) -> float:
    """Switches a probe of ``pairs`` crosses on average, on the lab's fewest-hop paths
    (an address of no host of the lab counts as its source's switch alone)."""
    switch_of = {h.name: h.switch for h in plan.hosts}
    switch_of.update({h.address: h.switch for h in plan.hosts})
    switch_of.update({h.address6: h.switch for h in plan.hosts if h.address6})
    g = paths.graph(plan)
    hops: dict[str, dict[str, int]] = {}
    total = 0
    for src, dst in pairs:
        a = switch_of.get(src)
        if a is None or a not in g:
            total += 1
            continue
        if a not in hops:
            hops[a] = nx.single_source_shortest_path_length(g, a)
        total += 1 + hops[a].get(switch_of.get(dst, a), 0)
    return total / len(pairs) if pairs else 1.0


def ping_pairs(
    run: LabRun, pairs: list[tuple[str, str]], timeout: float = 1.0
) -> set[tuple[str, str]]:
    """The (source host, destination address) pairs that answered one echo request each.

    Every source pings all its destinations in one fping run, and all sources run side by
    side, paced to PROBE_RATE together (less when the probes cross many switches, see
    CROSSING_RATE): 2450 pairs of a 50-host lab take about 1.5 s instead of a ping process
    per pair one after the other (half a minute). One probe per pair, no retry, as ``ping``.
    """
    by_src: dict[str, list[str]] = {}
    for src, dst in pairs:
        by_src.setdefault(src, []).append(dst)
    interval = str(probe_interval_ms(len(by_src), probe_rate(mean_crossings(run.plan, pairs))))
    procs = {}
    for src, dsts in by_src.items():
        family = ["-6"] if ":" in dsts[0] else ["-4"]
        argv = ["fping", *family, "-q", "-c", "1", "-r", "0", "-i", interval]
        argv += ["-t", str(int(timeout * 1000)), *dsts]
        procs[src] = run.host(src).popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    answered = set()
    for src, proc in procs.items():
        out, _ = proc.communicate(timeout=timeout * len(by_src[src]) + 30)
        answered |= {(src, m[1]) for m in _FPING_LINE.finditer(out) if int(m[3]) > 0}
    return answered


def pingall(run: LabRun, count: int = 1, family: int = 4) -> tuple[int, int, list[str]]:
    """Every host pings every other host (both directions), over IPv4 or IPv6 (``family``).

    ``count`` is accepted for callers that name it; each pair gets one probe (see ping_pairs).
    """
    pairs = [
        (a, b, dst)
        for a in run.plan.hosts
        for b in run.plan.hosts
        if a is not b and (dst := b.address_of(family)) is not None
    ]
    answered = ping_pairs(run, [(a.name, dst) for a, _b, dst in pairs])
    failed = [f"{a.name}->{b.name}" for a, b, dst in pairs if (a.name, dst) not in answered]
    return len(pairs) - len(failed), len(pairs), failed


def flow_packets(run: LabRun, switch: str, table: int = 1, family: int = 4) -> dict[str, int]:
    """prefix -> n_packets for FIB flows (for 'traffic went through the flow' checks)."""
    return {
        prefix: int(n)
        for prefix, line in prefix_flows(run, switch, table, family).items()
        if (n := _field(line, r"n_packets=(\d+)")) is not None
    }


def settled_flow_packets(
    run: LabRun, switch: str, table: int = 1, family: int = 4
) -> dict[str, int]:
    """flow_packets once OVS has caught up: its counters lag traffic by a revalidator pass."""
    seen: list[dict[str, int]] = []

    def unchanged(now: dict[str, int]) -> bool:
        same = bool(seen) and now == seen[-1]
        seen.append(now)
        return same

    return poll_until(
        lambda: flow_packets(run, switch, table, family), unchanged, timeout=5.7, interval=0.7
    ).value


def controller_roles(run: LabRun) -> dict[str, dict[str, str]]:
    """switch -> rfproxy replica -> the OpenFlow role OVS gives its connection.

    Read from Open vSwitch itself (the Controller table's role column):
    "master", "slave" or "other"; "" for a replica that is not connected.
    """
    by_port = {port: name for (_ct, name), port in run.replica_ports.items()}
    rows = json.loads(
        run.ovs.vsctl(
            "--format=json", "--columns=_uuid,target,role,is_connected", "list", "controller"
        )
    )["data"]
    ctl = {}
    for uuid, target, role, connected in rows:
        port = int(str(target).rsplit(":", 1)[-1])
        role = role if isinstance(role, str) else ""
        ctl[uuid[1]] = (by_port.get(port, str(target)), role if connected is True else "")
    out: dict[str, dict[str, str]] = {}
    for switch, bridge in run.bridges.items():
        text = run.ovs.vsctl("--format=json", "get", "bridge", bridge, "controller")
        uuids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
        out[switch] = dict(ctl[u] for u in uuids if u in ctl)
    return out


def switches_registered(run: LabRun) -> tuple[int, int]:
    """Switches whose ports rfserver has heard of (via rfproxy), of all in the lab."""
    st = server_status(run)
    seen = {a["dp_id"] for a in st.get("associations", []) if a.get("dp_id") is not None}
    return len(seen & {vm.dp_id for vm in run.plan.vms}), len(run.plan.vms)


def ospf_adjacencies(run: LabRun, family: int = 4) -> tuple[int, int]:
    """Full OSPF (``family`` 6: OSPFv3) adjacencies, counted from both ends, as FRR reports them."""
    command, full_state = (
        ("show ip ospf neighbor", r"\bFull/")
        if family == 4
        else ("show ipv6 ospf6 neighbor", r"\bFull\b")
    )
    ospf = {vm.switch for vm in run.plan.vms if vm.routing == "ospf"}
    want = 2 * sum(1 for link in run.plan.links if {link.a.switch, link.b.switch} <= ospf)
    full = sum(len(re.findall(full_state, run.vtysh(sw, command))) for sw in sorted(ospf))
    return full, want


# --------------------------------------------------------------------------------------------
# IPv6 (dual-stack labs): the same evidence, read with `ip -6 -j` and from ipv6_dst flows
# --------------------------------------------------------------------------------------------

#: Link-local and multicast destinations: per-interface or control traffic, never FIB routes.
_NOT_ROUTED6 = (ipaddress.IPv6Network("fe80::/10"), ipaddress.IPv6Network("ff00::/8"))
_VM_PORT = re.compile(r"eth\d+")
#: Neighbour states in which the kernel has a usable MAC (as for IPv4 above).
_USABLE_NEIGH = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"}


def _ip_json(run: LabRun, switch: str, command: str) -> list[dict]:
    """`ip -j` output of a VM; [] when it prints nothing (no routes, no neighbours).

    stderr is dropped: ip mixes notes such as "Peer netns reference is invalid" (about
    the veth peers in the lab's other namespaces) into what the node's shell returns.
    """
    out = run.vm_node(switch).cmd(f"{command} 2>/dev/null").strip()
    return json.loads(out) if out else []


def _routed6(net: ipaddress.IPv6Network) -> bool:
    return not any(net.subnet_of(n) for n in _NOT_ROUTED6)


def kernel_routes6(run: LabRun, switch: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """prefix -> next hops ((gateway, dev), sorted; () when on-link) of the VM's main table.

    Only unicast routes to global prefixes out of VM ports: the per-interface fe80::/64
    routes and multicast are no FIB entries. Gateways are kept with their interface since
    OSPFv3's are link-local, which only mean something on one link.
    """
    return {
        r.prefix: tuple(sorted(hop for hop in r.hops if hop[0]))
        for r in kernel_route_table(run, switch, 6)
        if r.type == "unicast" and _routed6(ipaddress.IPv6Network(r.prefix)) and r.out_of_vm_ports()
    }


def kernel_neighbours6(run: LabRun, switch: str) -> dict[tuple[str, str], str]:
    """(address, dev) -> MAC of every IPv6 neighbour the VM can send to, link-local included."""
    neigh = {}
    for n in _ip_json(run, switch, "ip -6 -j neigh show"):
        if (
            _VM_PORT.fullmatch(n.get("dev", ""))
            and n.get("lladdr")
            and _USABLE_NEIGH & set(n.get("state", []))
        ):
            neigh[(str(ipaddress.IPv6Address(n["dst"])), n["dev"])] = n["lladdr"].lower()
    return neigh


def kernel_local6(run: LabRun, switch: str) -> set[str]:
    """The VM's own IPv6 addresses on its ports that the kernel answers for, link-local too.

    Read from the local table (type local), not from the address list: a port that is
    down keeps its global address (keep_addr_on_down) but loses its local route, and
    the kernel no longer takes packets for it.
    """
    return {
        str(ipaddress.IPv6Address(r["dst"].split("/", 1)[0]))
        for r in _ip_json(run, switch, "ip -6 -j route show table local")
        if r.get("type") == "local" and _VM_PORT.fullmatch(r.get("dev", ""))
    }


def expected_prefixes6(run: LabRun) -> dict[str, set[str]]:
    """Every IPv6 prefix a converged VM must know: all host and link /64s."""
    subnets = {h.subnet6 for h in run.plan.hosts if h.subnet6 is not None}
    subnets |= {link.subnet6 for link in run.plan.links if link.subnet6 is not None}
    return {vm.switch: set(subnets) for vm in run.plan.vms}


def routes_converged6(run: LabRun) -> tuple[int, int]:
    have, total, _missing = routes_missing6(run)
    return have, total


def routes_missing6(run: LabRun) -> tuple[int, int, dict[str, list[str]]]:
    """(prefixes in VM kernels, prefixes wanted, switch -> the prefixes its VM lacks)."""
    have = total = 0
    missing: dict[str, list[str]] = {}
    for switch, prefixes in expected_prefixes6(run).items():
        got = prefixes & set(kernel_routes6(run, switch))
        have += len(got)
        total += len(prefixes)
        if got != prefixes:
            missing[switch] = sorted(prefixes - got)
    return have, total, missing


def check_flows6(run: LabRun) -> FlowCheck:
    """check_flows for IPv6: kernel routes, own addresses and global neighbours vs flows.

    Wanted on each switch: every global route of its VM; a /128 for every local address of
    the VM's ports (link-local ones too: ND and OSPFv3 unicast to them must reach the VM); a
    /128 for every resolved global neighbour (a link-local neighbour only resolves
    gateways). Every next hop of a gateway route must appear as a destination MAC
    rewrite in the route's group, with the MAC the VM's neighbour table has for it.
    """
    result = FlowCheck(ok=True)
    probed = per_switch(
        run,
        lambda run, sw: (
            kernel_routes6(run, sw),
            kernel_neighbours6(run, sw),
            kernel_local6(run, sw),
            fib_flows(run, sw, family=6),
            groups(run, sw),
        ),
    )
    for vm in run.plan.vms:
        routes, neigh, local, flows, grp = probed[vm.switch]
        want = set(routes)
        want |= {f"{a}/128" for a in local}
        want |= {f"{addr}/128" for addr, _dev in neigh if _routed6(ipaddress.IPv6Network(addr))}
        result.routes += len(routes)
        result.compare(vm.switch, want, flows)
        bad = []
        for prefix, hops in routes.items():
            if not hops or prefix not in flows:
                continue
            m = re.match(r"group:(\d+)", flows[prefix])
            if m is None:
                bad.append(f"{prefix} via {hops}: {flows[prefix]}")
                continue
            bucket = grp.get(int(m.group(1)), "")
            for gw, dev in hops:
                mac = neigh.get((gw, dev))
                if mac is None or f"set_field:{mac}->eth_dst" not in bucket:
                    bad.append(f"{prefix} via {gw}%{dev} ({mac}): group {m.group(1)} {bucket!r}")
        if bad:
            result.bad_rewrite[vm.switch] = bad
    result.ok = not (result.missing or result.extra or result.bad_rewrite)
    return result


def ospf6_adjacencies(run: LabRun) -> tuple[int, int]:
    """Full OSPFv3 adjacencies: ``ospf_adjacencies(run, 6)``."""
    return ospf_adjacencies(run, 6)


# --------------------------------------------------------------------------------------------
# Shortest paths: the VMs' kernels and the switches against the lab graph (see lab/paths.py)
# --------------------------------------------------------------------------------------------


def kernel_next_hops(run: LabRun, switch: str, family: int = 4) -> dict[str, frozenset[Hop]]:
    """prefix -> next hops of the VM's routes out of VM ports (frozenset() when on-link).

    IPv4 hops carry their gateway; IPv6 ones only the port (OSPFv3 gateways are the
    neighbour's link-local address, which says no more than the port does), and so do
    IPv4 ones through an IPv6 neighbour (BGP unnumbered, RFC 5549).
    """
    return {
        r.prefix: frozenset(
            Hop(int(dev[3:]), gw if family == 4 and ":" not in gw else "", "")
            for gw, dev in r.hops
            if gw
        )
        for r in kernel_route_table(run, switch, family)
        if r.type == "unicast" and r.out_of_vm_ports()
    }


_BUCKET = re.compile(r"set_field:([0-9a-f:]{17})->eth_dst.*?output:(\d+)")


def switch_next_hops(run: LabRun, switch: str, family: int = 4) -> dict[str, frozenset[Hop]]:
    """prefix -> (output port, destination MAC) of every bucket of the FIB flow's group."""
    grp = groups(run, switch)
    out: dict[str, frozenset[Hop]] = {}
    for prefix, actions in fib_flows(run, switch, family).items():
        m = re.match(r"group:(\d+)", actions)
        buckets = grp.get(int(m.group(1)), "").split("bucket=") if m else []
        out[prefix] = frozenset(
            Hop(int(b[2]), "", b[1]) for bucket in buckets if (b := _BUCKET.search(bucket))
        )
    return out


@dataclass
class PathCheck:
    """How many (VM, host subnet) pairs route on the lab graph's shortest paths, and why not."""

    good: int = 0
    total: int = 0
    wrong: dict[str, list[str]] = field(default_factory=dict)  # switch -> problems
    #: pairs counted good on some but not all of their equal-cost paths (see ospf6d_ecmp_whole)
    fewer: int = 0

    @property
    def ok(self) -> bool:
        return self.good == self.total

    def detail(self, limit: int = 6) -> str:
        text = f"{self.good}/{self.total} (VM, subnet) on shortest paths"
        if self.fewer:
            text += (
                f" ({self.fewer} on fewer of their equal-cost paths than the graph has:"
                " FRR's ospf6d before 9.0 leaves some out, FRRouting/frr#13297)"
            )
        problems = [f"{sw}: {p}" for sw, ps in self.wrong.items() for p in ps]
        if problems:
            text += "; " + "; ".join(problems[:limit]) + (" ..." if len(problems) > limit else "")
        return text


@functools.cache
def ospf6d_ecmp_whole() -> bool:
    """Whether this machine's FRR ospf6d installs every equal-cost path of a route.

    Before FRR 9.0 its SPF could leave next hops out, depending on which of two equal-cost
    parents it met first (FRRouting/frr#13297, merged for 9.0); Debian 12 ships 8.4, and a
    37-switch Topology Zoo backbone (Iij) showed it: every OSPFv3 adjacency Full, 14-34 of
    1369 (VM, subnet) pairs on some but not all of their equal-cost paths, ospfd exact."""
    try:
        out = subprocess.run(
            [f"{FRR_DIR}/ospf6d", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    m = re.search(r"version (\d+)\.(\d+)", out)
    return m is not None and (int(m[1]), int(m[2])) >= (9, 0)


def shortest_paths(run: LabRun, where: str, family: int = 4) -> PathCheck:
    """Compare every VM's kernel (``where="kernel"``) or every switch's FIB flows and groups
    (``where="switch"``) with the lab graph's shortest paths, for every host subnet of
    ``family``. A switch is not asked about the subnets on its own ports (no next hop)."""
    base = paths.oracle(run.plan)
    if run.auto:  # rfserver chose the addresses: the ports are the evidence
        base = base.only(gateway=False, mac=False)
    if where == "kernel":
        # Unnumbered BGP: the kernel's IPv4 next hops are the neighbours' link-local
        # addresses, so the port is the evidence, as for IPv6.
        oracle = base.only(gateway=family == 4 and not run.plan.bgp.unnumbered, mac=False)
        probe = kernel_next_hops
    else:
        oracle = base.only(gateway=False, mac=True)
        probe = switch_next_hops
    probed = per_switch(run, probe, family)
    if run.auto:
        probed = {
            sw: {k: frozenset(Hop(h.port, "", "") for h in v) for k, v in have.items()}
            for sw, have in probed.items()
        }
    relaxed = family == 6 and not ospf6d_ecmp_whole()
    return compare_paths(oracle, probed, family, skip_connected=where == "switch", relaxed=relaxed)


def compare_paths(
    oracle: paths.Oracle,
    probed: dict[str, dict[str, frozenset[Hop]]],
    family: int,
    *,
    skip_connected: bool,
    relaxed: bool = False,
) -> PathCheck:
    """What a probe saw (switch -> prefix -> next hops) against the oracle, for ``family``.

    ``relaxed``: a route on some of its equal-cost paths passes (and is counted in
    ``fewer``), as long as every next hop it has is on a shortest path: what FRR's ospf6d
    before 9.0 installs (see ospf6d_ecmp_whole); kernel and switch must still agree route
    by route (flows_match_routes)."""
    if relaxed:
        oracle = paths.Oracle(hops=oracle.hops, exact=frozenset())
    result = PathCheck()
    for switch, table in oracle.hops.items():
        have = probed.get(switch, {})
        for prefix, want in table.items():
            if ipaddress.ip_network(prefix).version != family or (skip_connected and not want):
                continue
            result.total += 1
            problem = oracle.problems(switch, prefix, have.get(prefix))
            if problem is None:
                result.good += 1
                if relaxed and want and have.get(prefix) != want:
                    result.fewer += 1
            else:
                result.wrong.setdefault(switch, []).append(problem)
    return result

"""What the operator sees, as JSON for rfweb (pure reads, no I/O).

Every function here renders the server's ``OperatorView`` (server/view.py,
which the status file renders too) as plain JSON-ready data, except the
paged routes and FIB, which read the routing table of the ``RFServer``
itself (through its sorted prefix index: a page of a million routes costs
the page, not a sort). The REST API, the live page's event stream, the metrics and
`routeflow status` all show the same numbers because they all come from one
view.

Identifiers that can exceed 2**53 (datapath ids, VM ids: a MAC as an integer)
are given as hex strings ("0x5"), so a browser's JavaScript never rounds them.
Ports and controller ids are plain integers.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from routeflow.rflib.types import EntryState
from routeflow.server.view import OperatorView, PortView, StatsView, operator_view

if TYPE_CHECKING:
    from routeflow.server.service import RFServer

#: Short, stable codes for association states (CSS classes, metrics labels, filters).
STATE_CODES: dict[EntryState, str] = {
    EntryState.ACTIVE: "active",
    EntryState.ASSOCIATED: "associated",
    EntryState.IDLE_CLIENT_PORT: "idle_client",
    EntryState.IDLE_DATAPATH_PORT: "idle_datapath",
}
#: A configured mapping neither side of which has registered yet.
DOWN = "down"
NOT_REGISTERED = "not registered"
ALL_STATE_CODES = (*STATE_CODES.values(), DOWN)
# Worst first: an edge made of several ports shows its least healthy one.
_SEVERITY = {DOWN: 0, "idle_client": 1, "idle_datapath": 1, "associated": 2, "active": 3}

MAX_ID = 2**64 - 1


def hexid(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def parse_id(text: str) -> int:
    """'0x5', '0X05' or '5' -> 5; ValueError for anything else or beyond 64 bits."""
    t = text.strip()
    value = int(t, 16) if t[:2].lower() == "0x" else int(t, 10)
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"{text!r} is outside 0..2**64-1")
    return value


def switch_node_id(dp_id: int) -> str:
    return f"sw-{dp_id:#x}"


def vm_node_id(vm_id: int) -> str:
    return f"vm-{vm_id:#x}"


def host_node_id(name: str) -> str:
    return f"host-{name}"


def _labels(topology: dict | None) -> dict[str, str]:
    if not topology:
        return {}
    return {n["id"]: n.get("label", n["id"]) for n in topology.get("nodes", [])}


# --- associations ------------------------------------------------------------------


def _state_code(port: PortView) -> str:
    return DOWN if port.state is None else STATE_CODES[port.state]


def _state_text(port: PortView) -> str:
    return NOT_REGISTERED if port.state is None else port.state.value


def associations(v: OperatorView) -> list[dict[str, Any]]:
    """Every row of the association table, then configured mappings nobody registered."""
    return [
        {
            "vm_id": hexid(port.vm_id),
            "vm_port": port.vm_port,
            "vm_ifname": port.vm_ifname,
            "ct_id": port.ct_id,
            "dp_id": hexid(port.dp_id),
            "dp_port": port.dp_port,
            "dp_port_name": port.dp_port_name,
            "vs_id": hexid(port.vs_id),
            "vs_port": port.vs_port,
            "hwaddress": port.hwaddress,
            "state": _state_text(port),
            "state_code": _state_code(port),
            "configured": port.configured,
        }
        for port in v.ports
    ]


def state_counts(v: OperatorView) -> dict[str, int]:
    counts = dict.fromkeys(ALL_STATE_CODES, 0)
    for port in v.ports:
        counts[_state_code(port)] += 1
    return counts


# --- routes and FIB ----------------------------------------------------------------


def _vm_switch(server) -> dict[int, tuple[int, int]]:
    """vm_id -> (ct_id, dp_id) of its switch, from the config (one VM per switch)."""
    out: dict[int, tuple[int, int]] = {}
    for c in server.table.config:
        out.setdefault(c.vm_id, (c.ct_id, c.dp_id))
    return out


def _page(groups, limit: int | None, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Rows ``offset`` .. ``offset + limit`` of groups given in order as (size, rows(lo, hi)).

    A full table is a million routes: only the rows of the page are built;
    the other groups only count.
    """
    rows: list[dict[str, Any]] = []
    total = 0
    for size, make_rows in groups:
        start = total
        total += size
        if (limit is not None and len(rows) >= limit) or total <= offset or size == 0:
            continue
        lo = max(0, offset - start)
        hi = size if limit is None else min(size, lo + limit - len(rows))
        rows.extend(make_rows(lo, hi))
    return rows, total


def routes(
    server: RFServer, vm_id: int | None = None, limit: int | None = None, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Routes as each VM reported them, with whether the switch has them installed."""

    def make_rows(vm: int, table: dict, lo: int, hi: int) -> list[dict[str, Any]]:
        installed = server.routing.installed_prefixes(vm)
        out = []
        for prefix in server.routing.prefix_index(vm).routes()[lo:hi]:
            route = table[prefix]
            out.append(
                {
                    "vm_id": hexid(vm),
                    "prefix": prefix,
                    "kind": route.kind.name.lower(),
                    "nexthops": [
                        {"vm_port": nh.vm_port, "gateway": nh.gateway, "weight": nh.weight}
                        for nh in route.nexthops
                    ],
                    "installed": prefix in installed,
                }
            )
        return out

    groups = [
        (len(table), lambda lo, hi, vm=vm, table=table: make_rows(vm, table, lo, hi))
        for vm, table in sorted(server.routing.routes.items())
        if vm_id is None or vm == vm_id
    ]
    return _page(groups, limit, offset)


def fib(
    server: RFServer, dp_id: int | None = None, limit: int | None = None, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """FIB entries by switch, then prefix (as text)."""
    routing = server.routing
    vms_by_dp: dict[int, list[int]] = defaultdict(list)
    for vm in routing.installed_vms():
        where = routing.installed_switch(vm)
        if where is not None:
            vms_by_dp[where[1]].append(vm)

    def make_rows(dp: int, lo: int, hi: int) -> list[dict[str, Any]]:
        vms = vms_by_dp[dp]
        if len(vms) == 1:  # one VM per switch: a slice of its index
            keys: Iterable[tuple[str, int]] = (
                (prefix, vms[0]) for prefix in routing.prefix_index(vms[0]).fib()[lo:hi]
            )
        else:
            merged = heapq.merge(
                *(((prefix, vm) for prefix in routing.prefix_index(vm).fib()) for vm in vms)
            )
            keys = itertools.islice(merged, lo, hi)
        out = []
        for prefix, vm in keys:
            found = routing.installed_entry(vm, prefix)
            assert found is not None  # listed by installed_prefixes a moment ago
            ct, d, e = found
            out.append(
                {
                    "ct_id": ct,
                    "dp_id": hexid(d),
                    "prefix": e.prefix,
                    "kind": e.kind.name.lower(),
                    "nexthop_id": e.nexthop_id,
                    "dp_port": e.dp_port,
                }
            )
        return out

    groups = [
        (
            sum(len(routing.installed_prefixes(vm)) for vm in vms_by_dp[dp]),
            lambda lo, hi, dp=dp: make_rows(dp, lo, hi),
        )
        for dp in sorted(vms_by_dp)
        if dp_id is None or dp == dp_id
    ]
    return _page(groups, limit, offset)


# --- flows (from the proxies' DatapathStats) ------------------------------------------


def flows(
    v: OperatorView, dp_id: int | None = None, table: int | None = None
) -> list[dict[str, Any]]:
    """One entry per switch with its latest flow statistics."""
    out = []
    for s in v.stats:
        if dp_id is not None and s.dp_id != dp_id:
            continue
        rows = [
            {
                "table": f.table,
                "priority": f.priority,
                "cookie": f.cookie,
                "match": f.match,
                "actions": f.actions,
                "packets": f.packets,
                "bytes": f.bytes,
            }
            for f in s.report.flows
            if table is None or f.table == table
        ]
        rows.sort(key=lambda r: (r["table"], -r["priority"], r["match"]))
        out.append(
            {
                "ct_id": s.ct_id,
                "dp_id": hexid(s.dp_id),
                "stats_time": s.at,
                "flows": rows,
                "packets": sum(r["packets"] for r in rows),
                "bytes": sum(r["bytes"] for r in rows),
                "relayed_to_vm": s.report.relayed_to_vm,
                "relayed_to_dp": s.report.relayed_to_dp,
                "relay_dropped": s.report.relay_dropped,
            }
        )
    return out


# --- switches, VMs, controllers -------------------------------------------------------


def switches(v: OperatorView, topology: dict | None = None) -> list[dict[str, Any]]:
    labels = _labels(topology)
    ports_by_dp: dict[int, list[PortView]] = defaultdict(list)
    for port in v.ports:
        if port.dp_id is not None:
            ports_by_dp[port.dp_id].append(port)
    out = []
    for sw in v.switches:
        ports = [
            {
                "dp_port": port.dp_port,
                "name": port.dp_port_name,
                "vm_id": hexid(port.vm_id),
                "vm_port": port.vm_port,
                "state": _state_text(port),
                "state_code": _state_code(port),
                "link_up": port.link_up,
            }
            for port in ports_by_dp[sw.dp_id]
        ]
        ports.sort(key=lambda r: r["dp_port"] if r["dp_port"] is not None else -1)
        registered = any(r["state_code"] not in (DOWN, "idle_client") for r in ports)
        flows_ = sw.stats.report.flows if sw.stats is not None else []
        out.append(
            {
                "dp_id": hexid(sw.dp_id),
                "ct_id": sw.ct_id,
                "name": labels.get(switch_node_id(sw.dp_id), ""),
                "registered": registered,
                "controller_connected": sw.controller_connected,
                "ports": ports,
                "fib_entries": sw.fib_entries,
                "flows": len(flows_),
                "packets": sum(f.packets for f in flows_),
                "bytes": sum(f.bytes for f in flows_),
                "stats_time": sw.stats.at if sw.stats is not None else None,
            }
        )
    return out


def vms(v: OperatorView, topology: dict | None = None) -> list[dict[str, Any]]:
    labels = _labels(topology)
    ports_by_vm: dict[int, list[PortView]] = defaultdict(list)
    for port in v.ports:
        if port.vm_id is not None:
            ports_by_vm[port.vm_id].append(port)
    out = []
    for vm in v.vms:
        ifaces = [
            {
                "vm_port": port.vm_port,
                "ifname": port.vm_ifname,
                "hwaddress": port.hwaddress,
                "dp_id": hexid(port.dp_id),
                "dp_port": port.dp_port,
                "state": _state_text(port),
                "state_code": _state_code(port),
            }
            for port in ports_by_vm[vm.vm_id]
        ]
        ifaces.sort(key=lambda r: r["vm_port"] if r["vm_port"] is not None else -1)
        out.append(
            {
                "vm_id": hexid(vm.vm_id),
                "name": labels.get(vm_node_id(vm.vm_id), ""),
                "connected": vm.connected,
                "peer": vm.peer,
                "sessions": vm.sessions,
                "dp_id": hexid(vm.switch[1]) if vm.switch else None,
                "interfaces": ifaces,
                "routes": vm.routes or 0,
                "fib_entries": vm.fib_entries,
            }
        )
    return out


def controllers(v: OperatorView) -> list[dict[str, Any]]:
    return [
        {
            "ct_id": c.ct_id,
            "connected": c.connected,
            "peer": c.peer,
            "sessions": c.sessions,
            "switches": [hexid(dp) for dp in c.switches],
            "last_stats_time": c.last_stats_time,
            "master": c.master,
            "replicas": c.replicas,
            "generation": c.generation,
        }
        for c in v.controllers
    ]


def events(v: OperatorView, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
    items = [e for e in v.events if kind is None or e[1] == kind]
    return [{"time": t, "kind": k, "text": text} for t, k, text in items[-limit:]]


def links(v: OperatorView) -> list[dict[str, Any]]:
    """Discovered links, one row per direction; ``reverse``: the other direction is up too."""
    have = {(k.src_dp_id, k.src_port, k.dst_dp_id, k.dst_port) for k in v.links}
    return [
        {
            "src_dp_id": hexid(k.src_dp_id),
            "src_port": k.src_port,
            "src_port_name": k.src_port_name,
            "dst_dp_id": hexid(k.dst_dp_id),
            "dst_port": k.dst_port,
            "dst_port_name": k.dst_port_name,
            "ct_id": k.ct_id,
            "since": k.since,
            "confirmed": k.confirmed,
            "reverse": (k.dst_dp_id, k.dst_port, k.src_dp_id, k.src_port) in have,
        }
        for k in v.links
    ]


def _cables(v: OperatorView) -> dict[tuple[tuple[int, int], tuple[int, int]], int]:
    """Discovered links as cables: (lower end, higher end) -> directions seen (1 or 2)."""
    out: dict[tuple[tuple[int, int], tuple[int, int]], int] = defaultdict(int)
    for k in v.links:
        a, b = sorted([(k.src_dp_id, k.src_port), (k.dst_dp_id, k.dst_port)])
        out[(a, b)] += 1
    return out


# --- counters ---------------------------------------------------------------------------


def relay_counts(v: OperatorView) -> dict[int, dict[str, int]]:
    """ct_id -> relay counters from that controller's most recent DatapathStats.

    The proxy's relay counters are per controller (they are repeated in the
    stats of each of its switches), so only the newest report counts.
    """
    best: dict[int, StatsView] = {}
    for s in v.stats:
        if s.ct_id not in best or s.at > best[s.ct_id].at:
            best[s.ct_id] = s
    return {
        ct: {
            "to_vm": s.report.relayed_to_vm,
            "to_dp": s.report.relayed_to_dp,
            "dropped": s.report.relay_dropped,
        }
        for ct, s in sorted(best.items())
    }


def summary(v: OperatorView, topology: dict | None = None) -> dict[str, Any]:
    sw = switches(v, topology)
    states = state_counts(v)
    relay = relay_counts(v)
    return {
        "pid": v.pid,
        "started": v.started,
        "lab": (topology or {}).get("name"),
        "switches": len(sw),
        "switches_registered": sum(1 for s in sw if s["registered"]),
        "vms": len(v.vms),
        "vms_connected": sum(1 for vm in v.vms if vm.connected),
        "clients": sum(1 for vm in v.vms if vm.connected),
        "controllers": sum(1 for c in v.controllers if c.connected),
        "associations": sum(states.values()),
        "associations_by_state": states,
        "routes": sum(vm.routes or 0 for vm in v.vms),
        "fib_entries": sum(v.fib_entries.values()),
        "nexthops": v.nexthops,
        "flows": sum(s["flows"] for s in sw),
        "flow_packets": sum(s["packets"] for s in sw),
        "flow_bytes": sum(s["bytes"] for s in sw),
        "relayed_to_vm": sum(r["to_vm"] for r in relay.values()),
        "relayed_to_dp": sum(r["to_dp"] for r in relay.values()),
        "messages_received": sum(v.received.values()),
        "messages_sent": sum(v.sent.values()),
        "reconnects": dict(v.reconnects),
        "links": len(_cables(v)),
    }


# --- topology graph ------------------------------------------------------------------------


def _worst(codes: list[str]) -> str:
    return min(codes, key=lambda c: _SEVERITY.get(c, 0)) if codes else DOWN


def topology(v: OperatorView, base: dict | None = None) -> dict[str, Any]:
    """Nodes and edges for the graph: the lab's drawing (if any) plus what is live.

    ``base`` is the optional topology file (switches, VMs, hosts and links
    from the lab plan); whatever the server knows and the file does not
    (switches, VMs, associations) is added, and every node and edge gets a
    ``state`` from the live data.
    """
    base = base or {}
    cables = _cables(v)  # before ``v`` is reused below
    nodes: dict[str, dict[str, Any]] = {}
    for n in base.get("nodes", []):
        nodes[n["id"]] = {**n}
    edges: list[dict[str, Any]] = [{**e} for e in base.get("edges", [])]

    sw_list = switches(v, base)
    vm_list = vms(v, base)
    registered_ports: set[tuple[str, int]] = set()
    for s in sw_list:
        for p in s["ports"]:
            usable = p["state_code"] not in (DOWN, "idle_client") and p["link_up"]
            if usable and p["dp_port"] is not None:
                registered_ports.add((s["dp_id"], p["dp_port"]))

    sw_state: dict[str, str] = {}
    for s in sw_list:
        nid = f"sw-{s['dp_id']}"
        state = "up" if s["registered"] and s["controller_connected"] else "down"
        sw_state[nid] = state
        node = nodes.setdefault(
            nid, {"id": nid, "kind": "switch", "label": s["name"] or f"dp {s['dp_id']}"}
        )
        node.update(
            dp_id=s["dp_id"],
            ct_id=s["ct_id"],
            state=state,
            fib_entries=s["fib_entries"],
            flows=s["flows"],
            packets=s["packets"],
        )
    for v in vm_list:
        nid = f"vm-{v['vm_id']}"
        node = nodes.setdefault(
            nid, {"id": nid, "kind": "vm", "label": v["name"] or f"vm {v['vm_id']}"}
        )
        node.update(
            vm_id=v["vm_id"],
            state="up" if v["connected"] else "down",
            routes=v["routes"],
        )
    for n in nodes.values():
        n.setdefault("state", "unknown")

    # VM <-> switch: one edge per pair, coloured by its least healthy port.
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for v in vm_list:
        for i in v["interfaces"]:
            if i["dp_id"] is not None:
                pairs[(f"vm-{v['vm_id']}", f"sw-{i['dp_id']}")].append(i["state_code"])
    edges = [e for e in edges if e.get("kind") != "association"]
    for (vm_nid, sw_nid), codes in sorted(pairs.items()):
        nodes.setdefault(sw_nid, {"id": sw_nid, "kind": "switch", "label": sw_nid[3:]})
        nodes[sw_nid].setdefault("state", "down")
        active = sum(1 for c in codes if c == "active")
        edges.append(
            {
                "id": f"assoc-{vm_nid}-{sw_nid}",
                "source": vm_nid,
                "target": sw_nid,
                "kind": "association",
                "state": _worst(codes),
                "label": f"{active}/{len(codes)}",
            }
        )

    taken = set(nodes)
    for i, e in enumerate(edges):
        eid = e.get("id") or f"edge-{i}"
        while eid in taken:  # graph libraries want ids unique over nodes and edges
            eid = f"e-{eid}"
        e["id"] = eid
        taken.add(eid)
        kind = e.get("kind")
        if kind == "link":
            a = nodes.get(e["source"], {}).get("dp_id")
            b = nodes.get(e["target"], {}).get("dp_id")
            up = (a, e.get("source_port")) in registered_ports and (
                b,
                e.get("target_port"),
            ) in registered_ports
            e["state"] = "up" if up else "down"
        elif kind == "host":
            sw = nodes.get(e["target"], {})
            port_up = (sw.get("dp_id"), e.get("target_port")) in registered_ports
            e["state"] = "up" if port_up else "down"
            host = nodes.get(e["source"])
            if host is not None:
                host["state"] = e["state"]
    _discovered_edges(cables, nodes, edges)
    # Drop edges whose ends are unknown (a topology file that names nothing live).
    edges = [e for e in edges if e["source"] in nodes and e["target"] in nodes]
    return {
        "name": base.get("name"),
        "nodes": sorted(nodes.values(), key=lambda n: (n["kind"], n["id"])),
        "edges": edges,
    }


def _discovered_edges(found: dict, nodes: dict, edges: list[dict[str, Any]]) -> None:
    """Mark the drawn links rfproxy discovered; add the ones nobody drew.

    ``discovered``: "both" (both directions heard), "one-way", or "no" (drawn,
    not discovered, while discovery found other links).
    """
    cables: dict[Any, int] = dict(found)
    if not cables:
        return
    dp_of = {nid: n.get("dp_id") for nid, n in nodes.items() if n.get("kind") == "switch"}
    for e in edges:
        if e.get("kind") != "link":
            continue
        a = (_dp_int(dp_of.get(e["source"])), e.get("source_port"))
        b = (_dp_int(dp_of.get(e["target"])), e.get("target_port"))
        seen = cables.pop((a, b), 0) or cables.pop((b, a), 0)
        e["discovered"] = {0: "no", 1: "one-way", 2: "both"}[min(seen, 2)]
    for ((da, pa), (db, pb)), seen in sorted(cables.items()):
        src, dst = switch_node_id(da), switch_node_id(db)
        for nid in (src, dst):
            nodes.setdefault(nid, {"id": nid, "kind": "switch", "label": nid[3:], "state": "down"})
        edges.append(
            {
                "id": f"lldp-{src}:{pa}-{dst}:{pb}",
                "source": src,
                "target": dst,
                "kind": "link",
                "source_port": pa,
                "target_port": pb,
                "discovered": "both" if seen >= 2 else "one-way",
                "state": "up" if seen >= 2 else "one-way",
            }
        )


def _dp_int(text: str | None) -> int | None:
    try:
        return None if text is None else parse_id(text)
    except ValueError:
        return None


#: Routes the live page lists (it is re-sent on every change; a full table
#: is browsed with /api/routes?limit=&offset= instead).
LIVE_ROUTES = 1000


def snapshot(server: RFServer, base: dict | None = None, events_limit: int = 50) -> dict[str, Any]:
    """Everything the live page shows, in one document (sent on every change)."""
    v = operator_view(server)
    flow_rows = []
    for sw in flows(v):
        for f in sw["flows"]:
            # stats_time: the page marks a row that grew since its switch's previous
            # sample, whatever else redraws the table in between.
            flow_rows.append({"dp_id": sw["dp_id"], "stats_time": sw["stats_time"], **f})
    return {
        "summary": summary(v, base),
        "topology": topology(v, base),
        "associations": associations(v),
        "routes": routes(server, limit=LIVE_ROUTES)[0],
        "flows": flow_rows,
        "controllers": controllers(v),
        "events": events(v, events_limit),
    }

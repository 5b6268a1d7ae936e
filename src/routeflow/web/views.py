"""What the operator sees, computed from a running RFServer (pure reads, no I/O).

Every function here takes the server object and returns plain JSON-ready data;
the REST API, the live page's event stream, the metrics and `routeflow status`
all show the same numbers because they all come from here.

Identifiers that can exceed 2**53 (datapath ids, VM ids: a MAC as an integer)
are given as hex strings ("0x5"), so a browser's JavaScript never rounds them.
Ports and controller ids are plain integers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from routeflow.rflib.types import AssociationEntry, EntryState

#: Short, stable codes for association states (CSS classes, metrics labels, filters).
STATE_CODES: dict[EntryState, str] = {
    EntryState.ACTIVE: "active",
    EntryState.ASSOCIATED: "associated",
    EntryState.IDLE_CLIENT_PORT: "idle_client",
    EntryState.IDLE_DATAPATH_PORT: "idle_datapath",
}
#: A configured mapping neither side of which has registered yet.
DOWN = "down"
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


# --- small accessors (tolerate servers without the optional bookkeeping) ---------


def _vm_ports(server) -> dict:
    return getattr(server, "vm_ports", {}) or {}


def _dp_ports(server) -> dict:
    return getattr(server, "dp_ports", {}) or {}


def _sessions(server) -> dict:
    return getattr(server, "sessions", {}) or {}


def _labels(topology: dict | None) -> dict[str, str]:
    if not topology:
        return {}
    return {n["id"]: n.get("label", n["id"]) for n in topology.get("nodes", [])}


def _dp_port_name(server, ct_id: int | None, dp_id: int | None, dp_port: int | None) -> str:
    reg = _dp_ports(server).get((ct_id, dp_id, dp_port))
    return (getattr(reg, "name", "") or "") if reg is not None else ""


def _vm_ifname(server, vm_id: int | None, vm_port: int | None) -> str:
    reg = _vm_ports(server).get((vm_id, vm_port))
    return (getattr(reg, "ifname", "") or "") if reg is not None else ""


# --- associations ------------------------------------------------------------------


def _assoc_row(server, e: AssociationEntry, configured: bool) -> dict[str, Any]:
    return {
        "vm_id": hexid(e.vm_id),
        "vm_port": e.vm_port,
        "vm_ifname": _vm_ifname(server, e.vm_id, e.vm_port),
        "ct_id": e.ct_id,
        "dp_id": hexid(e.dp_id),
        "dp_port": e.dp_port,
        "dp_port_name": _dp_port_name(server, e.ct_id, e.dp_id, e.dp_port),
        "vs_id": hexid(e.vs_id),
        "vs_port": e.vs_port,
        "hwaddress": e.hwaddress,
        "state": e.state.value,
        "state_code": STATE_CODES[e.state],
        "configured": configured,
    }


def associations(server) -> list[dict[str, Any]]:
    """Every row of the association table, then configured mappings nobody registered."""
    table = server.table
    cfg_vm = {c.vm_key for c in table.config}
    cfg_dp = {c.dp_key for c in table.config}
    rows = [
        _assoc_row(server, e, e.vm_key in cfg_vm or e.dp_key in cfg_dp) for e in table.entries()
    ]
    for c in table.config:
        if table.by_vm_port(*c.vm_key) is None and table.by_dp_port(*c.dp_key) is None:
            rows.append(
                {
                    "vm_id": hexid(c.vm_id),
                    "vm_port": c.vm_port,
                    "vm_ifname": "",
                    "ct_id": c.ct_id,
                    "dp_id": hexid(c.dp_id),
                    "dp_port": c.dp_port,
                    "dp_port_name": "",
                    "vs_id": None,
                    "vs_port": None,
                    "hwaddress": None,
                    "state": "not registered",
                    "state_code": DOWN,
                    "configured": True,
                }
            )
    return rows


def state_counts(server) -> dict[str, int]:
    counts = dict.fromkeys(ALL_STATE_CODES, 0)
    for row in associations(server):
        counts[row["state_code"]] += 1
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
    server, vm_id: int | None = None, limit: int | None = None, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Routes as each VM reported them, with whether the switch has them installed."""

    def make_rows(vm: int, table: dict, lo: int, hi: int) -> list[dict[str, Any]]:
        installed = server.routing.installed_prefixes(vm)
        out = []
        for prefix in sorted(table)[lo:hi]:
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
    server, dp_id: int | None = None, limit: int | None = None, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """FIB entries by switch, then prefix (as text)."""
    routing = server.routing
    vms_by_dp: dict[int, list[int]] = defaultdict(list)
    for vm in routing.installed_vms():
        where = routing.installed_switch(vm)
        if where is not None:
            vms_by_dp[where[1]].append(vm)

    def make_rows(dp: int, lo: int, hi: int) -> list[dict[str, Any]]:
        keys = sorted(
            (prefix, vm) for vm in vms_by_dp[dp] for prefix in routing.installed_prefixes(vm)
        )
        out = []
        for prefix, vm in keys[lo:hi]:
            ct, d, e = routing.installed_entry(vm, prefix)
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


def flows(server, dp_id: int | None = None, table: int | None = None) -> list[dict[str, Any]]:
    """One entry per switch with its latest flow statistics."""
    out = []
    for (ct, dp), (at, st) in sorted(server.stats.items()):
        if dp_id is not None and dp != dp_id:
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
            for f in st.flows
            if table is None or f.table == table
        ]
        rows.sort(key=lambda r: (r["table"], -r["priority"], r["match"]))
        out.append(
            {
                "ct_id": ct,
                "dp_id": hexid(dp),
                "stats_time": at,
                "flows": rows,
                "packets": sum(r["packets"] for r in rows),
                "bytes": sum(r["bytes"] for r in rows),
                "relayed_to_vm": st.relayed_to_vm,
                "relayed_to_dp": st.relayed_to_dp,
                "relay_dropped": st.relay_dropped,
            }
        )
    return out


# --- switches, VMs, controllers -------------------------------------------------------


def _switch_ids(server) -> dict[int, int]:
    """dp_id -> ct_id for every switch the server knows of (config, table, stats)."""
    out: dict[int, int] = {}
    for c in server.table.config:
        out.setdefault(c.dp_id, c.ct_id)
    for e in server.table.entries():
        if e.dp_id is not None:
            out.setdefault(e.dp_id, e.ct_id)
    for ct, dp in server.stats:
        out.setdefault(dp, ct)
    return out


def _vm_ids(server) -> set[int]:
    ids = {c.vm_id for c in server.table.config}
    ids |= {e.vm_id for e in server.table.entries() if e.vm_id is not None}
    ids |= set(server.clients)
    ids |= set(server.routing.routes)
    return ids


def switches(server, topology: dict | None = None) -> list[dict[str, Any]]:
    labels = _labels(topology)
    assoc = associations(server)
    links = server.links
    fib_count: dict[int, int] = defaultdict(int)
    for (_ct, dp), n in server.routing.fib_counts().items():  # no walk of a full table
        fib_count[dp] += n
    out = []
    for dp, ct in sorted(_switch_ids(server).items()):
        h = hexid(dp)
        ports = [
            {
                "dp_port": r["dp_port"],
                "name": r["dp_port_name"],
                "vm_id": r["vm_id"],
                "vm_port": r["vm_port"],
                "state": r["state"],
                "state_code": r["state_code"],
                "link_up": links.is_up(r["ct_id"], dp, r["dp_port"]),
            }
            for r in assoc
            if r["dp_id"] == h
        ]
        ports.sort(key=lambda r: r["dp_port"] if r["dp_port"] is not None else -1)
        registered = any(p["state_code"] not in (DOWN, "idle_client") for p in ports)
        stats = server.stats.get((ct, dp))
        st = stats[1] if stats else None
        out.append(
            {
                "dp_id": h,
                "ct_id": ct,
                "name": labels.get(switch_node_id(dp), ""),
                "registered": registered,
                "controller_connected": ct in server.proxies,
                "ports": ports,
                "fib_entries": fib_count.get(dp, 0),
                "flows": len(st.flows) if st else 0,
                "packets": sum(f.packets for f in st.flows) if st else 0,
                "bytes": sum(f.bytes for f in st.flows) if st else 0,
                "stats_time": stats[0] if stats else None,
            }
        )
    return out


def vms(server, topology: dict | None = None) -> list[dict[str, Any]]:
    labels = _labels(topology)
    assoc = associations(server)
    where = _vm_switch(server)
    sessions = _sessions(server)
    out = []
    for vm in sorted(_vm_ids(server)):
        h = hexid(vm)
        conn = server.clients.get(vm)
        ifaces = [
            {
                "vm_port": r["vm_port"],
                "ifname": r["vm_ifname"],
                "hwaddress": r["hwaddress"],
                "dp_id": r["dp_id"],
                "dp_port": r["dp_port"],
                "state": r["state"],
                "state_code": r["state_code"],
            }
            for r in assoc
            if r["vm_id"] == h
        ]
        ifaces.sort(key=lambda r: r["vm_port"] if r["vm_port"] is not None else -1)
        sw = where.get(vm)
        out.append(
            {
                "vm_id": h,
                "name": labels.get(vm_node_id(vm), ""),
                "connected": conn is not None,
                "peer": getattr(conn, "peer", None) if conn is not None else None,
                "sessions": sessions.get(("client", vm), 0),
                "dp_id": hexid(sw[1]) if sw else None,
                "interfaces": ifaces,
                "routes": len(server.routing.routes.get(vm, {})),
                "fib_entries": len(server.routing.installed_prefixes(vm)),
            }
        )
    return out


def controllers(server) -> list[dict[str, Any]]:
    ids = set(server.proxies) | {c.ct_id for c in server.table.config}
    ids |= {ct for ct, _dp in server.stats}
    sessions = _sessions(server)
    dps = _switch_ids(server)
    out = []
    for ct in sorted(ids):
        conn = server.proxies.get(ct)
        last = [at for (c, _dp), (at, _st) in server.stats.items() if c == ct]
        out.append(
            {
                "ct_id": ct,
                "connected": conn is not None,
                "peer": getattr(conn, "peer", None) if conn is not None else None,
                "sessions": sessions.get(("controller", ct), 0),
                "switches": [hexid(dp) for dp, c in sorted(dps.items()) if c == ct],
                "last_stats_time": max(last) if last else None,
                "master": server.roles.master(ct),
                "replicas": server.roles.replicas(ct),
                "generation": server.roles.generation(ct),
            }
        )
    return out


def events(server, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
    items = [e for e in server.events if kind is None or e[1] == kind]
    return [{"time": t, "kind": k, "text": text} for t, k, text in items[-limit:]]


# --- counters ---------------------------------------------------------------------------


def message_counts(server) -> tuple[dict[str, int], dict[str, int]]:
    """(received, sent) message counts by RFProtocol message type."""
    rx: dict[str, int] = {}
    tx: dict[str, int] = {}
    for key, n in sorted(server.counters.items()):
        if key.startswith("rx_"):
            rx[key[3:]] = n
        elif key.startswith("tx_"):
            tx[key[3:]] = n
    return rx, tx


def relay_counts(server) -> dict[int, dict[str, int]]:
    """ct_id -> relay counters from that controller's most recent DatapathStats.

    The proxy's relay counters are per controller (they are repeated in the
    stats of each of its switches), so only the newest report counts.
    """
    best: dict[int, tuple[float, Any]] = {}
    for (ct, _dp), (at, st) in server.stats.items():
        if ct not in best or at > best[ct][0]:
            best[ct] = (at, st)
    return {
        ct: {
            "to_vm": st.relayed_to_vm,
            "to_dp": st.relayed_to_dp,
            "dropped": st.relay_dropped,
        }
        for ct, (_at, st) in sorted(best.items())
    }


def summary(server, topology: dict | None = None) -> dict[str, Any]:
    sw = switches(server, topology)
    vm = vms(server, topology)
    states = state_counts(server)
    rx, tx = message_counts(server)
    relay = relay_counts(server)
    sessions = _sessions(server)
    reconnects = {"client": 0, "controller": 0}
    for (kind, _ident), n in sessions.items():
        if kind in reconnects:
            reconnects[kind] += max(0, n - 1)
    return {
        "pid": os.getpid(),
        "started": server.started,
        "lab": (topology or {}).get("name"),
        "switches": len(sw),
        "switches_registered": sum(1 for s in sw if s["registered"]),
        "vms": len(vm),
        "vms_connected": sum(1 for v in vm if v["connected"]),
        "clients": len(server.clients),
        "controllers": len(server.proxies),
        "associations": sum(states.values()),
        "associations_by_state": states,
        "routes": sum(len(r) for r in server.routing.routes.values()),
        "fib_entries": sum(server.routing.fib_counts().values()),
        "nexthops": server.routing.nexthop_count(),
        "flows": sum(s["flows"] for s in sw),
        "flow_packets": sum(s["packets"] for s in sw),
        "flow_bytes": sum(s["bytes"] for s in sw),
        "relayed_to_vm": sum(r["to_vm"] for r in relay.values()),
        "relayed_to_dp": sum(r["to_dp"] for r in relay.values()),
        "messages_received": sum(rx.values()),
        "messages_sent": sum(tx.values()),
        "reconnects": reconnects,
    }


# --- topology graph ------------------------------------------------------------------------


def _worst(codes: list[str]) -> str:
    return min(codes, key=lambda c: _SEVERITY.get(c, 0)) if codes else DOWN


def topology(server, base: dict | None = None) -> dict[str, Any]:
    """Nodes and edges for the graph: the lab's drawing (if any) plus what is live.

    ``base`` is the optional topology file (switches, VMs, hosts and links
    from the lab plan); whatever the server knows and the file does not
    (switches, VMs, associations) is added, and every node and edge gets a
    ``state`` from the live data.
    """
    base = base or {}
    nodes: dict[str, dict[str, Any]] = {}
    for n in base.get("nodes", []):
        nodes[n["id"]] = {**n}
    edges: list[dict[str, Any]] = [{**e} for e in base.get("edges", [])]

    sw_list = switches(server, base)
    vm_list = vms(server, base)
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
    # Drop edges whose ends are unknown (a topology file that names nothing live).
    edges = [e for e in edges if e["source"] in nodes and e["target"] in nodes]
    return {
        "name": base.get("name"),
        "nodes": sorted(nodes.values(), key=lambda n: (n["kind"], n["id"])),
        "edges": edges,
    }


#: Routes the live page lists (it is re-sent on every change; a full table
#: is browsed with /api/routes?limit=&offset= instead).
LIVE_ROUTES = 1000


def snapshot(server, base: dict | None = None, events_limit: int = 50) -> dict[str, Any]:
    """Everything the live page shows, in one document (sent on every change)."""
    flow_rows = []
    for sw in flows(server):
        for f in sw["flows"]:
            flow_rows.append({"dp_id": sw["dp_id"], **f})
    return {
        "summary": summary(server, base),
        "topology": topology(server, base),
        "associations": associations(server),
        "routes": routes(server, limit=LIVE_ROUTES)[0],
        "flows": flow_rows,
        "controllers": controllers(server),
        "events": events(server, events_limit),
    }

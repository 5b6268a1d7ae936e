"""What an operator sees of a running rfserver: one typed view, built in one place.

The status file (``RFServer.status``), rfweb's REST API and live page
(``web/views.py``) and its Prometheus metrics (``web/metrics.py``) are all
renderings of the ``OperatorView`` that ``operator_view`` reads off the
server, so they cannot disagree. Building it is a read of the association
table, the connections and the counts the routing table keeps as it changes;
it never walks the routes (a full table is a million of them). The routes and
FIB rows themselves are paged straight from the routing table (web/views.py).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import msgspec

from routeflow.rflib import protocol as p
from routeflow.rflib.types import EntryState

if TYPE_CHECKING:
    from routeflow.server.service import RFServer


class PortView(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the association table, or a configured mapping nobody registered yet."""

    vm_id: int | None
    vm_port: int | None
    ct_id: int | None
    dp_id: int | None
    dp_port: int | None
    vs_id: int | None
    vs_port: int | None
    hwaddress: str | None
    #: None: a configured mapping neither side of which has registered.
    state: EntryState | None
    configured: bool
    vm_ifname: str
    dp_port_name: str
    link_up: bool


class VmView(msgspec.Struct, frozen=True, kw_only=True):
    vm_id: int
    connected: bool
    peer: str | None
    sessions: int
    #: (ct_id, dp_id) of its switch, from the config (one VM per switch).
    switch: tuple[int, int] | None
    #: Routes the VM reported; None if it never reported any.
    routes: int | None
    fib_entries: int


class StatsView(msgspec.Struct, frozen=True, kw_only=True):
    """A switch's latest DatapathStats and when it arrived (unix time)."""

    ct_id: int
    dp_id: int
    at: float
    report: p.DatapathStats


class SwitchView(msgspec.Struct, frozen=True, kw_only=True):
    dp_id: int
    ct_id: int
    controller_connected: bool
    fib_entries: int
    stats: StatsView | None


class ControllerView(msgspec.Struct, frozen=True, kw_only=True):
    ct_id: int
    connected: bool
    peer: str | None
    sessions: int
    switches: list[int]
    last_stats_time: float | None
    #: The role arbiter has heard of it (a replica connected at some point).
    arbitrated: bool
    master: str | None
    generation: int
    replicas: dict[str, str]


class LinkView(msgspec.Struct, frozen=True, kw_only=True):
    """A discovered switch-to-switch link, one direction (server.discovered)."""

    src_dp_id: int
    src_port: int
    dst_dp_id: int
    dst_port: int
    ct_id: int
    since: float
    #: Reported by its controller since this server started (else: from the store).
    confirmed: bool
    src_port_name: str
    dst_port_name: str


class OperatorView(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    time: float
    started: float
    #: Leader-election facts (role, identity, ...); empty without a standby.
    ha: dict[str, Any]
    config_entries: int
    #: The table's rows in its order, then the configured mappings nobody registered.
    ports: list[PortView]
    vms: list[VmView]
    switches: list[SwitchView]
    controllers: list[ControllerView]
    stats: list[StatsView]
    #: (ct_id, dp_id) -> FIB entries installed there.
    fib_entries: dict[tuple[int, int], int]
    nexthops: int
    #: Messages received and sent, by RFProtocol message type.
    received: dict[str, int]
    sent: dict[str, int]
    auth_failures: int
    #: Sessions accepted and reconnects (sessions after a peer's first), by kind.
    sessions: dict[str, int]
    reconnects: dict[str, int]
    #: Recent notable events (time, kind, text), oldest first.
    events: list[tuple[float, str, str]]
    #: Discovered switch-to-switch links, one direction each.
    links: list[LinkView] = []


def operator_view(server: RFServer) -> OperatorView:
    """The view of ``server`` now (see the module docstring)."""
    table, routing = server.table, server.routing
    entries = table.entries()
    configured_vm = {c.vm_key for c in table.config}
    configured_dp = {c.dp_key for c in table.config}
    ports = [
        PortView(
            vm_id=e.vm_id,
            vm_port=e.vm_port,
            ct_id=e.ct_id,
            dp_id=e.dp_id,
            dp_port=e.dp_port,
            vs_id=e.vs_id,
            vs_port=e.vs_port,
            hwaddress=e.hwaddress,
            state=e.state,
            configured=e.vm_key in configured_vm or e.dp_key in configured_dp,
            vm_ifname=_vm_ifname(server, e.vm_id, e.vm_port),
            dp_port_name=_dp_port_name(server, e.ct_id, e.dp_id, e.dp_port),
            link_up=server.links.is_up(e.ct_id, e.dp_id, e.dp_port),
        )
        for e in entries
    ]
    for c in table.config:
        if table.by_vm_port(*c.vm_key) is None and table.by_dp_port(*c.dp_key) is None:
            ports.append(
                PortView(
                    vm_id=c.vm_id,
                    vm_port=c.vm_port,
                    ct_id=c.ct_id,
                    dp_id=c.dp_id,
                    dp_port=c.dp_port,
                    vs_id=None,
                    vs_port=None,
                    hwaddress=None,
                    state=None,
                    configured=True,
                    vm_ifname="",
                    dp_port_name="",
                    link_up=server.links.is_up(c.ct_id, c.dp_id, c.dp_port),
                )
            )

    stats = [
        StatsView(ct_id=ct, dp_id=dp, at=at, report=report)
        for (ct, dp), (at, report) in sorted(server.stats.items())
    ]
    stats_by_dp = {(s.ct_id, s.dp_id): s for s in stats}
    fib = routing.fib_counts()
    fib_by_dp: dict[int, int] = defaultdict(int)
    for (_ct, dp), n in fib.items():
        fib_by_dp[dp] += n

    # Every switch the server knows of (config, table, stats), with its controller.
    switch_ct: dict[int, int] = {}
    for c in table.config:
        switch_ct.setdefault(c.dp_id, c.ct_id)
    for e in entries:
        if e.dp_id is not None and e.ct_id is not None:
            switch_ct.setdefault(e.dp_id, e.ct_id)
    for s in stats:
        switch_ct.setdefault(s.dp_id, s.ct_id)
    switches = [
        SwitchView(
            dp_id=dp,
            ct_id=ct,
            controller_connected=ct in server.proxies,
            fib_entries=fib_by_dp.get(dp, 0),
            stats=stats_by_dp.get((ct, dp)),
        )
        for dp, ct in sorted(switch_ct.items())
    ]

    vm_switch: dict[int, tuple[int, int]] = {}
    for c in table.config:
        vm_switch.setdefault(c.vm_id, (c.ct_id, c.dp_id))
    vm_ids = set(vm_switch) | {e.vm_id for e in entries if e.vm_id is not None}
    vm_ids |= set(server.clients) | set(routing.routes)
    vms = []
    for vm in sorted(vm_ids):
        conn = server.clients.get(vm)
        reported = routing.routes.get(vm)
        vms.append(
            VmView(
                vm_id=vm,
                connected=conn is not None,
                peer=conn.peer if conn is not None else None,
                sessions=server.sessions.get(("client", vm), 0),
                switch=vm_switch.get(vm),
                routes=None if reported is None else len(reported),
                fib_entries=len(routing.installed_prefixes(vm)),
            )
        )

    arbitrated = set(server.roles.controllers())
    ct_ids = set(server.proxies) | {c.ct_id for c in table.config} | set(arbitrated)
    ct_ids |= {s.ct_id for s in stats}
    controllers = []
    for ct in sorted(ct_ids):
        conn = server.proxies.get(ct)
        last = [s.at for s in stats if s.ct_id == ct]
        controllers.append(
            ControllerView(
                ct_id=ct,
                connected=conn is not None,
                peer=conn.peer if conn is not None else None,
                sessions=server.sessions.get(("controller", ct), 0),
                switches=[dp for dp, c in sorted(switch_ct.items()) if c == ct],
                last_stats_time=max(last) if last else None,
                arbitrated=ct in arbitrated,
                master=server.roles.master(ct),
                generation=server.roles.generation(ct),
                replicas=server.roles.replicas(ct),
            )
        )

    received: dict[str, int] = {}
    sent: dict[str, int] = {}
    for key, n in sorted(server.counters.items()):
        if key.startswith("rx_"):
            received[key[3:]] = n
        elif key.startswith("tx_"):
            sent[key[3:]] = n
    sessions = {"client": 0, "controller": 0}
    reconnects = {"client": 0, "controller": 0}
    for (kind, _ident), n in server.sessions.items():
        if kind in sessions:
            sessions[kind] += n
            reconnects[kind] += max(0, n - 1)

    # A link's ends may be under two controllers: port names by (dp_id, port).
    port_names = {(dp, port): reg.name for (_ct, dp, port), reg in server.dp_ports.items()}
    return OperatorView(
        pid=os.getpid(),
        time=time.time(),
        started=server.started,
        ha=dict(server.ha),
        config_entries=len(table.config),
        ports=ports,
        vms=vms,
        switches=switches,
        controllers=controllers,
        stats=stats,
        fib_entries=fib,
        nexthops=routing.nexthop_count(),
        received=received,
        sent=sent,
        auth_failures=server.counters.get("auth_failures", 0),
        sessions=sessions,
        reconnects=reconnects,
        events=list(server.events),
        links=[
            LinkView(
                src_dp_id=k.ends.src_dp_id,
                src_port=k.ends.src_port,
                dst_dp_id=k.ends.dst_dp_id,
                dst_port=k.ends.dst_port,
                ct_id=k.ct_id,
                since=k.since,
                confirmed=k.confirmed,
                src_port_name=port_names.get((k.ends.src_dp_id, k.ends.src_port), ""),
                dst_port_name=port_names.get((k.ends.dst_dp_id, k.ends.dst_port), ""),
            )
            for k in server.topology.links()
        ],
    )


def _vm_ifname(server: RFServer, vm_id: int | None, vm_port: int | None) -> str:
    if vm_id is None or vm_port is None:
        return ""
    reg = server.vm_ports.get((vm_id, vm_port))
    return reg.ifname if reg is not None else ""


def _dp_port_name(
    server: RFServer, ct_id: int | None, dp_id: int | None, dp_port: int | None
) -> str:
    if ct_id is None or dp_id is None or dp_port is None:
        return ""
    reg = server.dp_ports.get((ct_id, dp_id, dp_port))
    return reg.name if reg is not None else ""


# --- the status file ---------------------------------------------------------


def status_document(v: OperatorView) -> dict[str, Any]:
    """The status file (and /api/status): plain ids, table rows only; read by the lab."""
    states: dict[str, int] = defaultdict(int)
    for port in v.ports:
        if port.state is not None:
            states[port.state.value] += 1
    fib: dict[str, int] = defaultdict(int)
    for (_ct, dp), n in v.fib_entries.items():
        fib[f"{dp:#x}"] += n
    return {
        "pid": v.pid,
        "role": "leader" if v.ha else "single",
        **v.ha,
        "config_entries": v.config_entries,
        "auth_failures": v.auth_failures,
        "time": v.time,
        "clients": sorted(f"{vm.vm_id:#x}" for vm in v.vms if vm.connected),
        "controllers": sorted(c.ct_id for c in v.controllers if c.connected),
        "controller_roles": {
            str(c.ct_id): {"master": c.master, "generation": c.generation, "replicas": c.replicas}
            for c in v.controllers
            if c.arbitrated
        },
        "associations": [
            {
                "vm_id": port.vm_id,
                "vm_port": port.vm_port,
                "ct_id": port.ct_id,
                "dp_id": port.dp_id,
                "dp_port": port.dp_port,
                "vs_id": port.vs_id,
                "vs_port": port.vs_port,
                "hwaddress": port.hwaddress,
                "state": port.state.value,
            }
            for port in v.ports
            if port.state is not None
        ],
        "states": dict(states),
        "routes": {f"{vm.vm_id:#x}": vm.routes for vm in v.vms if vm.routes is not None},
        "fib_entries": dict(fib),
        "nexthops": v.nexthops,
        "switch_stats": {
            f"{s.dp_id:#x}": {
                "age_s": round(v.time - s.at, 1),
                "flows": len(s.report.flows),
                "packets": sum(f.packets for f in s.report.flows),
                "relayed_to_vm": s.report.relayed_to_vm,
                "relayed_to_dp": s.report.relayed_to_dp,
            }
            for s in v.stats
        },
        "links": [
            {
                "src_dp_id": link.src_dp_id,
                "src_port": link.src_port,
                "dst_dp_id": link.dst_dp_id,
                "dst_port": link.dst_port,
                "ct_id": link.ct_id,
                "since": link.since,
                "confirmed": link.confirmed,
            }
            for link in v.links
        ],
    }

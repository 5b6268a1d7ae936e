"""Prometheus metrics for rfserver, collected from the live server at scrape time.

Nothing is counted twice: the collector renders the same OperatorView the
REST API and the status file show (server/view.py), so a scrape costs one
read of the tables and no bookkeeping happens on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from routeflow.server.view import operator_view
from routeflow.web import views

if TYPE_CHECKING:
    from routeflow.server.service import RFServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RouteflowCollector:
    def __init__(self, server: RFServer) -> None:
        self.server = server

    def describe(self) -> list[Metric]:
        return []  # collected lazily: nothing to announce at registration

    def collect(self) -> Iterator[Metric]:
        v = operator_view(self.server)

        routes = GaugeMetricFamily(
            "routeflow_routes", "Routes the VM reported (its kernel's view)", labels=["vm_id"]
        )
        for vm in v.vms:
            if vm.routes is not None:
                routes.add_metric([f"{vm.vm_id:#x}"], vm.routes)
        yield routes

        fib_g = GaugeMetricFamily(
            "routeflow_fib_entries",
            "FIB flows rfserver has asked a switch to hold",
            labels=["ct_id", "dp_id"],
        )
        for (ct, dp), n in sorted(v.fib_entries.items()):
            fib_g.add_metric([str(ct), f"{dp:#x}"], n)
        yield fib_g

        yield GaugeMetricFamily(
            "routeflow_nexthops",
            "Next hops (OpenFlow groups) installed over all switches",
            value=v.nexthops,
        )

        assoc = GaugeMetricFamily(
            "routeflow_associations",
            "Rows of the association table by state (down: configured, nothing registered)",
            labels=["state"],
        )
        for state, n in views.state_counts(v).items():
            assoc.add_metric([state], n)
        yield assoc

        rx, tx = v.received, v.sent
        rx_c = CounterMetricFamily(
            "routeflow_messages_received", "RFProtocol messages received", labels=["type"]
        )
        for kind, n in rx.items():
            rx_c.add_metric([kind], n)
        yield rx_c
        tx_c = CounterMetricFamily(
            "routeflow_messages_sent",
            "RFProtocol messages sent (RouteMod-derived FibMod/NextHopMod, PortConfig, ...)",
            labels=["type"],
        )
        for kind, n in tx.items():
            tx_c.add_metric([kind], n)
        yield tx_c

        conns = GaugeMetricFamily(
            "routeflow_ipc_connections", "Connected IPC peers", labels=["kind"]
        )
        conns.add_metric(["client"], sum(1 for vm in v.vms if vm.connected))
        conns.add_metric(["controller"], sum(1 for c in v.controllers if c.connected))
        yield conns

        sess_c = CounterMetricFamily(
            "routeflow_ipc_sessions", "IPC sessions accepted", labels=["kind"]
        )
        reco_c = CounterMetricFamily(
            "routeflow_ipc_reconnects",
            "IPC sessions from a peer that had connected before",
            labels=["kind"],
        )
        for kind, n in v.sessions.items():
            sess_c.add_metric([kind], n)
            reco_c.add_metric([kind], v.reconnects[kind])
        yield sess_c
        yield reco_c

        flows = GaugeMetricFamily(
            "routeflow_switch_flows", "Flows a switch reported", labels=["dp_id"]
        )
        pkts = CounterMetricFamily(
            "routeflow_switch_flow_packets",
            "Packets matched by a switch's flows (sum over its flows, as last reported)",
            labels=["dp_id", "table"],
        )
        byts = CounterMetricFamily(
            "routeflow_switch_flow_bytes",
            "Bytes matched by a switch's flows (sum over its flows, as last reported)",
            labels=["dp_id", "table"],
        )
        age = GaugeMetricFamily(
            "routeflow_switch_stats_timestamp_seconds",
            "When the switch's latest flow statistics arrived (unix time)",
            labels=["dp_id"],
        )
        for stats in v.stats:
            dp_h = f"{stats.dp_id:#x}"
            flows.add_metric([dp_h], len(stats.report.flows))
            per_table_p: dict[int, int] = defaultdict(int)
            per_table_b: dict[int, int] = defaultdict(int)
            for f in stats.report.flows:
                per_table_p[f.table] += f.packets
                per_table_b[f.table] += f.bytes
            for table in sorted(per_table_p):
                pkts.add_metric([dp_h, str(table)], per_table_p[table])
                byts.add_metric([dp_h, str(table)], per_table_b[table])
            age.add_metric([dp_h], stats.at)
        yield flows
        yield pkts
        yield byts
        yield age

        relay = CounterMetricFamily(
            "routeflow_relayed_packets",
            "Packets rfproxy relayed between VMs and switches",
            labels=["ct_id", "direction"],
        )
        for ct, counts in views.relay_counts(v).items():
            for direction, n in counts.items():
                relay.add_metric([str(ct), direction], n)
        yield relay

        links = GaugeMetricFamily(
            "routeflow_discovered_links",
            "Switch-to-switch links rfproxy discovered, one per direction "
            "(confirmed: reported since rfserver started)",
            labels=["ct_id", "confirmed"],
        )
        per_ct: dict[tuple[str, str], int] = defaultdict(int)
        for link in v.links:
            per_ct[(str(link.ct_id), str(link.confirmed).lower())] += 1
        for labels, n in sorted(per_ct.items()):
            links.add_metric(list(labels), n)
        yield links

        yield GaugeMetricFamily(
            "routeflow_server_start_time_seconds",
            "When rfserver started (unix time)",
            value=v.started,
        )


def make_registry(server: RFServer) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouteflowCollector(server))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)

"""`routeflow bench tenant`: tenant networks against the raw baseline and OVN, one run.

The job (bench/tenantplan.py) is done twice on this machine, one system after the other
so they never share the CPU: by routeflow (the cloud lab runner: tenant server with its
SQLite store, one node agent next to a private ovs-vswitchd per node, VXLAN) and by OVN
(bench/ovn.py: NB/SB ovsdb-servers, ovn-northd, one ovn-controller next to a private
ovs-vswitchd per chassis, Geneve or VXLAN). Both get the same nodes, networks, router,
VMs (bench/vms.py) and the same steps, and each figure is printed for both, with the
ratio:

1. **API rate**: ``api_ports`` port creates, one after the other, on a network with no
   VM. routeflow: one openstacksdk client against the tenant server (every create is in
   SQLite before it is answered), with its raw baseline, the same client against an HTTP
   stub that stores nothing (bench/apistub.py: the client's own ceiling). OVN: NB writes
   by one ``ovn-nbctl`` per port, by ``ovn-nbctl`` in daemon mode, and by a persistent
   OVSDB JSON-RPC connection (what ovsdbapp / ML2/OVN hold).
2. **Port to ping**: per measured port, from the create call: created (API answered),
   plugged (the VM's veth gets the MAC and joins br-int with the iface-id), bound (the
   API says ACTIVE / the LSP is ``up``, polled every 10 ms), DHCP lease (udhcpc), first
   ping reply from a VM of the other network on the next node (routed). p50/p95/max.
3. **Flows**: per node; routeflow's per port by cookie (own node, other nodes with its
   network, nodes that reach it through the router, anywhere else: must be 0), checked
   against the compiler's ``flows_per_port``; OVN's per port as the growth of every
   chassis' table over the measured ports. And the node with no port of the isolated
   network: its flows for that network (must be 0 for routeflow; shown for OVN).
4. CPU seconds of the control plane during step 2, peak RSS of its daemons.

Timings on a shared 2-core machine are inflated for both systems alike.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from routeflow.bench import tenantplan as tp
from routeflow.bench import vms
from routeflow.bench.tenantplan import (
    API_ALONE,
    API_WITH_NODES,
    Scenario,
    SystemResult,
    TenantBenchResult,
)
from routeflow.bench.tenantsys import (
    BenchFailure,
    OvnSystem,
    RouteflowSystem,
    bring_up_anchors,
    measure_ports,
    sdk_connect,
    sdk_port_rate,
    wait_for,
)

# --- the raw baseline: the SDK against a stub -------------------------------------------


def raw_api_rate(count: int) -> float:
    """The same openstacksdk client against bench/apistub.py (stores nothing)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "routeflow.bench.apistub", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": _src_path()},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            raise BenchFailure("the API stub did not start")
        conn = sdk_connect(f"http://127.0.0.1:{line[1]}", "raw")
        return sdk_port_rate(conn, "stub-network", count, "raw")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_alone_rate(count: int, run_dir: str) -> float:
    """The same client against ``routeflow tenant server`` with its SQLite store and no
    node connected: the API's own rate, without the changes fanned out to node agents."""
    import socket
    import urllib.request

    os.makedirs(run_dir, exist_ok=True)
    token = secrets.token_hex(16)
    token_file = os.path.join(run_dir, "token")
    with open(token_file, "w") as fh:
        fh.write(token + "\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "routeflow.cli", "tenant", "server", "--listen", f"127.0.0.1:{port}",
        "--store", f"sqlite:{os.path.join(run_dir, 'tenant.db')}", "--token-file", token_file,
        "--log-level", "WARNING",
    ]  # fmt: skip
    with open(os.path.join(run_dir, "tenant-server.log"), "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": _src_path()},
        )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise BenchFailure(f"the tenant server exited; see {run_dir}/tenant-server.log")
            try:
                urllib.request.urlopen(url + "/", timeout=1).read()
                return True
            except OSError:
                return False

        wait_for(up, 60, "the tenant server")
        conn = sdk_connect(url, token)
        net = conn.network.create_network(name=tp.BULK)
        conn.network.create_subnet(
            network_id=net.id, cidr=tp.CIDRS[tp.BULK], ip_version=4, name=tp.BULK
        )
        return sdk_port_rate(conn, net.id, count, "alone")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _src_path() -> str:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    old = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + old if old else "")


# --- the run ---------------------------------------------------------------------------


def _measure(system: Any, sc: Scenario, script: str, result: SystemResult,
             ips: dict[str, str], bulk: bool) -> None:  # fmt: skip
    if bulk:
        from routeflow.bench.tenantbulk import measure_bulk

        measure_bulk(system, sc, script, result, ips)
    else:
        measure_ports(system, sc, script, result, ips)


def run_routeflow(
    sc: Scenario, run_dir: str, script: str, log_level: str, bulk: bool = False
) -> SystemResult:
    result = SystemResult("routeflow")
    system: RouteflowSystem | None = None
    t0 = time.monotonic()
    try:
        system = RouteflowSystem(sc, os.path.join(run_dir, "routeflow"), log_level)
        system.start()
        result.setup_s = round(time.monotonic() - t0, 2)
        if sc.api_ports:
            result.api_rate[API_WITH_NODES] = system.api_rate(sc.api_ports)
        ips = bring_up_anchors(system, sc, script)
        _measure(system, sc, script, result, ips, bulk)
        system.flows(sc, result)
    except Exception as exc:  # a broken run still reports what it measured
        result.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if system is not None:
            system.record(result)
            system.stop()
    return result


def run_ovn(
    sc: Scenario, run_dir: str, script: str, encap: str, bulk: bool = False
) -> SystemResult:
    result = SystemResult("OVN")
    system = OvnSystem(sc, os.path.join(run_dir, "ovn"), encap)
    t0 = time.monotonic()
    try:
        system.start()
        result.setup_s = round(time.monotonic() - t0, 2)
        if sc.api_ports:
            result.api_rate = system.api_rates(sc.api_ports)
            system.central.nbctl("--wait=hv", "sync", timeout=300)
        before = system.flows_total()
        ips = bring_up_anchors(system, sc, script)
        system.central.nbctl("--wait=hv", "sync")
        mid = system.flows_total()  # what the measured ports add to every chassis, below
        _measure(system, sc, script, result, ips, bulk)
        system.central.nbctl("--wait=hv", "sync")
        after = system.flows_total()
        result.flows_per_node = after
        n = max(1, len(result.timings) or int(result.bulk.get("up") or 0))
        growth = [(after[c] - mid[c]) / n for c in after]
        result.flows_per_port = {
            "per_port_on_every_chassis": round(sum(growth) / len(growth), 1),
            "before_ports": before,
        }
        result.isolated_flows_elsewhere = system.isolated_flows(sc.nodes[-1])
    except Exception as exc:
        result.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        system.record(result)
        system.stop()
    return result


def run_tenant_bench(
    nodes: int,
    ports: int,
    api_ports: int,
    run_dir: str,
    *,
    ovn: bool = True,
    encap: str = "geneve",
    log_level: str = "INFO",
    progress: Callable[[str], None] = lambda text: None,
    bulk: bool = False,
) -> TenantBenchResult:
    sc = tp.scenario(nodes, ports, api_ports)
    os.makedirs(run_dir, exist_ok=True)
    result = TenantBenchResult(nodes, ports, api_ports, encap, run_dir=run_dir)
    result.load.append(round(os.getloadavg()[0], 1))
    script = vms.write_udhcpc_script(run_dir)
    if api_ports:
        progress("raw: openstacksdk against a stub")
        result.raw_api_rate = raw_api_rate(api_ports)
    progress("routeflow")
    result.routeflow = run_routeflow(sc, run_dir, script, log_level, bulk)
    if api_ports:
        progress("routeflow: the tenant server alone")
        try:
            alone = server_alone_rate(api_ports, os.path.join(run_dir, "server-alone"))
            result.routeflow.api_rate[API_ALONE] = alone
        except (BenchFailure, OSError) as exc:
            result.routeflow.problems.append(f"the tenant server alone: {exc}")
    if ovn:
        progress("OVN")
        result.ovn = run_ovn(sc, run_dir, script, encap, bulk)
    result.load.append(round(os.getloadavg()[0], 1))
    return result


# --- output ----------------------------------------------------------------------------


def _fmt(value: float | int | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _pair(d: dict[str, float | None]) -> str:
    return f"{_fmt(d.get('p50'))} / {_fmt(d.get('p95'))}"


def result_rows(result: TenantBenchResult) -> list[tuple[str, str, str, str, str]]:
    """(figure, routeflow, raw baseline, OVN, routeflow / OVN) rows of the table."""
    rf, ov = result.routeflow, result.ovn
    rows: list[tuple[str, str, str, str, str]] = []
    rf_rate = rf.api_rate.get(API_WITH_NODES)
    ov_rates = sorted(ov.api_rate.items(), key=lambda kv: -kv[1]) if ov else []
    first = ("API port creates/s", _fmt(rf_rate), f"{_fmt(result.raw_api_rate)} (stub)")
    if not ov_rates:
        rows.append((*first, "-", "-"))
    for k, (method, value) in enumerate(ov_rates):
        rows.append(
            (
                *(first if k == 0 else ("", "", "")),
                f"{_fmt(value)} {method}",
                _fmt(tp.ratio(rf_rate, value), "x", 2),
            )
        )
    alone = rf.api_rate.get(API_ALONE)
    if alone is not None:
        rows.append(("  routeflow: the server alone, no node", _fmt(alone), "", "", ""))
    labels = {
        "api": "create -> API answered",
        "plugged": "  -> VIF plugged",
        "bound": "  -> bound (ACTIVE / up)",
        "lease": "  -> DHCP lease",
        "ping": "  -> first ping, routed, across nodes",
    }
    for step in tp.STEPS:
        a = rf.latency_ms.get(step, {})
        b = ov.latency_ms.get(step, {}) if ov else {}
        rows.append(
            (
                f"{labels[step]} (p50 / p95 ms)",
                _pair(a),
                "",
                _pair(b) if ov else "-",
                _fmt(tp.ratio(a.get("p95"), b.get("p95")), "x", 2) if ov else "-",
            )
        )
    rows.append(
        (
            "  ports whose first DHCP DISCOVER was lost",
            str(rf.dhcp_retried),
            "",
            str(ov.dhcp_retried) if ov else "-",
            "",
        )
    )
    rows.append(
        (
            "ports that did not come up",
            str(len(rf.failed_ports)),
            "",
            str(len(ov.failed_ports)) if ov else "-",
            "",
        )
    )
    if rf.bulk or (ov and ov.bulk):
        from routeflow.bench.tenantbulk import bulk_rows

        rows += bulk_rows(rf, ov)
    rf_total = sum(rf.flows_per_node.values())
    ov_total = sum(ov.flows_per_node.values()) if ov else None
    rows.append(
        (
            "flows per node",
            " ".join(str(c) for c in rf.flows_per_node.values()),
            "",
            " ".join(str(c) for c in ov.flows_per_node.values()) if ov else "-",
            _fmt(tp.ratio(rf_total, ov_total), "x", 2),
        )
    )
    fp = rf.flows_per_port
    rows.append(
        (
            "flows per port: own node / same-net node",
            f"{_fmt(fp.get('own_median'), '', 0)} / {_fmt(fp.get('same_network_median'), '', 0)}",
            "",
            f"{_fmt(ov.flows_per_port.get('per_port_on_every_chassis'))} on every node"
            if ov
            else "-",
            "",
        )
    )
    rows.append(
        (
            "flows of a net on a node without it",
            f"{_fmt(rf.isolated_flows_elsewhere, '', 0)} (+{fp.get('elsewhere_total', '-')})",
            "",
            _fmt(ov.isolated_flows_elsewhere, "", 0) if ov else "-",
            "",
        )
    )
    rf_cpu, ov_cpu = sum(rf.cpu_s.values()), (sum(ov.cpu_s.values()) if ov else None)
    rows.append(
        (
            "control plane CPU, ports coming up",
            f"{rf_cpu:.2f} s",
            "",
            _fmt(ov_cpu, " s", 2),
            _fmt(tp.ratio(rf_cpu, ov_cpu), "x", 2),
        )
    )
    rf_rss = sum(rf.rss_peak_mb.values())
    ov_rss = sum(ov.rss_peak_mb.values()) if ov else None
    rows.append(
        (
            "control plane peak RSS, all daemons",
            f"{rf_rss:.0f} MB",
            "",
            _fmt(ov_rss, " MB", 0),
            _fmt(tp.ratio(rf_rss, ov_rss), "x", 2),
        )
    )
    rows.append(
        (
            "bring-up: nodes, daemons, networks",
            _fmt(rf.setup_s, " s", 2),
            "",
            _fmt(ov.setup_s if ov else None, " s", 2),
            "",
        )
    )
    return rows


def print_result(result: TenantBenchResult, console: Any) -> None:
    from rich.table import Table

    t = Table(
        title=f"bench tenant: {result.nodes} nodes, {result.ports} ports one at a time, "
        f"{result.api_ports} for the API rate"
        + (f"; OVN with {result.ovn_encap}" if result.ovn else "")
    )
    for col in ("figure", "routeflow", "raw", "OVN", "rf/OVN"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for row in result_rows(result):
        t.add_row(*row)
    console.print(t)
    for s in (result.routeflow, result.ovn):
        if s is None:
            continue
        for name, mb in sorted(s.rss_peak_mb.items()):
            console.print(
                f"  {s.name}: {name} peak RSS {mb:.1f} MB, CPU {s.cpu_s.get(name, 0):.2f} s",
                markup=False,
            )
        for problem in s.problems:
            console.print(f"{s.name}: {problem}", style="red", markup=False, highlight=False)
    if result.routeflow.dhcp_retried:
        console.print(
            f"routeflow: {result.routeflow.dhcp_retried} VMs lost their first DHCP DISCOVER "
            "(udhcpc retries after 1 s): the port was ACTIVE before its flows were on its "
            "node (OVN sets up only once ovn-controller installed them)",
            markup=False,
        )
    console.print(
        "raw: the same openstacksdk client against an HTTP stub that stores nothing. "
        "Both systems ran one after the other (load average "
        + " -> ".join(f"{x:.1f}" for x in result.load)
        + f" on {os.cpu_count()} cores): compare ratios.",
        markup=False,
    )
    console.print(f"logs: {result.run_dir}", markup=False)
    console.print("[green]OK[/green]" if result.ok else "[red]FAIL[/red]")


def write_json(result: TenantBenchResult, path: str) -> None:
    with open(path, "w") as fh:
        json.dump({**asdict(result), "ok": result.ok}, fh, indent=1)


def main_tenant(
    nodes: int,
    ports: int,
    api_ports: int,
    ovn: bool,
    encap: str,
    json_path: str | None,
    run_dir: str | None,
    console: Any,
    bulk: bool = False,
) -> int:
    from routeflow.lab.scenarios import default_run_dir, install_signal_handlers

    run_dir = run_dir or default_run_dir(f"bench-tenant-{nodes}x{ports}{'-bulk' if bulk else ''}")
    if ovn:
        from routeflow.bench.ovn import missing_tools

        missing = missing_tools()
        if missing:
            console.print(
                f"OVN is not installed ({', '.join(missing)} missing): "
                "apt-get install ovn-central ovn-host, or run with --no-ovn",
                markup=False,
            )
            return 2
    from routeflow.lab.runner import Terminated

    install_signal_handlers()
    try:
        with console.status("bench tenant") as status:
            result = run_tenant_bench(
                nodes,
                ports,
                api_ports,
                run_dir,
                ovn=ovn,
                encap=encap,
                progress=lambda text: status.update(f"bench tenant: {text}"),
                bulk=bulk,
            )
    except (KeyboardInterrupt, Terminated):
        console.print("interrupted; everything started was stopped", markup=False)
        return 130
    result.command = " ".join(sys.argv)
    print_result(result, console)
    if json_path:
        write_json(result, json_path)
    return 0 if result.ok else 1

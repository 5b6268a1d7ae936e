"""The `routeflow` command: daemons, labs and tools under one name."""

from __future__ import annotations

import logging
import os
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from routeflow.web.show import show as show_group

console = Console()


def _passthrough(name: str, help_text: str):
    @click.command(
        name=name,
        help=help_text,
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args):
        if name == "server":
            from routeflow.server.main import main
        elif name == "proxy":
            from routeflow.proxy.main import main
        else:
            from routeflow.client.daemon import main
        sys.exit(main(list(args)))

    return cmd


@click.group()
@click.version_option(package_name="routeflow")
def main() -> None:
    """routeflow: virtual IP routing services over OpenFlow networks."""


main.add_command(_passthrough("server", "Run rfserver (see `routeflow server --help`)."))
main.add_command(_passthrough("proxy", "Run rfproxy, the os-ken app (`routeflow proxy --help`)."))
main.add_command(_passthrough("client", "Run rfclient inside a VM (`routeflow client --help`)."))

DAEMONS = ("server", "proxy", "client", "tenant-server", "tenant-node")


def _daemon_parser(daemon: str):
    if daemon == "server":
        from routeflow.server.main import build_parser
    elif daemon == "proxy":
        from routeflow.proxy.main import build_parser
    elif daemon == "client":
        from routeflow.client.daemon import build_parser
    elif daemon == "tenant-server":
        from routeflow.tenant.servermain import build_parser
    else:
        from routeflow.tenant.nodemain import build_parser
    return build_parser()


@main.group()
def config() -> None:
    """Daemon config files: check one, or print a daemon's reference."""


@config.command("check")
@click.argument("daemon", type=click.Choice(DAEMONS))
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(daemon: str, path: str) -> None:
    """Validate PATH as DAEMON's config file without starting anything."""
    from routeflow.rflib.daemonconf import ConfigFileError, load

    try:
        values = load(path, _daemon_parser(daemon))
    except ConfigFileError as exc:
        console.print(f"{exc}", style="red", markup=False, highlight=False)
        sys.exit(2)
    console.print(f"{path}: ok ({len(values)} settings for routeflow {daemon})", markup=False)


@config.command("reference")
@click.argument("daemon", type=click.Choice(DAEMONS))
def config_reference(daemon: str) -> None:
    """Print DAEMON's config keys, defaults and meanings (Markdown)."""
    from routeflow.rflib.daemonconf import reference

    click.echo(reference(_daemon_parser(daemon)), nl=False)


@main.group()
def lab() -> None:
    """Build, run and check emulated networks (Mininet + OVS + FRR)."""


def _load(path: str):
    from routeflow.lab.model import LabError, load_lab, plan

    try:
        return plan(load_lab(path))
    except LabError as exc:
        console.print(f"{exc}", style="red", markup=False, highlight=False)
        sys.exit(2)
    except OSError as exc:
        console.print(f"{path}: {exc.strerror}", style="red", markup=False, highlight=False)
        sys.exit(2)


def _require_root() -> None:
    if os.geteuid() != 0:
        console.print(
            "labs need root (network namespaces, Open vSwitch)",
            style="red",
            markup=False,
            highlight=False,
        )
        sys.exit(2)


@lab.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
def lab_plan(file: str) -> None:
    """Show what a lab file derives: VMs, addresses, the rfserver mapping."""
    from routeflow.server.config import dump_config

    plan = _load(file)
    t = Table(title=f"lab {plan.name}: VMs")
    for col in (
        "switch",
        "dpid",
        "vm_id",
        "port",
        "switch side",
        "ifname",
        "address",
        "mac",
        "peer",
    ):
        t.add_column(col)
    for vm in plan.vms:
        for i in vm.interfaces:
            t.add_row(
                vm.switch,
                f"{vm.dp_id:#x}",
                f"{vm.vm_id:#x}",
                str(i.port),
                f"{vm.bridge} {vm.port_ifname(i.port)}",
                i.ifname,
                i.address,
                i.mac,
                i.peer,
            )
    console.print(t)
    if plan.ipv6:
        # A table of its own: IPv6 addresses are too wide to share a row with the rest.
        t = Table(title=f"lab {plan.name}: IPv6 (prefix {plan.ipv6_prefix}, OSPFv3)")
        for col in ("node", "ifname", "IPv6 address", "gateway / peer"):
            t.add_column(col)
        for vm in plan.vms:
            for i in vm.interfaces:
                t.add_row(vm.name, i.ifname, i.address6 or "", i.peer)
        for h in plan.hosts:
            t.add_row(h.name, "", h.ip6 or "", h.gateway6 or "")
        console.print(t)
    t = Table(title=f"lab {plan.name}: controllers")
    for col in ("ct_id", "name", "rfproxy replicas", "switches"):
        t.add_column(col)
    for ct in plan.controllers:
        t.add_row(
            str(ct.ct_id),
            ct.name,
            ", ".join(ct.replica_names),
            ", ".join(vm.switch for vm in plan.vms if vm.ct_id == ct.ct_id),
        )
    console.print(t)
    control = plan.control
    if control.store == "etcd":
        console.print(
            f"control plane: {control.servers} rfserver(s) sharing a {control.etcd_members}-member "
            f"etcd cluster on loopback; leader lease {control.lease_ttl} s",
            markup=False,
        )
    else:
        console.print("control plane: one rfserver, embedded SQLite store", markup=False)
    console.print("[bold]rfserver mapping[/bold]")
    console.print(dump_config(plan.config_entries()), markup=False)


@lab.command("import")
@click.argument("graph", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write here, not stdout")
@click.option("--name", help="lab name (default: from the graph's Network attribute)")
@click.option("--routing", type=click.Choice(["ospf", "bgp", "static"]), default="ospf")
@click.option("--no-hosts", is_flag=True, help="no host per switch")
@click.option("--ipv6", is_flag=True, help="dual-stack lab")
@click.option("--bfd", is_flag=True, help="BFD on every OSPF link")
@click.option(
    "--control-plane",
    type=click.Choice(["classic", "virtual"]),
    default=None,
    help="hellos over the physical links (classic) or VM to VM (virtual); default: "
    "virtual with --bfd, the lab default (classic) without",
)
def lab_import(
    graph: str,
    output: str | None,
    name: str | None,
    routing: str,
    no_hosts: bool,
    ipv6: bool,
    bfd: bool,
    control_plane: str | None,
) -> None:
    """Make a lab file from a topology file: GraphML or GML (e.g. the Internet Topology
    Zoo's), SNDlib (native or XML) or REPETITA (its IGP weights become OSPF costs)."""
    from routeflow.lab import importer
    from routeflow.lab.model import LabError, parse_lab
    from routeflow.lab.model import plan as make_plan

    try:
        src = importer.read_topology(graph)
    except importer.TopologyFileError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    imp = importer.from_graph(name or src.name, src.nodes, src.edges, src.costs)
    if len(imp.switches) < 1:
        console.print(f"{graph}: no nodes", style="red", markup=False, highlight=False)
        sys.exit(2)
    text = importer.to_yaml(
        imp,
        importer.provenance(graph, src.attributes, src.kind, src.notes),
        routing=routing,
        hosts=not no_hosts,
        ipv6=ipv6,
        bfd=bfd,
        control_plane=control_plane,
    )
    try:
        make_plan(parse_lab(text, output or "<import>"))
    except LabError as exc:  # the importer's own output must always be a valid lab
        console.print(f"{exc}", style="red", markup=False, highlight=False)
        sys.exit(1)
    if output:
        with open(output, "w") as fh:
            fh.write(text)
        console.print(
            f"{output}: {len(imp.switches)} switches, {len(imp.links)} links"
            + (f", {len(imp.dropped)} left out (see its header)" if imp.dropped else ""),
            markup=False,
        )
    else:
        click.echo(text, nl=False)


def _lab_to_run(file: str, run_dir: str | None, cloud_ok: bool = False):
    """Load a lab file for a command that runs it (as root): (plan, run directory)."""
    from routeflow.lab import scenarios
    from routeflow.lab.model import load_lab

    plan = _load(file)
    if load_lab(file).cloud is not None and not cloud_ok:
        console.print(
            f"{file}: a cloud lab runs with `lab check` and `lab up` only",
            style="red",
            markup=False,
            highlight=False,
        )
        sys.exit(2)
    _require_root()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    return plan, run_dir or scenarios.default_run_dir(plan.name)


@lab.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option("--timeout", default=120.0, show_default=True, help="seconds per convergence stage")
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--auto",
    is_flag=True,
    help="rfserver --auto: only the lab's switches, links and hosts are used; rfserver "
    "discovers them and starts the VMs with addresses of its own",
)
@click.option(
    "--add-switch",
    default=None,
    metavar="SWITCH",
    help="start SWITCH without a controller, connect it once the rest pings, and time it",
)
def lab_check(
    file: str,
    json_path: str | None,
    timeout: float,
    run_dir: str | None,
    log_level: str,
    auto: bool,
    add_switch: str | None,
) -> None:
    """Bring a lab up, wait for convergence, pingall, check flows, tear down."""
    from routeflow.lab import scenarios

    plan, run_dir = _lab_to_run(file, run_dir, cloud_ok=True)
    cloud = _cloud_of(file)
    if cloud is not None:
        _cloud_check(plan, cloud, run_dir, json_path, timeout, log_level)
    _check_auto(plan, auto)
    if add_switch is not None and add_switch not in {vm.switch for vm in plan.vms}:
        console.print(
            f"--add-switch {add_switch}: no such switch in {file}",
            style="red",
            markup=False,
            highlight=False,
        )
        sys.exit(2)
    console.print(
        f"lab [bold]{plan.name}[/bold]: {len(plan.vms)} switches, "
        f"{len(plan.hosts)} hosts, {len(plan.links)} links; logs in {run_dir}"
    )
    try:

        def progress(stage: dict) -> None:
            mark = "[green]ok[/green]" if stage["ok"] else "[red]FAIL[/red]"
            console.print(f"  {mark} {stage['stage']} ({stage['seconds']:.1f} s)")

        result = scenarios.run_check(
            plan,
            run_dir,
            timeout=timeout,
            log_level=log_level,
            on_stage=progress,
            auto=auto,
            add_switch=add_switch,
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; lab torn down[/yellow]")
        sys.exit(130)
    _print_result(result)
    if json_path:
        scenarios.write_json(result, json_path)
    sys.exit(0 if result.ok else 1)


def _check_auto(plan, auto: bool) -> None:
    from routeflow.lab import scenarios

    problems = scenarios.auto_problems(plan) if auto else []
    for problem in problems:
        console.print(f"{plan.source}: {problem}", style="red", markup=False, highlight=False)
    if problems:
        sys.exit(2)


def _cloud_of(file: str):
    """The lab's validated cloud section (None without one); the plan knows switches only."""
    from routeflow.lab.model import load_lab

    return load_lab(file).cloud


def _cloud_check(plan, cloud, run_dir: str, json_path, timeout: float, log_level: str) -> None:
    """`lab check` of a cloud lab (lab/cloudcheck.py); exits with its verdict."""
    from routeflow.lab import scenarios
    from routeflow.lab.cloudcheck import run_cloud_check
    from routeflow.lab.runner import Terminated

    if plan.vms and cloud.external is None:
        console.print(
            f"[red]{plan.name}: a cloud lab with switches needs cloud.external (the fabric "
            "is its external network)[/red]"
        )
        sys.exit(2)
    vms = sum(len(t.vms) for t in cloud.tenants)
    console.print(
        f"cloud lab [bold]{plan.name}[/bold]: {len(cloud.nodes)} nodes, "
        f"{len(cloud.tenants)} tenants, {vms} VMs; run directory {run_dir} (only its logs "
        "stay, and only after a failure)"
    )

    def progress(stage: dict) -> None:
        mark = "[green]ok[/green]" if stage["ok"] else "[red]FAIL[/red]"
        console.print(f"  {mark} {stage['stage']} ({stage['seconds']:.2f} s)")

    scenarios.install_signal_handlers()
    t0 = time.monotonic()
    try:
        if plan.vms:
            from routeflow.lab.cloudfabric import run_fabric_cloud_check

            fabric = run_fabric_cloud_check(
                plan, cloud, run_dir, timeout=timeout, log_level=log_level, on_stage=progress
            )
            _print_result(fabric)
            console.print(f"lab check took {time.monotonic() - t0:.1f} s")
            if json_path:
                scenarios.write_json(fabric, json_path)
            sys.exit(0 if fabric.ok else 1)
        result = run_cloud_check(
            plan.name,
            cloud,
            run_dir,
            timeout=min(timeout, 60.0),
            log_level=log_level,
            on_stage=progress,
        )
    except (KeyboardInterrupt, Terminated):
        console.print(f"[yellow]interrupted; lab torn down, logs in {run_dir}[/yellow]")
        sys.exit(130)
    _print_result(result)
    console.print(f"lab check took {time.monotonic() - t0:.1f} s")
    if json_path:
        scenarios.write_json(result, json_path)
    sys.exit(0 if result.ok else 1)


def _cloud_up(plan, cloud, run_dir: str, log_level: str) -> None:
    """`lab up` of a cloud lab: bring it up, bootstrap, DHCP every VM, wait for Ctrl-C."""
    from routeflow.lab import scenarios
    from routeflow.lab.cloudrun import CloudFailure, CloudRun
    from routeflow.lab.runner import Terminated

    if plan.vms:
        console.print(
            f"{plan.name}: a cloud lab with switches is not supported yet",
            style="red",
            markup=False,
            highlight=False,
        )
        sys.exit(2)
    scenarios.install_signal_handlers()
    run = CloudRun(cloud, run_dir, log_level=log_level)
    console.print(
        f"cloud lab {plan.name}: run tag {run.tag}, logs in {run_dir}", markup=False, soft_wrap=True
    )
    code = 0
    try:
        with console.status("starting nodes, tenant server, node agents..."):
            run.start()
            ports = run.bootstrap()
            for tenant in cloud.tenants:
                for vm in tenant.vms:
                    run.plug(vm.name, vm.node, ports[vm.name])
        with console.status("waiting for the node agents to bind the VMs' ports..."):
            # as `lab check` does: DHCP before the agent's flows are in is dropped, and a
            # loaded machine can take longer than udhcpc's retries to get there
            missing = run.wait_active(list(run.vms.values()), timeout=60.0)
        if missing:
            raise CloudFailure(f"ports not ACTIVE after 60 s: {', '.join(missing)}")
        for vm in run.vms.values():
            lease = run.dhcp(vm)
            console.print(
                f"  {vm.name} on {vm.node}: {lease.ip}/{lease.prefixlen} via {lease.router}, "
                f"MTU {lease.mtu} (ip netns exec {vm.ns} ...)",
                markup=False,
                soft_wrap=True,
            )
        console.print(
            f"API {run.api_url}, clouds.yaml {run.clouds_yaml()} (OS_CLOUD=rf)",
            markup=False,
            soft_wrap=True,
        )
        console.print("running; Ctrl-C to stop (the run directory goes with it)")
        while True:
            time.sleep(2)
            run.fail_if_dead()
    except (KeyboardInterrupt, Terminated):
        console.print("\nstopping...")
    except CloudFailure as exc:
        console.print(f"{exc} (logs kept in {run_dir})", markup=False)
        run.keep_logs = True
        code = 1
    finally:
        run.stop()
    sys.exit(code)


def _print_result(result) -> None:
    t = Table(title=f"lab check {result.lab}")
    t.add_column("stage")
    t.add_column("result")
    t.add_column("seconds", justify="right")
    t.add_column("detail")
    for s in result.stages:
        t.add_row(
            s["stage"],
            "[green]ok[/green]" if s["ok"] else "[red]FAIL[/red]",
            f"{s['seconds']:.2f}",
            s["detail"],
        )
    console.print(t)
    if result.first_ping_s is not None:
        console.print(f"first successful ping after {result.first_ping_s:.1f} s")
    if result.added_switch_s is not None:
        console.print(
            f"switch added: 100 % pingall {result.added_switch_s:.1f} s after connecting it"
        )
    elif result.full_pingall_s is not None:
        console.print(f"100 % pingall after {result.full_pingall_s:.1f} s")
    if getattr(result, "full_pingall6_s", None) is not None:
        # Checked after every IPv4 stage, so an upper bound of when IPv6 got there.
        console.print(f"100 % IPv6 pingall after {result.full_pingall6_s:.1f} s")
    console.print("[green]PASS[/green]" if result.ok else "[red]FAIL[/red]")


@lab.command("chaos")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--rounds", type=click.IntRange(1, 10_000), default=14, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option(
    "--restart-delay",
    type=click.FloatRange(0, 60),
    default=1.5,
    show_default=True,
    help="seconds between the SIGKILL and the restart (a supervisor's delay)",
)
@click.option("--timeout", default=60.0, show_default=True, help="seconds a round may take to heal")
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--log-level", default="INFO", show_default=True)
def lab_chaos(
    file: str,
    rounds: int,
    seed: int,
    json_path: str | None,
    restart_delay: float,
    timeout: float,
    run_dir: str | None,
    log_level: str,
) -> None:
    """Bring a lab up, SIGKILL + restart one daemon per round, check that nothing is lost."""
    import json

    from routeflow.lab import chaos

    plan, run_dir = _lab_to_run(file, run_dir)
    console.print(
        f"lab [bold]{plan.name}[/bold]: chaos, {rounds} rounds, seed {seed}, "
        f"restart after {restart_delay:g} s; logs in {run_dir}"
    )

    def stage(s: dict) -> None:
        mark = "[green]ok[/green]" if s["ok"] else "[red]FAIL[/red]"
        console.print(f"  {mark} {s['stage']} ({s['seconds']:.1f} s)")

    def start(i: int, fault) -> None:
        console.print(f"  round {i}: {fault.kind} ...", end="")

    def done(r) -> None:
        mark = "[green]ok[/green]" if r.ok else "[red]FAIL[/red]"
        healed = f"{r.healthy_s:.1f} s" if r.healthy_s is not None else "never"
        console.print(
            f" {r.target or '?'}: whole after {healed}, ping lost {r.ping_lost}/{r.ping_sent}, "
            f"flows re-installed {len(r.reinstalled)} (+{len(r.rerouted)} rerouted) {mark}",
            markup=True,
            highlight=False,
        )
        if r.roles_after and r.roles_after != r.roles_before:
            console.print(f"    {r.roles_before} -> {r.roles_after}", markup=False)
        if r.detail:
            console.print(f"    {r.detail}", markup=False)

    try:
        result = chaos.run_chaos_lab(
            plan,
            run_dir,
            rounds,
            seed,
            restart_delay=restart_delay,
            timeout=timeout,
            log_level=log_level,
            on_stage=stage,
            on_start=start,
            on_round=done,
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; lab torn down[/yellow]")
        sys.exit(130)
    t = Table(title=f"lab chaos {plan.name} (seed {seed})")
    for col in ("round", "kind", "target", "healthy after s", "ping lost", "flows re-installed"):
        t.add_column(col, justify="right" if col in ("round", "healthy after s") else "left")
    t.add_column("result")
    for r in result.rounds:
        t.add_row(
            str(r.round),
            r.kind,
            r.target,
            f"{r.healthy_s:.2f}" if r.healthy_s is not None else "-",
            f"{r.ping_lost}/{r.ping_sent}",
            f"{len(r.reinstalled)}" + (f" (+{len(r.rerouted)} rerouted)" if r.rerouted else ""),
            "[green]ok[/green]" if r.ok else "[red]FAIL[/red]",
        )
    console.print(t)
    if result.error:
        console.print(result.error, style="red", markup=False)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result.to_dict(), fh, indent=2)
    console.print("[green]PASS[/green]" if result.ok else "[red]FAIL[/red]")
    sys.exit(0 if result.ok else 1)


@lab.command("up")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--timeout", default=120.0, show_default=True)
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--auto",
    is_flag=True,
    help="rfserver --auto: rfserver discovers the lab's switches and links and starts the VMs",
)
def lab_up(file: str, run_dir: str | None, timeout: float, log_level: str, auto: bool) -> None:
    """Run a lab until Ctrl-C, showing convergence progress."""
    from routeflow.lab import checks, scenarios
    from routeflow.lab.poll import poll_until
    from routeflow.lab.runner import LabFailure, LabRun, Terminated

    plan, run_dir = _lab_to_run(file, run_dir, cloud_ok=True)
    cloud = _cloud_of(file)
    if cloud is not None:
        _cloud_up(plan, cloud, run_dir, log_level)
    _check_auto(plan, auto)
    run = LabRun(plan, run_dir, log_level=log_level, auto=auto)
    scenarios.install_signal_handlers()
    t0 = time.monotonic()
    console.print(f"web interface: {run.web_url}", markup=False)
    try:
        with console.status("starting OVS, rfserver, rfproxy, network, VMs...") as status:
            run.start()
            status.update("waiting for convergence...")

            def progress() -> bool:
                """One look at the lab, shown in the status line; True once converged."""
                scenarios._fail_if_dead(run)
                sw, sw_want = checks.switches_registered(run)
                active, want = checks.associations_active(run)
                adj, adj_want = checks.ospf_adjacencies(run)
                have, total = checks.routes_converged(run)
                fib = sum(checks.server_status(run).get("fib_entries", {}).values())
                adjacencies, routes = f"{adj}/{adj_want}", f"{have}/{total}"
                if plan.ipv6:
                    adj6, adj6_want = checks.ospf6_adjacencies(run)
                    have6, total6 = checks.routes_converged6(run)
                    adjacencies += f" (v3 {adj6}/{adj6_want})"
                    routes += f" (IPv6 {have6}/{total6})"
                    have, total = have + have6, total + total6
                status.update(
                    f"switches {sw}/{sw_want}, associations {active}/{want}, "
                    f"OSPF adjacencies {adjacencies}, VM routes {routes}, "
                    f"FIB flows {fib} ({time.monotonic() - t0:.0f} s)"
                )
                return active == want and have == total

            # Not converged by the deadline: go on to pingall anyway, it says what fails.
            poll_until(progress, timeout=timeout, interval=1.0)
        good, total_pairs, failed = checks.pingall(run)
        console.print(
            f"converged after {time.monotonic() - t0:.1f} s; "
            f"pingall {good}/{total_pairs}" + (f" (failing: {failed})" if failed else "")
        )
        if plan.ipv6:
            good, total_pairs, failed = checks.pingall(run, family=6)
            console.print(
                f"IPv6 pingall {good}/{total_pairs}" + (f" (failing: {failed})" if failed else "")
            )
        console.print(f"logs and state: {run_dir}")
        console.print(f"web: {run.web_url}  (`routeflow status --run-dir {run_dir}`)", markup=False)
        console.print(
            "hosts: "
            + ", ".join(f"{h.name} {h.ip}" + (f" {h.ip6}" if h.ip6 else "") for h in plan.hosts)
        )
        console.print("running; Ctrl-C to stop")
        while True:
            time.sleep(2)
            scenarios._fail_if_dead(run)
    except (KeyboardInterrupt, Terminated):
        console.print("\nstopping...")
    except LabFailure as exc:
        console.print(f"{exc}", style="red", markup=False, highlight=False)
        run.stop()
        sys.exit(1)
    finally:
        run.stop()
    console.print("lab stopped; nothing left running")


@main.command("status")
@click.option("--url", default=None, help="rfweb base URL [$ROUTEFLOW_URL, http://127.0.0.1:6680]")
@click.option("--run-dir", default=None, help="a lab run directory: use its rfserver's URL")
@click.option("--token", default=None, envvar="ROUTEFLOW_TOKEN", help="bearer token, if any")
@click.option("--json", "as_json", is_flag=True, help="print the raw API documents")
@click.option(
    "--events", default=10, show_default=True, type=click.IntRange(1, 1000), help="recent events"
)
def status(
    url: str | None, run_dir: str | None, token: str | None, as_json: bool, events: int
) -> None:
    """Show a running rfserver: associations, routes, flows, controllers, events."""
    from routeflow.web.status import main as status_main

    sys.exit(status_main(url, run_dir, token, as_json, events, console))


# routeflow show associations|routes|fib|flows|controllers|events (web/show.py)
main.add_command(show_group)


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print SHELL's completion script: eval "$(routeflow completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    click.echo(cls(main, {}, "routeflow", "_ROUTEFLOW_COMPLETE").source())


@main.group()
def bench() -> None:
    """Benchmarks against the real thing (kernel, Open vSwitch)."""


@bench.command("fib")
@click.option("--routes", type=click.IntRange(1, 4_000_000), default=100_000, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option(
    "--prefixlen",
    type=click.IntRange(8, 128),
    default=None,
    help="route prefix length: 8-32, default 24; with --ipv6 16-128, default 48",
)
@click.option("--frr/--no-frr", default=False, show_default=True, help="run zebra in the VM too")
@click.option("--raw/--no-raw", default=True, show_default=True, help="measure ovs-ofctl --bundle")
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--log-level", default="WARNING", show_default=True)
@click.option("--profile", "profile_dir", default=None, help="py-spy the daemons into this dir")
@click.option(
    "--restart-proxy",
    is_flag=True,
    help="also SIGKILL and restart rfproxy with the routes loaded: time its reconciliation",
)
@click.option(
    "--wipe-switch",
    is_flag=True,
    help="also delete every flow and group of the switch with the routes loaded and restart "
    "rfproxy: time until the switch holds the full table again",
)
@click.option("--ipv6", is_flag=True, help="IPv6 prefixes (fd00::/8) instead of IPv4")
@click.option(
    "--table",
    "table_path",
    type=click.Path(dir_okay=False),
    help="the prefixes of a table file ('prefix [as_path...]' lines, both families) or of "
    "an MRT RIB dump (TABLE_DUMP_V2, maybe gzip/bzip2) instead of --routes generated ones "
    "(see `routeflow bench table-gen`)",
)
@click.option(
    "--peers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="with --table: spread it over N next hops, peers offering overlapping prefixes",
)
@click.option("--seed", type=int, default=1, show_default=True, help="for --peers")
@click.option(
    "--peer-down",
    is_flag=True,
    help="with --peers: peer 0 dies with the table loaded; time until the switch stops "
    "forwarding to it and until its prefixes are on the other peers",
)
def bench_fib(
    routes,
    json_path,
    prefixlen,
    frr,
    raw,
    run_dir,
    log_level,
    profile_dir,
    restart_proxy,
    wipe_switch,
    ipv6,
    table_path,
    peers,
    seed,
    peer_down,
) -> None:
    """Kernel routes -> switch flows: routes/s against ovs-ofctl --bundle, RSS, next-hop change."""
    from routeflow.bench.fib import main_fib

    if prefixlen is None:
        prefixlen = 48 if ipv6 else 24
    elif not (16 <= prefixlen <= 128 if ipv6 else prefixlen <= 32):
        raise click.BadParameter(
            f"{prefixlen} is outside {'16-128' if ipv6 else '8-32'}", param_hint="--prefixlen"
        )
    if peers > 1 and table_path is None:
        raise click.BadParameter("needs --table", param_hint="--peers")
    if peer_down and peers < 2:
        raise click.BadParameter("needs --peers 2 or more", param_hint="--peer-down")
    if table_path is not None and ipv6:
        raise click.BadParameter("a table file says its families itself", param_hint="--ipv6")
    _require_root()
    sys.exit(
        main_fib(
            routes,
            json_path,
            prefixlen,
            frr,
            raw,
            run_dir,
            log_level,
            console,
            profile_dir,
            restart_proxy=restart_proxy,
            wipe_switch=wipe_switch,
            ipv6=ipv6,
            table_path=table_path,
            peers=peers,
            seed=seed,
            peer_down=peer_down,
        )
    )


@bench.command("table-gen")
@click.option("--ipv4", type=click.IntRange(0, 2_000_000), default=1_100_000, show_default=True)
@click.option("--ipv6", type=click.IntRange(0, 1_000_000), default=250_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), required=True, help="table file to write"
)
def bench_table_gen(ipv4, ipv6, seed, output) -> None:
    """Write a realistic table: real prefix-length mixes, nesting, many AS paths."""
    from routeflow.bench.tablegen import main_table_gen

    sys.exit(main_table_gen(ipv4, ipv6, seed, output, console))


@bench.command("churn-gen")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), required=True)
@click.option("--seconds", type=click.FloatRange(1, 86400), default=30.0, show_default=True)
@click.option("--rate", type=click.FloatRange(0.1, 100000), default=50.0, show_default=True)
@click.option("--reset-share", type=click.FloatRange(0, 1), default=0.4, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def bench_churn_gen(table_path, seconds, rate, reset_share, seed, output) -> None:
    """Write an update stream: a table, then steady churn and a session-reset burst."""
    from routeflow.bench import churn
    from routeflow.bench.table import TableError, read_table_file

    try:
        table = read_table_file(table_path)
    except TableError as err:
        raise click.ClickException(str(err)) from None
    updates = churn.generate(table, seconds=seconds, rate=rate, reset_share=reset_share, seed=seed)
    with open(output, "w") as fh:
        fh.writelines(
            churn.format_stream(
                updates,
                f"bench churn-gen --table {table_path} --seconds {seconds:g} --rate {rate:g} "
                f"--reset-share {reset_share:g} --seed {seed}: {len(updates)} updates",
            )
        )
    console.print(
        f"{len(updates)} updates over {updates[-1].t if updates else 0:.1f} s -> {output}"
    )


@bench.command("churn")
@click.argument("stream", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--speed",
    type=click.FloatRange(0, 1000),
    default=1.0,
    show_default=True,
    help="the stream's pace multiplied by this; 0: as fast as possible",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 86400),
    default=120.0,
    show_default=True,
    help="seconds after the stream's end to wait for the switch",
)
@click.option(
    "--peer",
    default=None,
    help="for a recorded file (MRT updates, bgpdump -m or bgpkit-parser text): the peer "
    "address whose updates are replayed (default: the one with the most)",
)
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
def bench_churn(stream, speed, timeout, peer, run_dir, json_path) -> None:
    """Replay an update stream into a VM through a BGP speaker; the switch must follow.

    STREAM: routeflow's stream text (`bench churn-gen`), an MRT update file (BGP4MP,
    as RouteViews and RIPE RIS publish them, gzip or bzip2 too) or its `bgpdump -m` /
    `bgpkit-parser` text; a recorded file is cut to one peer."""
    from routeflow.bench.churnrun import main_churn

    sys.exit(main_churn(stream, speed, run_dir, json_path, timeout, console, peer=peer))


@bench.command("bgp")
@click.argument("table", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--timeout",
    type=click.FloatRange(1, 86400),
    default=None,
    help="seconds from the first UPDATE to wait for kernel and switch "
    "(default: 60, or 1 s per 2000 prefixes if more)",
)
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option(
    "--peer-down",
    is_flag=True,
    help="two peers offer the table (the second with longer paths); once the switch "
    "forwards it all via the first, the first shuts its session down (Cease): time "
    "until the kernel (zebra) and the switch have every prefix on the second",
)
@click.option(
    "--profile", "profile_dir", default=None, help="py-spy the daemons (peer down) into this dir"
)
@click.option(
    "--split-cpus",
    is_flag=True,
    help="with --peer-down: the VM (FRR, rfclient) on one CPU, rfserver, rfproxy and Open "
    "vSwitch on another during the event, as separate machines would have them",
)
def bench_bgp(table, timeout, run_dir, json_path, peer_down, profile_dir, split_cpus) -> None:
    """FRR end to end: a speaker announces TABLE's prefixes (IPv6 by MP-BGP) to the
    VM's bgpd; time to the full table in the kernel (zebra) and on the switch, and the
    switch's lag."""
    from routeflow.bench.bgprun import main_bgp

    _require_root()
    if split_cpus and not peer_down:
        raise click.BadParameter("needs --peer-down", param_hint="--split-cpus")
    if split_cpus and len(os.sched_getaffinity(0)) < 2:
        raise click.BadParameter("needs two CPUs", param_hint="--split-cpus")
    code = main_bgp(
        table, run_dir, json_path, timeout, console, peer_down, profile_dir, split=split_cpus
    )
    sys.exit(code)


@bench.command("web")
@click.option("--routes", type=click.IntRange(1, 4_000_000), default=1_000_000, show_default=True)
@click.option(
    "--table", "table_path", type=click.Path(dir_okay=False), help="its IPv4 prefixes instead"
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
def bench_web(routes, table_path, json_path) -> None:
    """rfweb's paged /api/fib and /api/routes with a full table in rfserver (no switch)."""
    from routeflow.bench.web import main_web

    sys.exit(main_web(routes, table_path, json_path, console))


@bench.command("relay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--seconds",
    type=click.FloatRange(5, 3600),
    default=60.0,
    show_default=True,
    help="soak: how long the lab keeps its adjacencies up under measurement",
)
@click.option(
    "--pings",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="round trips per VM neighbour (through the relay both ways)",
)
@click.option("--bfd", is_flag=True, help="turn on BFD on every OSPF link of the lab")
@click.option(
    "--relay",
    type=click.Choice(["controller", "datapath"]),
    default=None,
    help="override the lab's control.relay (packet-in relay, or relay links)",
)
@click.option(
    "--control-plane",
    type=click.Choice(["classic", "virtual"]),
    default=None,
    help="override the lab's control_plane (hellos over the physical links, or VM to VM)",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option("--log-level", default="WARNING", show_default=True)
def bench_relay(
    file, seconds, pings, bfd, relay, control_plane, json_path, run_dir, log_level
) -> None:
    """Relay load of a lab: round trips VM <-> VM, rfproxy CPU, BFD flaps over a soak."""
    import msgspec

    from routeflow.bench import relay as bench

    plan, run_dir = _lab_to_run(file, run_dir)
    if bfd and not plan.ospf.bfd:
        plan = msgspec.structs.replace(plan, ospf=msgspec.structs.replace(plan.ospf, bfd=True))
    if relay is not None:
        control = msgspec.structs.replace(plan.control, relay=relay)
        plan = msgspec.structs.replace(plan, control=control)
    if control_plane is not None:
        plan = msgspec.structs.replace(plan, control_plane=control_plane)
    console.print(
        f"lab {plan.name}: {len(plan.vms)} switches, {len(plan.links)} links"
        + (", BFD" if plan.ospf.bfd else "")
        + f", {plan.control.relay} relay, {plan.control_plane} control plane"
        + f"; logs in {run_dir}",
        markup=False,
    )
    from routeflow.lab.runner import Terminated

    try:
        result = _relay_bench(bench, plan, run_dir, seconds, pings, log_level)
    except (KeyboardInterrupt, Terminated):
        console.print("interrupted; lab torn down")
        sys.exit(130)
    if json_path:
        bench.write_json(result, json_path)
    console.print("PASS" if result.ok else "FAIL")
    sys.exit(0 if result.ok else 1)


@bench.command("tenant")
@click.option("--nodes", type=click.IntRange(2, 16), default=3, show_default=True)
@click.option(
    "--ports",
    type=click.IntRange(1, 2000),
    default=30,
    show_default=True,
    help="ports measured one at a time: create -> bound -> DHCP lease -> ping across nodes",
)
@click.option(
    "--api-ports",
    type=click.IntRange(0, 20000),
    default=300,
    show_default=True,
    help="port creates for the API rate (0: skip it)",
)
@click.option("--ovn/--no-ovn", default=True, show_default=True, help="measure OVN too")
@click.option(
    "--ovn-encap", type=click.Choice(["geneve", "vxlan"]), default="geneve", show_default=True
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option(
    "--bulk", is_flag=True, help="all measured ports at once: time to create, until all ping"
)
def bench_tenant(nodes, ports, api_ports, ovn, ovn_encap, json_path, run_dir, bulk) -> None:
    """Tenant networks: API rate, port -> ping latency, flows per port; OVN in the same run."""
    from routeflow.bench.tenant import main_tenant

    _require_root()
    sys.exit(
        main_tenant(nodes, ports, api_ports, ovn, ovn_encap, json_path, run_dir, console, bulk)
    )


@bench.command("tput")
@click.option(
    "--seconds",
    type=click.FloatRange(1, 600),
    default=10.0,
    show_default=True,
    help="iperf3 time per path (one TCP stream)",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
@click.option("--run-dir", default=None, help="where logs and state go")
@click.option(
    "--ovn/--no-ovn", default=True, show_default=True, help="measure OVN's VM to VM paths too"
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="runs per path, one after the other; the figure is their median",
)
def bench_tput(seconds, json_path, run_dir, ovn, repeat) -> None:
    """One TCP flow through VXLAN, security groups, the router and NAT, against plain veth."""
    from routeflow.bench.tput import main_tput

    _require_root()
    sys.exit(main_tput(seconds, json_path, run_dir, console, ovn, repeat))


@bench.command("tenant-compile")
@click.option(
    "--ports",
    "sizes",
    default="100,1000,3000",
    show_default=True,
    help="local ports on the measured node, comma-separated sizes",
)
@click.option(
    "--remote", type=float, default=0.0, show_default=True, help="remote ports per local port"
)
@click.option(
    "--changes", type=click.IntRange(1, 1000), default=20, show_default=True,
    help="ports brought up (3 deltas each) per size for the per-change figures",
)  # fmt: skip
@click.option("--build/--no-build", default=True, help="also add every port one at a time")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write results as JSON")
def bench_tenant_compile(sizes, remote, changes, build, json_path) -> None:
    """A node agent's flow compiler alone: full compile, per change full vs incremental."""
    import json

    from routeflow.bench import tenantcompile

    try:
        ports = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{sizes!r}: comma-separated integers", param_hint="--ports"
        ) from None
    if not ports or any(not 1 <= n <= 20000 for n in ports):
        raise click.BadParameter("sizes from 1 to 20000", param_hint="--ports")
    results = tenantcompile.run(ports, remote, changes, build)
    tenantcompile.print_results(results, console)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(tenantcompile.to_json(results), fh, indent=1)


def _relay_bench(relay, plan, run_dir, seconds, pings, log_level):
    return relay.run_relay_bench(
        plan,
        run_dir,
        seconds=seconds,
        pings=pings,
        log_level=log_level,
        on_stage=lambda s: console.print(
            f"  {'ok' if s['ok'] else 'FAIL'} {s['stage']} ({s['seconds']} s) {s['detail']}",
            markup=False,
        ),
    )


@main.group()
def tenant() -> None:
    """Tenant networks: the Neutron-compatible server and the node agents."""


@tenant.command(
    "server",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def tenant_server(args) -> None:
    """Serve the Neutron v2.0 subset with a durable store (`routeflow tenant server --help`)."""
    from routeflow.tenant.servermain import main as server_main

    sys.exit(server_main(list(args)))


@tenant.command(
    "node",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def tenant_node(args) -> None:
    """Run a compute node agent (`routeflow tenant node --help`)."""
    from routeflow.tenant.nodemain import main as node_main

    sys.exit(node_main(list(args)))


if __name__ == "__main__":
    main()

"""`routeflow lab check` and `routeflow lab up`: stages, timings, verdicts."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field

from routeflow.lab import checks, speakers
from routeflow.lab.model import LabPlan
from routeflow.lab.poll import poll_until
from routeflow.lab.runner import LabFailure, LabRun, Terminated

log = logging.getLogger("routeflow.lab")


@dataclass
class CheckResult:
    lab: str
    ok: bool = True
    stages: list[dict] = field(default_factory=list)
    first_ping_s: float | None = None
    full_pingall_s: float | None = None
    #: --add-switch: seconds from connecting the held switch to 100 % pingall.
    added_switch_s: float | None = None
    #: Dual-stack labs: when every host first reached every other over IPv6.
    full_pingall6_s: float | None = None
    #: Daemon kind -> summed peak RSS (KiB) of its processes, taken at teardown.
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    run_dir: str = ""
    #: Called with each stage as it completes (live progress in the CLI).
    on_stage: object = field(default=None, repr=False, compare=False)

    def add(self, name: str, ok: bool, seconds: float, detail: str = "") -> None:
        stage = {"stage": name, "ok": ok, "seconds": round(seconds, 2), "detail": detail}
        self.stages.append(stage)
        if not ok:
            self.ok = False
        if callable(self.on_stage):
            self.on_stage(stage)


def _raise_terminated(signum, frame):
    raise Terminated()


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _raise_terminated)


def converge(run: LabRun, result: CheckResult, t0: float, timeout: float) -> bool:
    t = time.monotonic()
    ok = checks.wait_until(lambda: _assoc_done(run), timeout)
    active, want = checks.associations_active(run)
    result.add("associations active", ok, time.monotonic() - t, f"{active}/{want}")
    if not ok:
        return False
    t = time.monotonic()
    ok = checks.wait_until(lambda: _routes_done(run), timeout)
    have, total = checks.routes_converged(run)
    result.add("routes in VM kernels", ok, time.monotonic() - t, f"{have}/{total} prefixes")
    return ok and on_shortest_paths(run, result, timeout, "kernel")


def on_shortest_paths(
    run: LabRun, result: CheckResult, timeout: float, where: str, family: int = 4
) -> bool:
    """Wait until every VM kernel (``where="kernel"``) or every switch (``"switch"``) routes
    every host subnet on the lab graph's shortest paths (lab/paths.py): a lab that delivers
    over a longer path has not converged."""
    t = time.monotonic()
    last = checks.PathCheck()

    def done() -> bool:
        nonlocal last
        _fail_if_dead(run)
        last = checks.shortest_paths(run, where, family)
        return last.ok

    ok = checks.wait_until(done, timeout, 0.25)
    name = {"kernel": "VM kernels", "switch": "switches"}[where]
    tag = "IPv6 " if family == 6 else ""
    result.add(f"{tag}{name} on shortest paths", ok, time.monotonic() - t, last.detail())
    return ok


def links_discovered(run: LabRun, result: CheckResult, timeout: float) -> bool:
    """rfproxy's topology discovery found exactly the lab file's links (both directions)."""
    t = time.monotonic()
    want = checks.lab_links(run.plan)
    have: set = set()

    def done() -> bool:
        nonlocal have
        _fail_if_dead(run)
        have = checks.discovered_links(run)
        return have == want

    ok = checks.wait_until(done, timeout, 0.25)
    detail = f"{len(have & want)}/{len(want)} directed links"
    if want - have:
        detail += f", missing: {sorted(want - have)[:3]}"
    if have - want:
        detail += f", {len(have - want)} not in the lab file: {sorted(have - want)[:3]}"
    result.add("switch links discovered", ok, time.monotonic() - t, detail)
    return ok


def _assoc_done(run: LabRun) -> bool:
    _fail_if_dead(run)
    active, want = checks.associations_active(run)
    return active == want


def _routes_done(run: LabRun) -> bool:
    _fail_if_dead(run)
    have, total = checks.routes_converged(run)
    return have == total


def _fail_if_dead(run: LabRun) -> None:
    dead = run.procs.dead()
    if dead:
        names = ", ".join(f"{t.name} (pid {t.pid})" for t in dead)
        raise LabFailure(f"died: {names}; logs in {run.run_dir}")


def pingall_until_full(
    run: LabRun, result: CheckResult, t0: float, timeout: float, *, ipv6: bool = False
) -> bool:
    """Ping every ordered host pair until all answer, then one more full round.

    With ``ipv6`` the hosts' IPv6 addresses are pinged and the stages say "IPv6".
    """
    hosts = run.plan.hosts
    pairs = [(a, b) for a in hosts for b in hosts if a is not b]
    pending = list(pairs)
    tag = "IPv6 " if ipv6 else ""
    t = time.monotonic()

    def still_pending() -> list:
        nonlocal pending
        _fail_if_dead(run)
        dst = {id(b): b.address_of(family) for _a, b in pending}
        answered = checks.ping_pairs(run, [(a.name, dst[id(b)]) for a, b in pending])
        if answered and result.first_ping_s is None and not ipv6:
            result.first_ping_s = time.monotonic() - t0
        pending = [(a, b) for a, b in pending if (a.name, dst[id(b)]) not in answered]
        return pending

    family = 6 if ipv6 else 4
    ok = poll_until(still_pending, lambda p: not p, timeout=timeout, interval=0.5).ok
    if ok and ipv6:
        result.full_pingall6_s = time.monotonic() - t0
    elif ok:
        result.full_pingall_s = time.monotonic() - t0
    detail = f"{len(pairs) - len(pending)}/{len(pairs)} pairs"
    if pending:
        detail += "; failing: " + ", ".join(f"{a.name}->{b.name}" for a, b in pending[:8])
    result.add(f"{tag}pingall (until 100%)", ok, time.monotonic() - t, detail)
    return ok


def pingall_one_round(run: LabRun, result: CheckResult, *, ipv6: bool = False) -> None:
    """A fresh, single-shot round once kernels and switches agree with the shortest paths:
    it must be 100 % now, not just eventually."""
    t = time.monotonic()
    good, total, failed = checks.pingall(run, family=6 if ipv6 else 4)
    result.add(
        f"{'IPv6 ' if ipv6 else ''}pingall (one round)",
        good == total,
        time.monotonic() - t,
        f"{good}/{total}" + (f"; failing: {', '.join(failed[:8])}" if failed else ""),
    )


def gateway_pings(run: LabRun, result: CheckResult, *, ipv6: bool = False) -> None:
    """Every host pings its gateway (the VM, through the relay): two tries, all at once."""
    t = time.monotonic()
    pairs = [(h.name, h.gateway_of(6 if ipv6 else 4)) for h in run.plan.hosts]
    answered = checks.ping_pairs(run, pairs)
    answered |= checks.ping_pairs(run, [pair for pair in pairs if pair not in answered])
    failed = [name for name, gw in pairs if (name, gw) not in answered]
    n = len(run.plan.hosts)
    result.add(
        "hosts ping their IPv6 gateway" if ipv6 else "hosts ping their gateway",
        not failed,
        time.monotonic() - t,
        f"{n - len(failed)}/{n}" + (f"; failing: {', '.join(failed)}" if failed else ""),
    )


def flows_match_routes(
    run: LabRun, result: CheckResult, timeout: float = 15.0, *, ipv6: bool = False
) -> None:
    t = time.monotonic()
    last = checks.FlowCheck(ok=False)
    check = checks.check_flows6 if ipv6 else checks.check_flows

    def ok() -> bool:
        nonlocal last
        last = check(run)
        return last.ok

    good = checks.wait_until(ok, timeout, 1.0)
    detail = f"{last.routes} kernel routes"
    for what in ("missing", "extra", "bad_rewrite"):
        items = getattr(last, what)
        if items:
            detail += f"; {what}: " + "; ".join(
                f"{s}: {', '.join(v[:4])}" for s, v in items.items()
            )
    name = "IPv6 flows match kernel routes" if ipv6 else "flows match kernel routes"
    result.add(name, good, time.monotonic() - t, detail)


def converge6(run: LabRun, result: CheckResult, timeout: float) -> bool:
    """IPv6 routes (OSPFv3) for every host and link /64 in every VM kernel."""
    t = time.monotonic()

    def done() -> bool:
        _fail_if_dead(run)
        have, total = checks.routes_converged6(run)
        return have == total

    ok = checks.wait_until(done, timeout)
    have, total, missing = checks.routes_missing6(run)
    detail = f"{have}/{total} prefixes"
    if missing:
        detail += "; missing at " + "; ".join(
            f"{sw}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}"
            for sw, v in list(missing.items())[:6]
        )
        _save_ospf6_state(run, sorted(missing))
    result.add("IPv6 routes in VM kernels", ok, time.monotonic() - t, detail)
    return ok and on_shortest_paths(run, result, timeout, "kernel", 6)


def _save_ospf6_state(run: LabRun, switches: list[str]) -> None:
    """What OSPFv3 says in the VMs that lack routes, for whoever reads the run
    directory after the lab is gone (ospf6-at-failure.txt)."""
    path = os.path.join(run.run_dir, "ospf6-at-failure.txt")
    commands = (
        "show ipv6 ospf6 neighbor",
        "show ipv6 ospf6 database",
        "show ipv6 ospf6 route",  # ospf6d's own table: what it computed
        "show ipv6 route ospf6",  # zebra's: what it installed
    )
    with open(path, "w") as fh:
        for sw in switches:
            for command in commands:
                fh.write(f"=== {sw}: {command}\n{run.vtysh(sw, command)}\n")


def ipv6_checks(run: LabRun, result: CheckResult, t0: float, timeout: float) -> None:
    """A dual-stack lab's IPv6 side: the same stages as IPv4, after the IPv4 ones."""
    if converge6(run, result, timeout):
        gateway_pings(run, result, ipv6=True)
        if pingall_until_full(run, result, t0, timeout, ipv6=True):
            flows_match_routes(run, result, ipv6=True)
            if on_shortest_paths(run, result, 30.0, "switch", 6):
                pingall_one_round(run, result, ipv6=True)


def pingall_without(run: LabRun, result: CheckResult, switch: str, timeout: float) -> bool:
    """Every host not on ``switch`` reaches every other it still has a path to (the
    network before the switch is added; a hub's absence may cut it in pieces)."""
    import networkx as nx

    from routeflow.lab import paths

    t = time.monotonic()
    g = paths.graph(run.plan)
    g.remove_node(switch)
    part = {sw: i for i, comp in enumerate(nx.connected_components(g)) for sw in comp}
    hosts = [h for h in run.plan.hosts if h.switch != switch]
    pairs = [
        (a.name, b.address)
        for a in hosts
        for b in hosts
        if a is not b and part[a.switch] == part[b.switch]
    ]
    answered: set = set()

    def pending() -> int:
        nonlocal answered
        _fail_if_dead(run)
        answered |= checks.ping_pairs(run, [p for p in pairs if p not in answered])
        return len(pairs) - len(answered)

    ok = poll_until(pending, lambda n: n == 0, timeout=timeout, interval=0.5).ok
    result.add(
        f"pingall without {switch} (until 100%)",
        ok,
        time.monotonic() - t,
        f"{len(answered)}/{len(pairs)} pairs; {switch} connected next",
    )
    return ok


def start_lab(run: LabRun, result: CheckResult) -> None:
    """``run.start()``, with each bring-up stage recorded (also when one fails)."""
    try:
        run.start()
    finally:
        for s in run.stages:
            result.add(f"start: {s.name}", s.ok, s.seconds, s.detail)


def run_check(
    plan: LabPlan,
    run_dir: str,
    *,
    timeout: float = 120.0,
    log_level: str = "INFO",
    extra_checks=None,
    on_stage=None,
    auto: bool = False,
    add_switch: str | None = None,
) -> CheckResult:
    """The whole `lab check`; ``extra_checks(run, result)`` runs before teardown.

    ``auto``: rfserver --auto builds the VMs from discovery (see auto_problems).
    ``add_switch``: that switch starts without a controller; once the rest pings, it is
    connected (a switch added to a running network) and every check runs after that."""
    result = CheckResult(lab=plan.name, run_dir=run_dir, on_stage=on_stage)
    t0 = time.monotonic()
    held = frozenset({add_switch} if add_switch else ())
    run = LabRun(plan, run_dir, log_level=log_level, auto=auto, held=held)
    install_signal_handlers()
    try:
        start_lab(run, result)
        if add_switch is not None:
            if not pingall_without(run, result, add_switch, timeout):
                return result
            t0 = time.monotonic()
            run.connect_switch(add_switch)
        if converge(run, result, t0, timeout):
            links_discovered(run, result, timeout)
            if plan.speakers:
                speakers.wait_announced(run, result, timeout)
            gateway_pings(run, result)
            if pingall_until_full(run, result, t0, timeout):
                if add_switch is not None:
                    result.added_switch_s = result.full_pingall_s
                flows_match_routes(run, result)
                if on_shortest_paths(run, result, 30.0, "switch"):
                    pingall_one_round(run, result)
            if plan.ipv6:
                ipv6_checks(run, result, t0, timeout)
            if plan.speakers:
                speakers.reach_and_withdraw(run, result, timeout)
            if extra_checks is not None and result.ok:
                extra_checks(run, result)
    except LabFailure as exc:
        result.add("lab", False, time.monotonic() - t0, str(exc))
    finally:
        t = time.monotonic()
        run.stop()
        result.add("teardown", True, time.monotonic() - t)
        if run.memory:
            result.peak_rss_kib = {kind: kib for kind, (_n, kib) in run.memory.items()}
            result.add("daemons' peak memory", True, 0.0, memory_summary(run.memory))
    return result


def auto_problems(plan: LabPlan) -> list[str]:
    """Why a lab cannot run with --auto (rfserver's automatic configuration), or []."""
    problems = []
    if any(vm.routing != "ospf" for vm in plan.vms):
        problems.append("--auto configures OSPF only; the lab has bgp or static switches")
    if plan.ipv6:
        problems.append("--auto addresses IPv4 only; the lab says ipv6: true")
    if plan.speakers:
        problems.append("--auto has no BGP speakers yet")
    if plan.control.servers > 1:
        problems.append("--auto runs one rfserver (the VMs are its processes)")
    if plan.control.relay != "controller":
        problems.append("--auto with relay: datapath is not done yet")
    return problems


def memory_summary(memory: dict[str, tuple[int, int]]) -> str:
    """ "412 MiB in 153 processes: rfclient 50 x 31 MiB, ..." (largest kinds first)."""
    total = sum(kib for _n, kib in memory.values())
    count = sum(n for n, _kib in memory.values())
    kinds = sorted(memory.items(), key=lambda item: -item[1][1])
    parts = [
        f"{kind} {kib / 1024:.0f} MiB" if n == 1 else f"{kind} {n} x {kib / n / 1024:.0f} MiB"
        for kind, (n, kib) in kinds
    ]
    return f"{total / 1024:.0f} MiB in {count} processes: " + ", ".join(parts)


def write_json(result: CheckResult, path: str) -> None:
    with open(path, "w") as fh:
        data = asdict(result)
        data.pop("on_stage", None)
        json.dump(data, fh, indent=2)


def default_run_dir(name: str) -> str:
    base = os.environ.get("ROUTEFLOW_RUN_DIR", "/tmp/routeflow")
    return os.path.join(base, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")

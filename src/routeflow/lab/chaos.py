"""`routeflow lab chaos`: SIGKILL lab daemons at random, one at a time, and prove
that nothing is lost.

Two parts:

* a pure scheduler (:func:`schedule`): from the lab's victims and a seed it
  yields one :class:`Fault` per round. The first rounds cover every kind of
  fault the lab has, once each, in a seeded order; then kinds are drawn at
  random. No I/O, no clock: the same victims and seed give the same rounds.
* a thin runner (:func:`run_chaos`): for each round it resolves who the
  target is *now* (the rfserver leader, the master replica, the etcd raft
  leader), runs a continuous ping across the network, SIGKILLs the target,
  waits a supervisor's restart delay, restarts it and waits until the lab is
  whole again. Evidence comes from outside the daemons: ping sequence numbers,
  ``ovs-ofctl`` flow ages, the VMs' kernels, OVS's controller roles.

A round fails when the lab is not whole within the timeout, when an
association is lost, when the ping loses more than a few packets, or when a
flow was re-installed although the VM's kernel route behind it never changed
(a real routing change, e.g. OSPF re-running SPF, may re-install a flow; such
flows are reported apart).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from routeflow.lab.poll import poll_until

KINDS = (
    "rfserver-leader",
    "rfserver-standby",
    "rfproxy-master",
    "rfproxy-slave",
    "rfclient",
    "etcd-member",
    "etcd-leader",
)


# --- the scheduler (pure) ------------------------------------------------------


@dataclass(frozen=True)
class Victims:
    """What a lab has that can be killed."""

    servers: tuple[str, ...] = ()
    #: (ct_id, replica names) per controller.
    replicas: tuple[tuple[int, tuple[str, ...]], ...] = ()
    #: rfclient process names, ``rfclient@<switch>``.
    clients: tuple[str, ...] = ()
    #: etcd member indices (empty without an etcd store).
    etcd_members: tuple[int, ...] = ()

    def kinds(self) -> tuple[str, ...]:
        """The fault kinds this lab has, in KINDS order.

        etcd faults need at least 3 members: losing one of fewer loses the
        majority, which is a different (and announced) failure.
        """
        have = {
            "rfserver-leader": len(self.servers) >= 1,
            "rfserver-standby": len(self.servers) >= 2,
            "rfproxy-master": any(names for _ct, names in self.replicas),
            "rfproxy-slave": any(len(names) >= 2 for _ct, names in self.replicas),
            "rfclient": bool(self.clients),
            "etcd-member": len(self.etcd_members) >= 3,
            "etcd-leader": len(self.etcd_members) >= 3,
        }
        return tuple(k for k in KINDS if have[k])


@dataclass(frozen=True)
class Fault:
    """One round: a kind and what the scheduler chose for it.

    ``target`` is a process name for ``rfclient``, a ``ct_id`` for the rfproxy
    kinds, a member index for ``etcd-member`` (a preference: the runner takes
    another member if that one leads raft at the time) and None for the kinds
    whose victim only exists at kill time (rfserver leader/standby, etcd leader).
    """

    kind: str
    target: str | int | None = None


def _target(kind: str, victims: Victims, rng: random.Random) -> str | int | None:
    if kind == "rfclient":
        return rng.choice(victims.clients)
    if kind == "rfproxy-master":
        return rng.choice([ct for ct, names in victims.replicas if names])
    if kind == "rfproxy-slave":
        return rng.choice([ct for ct, names in victims.replicas if len(names) >= 2])
    if kind == "etcd-member":
        return rng.choice(victims.etcd_members)
    return None


def schedule(victims: Victims, seed: int) -> Iterator[Fault]:
    """Endless rounds: every available kind once (seeded order), then at random."""
    rng = random.Random(seed)
    kinds = list(victims.kinds())
    if not kinds:
        return
    first = kinds[:]
    rng.shuffle(first)
    for kind in first:
        yield Fault(kind, _target(kind, victims, rng))
    while True:
        kind = rng.choice(kinds)
        yield Fault(kind, _target(kind, victims, rng))


def plan_rounds(victims: Victims, rounds: int, seed: int) -> list[Fault]:
    it = schedule(victims, seed)
    return [f for f, _ in zip(it, range(rounds), strict=False)]


# --- results ---------------------------------------------------------------------


@dataclass
class RoundResult:
    round: int
    kind: str
    target: str = ""
    ok: bool = False
    healthy_s: float | None = None  # kill -> the lab whole again
    ping_sent: int = 0
    ping_lost: int = 0
    outage_s: float = 0.0
    #: Flows that existed before the kill and are younger than it, the kernel
    #: route behind them unchanged: flushed by the fault.
    reinstalled: list[str] = field(default_factory=list)
    #: The same, but the VM's kernel route changed meanwhile (routing did it).
    rerouted: list[str] = field(default_factory=list)
    associations_before: int = 0
    associations_after: int = 0
    associations_equal: bool = False
    failures: list[str] = field(default_factory=list)
    detail: str = ""
    #: Who held the roles before the kill and once whole again, e.g.
    #: "leader rfserver-a, ct1 master ct1a": a killed rfserver restarted under
    #: its --name before its lease expired takes its own leader key back.
    roles_before: str = ""
    roles_after: str = ""


@dataclass
class ChaosResult:
    lab: str
    seed: int
    rounds: list[RoundResult] = field(default_factory=list)
    run_dir: str = ""
    setup: list[dict] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.rounds) and all(r.ok for r in self.rounds)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# --- the runner ------------------------------------------------------------------


def victims_of(run) -> Victims:
    """The victims of a LabRun (``routeflow.lab.runner.LabRun``)."""
    return Victims(
        servers=tuple(run.server_names),
        replicas=tuple((ct.ct_id, tuple(ct.replica_names)) for ct in run.plan.controllers),
        clients=tuple(f"rfclient@{vm.switch}" for vm in run.plan.vms),
        etcd_members=tuple(range(run.plan.control.etcd_members)) if run.etcd is not None else (),
    )


def farthest_host(plan, src: str) -> str:
    """The host the most switch hops away from ``src`` (the last such in the plan)."""
    adj: dict[str, set[str]] = {vm.switch: set() for vm in plan.vms}
    for link in plan.links:
        adj[link.a.switch].add(link.b.switch)
        adj[link.b.switch].add(link.a.switch)
    start = plan.host(src).switch
    dist = {start: 0}
    frontier = [start]
    while frontier:
        nxt = []
        for s in frontier:
            for t in sorted(adj[s]):
                if t not in dist:
                    dist[t] = dist[s] + 1
                    nxt.append(t)
        frontier = nxt
    best, best_d = src, -1
    for h in plan.hosts:
        if h.name != src and dist.get(h.switch, -1) >= best_d:
            best, best_d = h.name, dist.get(h.switch, -1)
    return best


def kernel_lines(run, switch: str) -> dict[str, str]:
    """prefix -> the VM kernel's whole route (every next hop), IPv6 too in a dual-stack lab.

    The values are only compared: equal before and after iff the kernel kept the route."""
    from routeflow.lab import checks

    return {
        r.prefix: r.line
        for family in ((4, 6) if run.plan.ipv6 else (4,))
        for r in checks.kernel_route_table(run, switch, family)
        if r.type not in ("broadcast", "multicast", "local", "anycast")
    }


def flow_ages(run, switch: str) -> dict[str, float]:
    """FIB prefix -> flow age on the switch, IPv6 prefixes too in a dual-stack lab."""
    from routeflow.lab import checks

    ages = checks.flow_ages(run, switch)
    if run.plan.ipv6:
        ages.update(checks.flow_ages(run, switch, family=6))
    return ages


class RouteWatch:
    """`ip monitor route neigh` in one VM: which prefixes changed meanwhile."""

    def __init__(self, node) -> None:
        self.proc = node.popen(
            ["ip", "-o", "monitor", "label", "route", "neigh"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def stop(self) -> set[str]:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return changed_prefixes(out)


_USABLE_NEIGH = re.compile(r"\blladdr \S+ (REACHABLE|STALE|DELAY|PROBE|PERMANENT)\b")


def changed_prefixes(monitor_output: str) -> set[str]:
    """Prefixes `ip -o monitor label route neigh` saw change (neighbours as /32 or /128).

    Any route event counts; a neighbour counts when it is deleted or fails
    (rfclient withdraws its /32 then), not when it merely goes stale.
    """
    changed = set()
    for line in monitor_output.splitlines():
        m = re.match(r"\[(ROUTE|NEIGH)\](Deleted )?(\S+)", line.strip())
        if not m:
            continue
        what, deleted, dst = m.groups()
        if dst in ("broadcast", "local", "multicast", "unreachable", "blackhole"):
            continue
        if what == "NEIGH" and not deleted and _USABLE_NEIGH.search(line):
            continue
        v6 = ":" in dst or (dst == "default" and re.search(r" via [0-9a-fA-F:]*:", line))
        if dst == "default":
            dst = "::/0" if v6 else "0.0.0.0/0"
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        changed.add(str(net))
    return changed


def classify_flows(
    ages_before: dict[str, float],
    ages_now: dict[str, float],
    since_kill: float,
    kernel_before: dict[str, str],
    kernel_now: dict[str, str],
    changed: set[str],
) -> tuple[list[str], list[str]]:
    """(re-installed, rerouted): flows of before that are gone or younger than the kill.

    Rerouted ones had their kernel route change meanwhile (seen by `ip monitor`
    or differing before/after): routing did that, not the fault.
    """
    reinstalled, rerouted = [], []
    for prefix in sorted(ages_before):
        if prefix in ages_now and ages_now[prefix] >= since_kill:
            continue
        routed = prefix in changed or kernel_before.get(prefix) != kernel_now.get(prefix)
        (rerouted if routed else reinstalled).append(prefix)
    return reinstalled, rerouted


def whole(run) -> list[str]:
    """What keeps the lab from being whole now (empty: healthy), cheapest first.

    Whole means: an rfserver leads, every other rfserver stands by behind it;
    every association is active; every client and controller is connected to
    the leader; every controller has a master and all its other replicas are
    slaves, in rfserver's view and in OVS's; every etcd member is up and raft
    has a leader; every kernel route has its flow; pingall is 100 %; in a
    dual-stack lab, the same for IPv6.
    """
    from routeflow.lab import checks

    dead = run.procs.dead()
    if dead:
        return ["died: " + ", ".join(f"{t.name} (pid {t.pid})" for t in dead)]
    leader = run.leader()
    if leader is None:
        return ["no rfserver leads"]
    for name in run.server_names:
        if name == leader:
            continue
        st = run.server_status(name)
        if st.get("role") != "standby" or st.get("leader") != leader:
            return [f"{name} is not standing by behind {leader}: {st.get('role')!r}"]
    st = checks.server_status(run)
    active, want = checks.associations_active(run)
    if active != want:
        return [f"associations {active}/{want} active"]
    vms = {f"{vm.vm_id:#x}" for vm in run.plan.vms}
    if set(st.get("clients", [])) != vms:
        return [f"clients {sorted(st.get('clients', []))} of {sorted(vms)}"]
    cts = {ct.ct_id for ct in run.plan.controllers}
    if set(st.get("controllers", [])) != cts:
        return [f"controllers {st.get('controllers')} of {sorted(cts)}"]
    masters = {}
    for ct in run.plan.controllers:
        roles = st.get("controller_roles", {}).get(str(ct.ct_id), {})
        master = roles.get("master")
        want_roles = {r: ("master" if r == master else "slave") for r in ct.replica_names}
        if len(ct.replica_names) > 1 and roles.get("replicas") != want_roles:
            return [f"controller {ct.ct_id} roles {roles.get('replicas')} (master {master})"]
        masters[ct.ct_id] = (master, want_roles)
    if any(len(ct.replica_names) > 1 for ct in run.plan.controllers):
        of_roles = checks.controller_roles(run)
        for vm in run.plan.vms:
            master, want_roles = masters[vm.ct_id]
            if len(want_roles) > 1 and of_roles.get(vm.switch) != want_roles:
                return [f"OVS roles on {vm.switch}: {of_roles.get(vm.switch)}"]
    if run.etcd is not None:
        down = [i for i in range(run.plan.control.etcd_members) if not run.etcd.alive(i)]
        if down:
            return [f"etcd members down: {down}"]
        if run.etcd.leader() is None:
            return ["etcd has no raft leader"]
    flows = checks.check_flows(run)
    if not flows.ok:
        return [f"flows: missing {flows.missing} extra {flows.extra} bad {flows.bad_rewrite}"]
    good, total, failed = checks.pingall(run)
    if good != total:
        return [f"pingall {good}/{total}: failing {failed[:6]}"]
    if run.plan.ipv6:
        flows = checks.check_flows6(run)
        if not flows.ok:
            return [
                f"IPv6 flows: missing {flows.missing} extra {flows.extra} bad {flows.bad_rewrite}"
            ]
        good, total, failed = checks.pingall(run, family=6)
        if good != total:
            return [f"IPv6 pingall {good}/{total}: failing {failed[:6]}"]
    return []


def roles(run) -> str:
    """Who leads and who is master now, in a few words."""
    from routeflow.lab import checks

    words = [f"leader {run.leader()}"]
    st = checks.server_status(run).get("controller_roles", {})
    for ct in run.plan.controllers:
        if len(ct.replica_names) > 1:
            words.append(f"ct{ct.ct_id} master {st.get(str(ct.ct_id), {}).get('master')}")
    return ", ".join(words)


def settle(run, timeout: float = 60.0, quiet_s: float = 5.0) -> bool:
    """Wait until the lab is whole and no FIB flow changed for ``quiet_s`` seconds.

    Right after bring-up OSPF still re-runs SPF; a flow it re-installs then
    must not be blamed on the first fault.
    """
    from routeflow.lab import checks

    def quiet() -> bool:
        ages = [a for vm in run.plan.vms for a in flow_ages(run, vm.switch).values()]
        return min(ages, default=quiet_s + 1) > quiet_s and not whole(run)

    return checks.wait_until(quiet, timeout, 0.5)


def _nothing() -> Callable[[], list[str]]:
    return list


def _log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _log_since(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _rejoin_evidence(run, log_path: str, patterns: list[str]) -> Callable[[], list[str]]:
    """Made just before a restart: has the new process logged every pattern since,
    and has the leader written its status since (so the status is not stale)?

    OVS's database and a status file written just before the kill can both
    still show the killed process as connected; the restarted process's own
    log (a switch's role reply, rfserver's answer) cannot.
    """
    offset, wall = _log_size(log_path), time.time()

    def missing() -> list[str]:
        from routeflow.lab import checks

        text = _log_since(log_path, offset)
        for pattern in patterns:
            if not re.search(pattern, text):
                return [f"{os.path.basename(log_path)} has not logged /{pattern}/ yet"]
        if checks.server_status(run).get("time", 0.0) < wall:
            return ["the leader's status predates the restart"]
        return []

    return missing


def _resolve(run, fault: Fault) -> tuple[str, Callable[[], None], Callable[[], None], Callable]:
    """(target label, kill, restart, evidence) for a fault, from who holds which role now.

    ``evidence()``, called just before the restart, returns a check that the
    restarted process has rejoined (empty list: it has), beyond what whole() sees.
    """
    from routeflow.lab import checks

    kind = fault.kind
    if kind in ("rfserver-leader", "rfserver-standby"):
        leader = run.leader()
        if leader is None:
            raise RuntimeError("no rfserver leads")
        if kind == "rfserver-leader":
            name = leader
        else:
            name = next(n for n in run.server_names if n != leader)
        # Its status file is removed before it starts: whole() reads only fresh ones.
        return name, lambda: run.kill(name), lambda: run.start_server(name), _nothing
    if kind in ("rfproxy-master", "rfproxy-slave"):
        ct = int(fault.target)
        names = run.replicas(ct)
        if len(names) == 1:
            replica = names[0]
        else:
            roles = checks.server_status(run).get("controller_roles", {}).get(str(ct), {})
            master = roles.get("master")
            if master not in names:
                raise RuntimeError(f"controller {ct} has no master: {roles}")
            replica = master if kind == "rfproxy-master" else sorted(set(names) - {master})[0]
        proc = run.proxy_name(ct, replica)
        roles = [
            rf"switch {vm.dp_id:#x}: replica {re.escape(replica)} is (master|slave)"
            for vm in run.plan.vms
            if vm.ct_id == ct
        ]
        return (
            proc,
            lambda: run.kill(proc),
            lambda: run.start_proxy_process(ct, replica),
            lambda: _rejoin_evidence(run, os.path.join(run.run_dir, f"{proc}.log"), roles),
        )
    if kind == "rfclient":
        name = str(fault.target)
        vm = run.plan.vm(name.split("@", 1)[1])
        log_path = os.path.join(run.vm_dir(vm), "rfclient.log")
        return (
            name,
            lambda: run.kill(name),
            lambda: run.start_client(vm),
            lambda: _rejoin_evidence(
                # Only the message: the line's layout (logger, level, id fields)
                # belongs to --log-format.
                run,
                log_path,
                [r"\bconnected to .*; resync sent"],
            ),
        )
    if kind in ("etcd-member", "etcd-leader"):
        leader = run.etcd.leader()
        if leader is None:
            raise RuntimeError("etcd has no raft leader")
        if kind == "etcd-leader":
            member = leader
        else:
            n = run.plan.control.etcd_members
            preferred = int(fault.target)
            member = next(m for m in [preferred, *range(n)] if m != leader and run.etcd.alive(m))
        role = "leader" if member == leader else "follower"
        return (
            f"etcd-{member} ({role})",
            lambda: run.etcd.kill_member(member),
            lambda: run.etcd.restart_member(member),  # returns once the member is healthy
            _nothing,
        )
    raise ValueError(f"unknown fault kind {kind!r}")


def run_round(
    run,
    index: int,
    fault: Fault,
    *,
    restart_delay: float = 1.5,
    timeout: float = 60.0,
    ping_tolerance: int = 2,
    ping_interval: float = 0.05,
    src: str = "h1",
    dst: str | None = None,
) -> RoundResult:
    from routeflow.lab import checks
    from routeflow.lab.faults import ContinuousPing

    res = RoundResult(round=index, kind=fault.kind)
    dst = dst or farthest_host(run.plan, src)
    switches = [vm.switch for vm in run.plan.vms]
    rows_before = checks.association_rows(checks.server_status(run))
    res.associations_before = len(rows_before)
    res.roles_before = roles(run)
    ages_before = {sw: flow_ages(run, sw) for sw in switches}
    kernel_before = {sw: kernel_lines(run, sw) for sw in switches}
    watches = {sw: RouteWatch(run.vm_node(sw)) for sw in switches}
    ping = ContinuousPing(run.host(src), run.plan.host(dst).address, interval=ping_interval)
    pinged = None
    try:
        time.sleep(0.5)
        label, kill, restart, evidence = _resolve(run, fault)
        res.target = label
        t_kill = time.monotonic()
        kill()
        time.sleep(restart_delay)
        rejoined = evidence()
        restart()
        problems = poll_until(
            lambda: rejoined() or whole(run),
            lambda p: not p,
            timeout=t_kill + timeout - time.monotonic(),
            interval=0.25,
        ).value
        if not problems:
            res.healthy_s = round(time.monotonic() - t_kill, 2)
            res.roles_after = roles(run)
        else:
            res.failures.append(f"not whole {timeout:.0f} s after the kill: {problems[0]}")
        time.sleep(0.5)
        pinged = ping.stop()
    finally:
        if pinged is None:
            with contextlib.suppress(Exception):
                ping.stop()
        changed = {sw: w.stop() for sw, w in watches.items()}
    res.ping_sent, res.ping_lost = pinged.sent, pinged.lost
    res.outage_s = round(pinged.outage_s, 2)
    for sw in switches:
        # Seconds since the kill, taken before the dump: a flow older than
        # that was there before the kill (ovs-ofctl's durations are at dump time).
        since = time.monotonic() - t_kill
        now = flow_ages(run, sw)
        kernel_now = kernel_lines(run, sw)
        flushed, rerouted = classify_flows(
            ages_before[sw], now, since, kernel_before[sw], kernel_now, changed[sw]
        )
        res.reinstalled += [f"{sw}:{prefix}" for prefix in flushed]
        res.rerouted += [f"{sw}:{prefix}" for prefix in rerouted]
    rows_after = checks.association_rows(checks.server_status(run))
    res.associations_after = len(rows_after)
    res.associations_equal = rows_after == rows_before
    if not res.associations_equal:
        lost = sorted(rows_before - rows_after)
        res.failures.append(
            f"associations changed: lost {lost[:4]}, new {len(rows_after - rows_before)}"
        )
    if res.ping_lost > ping_tolerance:
        res.failures.append(
            f"ping {src}->{dst} lost {res.ping_lost}/{res.ping_sent} (outage {res.outage_s} s)"
        )
    if res.reinstalled:
        res.failures.append(f"flows re-installed without a route change: {res.reinstalled[:6]}")
    res.ok = not res.failures
    res.detail = "; ".join(res.failures)
    return res


def run_chaos(
    run,
    rounds: int,
    seed: int,
    on_round: Callable[[RoundResult], None] | None = None,
    *,
    restart_delay: float = 1.5,
    timeout: float = 60.0,
    ping_tolerance: int = 2,
    on_start: Callable[[int, Fault], None] | None = None,
    result: ChaosResult | None = None,
) -> ChaosResult:
    """Run ``rounds`` fault rounds on a converged, running lab."""
    result = result or ChaosResult(lab=run.plan.name, seed=seed, run_dir=run.run_dir)
    for i, fault in enumerate(plan_rounds(victims_of(run), rounds, seed), 1):
        if on_start is not None:
            on_start(i, fault)
        try:
            res = run_round(
                run,
                i,
                fault,
                restart_delay=restart_delay,
                timeout=timeout,
                ping_tolerance=ping_tolerance,
            )
        except Exception as exc:  # a round that cannot even run is a failed round
            res = RoundResult(round=i, kind=fault.kind, failures=[f"{type(exc).__name__}: {exc}"])
            res.detail = res.failures[0]
        result.rounds.append(res)
        if on_round is not None:
            on_round(res)
        if not res.ok and res.healthy_s is None:
            # The lab is not whole: the next round would measure this one's damage.
            break
    return result


def run_chaos_lab(
    plan,
    run_dir: str,
    rounds: int,
    seed: int,
    *,
    restart_delay: float = 1.5,
    timeout: float = 60.0,
    converge_timeout: float = 120.0,
    log_level: str = "INFO",
    on_stage=None,
    on_start=None,
    on_round=None,
) -> ChaosResult:
    """`lab chaos`: bring the lab up and converged, run the rounds, always tear down."""
    from routeflow.lab import scenarios
    from routeflow.lab.runner import LabFailure, LabRun

    result = ChaosResult(lab=plan.name, seed=seed, run_dir=run_dir)
    check = scenarios.CheckResult(lab=plan.name, run_dir=run_dir, on_stage=on_stage)
    run = LabRun(plan, run_dir, log_level=log_level)
    scenarios.install_signal_handlers()
    t0 = time.monotonic()
    try:
        scenarios.start_lab(run, check)
        if not (
            scenarios.converge(run, check, t0, converge_timeout)
            and scenarios.pingall_until_full(run, check, t0, converge_timeout)
        ):
            result.error = "the lab did not converge"
        else:
            t = time.monotonic()
            ok = settle(run)
            check.add("settled (whole, FIB quiet 5 s)", ok, time.monotonic() - t)
            if not ok:
                result.error = f"the lab did not settle: {whole(run)}"
            else:
                run_chaos(
                    run,
                    rounds,
                    seed,
                    on_round,
                    restart_delay=restart_delay,
                    timeout=timeout,
                    on_start=on_start,
                    result=result,
                )
    except LabFailure as exc:
        result.error = str(exc)
        check.add("lab", False, time.monotonic() - t0, str(exc))
    finally:
        result.setup = check.stages
        run.stop()
    return result

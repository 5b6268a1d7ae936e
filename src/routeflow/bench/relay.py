"""Relay load: what a lab's routing-protocol traffic costs rfproxy, and whether it keeps up.

In RouteFlow every packet between two VMs (OSPF hellos and LSAs, BFD, BGP) crosses the
controller twice: the virtual switch hands it to rfproxy, which sends it out of the physical
switch's port; the switch at the other end hands it to rfproxy again, which sends it to the
other VM. A backbone's control plane therefore runs through one Python process. This
benchmark brings a lab up and measures, at its size:

* the relay's round trip: every VM pings every neighbour's address on the link between
  them (``fping -C``, all VMs at once), which is the path a hello takes, both ways;
* the CPU that rfproxy and ovs-vswitchd use while the lab only keeps its adjacencies up;
* over a soak of ``seconds``: BFD sessions that went down (FRR's own counters), and OSPF
  adjacencies still Full at the end. A flap means the relay was too slow for BFD's
  detection time (interval x multiplier) at that moment.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field

from routeflow.lab import checks, scenarios
from routeflow.lab.model import LabPlan
from routeflow.lab.runner import LabFailure, LabRun

_FPING_C = re.compile(r"^(\S+)\s*:\s*(.*)$", re.MULTILINE)


def parse_fping_c(text: str) -> dict[str, list[float | None]]:
    """``fping -C N -q`` output: address -> N round trips in ms (None for a lost probe)."""
    out: dict[str, list[float | None]] = {}
    for m in _FPING_C.finditer(text):
        values = m[2].split()
        if values and all(v == "-" or re.fullmatch(r"[\d.]+", v) for v in values):
            out[m[1]] = [None if v == "-" else float(v) for v in values]
    return out


@dataclass
class RelayResult:
    lab: str
    switches: int
    links: int
    bfd: bool
    probes: int = 0
    lost: int = 0
    rtt_ms: dict[str, float] = field(default_factory=dict)  # min, p50, p99, max
    cpu_percent: dict[str, float] = field(default_factory=dict)  # process -> % of one core
    soak_s: float = 0.0
    bfd_sessions: int = 0
    bfd_up_at_end: int = 0
    bfd_down_events: int = 0
    ospf_full: tuple[int, int] = (0, 0)
    stages: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        full, want = self.ospf_full
        return (
            bool(self.stages)
            and all(stage["ok"] for stage in self.stages)
            and self.probes > 0
            and self.lost == 0
            and full == want
            and self.bfd_down_events == 0
            and self.bfd_up_at_end == self.bfd_sessions
        )


def relay_round_trips(run: LabRun, count: int) -> tuple[int, int, list[float]]:
    """(probes, lost, round trips in ms) of every VM pinging every neighbour ``count`` times."""
    procs = []
    for vm in run.plan.vms:
        peers = [run.plan.vm(i.peer).interface(i.peer_port).ip for i in vm.link_ports]
        if peers:
            # One probe a second per neighbour: the relay's own load (hellos) doubled, not a
            # flood that measures nothing but a queue.
            argv = ["fping", "-4", "-q", "-C", str(count), "-p", "1000", "-t", "2000", *peers]
            procs.append(
                run.vm_node(vm.switch).popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
    rtts: list[float] = []
    probes = lost = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=count * 1.0 + 60)
        for values in parse_fping_c(out).values():
            probes += len(values)
            lost += sum(1 for v in values if v is None)
            rtts += [v for v in values if v is not None]
    return probes, lost, rtts


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bfd_counters(run: LabRun) -> tuple[int, int, int]:
    """(sessions, sessions up, session-down events) summed over every VM's bfdd."""
    sessions = up = down = 0
    for vm in run.plan.vms:
        peers = json.loads(run.vtysh(vm.switch, "show bfd peers json") or "[]")
        counters = json.loads(run.vtysh(vm.switch, "show bfd peers counters json") or "[]")
        sessions += len(peers)
        up += sum(1 for x in peers if x.get("status") == "up")
        down += sum(int(x.get("session-down", 0)) for x in counters)
    return sessions, up, down


def run_relay_bench(
    plan: LabPlan, run_dir: str, *, seconds: float, pings: int, log_level: str, on_stage=None
) -> RelayResult:
    result = RelayResult(
        lab=plan.name, switches=len(plan.vms), links=len(plan.links), bfd=plan.ospf.bfd
    )
    check = scenarios.CheckResult(lab=plan.name, run_dir=run_dir, on_stage=on_stage)
    run = LabRun(plan, run_dir, log_level=log_level)
    scenarios.install_signal_handlers()
    t0 = time.monotonic()
    try:
        scenarios.start_lab(run, check)
        if not scenarios.converge(run, check, t0, 300) or not scenarios.on_shortest_paths(
            run, check, 120, "switch"
        ):
            raise LabFailure("the lab did not converge")
        if plan.ospf.bfd:
            t = time.monotonic()
            ok = checks.wait_until(lambda: _all_bfd_up(run), 120, 1.0)
            sessions, up, _down = bfd_counters(run)
            check.add("BFD sessions up", ok, time.monotonic() - t, f"{up}/{sessions}")
        procs = {t.name: t.pid for t in run.procs.procs}
        watched = {n: procs[n] for n in ("rfproxy", "ovs-vswitchd") if n in procs}
        before = {n: cpu_seconds(pid) for n, pid in watched.items()}
        bfd_before = bfd_counters(run) if plan.ospf.bfd else (0, 0, 0)
        t = time.monotonic()
        result.probes, result.lost, rtts = relay_round_trips(run, pings)
        if rtts:
            rtts.sort()
            result.rtt_ms = {
                "min": round(rtts[0], 2),
                "p50": round(statistics.median(rtts), 2),
                "p99": round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 2),
                "max": round(rtts[-1], 2),
            }
        check.add(
            "relay round trips",
            result.lost == 0,
            time.monotonic() - t,
            f"{result.probes - result.lost}/{result.probes} answered, ms {result.rtt_ms}",
        )
        _soak(run, t, seconds)
        result.soak_s = round(time.monotonic() - t, 1)
        elapsed = time.monotonic() - t
        result.cpu_percent = {
            n: round(100 * (cpu_seconds(pid) - before[n]) / elapsed, 1)
            for n, pid in watched.items()
        }
        if plan.ospf.bfd:
            result.bfd_sessions, result.bfd_up_at_end, down = bfd_counters(run)
            result.bfd_down_events = down - bfd_before[2]
            check.add(
                "BFD through the soak",
                result.bfd_down_events == 0 and result.bfd_up_at_end == result.bfd_sessions,
                elapsed,
                f"{result.bfd_down_events} session-down events, "
                f"{result.bfd_up_at_end}/{result.bfd_sessions} up at the end",
            )
        result.ospf_full = checks.ospf_adjacencies(run)
        full, want = result.ospf_full
        check.add("OSPF adjacencies Full at the end", full == want, 0.0, f"{full}/{want}")
        check.add(
            "relay CPU during the soak", True, elapsed, f"% of one core: {result.cpu_percent}"
        )
    except LabFailure as exc:
        check.add("lab", False, time.monotonic() - t0, str(exc))
    finally:
        run.stop()
        result.stages = check.stages
    return result


def _all_bfd_up(run: LabRun) -> bool:
    sessions, up, _down = bfd_counters(run)
    return sessions > 0 and up == sessions


def _soak(run: LabRun, since: float, seconds: float) -> None:
    """Keep the lab up until ``seconds`` after ``since``, failing early if a daemon dies."""
    while time.monotonic() - since < seconds:
        dead = run.procs.dead()
        if dead:
            raise LabFailure(f"died during the soak: {', '.join(t.name for t in dead)}")
        time.sleep(min(2.0, max(0.0, seconds - (time.monotonic() - since))))


def write_json(result: RelayResult, path: str) -> None:
    with open(path, "w") as fh:
        json.dump({**asdict(result), "ok": result.ok}, fh, indent=2)

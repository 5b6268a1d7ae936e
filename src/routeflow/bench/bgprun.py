"""`routeflow bench bgp`: a table announced over BGP to the VM's bgpd, FRR end to end.

A BGP lab of one switch, one host and one speaker comes up (associations, the
speaker's ExaBGP session and its one prefix on the switch). ExaBGP is then
stopped and bgpfeed.py takes the speaker's place (same address, same AS): it
packs the table file's prefixes into UPDATEs, opens its session with the VM's
bgpd and, once told to, sends them all as fast as the session takes them. A
table with IPv6 prefixes makes the lab dual stack: they go over the same session
(MP-BGP) with the speaker's IPv6 address as next hop, as ExaBGP's would.
From its first UPDATE on, two counts are sampled every ``interval`` s:

* the kernel: zebra's count of BGP routes in the FIB (``show ip[v6] route
  summary``, both families summed: a route counts once the kernel has
  acknowledged its installation), that is FRR's own time to have the table in
  the kernel;
* the switch: Open vSwitch's count of flows in the FIB table (table stats over
  one kept OpenFlow connection, tablestats.py, or ``dump-tables`` if that
  fails; both families share it).

Both clocks start at the speaker's first UPDATE. The result is the time to the
full table for each, and routeflow's lag behind the kernel as a ratio,
``(switch - kernel) / kernel``. At the end the VM kernel's BGP routes (read
with ``ip route``, per family) must be exactly the table's prefixes, and the switch's
FIB flows for those prefixes exactly the kernel's.

``--peer-down`` makes it an edge router with two transit peers: a second speaker
x2 (another AS) announces the same table with its AS once more on every path, so
the VM's bgpd prefers x1 everywhere and holds x2's paths as the alternative. Once
the switch forwards every prefix via x1, x1 goes down as a peer shut down by its
operator does (NOTIFICATION Cease/Administrative Shutdown, then the session
closes): bgpd re-selects x2 for every prefix, zebra replaces each route in the
kernel, routeflow moves each flow to x2's groups. Timed from the NOTIFICATION:

* the kernel: zebra's kernel dataplane provider's count of completed updates
  (``show zebra dplane providers``, "out") reaching what the event cost it in
  the end (one per moved route, counted once all is quiet), that is FRR's own
  time to have the whole table on the surviving peer in the kernel;
* the switch: no table flow left on x1's groups (OVS's group ref_counts, minus
  x1's own host flow, which stays: x1's address is still a neighbour).

At the end every kernel route must go via x2 and every table flow to x2's groups.
This is the real case of a peer going down, FRR deciding; `bench fib --peer-down`
is the harder one, routes replaced by a loader at netlink speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address

from routeflow.bench import tablestats
from routeflow.bench.table import TableError, read_table_file
from routeflow.lab import checks, exabgp, speakers
from routeflow.lab.model import parse_lab, plan

__all__ = ["BgpResult", "kernel_out_count", "routes_via", "run_bgp"]

LAB = """
name: benchbgp
routing: bgp
ipv6: IPV6
switches:
  - {name: A, dpid: 0xc8, asn: 65001}
hosts:
  - {name: h1, switch: A, ip: 172.31.1.100/24}
speakers:
  - name: x1
    switch: A
    ip: 192.0.2.2/30
    asn: 65100
    announce: {count: 1, start: 198.51.100.0, prefixlen: 24}
"""
#: --peer-down: the backup transit peer (its paths one AS longer).
BACKUP_SPEAKER = """
  - name: x2
    switch: A
    ip: 192.0.2.6/30
    asn: 65200
    announce: {count: 1, start: 198.51.101.0, prefixlen: 24}
"""
FIB_TABLE = 1


@dataclass
class BgpResult:
    table: str
    prefixes: int = 0  # both families
    prefixes6: int = 0  # of which IPv6
    ipv6_left_out: int = 0  # always 0 now: IPv6 goes by MP-BGP (kept for old readers)
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    #: From the speaker's first UPDATE: its last UPDATE written, bgpd holding the
    #: table (RIB), zebra counting it in the kernel (FIB), the switch holding it.
    speaker_sent_s: float | None = None
    rib_s: float | None = None
    kernel_s: float | None = None
    switch_s: float | None = None
    #: (switch_s - kernel_s) / kernel_s: routeflow's lag behind the kernel.
    lag_ratio: float | None = None
    #: The samples before and at kernel_s are this far apart: a lag of 0 (both
    #: full in the same sample) means a lag of at most this, as a ratio.
    lag_bound_ratio: float | None = None
    #: (s, bgpd RIB, kernel FIB, switch) at each sample.
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    kernel_routes: int | None = None  # `ip route show proto bgp` at the end
    switch_equals_kernel: bool | None = None
    loadavg: list[str] = field(default_factory=list)  # at the start and at the end
    #: Peak RSS (VmHWM, MB) per daemon kind at the end (rfclient, bgpd, zebra...).
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    #: --peer-down (two peers, x1 preferred, x1 goes down), from x1's NOTIFICATION:
    peers: int = 1
    down_kernel_s: float | None = None  # zebra's kernel updates all done
    down_switch_s: float | None = None  # no table flow left on x1's groups
    down_kernel_updates: int | None = None  # what the event cost zebra's kernel provider
    #: (switch - kernel) / kernel, and its bound from the sampling as above.
    down_lag_ratio: float | None = None
    down_lag_bound_ratio: float | None = None
    #: (s, kernel updates done, table flows still on x1) at each sample.
    down_samples: list[tuple[float, int, int]] = field(default_factory=list)
    down_kernel_via_survivor: int | None = None  # kernel BGP routes via x2 at the end
    down_switch_via_survivor: int | None = None  # table flows on x2's groups at the end
    #: CPU seconds each process used from the NOTIFICATION to the end of the sampling.
    down_cpu_s: dict[str, float] = field(default_factory=dict)
    #: --split-cpus: which lab processes ran on which CPU during the event.
    down_pinned: dict[str, list[str]] = field(default_factory=dict)


_PROVIDER_OUT = re.compile(r"^\s*Kernel\b.*?\bin: (\d+),.*?\bout: (\d+)", re.M)


def kernel_out_count(text: str) -> tuple[int, int] | None:
    """(in, out) of zebra's kernel dataplane provider in ``show zebra dplane
    providers`` ("Kernel (1): in: 5008, q: 0, q_max: 100, out: 5008, ..."): updates
    handed to it, and updates the kernel has completed. None if absent."""
    m = _PROVIDER_OUT.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def routes_via(text: str, family: int = 4) -> dict[str, str]:
    """prefix -> first gateway of each route in ``ip -FAMILY route show`` text ("" when
    it has none); a multipath route's continuation lines (``\tnexthop via ...``)
    give its first hop. Prefixes as checks.route_dst writes them."""
    out: dict[str, str] = {}
    last = None
    default = "0.0.0.0/0" if family == 4 else "::/0"
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if line[0].isspace():
            if last is not None and not out[last] and "via" in words[:-1]:
                out[last] = words[words.index("via") + 1]
            continue
        dst = default if words[0] == "default" else checks.route_dst(words[0], family)
        if dst is None:
            continue
        out[dst] = words[words.index("via") + 1] if "via" in words[:-1] else ""
        last = dst
    return out


def zebra_bgp_counts(run, switch: str, families: tuple[int, ...] = (4,)) -> tuple[int, int]:
    """(RIB, FIB) counts of zebra's BGP routes (eBGP and iBGP), summed over ``families``."""
    rib = fib = 0
    for family in families:
        out = run.vtysh(switch, f"show {'ip' if family == 4 else 'ipv6'} route summary json")
        try:
            data = json.loads(out[out.index("{") :])
        except ValueError:
            return -1, -1
        for r in data.get("routes", []):
            if r.get("type") in ("bgp", "ebgp", "ibgp"):
                rib += int(r.get("rib", 0))
                fib += int(r.get("fib", 0))
    return rib, fib


def _table_active(run, switch: str, table: int = FIB_TABLE) -> int:
    count = tablestats.table_active(run.ovs.rundir, run.bridges[switch], table)
    if count is not None:
        return count  # a kept connection: no process per poll (tablestats.py)
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-tables", run.bridges[switch]],
        capture_output=True,
        text=True,
        env={**os.environ, **run.ovs.env},
        timeout=30,
    ).stdout
    m = re.search(rf"table {table}.*?active=(\d+)", out, re.S)
    if m is None:
        m = re.search(rf"\s{table}:.*?active=(\d+)", out, re.S)
    return int(m.group(1)) if m else -1


def _read_log(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.strip().partition(" ")
                out[key] = value
    except FileNotFoundError:
        pass
    return out


def _first(samples, index: int, want: int) -> float | None:
    return next((s[0] for s in samples if s[index] >= want), None)


def _start_feed(run, sp, index: int, table_path: str, go: str, ipv6: bool):
    """Start bgpfeed in speaker ``sp``'s place: (process, its log, its --down file).
    Speaker ``index`` puts its AS ``index`` more times on its paths (x1 preferred)."""
    d = exabgp.speaker_dir(run, sp)
    log, down = os.path.join(d, "bgpfeed.log"), os.path.join(d, "bgpfeed.down")
    argv = [
        run.python, "-m", "routeflow.bench.bgpfeed", os.path.abspath(table_path),
        "--asn", str(sp.asn), "--peer-as", str(sp.vm_asn), "--local", sp.address,
        "--peer", sp.gateway, "--go", go, "--log", log, "--down", down,
        "--prepend", str(index),
        *(["--local6", sp.address6] if ipv6 and sp.address6 else []),
    ]  # fmt: skip
    errlog = open(os.path.join(d, "bgpfeed.out"), "ab")  # noqa: SIM115
    popen = run.host(sp.name).popen(
        argv, stdin=subprocess.DEVNULL, stdout=errlog, stderr=subprocess.STDOUT
    )
    errlog.close()
    run.procs.add_popen(f"bgpfeed@{sp.name}", popen)
    return popen, log, down


def _kernel_updates(run, switch: str) -> tuple[int, int]:
    text = run.vtysh(switch, "show zebra dplane providers")
    counts = kernel_out_count(text)
    if counts is None:
        from routeflow.lab.runner import LabFailure

        raise LabFailure(f"no kernel provider in zebra's `show zebra dplane providers`: {text!r}")
    return counts


def pin_threads(pid: int, cpus: set[int]) -> bool:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit it); False if
    it is gone. sched_setaffinity(pid) alone would move only its main thread."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)
    return True


def split_cpus(run, vm_switch: str) -> dict[str, list[str]]:
    """Put the VM (its FRR daemons and rfclient) on one CPU and the switch side (rfserver,
    rfproxy, Open vSwitch) on another: a deployment's split, where they are different
    machines, on a two-core one. Everything else (the speakers, this bench) stays free.
    Returns the names pinned, by CPU."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        raise ValueError(f"splitting needs two CPUs; this process may use {mine}")
    vm_cpu, switch_cpu = mine[0], mine[1]
    sides: dict[str, list[str]] = {str(vm_cpu): [], str(switch_cpu): []}
    switch_side = ("rfserver", "rfproxy", "ovs-vswitchd", "ovsdb-server")
    for t in run.procs.procs:
        if t.name.endswith(f"@{vm_switch}"):
            cpu = vm_cpu
        elif t.name.split("@")[0] in switch_side:
            cpu = switch_cpu
        else:
            continue
        if pin_threads(t.pid, {cpu}):
            sides[str(cpu)].append(t.name)
    return sides


def _peer_down(
    run,
    check,
    result: BgpResult,
    sps,
    feed,
    want,
    families,
    base,
    limit,
    interval,
    profile_dir,
    split: bool = False,
):
    """x1 goes down (see the module docstring); times kernel and switch from its NOTIFICATION."""
    from routeflow.bench.fib import (
        aggregate_count,
        cpu_of,
        flows_via,
        groups_of_gateway,
        start_profilers,
        stop_profilers,
    )

    dead, alive = sps
    bridge = run.bridges[dead.switch]
    n = len(want)
    neigh = checks.kernel_neighbours(run, dead.switch)
    macs = {sp.name: neigh.get(sp.address, "") for sp in sps}
    if "" in macs.values():
        check.add("peer down: both peers are neighbours", False, 0.0, f"MACs {macs}")
        return
    dead_groups = groups_of_gateway(run, bridge, macs[dead.name])[0]
    # The dead peer's own address stays a neighbour (only its session went): its host
    # flows stay on its groups and are not table prefixes.
    hosts = aggregate_count(run, bridge, f"table={FIB_TABLE},ip,nw_dst={dead.address}/32")
    if 6 in families and dead.address6:
        hosts += aggregate_count(
            run, bridge, f"table={FIB_TABLE},ipv6,ipv6_dst={dead.address6}/128"
        )

    def quiet() -> bool:
        before = _kernel_updates(run, dead.switch)
        time.sleep(0.5)
        now = _kernel_updates(run, dead.switch)
        return now == before and now[0] == now[1]

    t = time.monotonic()
    settled = checks.wait_until(
        lambda: flows_via(run, bridge, dead_groups) - hosts == n and quiet(), max(60.0, limit)
    )
    check.add(
        "peer down: every prefix via x1 before (shorter paths)",
        settled,
        time.monotonic() - t,
        f"{flows_via(run, bridge, dead_groups) - hosts} of {n} on x1's groups",
    )
    if not settled:
        return
    if split:
        result.down_pinned = split_cpus(run, dead.switch)
    names = ("rfserver", "rfproxy", f"rfclient@{dead.switch}")
    profilers = start_profilers(run, profile_dir, names, "-peerdown") if profile_dir else []
    _in0, out0 = _kernel_updates(run, dead.switch)
    popen, log, down = feed
    who = (*names, "ovs-vswitchd", f"bgpd@{dead.switch}", f"zebra@{dead.switch}")
    cpu0 = cpu_of(run, who)
    open(down, "w").close()
    t = time.monotonic()
    checks.wait_until(lambda: "down" in _read_log(log) or popen.poll() is not None, 10)
    sent = _read_log(log).get("down")
    if sent is None:
        check.add("peer down: x1 sent its NOTIFICATION", False, time.monotonic() - t)
        return
    t0 = float(sent)
    samples = result.down_samples
    deadline = time.monotonic() + limit
    switch_done = None
    last_change = time.monotonic()
    last_out = out0
    while time.monotonic() < deadline:
        ins, out = _kernel_updates(run, dead.switch)
        on_dead = flows_via(run, bridge, dead_groups) - hosts
        now = time.time() - t0
        samples.append((round(now, 3), out - out0, on_dead))
        if out != last_out:
            last_out, last_change = out, time.monotonic()
        if switch_done is None and on_dead == 0 and _table_active(run, dead.switch) - base == n:
            switch_done = now
        # Done when the switch is and zebra's kernel work has been quiet for a second.
        if switch_done is not None and ins == out and time.monotonic() - last_change > 1.0:
            break
        time.sleep(interval)
    cpu1 = cpu_of(run, who)
    result.down_cpu_s = {k.split("@")[0]: round(cpu1[k] - cpu0[k], 2) for k in who}
    stop_profilers(profilers)
    total = _kernel_updates(run, dead.switch)[1] - out0
    result.down_kernel_updates = total
    result.down_kernel_s = next((s[0] for s in samples if s[1] >= total), None) if total else None
    result.down_switch_s = None if switch_done is None else round(switch_done, 3)
    k, sw = result.down_kernel_s, result.down_switch_s
    if k and sw is not None:
        result.down_lag_ratio = round(max(0.0, sw - k) / k, 3)
        at = [s[0] for s in samples].index(k)
        before = samples[at - 1][0] if at > 0 else 0.0
        result.down_lag_bound_ratio = round((k - before) / k, 3)
    check.add(
        "peer down: the kernel on x2 (zebra's kernel updates done)",
        k is not None and total >= n,
        k or 0.0,
        f"{total} kernel updates for {n} prefixes",
    )
    check.add(
        "peer down: the switch off x1, every prefix on x2",
        sw is not None,
        sw or 0.0,
        f"{samples[-1][2] if samples else '?'} table flows left on x1; "
        f"lag ratio {result.down_lag_ratio} (at most {result.down_lag_bound_ratio}: the sampling)",
    )
    # The end state, read in full: every kernel route via x2, every table flow on x2's groups.
    alive_hops = {ip_address(a) for a in (alive.address, alive.address6) if a}
    alive_groups = set(groups_of_gateway(run, bridge, macs[alive.name])[0])
    kernel_ok = flows_ok = 0
    for family in families:
        node = run.vm_node(dead.switch)
        via = routes_via(node.cmd(f"ip -{family} route show proto bgp"), family)
        kernel_ok += sum(
            1 for p, gw in via.items() if p in want and gw and ip_address(gw) in alive_hops
        )
        for p, action in checks.fib_flows(run, dead.switch, family).items():
            m = re.fullmatch(r"group:(\d+)", action)
            flows_ok += p in want and m is not None and int(m.group(1)) in alive_groups
    result.down_kernel_via_survivor, result.down_switch_via_survivor = kernel_ok, flows_ok
    check.add(
        "peer down: kernel and switch via x2 at the end",
        kernel_ok == n and flows_ok == n,
        0.0,
        f"kernel {kernel_ok} of {n} routes via x2, switch {flows_ok} of {n} flows on x2's groups",
    )


def run_bgp(
    table_path: str,
    run_dir: str,
    *,
    interval: float = 0.1,
    timeout: float | None = None,
    log_level: str = "WARNING",
    peer_down: bool = False,
    profile_dir: str | None = None,
    split: bool = False,
) -> BgpResult:
    from routeflow.lab.runner import LabFailure, LabRun
    from routeflow.lab.scenarios import CheckResult, converge, install_signal_handlers, start_lab

    result = BgpResult(table=table_path)
    result.loadavg.append(_loadavg())
    table = read_table_file(table_path)
    want6 = {e.prefix for e in table if ":" in e.prefix}
    want = {e.prefix for e in table}
    result.prefixes, result.prefixes6 = len(want), len(want6)
    del table
    families = (4, 6) if want6 else (4,)
    limit = timeout if timeout is not None else max(60.0, len(want) / 2000)
    text = LAB.replace("IPV6", "true" if want6 else "false") + (BACKUP_SPEAKER if peer_down else "")
    lab = plan(parse_lab(text, "<bench bgp>"))
    sps = lab.speakers
    sp = sps[0]
    result.peers = len(sps)

    def phase(run, check) -> None:
        go = os.path.join(run.run_dir, "bgpfeed.go")
        log = os.path.join(exabgp.speaker_dir(run, sp), "bgpfeed.log")  # x1's: the clock
        for each in sps:
            exabgp.stop(run, each)
        t = time.monotonic()
        # The speakers' own prefixes go with their sessions: the baselines are without them.
        gone = checks.wait_until(lambda: zebra_bgp_counts(run, sp.switch, families)[0] == 0, 30)
        check.add("bgp: ExaBGP's session and prefix gone", gone, time.monotonic() - t)
        if not gone:
            return
        for each in sps:
            if want6 and each.address6:
                # The IPv6 routes' next hop must be a known neighbour before the baseline:
                # its host flow appearing mid-run would count as a table prefix.
                run.vm_node(each.switch).cmd(f"ping -6 -c 1 -W 1 {each.address6}")
        time.sleep(1.0)  # the switch follows the kernel
        base = _table_active(run, sp.switch)
        feeds = [
            _start_feed(run, each, i, table_path, go, bool(want6)) for i, each in enumerate(sps)
        ]
        t = time.monotonic()
        up = checks.wait_until(
            lambda: all(
                "established" in _read_log(flog) or p.poll() is not None for p, flog, _ in feeds
            ),
            max(60.0, len(want) / 20000),
        )
        up = up and all("established" in _read_log(flog) for _p, flog, _ in feeds)
        check.add(
            "bgp: speakers' sessions up (table packed)" if peer_down
            else "bgp: speaker's session up (table packed)",
            up,
            time.monotonic() - t,
        )  # fmt: skip
        if not up:
            return
        open(go, "w").close()
        deadline = time.monotonic() + limit
        first = None
        samples = result.samples
        n = len(want)
        while time.monotonic() < deadline:
            rib, fib = zebra_bgp_counts(run, sp.switch, families)
            sw = _table_active(run, sp.switch) - base
            now = time.time()
            if first is None:
                f = _read_log(log).get("first")
                first = float(f) if f else None
            if first is not None:
                samples.append((round(now - first, 3), rib, fib, sw))
            if fib >= n and sw >= n:
                break
            if any(p.poll() is not None for p, _, _ in feeds):
                break
            time.sleep(interval)
        info = _read_log(log)
        if first is not None and info.get("last"):
            result.speaker_sent_s = round(float(info["last"]) - first, 3)
        result.rib_s = _first(samples, 1, n)
        result.kernel_s = _first(samples, 2, n)
        result.switch_s = _first(samples, 3, n)
        if result.kernel_s and result.switch_s is not None:
            result.lag_ratio = round((result.switch_s - result.kernel_s) / result.kernel_s, 3)
            at = [s[0] for s in samples].index(result.kernel_s)
            if at > 0:
                step = result.switch_s - samples[at - 1][0]
                result.lag_bound_ratio = round(step / result.kernel_s, 3)
        check.add(
            "bgp: the table in the kernel (zebra's FIB count)",
            result.kernel_s is not None,
            result.kernel_s or 0.0,
            f"{samples[-1][2] if samples else 0} of {n}",
        )
        check.add(
            "bgp: the table on the switch",
            result.switch_s is not None,
            result.switch_s or 0.0,
            f"{samples[-1][3] if samples else 0} of {n}; lag ratio {result.lag_ratio} "
            f"(at most {result.lag_bound_ratio}: the sampling)",
        )
        # The end state, read in full: kernel = table, switch = kernel.
        kernel: set[str] = set()
        have: set[str] = set()
        for family in families:
            kernel |= checks.kernel_bgp_prefixes(run, sp.switch, family)
            have |= set(checks.fib_flows(run, sp.switch, family)) & want
        result.kernel_routes = len(kernel)
        result.switch_equals_kernel = have == kernel
        check.add(
            "bgp: switch = kernel = table at the end",
            kernel == want and have == kernel,
            0.0,
            f"kernel {len(kernel)} BGP routes, table {n}, switch {len(have)}; "
            f"kernel ^ table {len(kernel ^ want)}, switch ^ kernel {len(have ^ kernel)}",
        )
        if peer_down and check.ok:
            args = (sps, feeds[0], want, families, base, limit, interval, profile_dir)
            _peer_down(run, check, result, *args, split=split)

    check = CheckResult(lab=lab.name, run_dir=run_dir)
    t0 = time.monotonic()
    run = LabRun(lab, run_dir, log_level=log_level)
    install_signal_handlers()
    try:
        start_lab(run, check)
        if converge(run, check, t0, 60) and speakers.wait_announced(run, check, 60):
            phase(run, check)
    except LabFailure as exc:
        check.add("lab", False, time.monotonic() - t0, str(exc))
    finally:
        tablestats.close_all()
        run.stop()
    result.rss_peak_mb = {
        kind: round(kib / 1024, 1) for kind, (_n, kib) in sorted(run.memory.items())
    }
    result.loadavg.append(_loadavg())
    result.stages = check.stages
    result.ok = check.ok
    result.problems += [f"{s['stage']}: {s['detail']}" for s in check.stages if not s["ok"]]
    return result


def _loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main_bgp(
    table_path: str,
    run_dir: str | None,
    json_path: str | None,
    timeout: float | None,
    console,
    peer_down: bool = False,
    profile_dir: str | None = None,
    split: bool = False,
) -> int:
    from routeflow.lab.scenarios import default_run_dir

    try:
        read_table_file(table_path)
    except (OSError, TableError) as err:
        print(f"bench bgp: {err}", file=sys.stderr)
        return 2
    run_dir = run_dir or default_run_dir("bench-bgp")
    with console.status("bench bgp"):
        r = run_bgp(
            table_path,
            run_dir,
            timeout=timeout,
            peer_down=peer_down,
            profile_dir=profile_dir,
            split=split,
        )
    for s in r.stages:
        mark = "ok" if s["ok"] else "FAIL"
        console.print(f"  {mark} {s['stage']} ({s['seconds']} s) {s['detail']}", markup=False)
    console.print(
        f"{r.prefixes} prefixes ({r.prefixes6} of them IPv6) from the speaker's "
        f"first UPDATE: sent in {r.speaker_sent_s} s, in bgpd {r.rib_s} s, in the kernel "
        f"(zebra's FIB) {r.kernel_s} s, on the switch {r.switch_s} s; lag ratio "
        f"(switch - kernel) / kernel {r.lag_ratio} (at most {r.lag_bound_ratio}: the samples "
        f"are that far apart); load {r.loadavg[0]} -> {r.loadavg[-1]}",
        markup=False,
    )
    if r.peers > 1:
        console.print(
            f"peer down (x1, preferred for every prefix, sends Cease; x2 offers them all): "
            f"the kernel on x2 after {r.down_kernel_s} s ({r.down_kernel_updates} zebra kernel "
            f"updates), the switch after {r.down_switch_s} s; lag ratio (switch - kernel) / "
            f"kernel {r.down_lag_ratio} (at most {r.down_lag_bound_ratio}: the sampling); "
            "CPU meanwhile: " + ", ".join(f"{k} {v:g} s" for k, v in r.down_cpu_s.items()),
            markup=False,
        )
        if r.down_pinned:
            console.print(
                "split CPUs: "
                + "; ".join(f"CPU {c}: {', '.join(n)}" for c, n in r.down_pinned.items()),
                markup=False,
            )
    ours = ("rfclient", "rfserver", "rfproxy")
    console.print(
        "peak RSS: "
        + ", ".join(f"{k} {v:g} MB" for k, v in r.rss_peak_mb.items())
        + f"; routeflow's daemons {sum(r.rss_peak_mb.get(k, 0) for k in ours):.1f} MB",
        markup=False,
    )
    console.print("OK" if r.ok else "FAIL")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(asdict(r), fh, indent=1)
    return 0 if r.ok else 1

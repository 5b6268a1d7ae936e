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
* the switch: Open vSwitch's count of flows in the FIB table (``dump-tables``;
  both families share it).

Both clocks start at the speaker's first UPDATE. The result is the time to the
full table for each, and routeflow's lag behind the kernel as a ratio,
``(switch - kernel) / kernel``. At the end the VM kernel's BGP routes (read
with ``ip route``, per family) must be exactly the table's prefixes, and the switch's
FIB flows for those prefixes exactly the kernel's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from routeflow.bench.table import TableError, read_table_file
from routeflow.lab import checks, exabgp, speakers
from routeflow.lab.model import parse_lab, plan

__all__ = ["BgpResult", "run_bgp"]

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


def run_bgp(
    table_path: str,
    run_dir: str,
    *,
    interval: float = 0.1,
    timeout: float | None = None,
    log_level: str = "WARNING",
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
    lab = plan(parse_lab(LAB.replace("IPV6", "true" if want6 else "false"), "<bench bgp>"))
    (sp,) = lab.speakers

    def phase(run, check) -> None:
        d = exabgp.speaker_dir(run, sp)
        go, log = os.path.join(d, "bgpfeed.go"), os.path.join(d, "bgpfeed.log")
        exabgp.stop(run, sp)
        t = time.monotonic()
        # The speaker's own prefix goes with its session: the baselines are without it.
        gone = checks.wait_until(lambda: zebra_bgp_counts(run, sp.switch, families)[0] == 0, 30)
        check.add("bgp: ExaBGP's session and prefix gone", gone, time.monotonic() - t)
        if not gone:
            return
        if want6 and sp.address6:
            # The IPv6 routes' next hop must be a known neighbour before the baseline:
            # its host flow appearing mid-run would count as a table prefix.
            run.vm_node(sp.switch).cmd(f"ping -6 -c 1 -W 1 {sp.address6}")
        time.sleep(1.0)  # the switch follows the kernel
        base = _table_active(run, sp.switch)
        argv = [
            run.python, "-m", "routeflow.bench.bgpfeed", os.path.abspath(table_path),
            "--asn", str(sp.asn), "--peer-as", str(sp.vm_asn), "--local", sp.address,
            "--peer", sp.gateway, "--go", go, "--log", log,
            *(["--local6", sp.address6] if want6 and sp.address6 else []),
        ]  # fmt: skip
        errlog = open(os.path.join(d, "bgpfeed.out"), "ab")  # noqa: SIM115
        popen = run.host(sp.name).popen(
            argv, stdin=subprocess.DEVNULL, stdout=errlog, stderr=subprocess.STDOUT
        )
        errlog.close()
        run.procs.add_popen(f"bgpfeed@{sp.name}", popen)
        t = time.monotonic()
        up = checks.wait_until(
            lambda: "established" in _read_log(log) or popen.poll() is not None,
            max(60.0, len(want) / 20000),
        )
        up = up and "established" in _read_log(log)
        check.add("bgp: speaker's session up (table packed)", up, time.monotonic() - t)
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
            if popen.poll() is not None:
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
) -> int:
    from routeflow.lab.scenarios import default_run_dir

    try:
        read_table_file(table_path)
    except (OSError, TableError) as err:
        print(f"bench bgp: {err}", file=sys.stderr)
        return 2
    run_dir = run_dir or default_run_dir("bench-bgp")
    with console.status("bench bgp"):
        r = run_bgp(table_path, run_dir, timeout=timeout)
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

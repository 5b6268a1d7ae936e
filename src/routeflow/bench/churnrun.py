"""`routeflow bench churn`: replay a BGP update stream into a VM through a speaker.

A dual-stack BGP lab of one switch, one host and one ExaBGP speaker comes up
(associations, the speaker's session and its one static prefix on the
switch); then the speaker is started again with churnfeed.py as its API
process, which replays the stream (churn.py) at its recorded times divided
by ``speed``, or as fast as possible. Meanwhile the switch's FIB flows are
sampled (every ``interval`` s) and, every few seconds, compared with the VM
kernel's BGP routes (their difference is the switch's lag at that instant).
At the end the kernel must hold exactly the stream's final routes and the
switch exactly the kernel's. Each update that changes the switch (a prefix
added or withdrawn) is matched with the first sample showing it: the
update-to-flow latency, from the moment the speaker was handed the update.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from routeflow.bench import churn
from routeflow.lab import checks, exabgp, speakers
from routeflow.lab.model import parse_lab, plan

__all__ = ["ChurnResult", "run_churn"]

LAB = """
name: benchchurn
routing: bgp
ipv6: true
switches:
  - {name: A, dpid: 0xc7, asn: 65001}
hosts:
  - {name: h1, switch: A, ip: 172.31.1.100/24}
speakers:
  - name: x1
    switch: A
    ip: 192.0.2.2/30
    asn: 65100
    announce: {count: 1, start: 198.51.100.0, prefixlen: 24}
"""


@dataclass
class ChurnResult:
    stream: str
    updates: int = 0
    speed: float = 1.0
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    replay_s: float | None = None  # first update handed to the speaker .. last
    converged_s: float | None = None  # first update .. kernel and switch at the final state
    latency_s: dict[str, float] = field(default_factory=dict)
    latency_counted: int = 0
    never_seen: int = 0
    #: (seconds since the first update, |kernel BGP routes ^ switch FIB|) at sampled instants.
    lag: list[tuple[float, int]] = field(default_factory=list)
    samples: int = 0
    #: Prefixes where the VM kernel's end state differs from the stream's (ExaBGP or
    #: bgpd dropped an update; routeflow only has to follow the kernel).
    kernel_vs_final: int = 0
    stages: list[dict] = field(default_factory=list)
    #: For a recorded file (MRT, bgpdump text): which peer was replayed and what
    #: was left out (recorded.StreamInfo.summary); empty for our own format.
    converted: str = ""


def _kernel_bgp(run, switch: str) -> set[str]:
    return checks.kernel_bgp_prefixes(run, switch, 4) | checks.kernel_bgp_prefixes(run, switch, 6)


def _switch(run, sp, prefixes: set[str]) -> set[str]:
    """The stream's prefixes among the switch's FIB flows (not the lab's own subnets)."""
    return set(speakers._fib_flows(run, sp)) & prefixes


def _read_log(path: str) -> tuple[list[float], bool]:
    emitted: list[float] = []
    done = False
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if parts == ["done"]:
                    done = True
                elif len(parts) == 2:
                    emitted.append(float(parts[1]))
    except FileNotFoundError:
        pass
    return emitted, done


def load_stream(path: str, peer: str | None = None) -> tuple[list[churn.Update], str]:
    """A stream file: routeflow's own text, an MRT update file (BGP4MP: RouteViews,
    RIPE RIS, BIRD/OpenBGPD/Quagga mrtdump) or ``bgpdump -m`` / ``bgpkit-parser``
    text of one, cut to one peer (recorded.py). Returns the updates and what the
    conversion did (empty for our own format). ChurnError names file and line."""
    from routeflow.bench import recorded
    from routeflow.bench.table import _first_data_line
    from routeflow.bench.tablemrt import mrt_records, mrt_type

    if mrt_type(path) is not None:
        updates, info = recorded.stream_from_records(mrt_records(path), path, peer)
        return updates, info.summary()
    if _first_data_line(path, recorded.looks_like_text_records):
        try:
            with open(path, encoding="utf-8") as fh:
                records = list(recorded.parse_text_records(fh, path))
        except (OSError, UnicodeDecodeError) as err:
            raise churn.ChurnError(f"{path}: {err}") from None
        updates, info = recorded.stream_from_records(records, path, peer)
        return updates, info.summary()
    if peer is not None:
        raise churn.ChurnError(f"{path}: --peer is for recorded files (MRT, bgpdump text)")
    try:
        with open(path, encoding="utf-8") as fh:
            return churn.parse_stream(fh, path), ""
    except (OSError, UnicodeDecodeError) as err:
        raise churn.ChurnError(f"{path}: {err}") from None


def run_churn(
    stream_path: str,
    run_dir: str,
    *,
    speed: float = 1.0,
    interval: float = 0.2,
    timeout: float = 120.0,
    log_level: str = "WARNING",
    peer: str | None = None,
    loaded: tuple[list[churn.Update], str] | None = None,
) -> ChurnResult:
    """``loaded``: what load_stream(stream_path, peer) gave, when the caller has it
    (an MRT file of a collector's 15 minutes is not read twice)."""
    from routeflow.lab.runner import LabFailure, LabRun
    from routeflow.lab.scenarios import CheckResult, converge, install_signal_handlers, start_lab

    updates, converted = loaded if loaded is not None else load_stream(stream_path, peer)
    final = set(churn.final_state(updates))
    result = ChurnResult(stream=stream_path, updates=len(updates), speed=speed)
    result.converted = converted
    if not updates:
        result.problems.append("the stream has no update")
        return result
    if converted:  # churnfeed reads our text format: write the converted stream beside the logs
        os.makedirs(run_dir, exist_ok=True)
        stream_path = os.path.join(run_dir, "stream.txt")
        with open(stream_path, "w") as fh:
            fh.writelines(churn.format_stream(updates, f"from {result.stream}: {converted}"))
    lab = plan(parse_lab(LAB, "<bench churn>"))
    (sp,) = lab.speakers
    stream_prefixes = {u.prefix for u in updates}
    static = set(sp.announce.prefixes())
    if stream_prefixes & static:
        result.problems.append(f"the stream announces the speaker's own {sorted(static)}")
        return result

    def phase(run, check) -> None:
        d = exabgp.speaker_dir(run, sp)
        go, log = os.path.join(d, "churn.go"), os.path.join(d, "churn.log")
        script = os.path.join(d, "churn.sh")
        with open(script, "w") as fh:
            fh.write(
                f"#!/bin/sh\nexec {run.python} -m routeflow.bench.churnfeed {stream_path} "
                f"--asn {sp.asn} --nh4 {sp.address} --nh6 {sp.address6} --speed {speed} "
                f"--go {go} --log {log}\n"
            )
        os.chmod(script, 0o755)
        exabgp.stop(run, sp)
        exabgp.start(run, sp, process=script)
        t = time.monotonic()
        up = checks.wait_until(lambda: speakers.session_state(run, sp) == "Established", 30)
        check.add("churn: speaker session up again", up, time.monotonic() - t)
        if not up:
            return
        samples: list[tuple[float, set[str]]] = []
        open(go, "w").close()
        deadline = time.monotonic() + timeout + (updates[-1].t / speed if speed > 0 else 0)
        next_lag = time.time() + 2.0
        converged_at = None
        settled = False
        last_kernel: set[str] | None = None
        while time.monotonic() < deadline:
            have = _switch(run, sp, stream_prefixes)
            now = time.time()
            samples.append((now, have))
            emitted, done = _read_log(log)
            if emitted and now >= next_lag:
                kernel = _kernel_bgp(run, sp.switch) - static
                result.lag.append((round(now - emitted[0], 2), len(kernel ^ have)))
                next_lag = now + 2.0
            if done and (have == final or settled):
                # The kernel as bgpd left it (normally the stream's final state) and
                # the switch exactly that: two reads a poll apart agree.
                kernel = _kernel_bgp(run, sp.switch) - static
                if have == kernel and kernel == last_kernel:
                    converged_at = time.time()
                    break
                last_kernel = kernel
            settled = done and bool(samples[:-1]) and have == samples[-2][1]
            time.sleep(interval)
        emitted, done = _read_log(log)
        result.samples = len(samples)
        if emitted:
            result.replay_s = round(emitted[-1] - emitted[0], 3)
        if converged_at is not None and emitted:
            result.converged_s = round(converged_at - emitted[0], 3)
        kernel = _kernel_bgp(run, sp.switch) - static
        have = _switch(run, sp, stream_prefixes)
        ok = done and converged_at is not None
        detail = (
            f"kernel {len(kernel)} routes (stream's final state {len(final)}), "
            f"switch {len(have)}; kernel ^ switch {len(kernel ^ have)}, "
            f"kernel ^ final {len(kernel ^ final)}"
            + (
                f" ({sorted(kernel ^ final)[:3]}: bgpd's, not routeflow's)"
                if kernel ^ final
                else ""
            )
        )
        result.kernel_vs_final = len(kernel ^ final)
        check.add("churn: switch converged to the kernel's FIB", ok, time.monotonic() - t, detail)
        if done:
            lat, unseen = churn.latencies(updates, emitted, samples)
            result.latency_s = churn.percentiles(lat)
            result.latency_counted = len(lat)
            result.never_seen = unseen
            check.add(
                "churn: update-to-flow latency",
                unseen == 0 or not ok,
                0.0,
                f"{len(lat)} switch-changing updates: {result.latency_s}; {unseen} never seen",
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
    result.stages = check.stages
    result.ok = check.ok
    result.problems += [f"{s['stage']}: {s['detail']}" for s in check.stages if not s["ok"]]
    return result


def main_churn(
    stream_path: str,
    speed: float,
    run_dir: str | None,
    json_path: str | None,
    timeout: float,
    console,
    peer: str | None = None,
) -> int:
    from routeflow.lab.scenarios import default_run_dir

    try:
        loaded = load_stream(stream_path, peer)
    except churn.ChurnError as err:
        print(f"bench churn: {err}", file=sys.stderr)
        return 2
    if loaded[1]:
        console.print(f"{stream_path}: {loaded[1]}", markup=False)
    stream_path = os.path.abspath(stream_path)
    run_dir = run_dir or default_run_dir("bench-churn")
    with console.status("bench churn"):
        r = run_churn(stream_path, run_dir, speed=speed, timeout=timeout, peer=peer, loaded=loaded)
    for s in r.stages:
        mark = "ok" if s["ok"] else "FAIL"
        console.print(f"  {mark} {s['stage']} ({s['seconds']} s) {s['detail']}", markup=False)
    console.print(
        f"{r.updates} updates at speed {r.speed or 'asap'}: replayed in {r.replay_s} s, "
        f"switch = kernel = final state {r.converged_s} s after the first update; "
        f"update-to-flow latency over {r.latency_counted} switch-changing updates "
        f"(sampled every 0.2 s): {r.latency_s}; lag (kernel ^ switch) at sampled "
        f"instants: {r.lag[:12]}",
        markup=False,
    )
    console.print("OK" if r.ok else "FAIL")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(asdict(r), fh, indent=1)
    return 0 if r.ok else 1

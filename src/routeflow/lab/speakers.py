"""`lab check` stages for labs with external BGP speakers (ExaBGP).

Ground truth only: FRR's own view of the session, the switch's flows and
groups as Open vSwitch reports them, and pings from real hosts.

* the speaker's BGP session with its switch's VM is Established;
* the switch holds one FIB flow per announced prefix, all pointing at the
  group that rewrites to the speaker's MAC (counted per aligned block of the
  announced range with ``dump-aggregate``, so a million routes cost a few
  requests, not a dump);
* every other host behind the speakers' switches reaches an address inside a
  sample of the announced prefixes (the speaker owns them on ``lo``);
* stopping the speaker withdraws the routes: the flows go away.
"""

from __future__ import annotations

import functools
import json
import re
import time
from typing import TYPE_CHECKING

from routeflow.lab import checks, exabgp
from routeflow.lab.model import Announce, SpeakerPlan
from routeflow.proxy import openflow as of

if TYPE_CHECKING:
    from routeflow.lab.runner import LabRun
    from routeflow.lab.scenarios import CheckResult

__all__ = ["announced_flows", "reach_and_withdraw", "session_state", "wait_announced"]


def session_state(run: LabRun, sp: SpeakerPlan) -> str:
    """FRR's state of the VM's session with the speaker ('Established', 'Active'...)."""
    out = run.vtysh(sp.switch, f"show bgp neighbors {sp.address} json")
    try:
        data = json.loads(out[out.index("{") :])
    except ValueError:
        return "unknown"
    return str(data.get(sp.address, {}).get("bgpState", "unknown"))


def _groups_to(run: LabRun, sp: SpeakerPlan) -> list[int]:
    """The groups rewriting to the speaker's MAC on its switch: the shards of a next
    hop that its routes made (openflow.GROUP_SHARDS), of one next hop per family when
    it announces both (its IPv4 and its IPv6 address)."""
    mac = run.plan.host(sp.name).mac
    return [
        gid
        for gid, bucket in checks.groups(run, sp.switch).items()
        if f"set_field:{mac}->eth_dst" in bucket
    ]


def _fib_flows(run: LabRun, sp: SpeakerPlan) -> dict[str, str]:
    flows = checks.fib_flows(run, sp.switch)
    if sp.address6 is not None:
        flows.update(checks.fib_flows(run, sp.switch, family=6))
    return flows


def announced_flows(run: LabRun, sp: SpeakerPlan) -> int:
    """FIB flows on the speaker's switch for its announced prefixes that use its group."""
    groups = _groups_to(run, sp)
    if not groups:
        return 0
    if sp.announce.file is not None:
        # A table file's prefixes are anywhere: read the flows themselves.
        flows = _fib_flows(run, sp)
        actions = {f"group:{g}" for g in groups}
        return sum(1 for p in _table_prefixes(sp.announce) if flows.get(p) in actions)
    bridge = run.bridges[sp.switch]
    actions = {f"group:{g}" for g in groups}
    total = 0
    for block, _n in exabgp.blocks(sp.announce):
        # One walk per block, whatever the number of shards (not one per group).
        out = run.ovs.ofctl(
            "-O",
            "OpenFlow13",
            "dump-flows",
            "--no-stats",
            bridge,
            f"table={of.TABLE_FIB},ip,nw_dst={block}",
        )
        total += sum(1 for a in re.findall(r"actions=(\S+)", out) if a in actions)
    return total


@functools.lru_cache(maxsize=4)
def _table_prefixes(announce: Announce) -> frozenset[str]:
    """A table file's prefixes, read once per check rather than per poll."""
    return frozenset(announce.prefixes())


def _all_flows_in_range(run: LabRun, sp: SpeakerPlan) -> int:
    """FIB flows for the announced prefixes, whatever they point at."""
    if sp.announce.file is not None:
        return len(_table_prefixes(sp.announce) & _fib_flows(run, sp).keys())
    bridge = run.bridges[sp.switch]
    total = 0
    for block, _n in exabgp.blocks(sp.announce):
        out = run.ovs.ofctl(
            "-O", "OpenFlow13", "dump-aggregate", bridge, f"table={of.TABLE_FIB},ip,nw_dst={block}"
        )
        m = re.search(r"flow_count=(\d+)", out)
        total += int(m.group(1)) if m else 0
    return total


def _fail_if_dead(run: LabRun) -> None:
    from routeflow.lab.scenarios import _fail_if_dead

    _fail_if_dead(run)


def wait_announced(run: LabRun, result: CheckResult, timeout: float) -> bool:
    """Sessions up, then every announced prefix as a flow on the switch."""
    ok = True
    for sp in run.plan.speakers:
        t = time.monotonic()
        up = checks.wait_until(
            lambda sp=sp: _fail_if_dead(run) or session_state(run, sp) == "Established",
            timeout,
        )
        result.add(
            f"bgp session {sp.name} (AS {sp.asn}) <-> vm-{sp.switch} (AS {sp.vm_asn})",
            up,
            time.monotonic() - t,
            session_state(run, sp),
        )
        if not up:
            ok = False
            continue
        want = sp.announce.count
        t = time.monotonic()
        have = 0

        def done(sp=sp, want=want) -> bool:
            nonlocal have
            _fail_if_dead(run)
            have = announced_flows(run, sp)
            return have == want

        # A full table takes ExaBGP itself minutes: allow about 2k routes/s.
        good = checks.wait_until(done, max(timeout, want / 2000), 0.2)
        rate = ""
        started = exabgp.STARTED.get((run.run_dir, sp.name))
        if good and started is not None:
            since = time.monotonic() - started
            rate = f", {since:.1f} s after the speaker started ({want / since:,.0f} routes/s)"
        result.add(
            f"announced prefixes of {sp.name} are flows on {sp.switch}",
            good,
            time.monotonic() - t,
            f"{have}/{want} flows to the speaker's group{rate}",
        )
        ok = ok and good
    return ok


def reach_and_withdraw(run: LabRun, result: CheckResult, timeout: float) -> None:
    """Hosts reach addresses inside announced prefixes; a stopped speaker takes them away."""
    for sp in run.plan.speakers:
        if not sp.announce.count:
            continue  # announces nothing (a cloud's gateway node takes it over, say)
        targets = exabgp.sample_addresses(sp.announce)
        sources = [h for h in run.plan.hosts if h.name not in {s.name for s in run.plan.speakers}]
        t = time.monotonic()
        failed = []
        for h in sources:
            for addr in targets:
                if not checks.wait_until(lambda h=h, a=addr: checks.ping(run, h.name, a), 10, 0.5):
                    failed.append(f"{h.name}->{addr}")
        total = len(sources) * len(targets)
        result.add(
            f"hosts reach prefixes announced by {sp.name}",
            not failed and total > 0,
            time.monotonic() - t,
            f"{total - len(failed)}/{total} pings"
            + (f"; failing: {', '.join(failed[:6])}" if failed else f" ({', '.join(targets)})"),
        )
    for sp in run.plan.speakers:
        if not sp.announce.count:
            continue
        t = time.monotonic()
        exabgp.stop(run, sp)
        left = sp.announce.count

        def gone(sp=sp) -> bool:
            nonlocal left
            left = _all_flows_in_range(run, sp)
            return left == 0

        good = checks.wait_until(gone, max(timeout, sp.announce.count / 2000), 1.0)
        result.add(
            f"speaker {sp.name} stopped: its routes are withdrawn from {sp.switch}",
            good,
            time.monotonic() - t,
            f"{left} flows left for the announced prefixes",
        )

"""`routeflow bench fib`: how fast a VM's routes become flows on its switch.

One switch, one VM (rfclient, optionally FRR), rfserver and rfproxy, as in
rftest1. The benchmark:

1. brings the lab up and waits for the associations and the connected routes;
2. loads N distinct prefixes into the VM kernel through one gateway (a
   netlink batch, see nlroutes.py) and times until the switch holds all N
   route flows, counted by Open vSwitch itself (``dump-tables`` while loading,
   ``dump-aggregate`` of the flows pointing at the gateway's group at the end);
3. changes the gateway's MAC in the VM (``ip neigh replace``) and times until
   the switch's group carries the new MAC, checking that the N flows did not
   change (one group-mod, not N flow-mods);
   (optionally, ``--restart-proxy``: SIGKILLs rfproxy, restarts it and times
   until it has reconciled the switch, which must re-install and delete
   nothing; its peak RSS during that is reported too);
   (optionally, ``--wipe-switch``: SIGKILLs rfproxy, deletes every flow and
   group of the switch, as a switch that rebooted would have lost them,
   restarts rfproxy and times until the switch holds all of them again: its
   reconciliation re-adds the full table);
4. withdraws the N routes and times until the switch is back to its baseline;
5. measures the raw baseline: the same N flows written straight to a fresh
   bridge of the same Open vSwitch with ``ovs-ofctl --bundle add-flows``
   (after ours, so that neither runs next to a bridge holding N flows);
6. reads the peak RSS (VmHWM) and CPU time of rfserver, rfproxy and rfclient.

``--ipv6`` does the same with IPv6 prefixes (fd00::/8, see nlroutes.py)
through a gateway on an IPv6 /64 of the documentation range added to the
VM's port towards the gateway host.

``--table FILE`` takes the routes from a table file instead (table.py: any
prefix lengths, both families mixed), ``--peers N`` spreads them over N
made-up next hops on the gateway link with overlapping offers
(tablepeers.py, fibtable.py: each next hop its own group, checked per group),
and ``--peer-down`` then kills peer 0 (its neighbours vanish while its
prefixes are re-routed to the other peers) and times the switch's reaction.
The loader packs a table's requests before the clock starts.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from routeflow.bench import fibtable, nlroutes, tablepeers, tablestats
from routeflow.bench.table import TableEntry, TableError, read_table_file, table_stats
from routeflow.lab import checks
from routeflow.lab.model import LabPlan, parse_lab, plan
from routeflow.lab.poll import poll_until
from routeflow.lab.runner import LabFailure, LabRun
from routeflow.proxy import openflow as of

__all__ = ["FibBenchResult", "bench_plan", "load_bench_table", "run_fib_bench"]

BENCH_LAB = """
name: benchfib
routing: static
switches:
  - {name: s1, dpid: 0x99}
hosts:
  - {name: h1, switch: s1, ip: 172.31.1.100/24}
  - {name: h2, switch: s1, ip: 172.31.2.100/24}
"""
SWITCH = "s1"
GATEWAY_HOST = "h2"  # the routes' next hop: a real host behind the switch
RELAY_HOST = "h1"  # pings its gateway while the routes load
NEW_MAC = "06:00:00:be:ef:01"
#: --ipv6: the gateway link's /64, the VM's address on it and the gateway's.
#: The gateway gets a MAC of its own, so that its group is told apart from
#: the IPv4 gateway's (one group per next hop, found by its MAC rewrite).
NET6 = "2001:db8:f::/64"
VM6 = "2001:db8:f::1"
GW6 = "2001:db8:f::100"
GW6_MAC = "06:00:00:be:ef:06"
#: --table: the MAC of IPv4 peer 0 (made up, as every peer's but GW6's).
TABLE_MAC4 = "06:00:00:04:00:00"
DAEMONS = ("rfserver", "rfproxy", f"rfclient@{SWITCH}")
ROUTE_COOKIE = of.cookie(of.Kind.ROUTE)
AF_INET, AF_INET6 = 2, 10


@dataclass
class FibBenchResult:
    routes: int
    prefixlen: int = 24
    ipv6: bool = False
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    #: Raw baseline: ovs-ofctl --bundle add-flows of the same N flows.
    raw_s: float | None = None
    raw_rate: float | None = None
    #: Ours: from the start of the kernel load until OVS holds all N flows.
    ours_s: float | None = None
    ours_rate: float | None = None
    kernel_load_s: float | None = None  # the netlink batch alone (part of ours_s)
    first_flow_s: float | None = None  # first route flow seen on the switch
    ratio: float | None = None  # ours_rate / raw_rate
    nexthop_change_s: float | None = None
    nexthop_flows_unchanged: bool | None = None
    withdraw_s: float | None = None
    withdraw_rate: float | None = None
    kernel_unload_s: float | None = None  # the netlink batch of deletions alone
    #: Peak resident memory (VmHWM) per daemon, MB, and their sum.
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    rss_peak_total_mb: float | None = None
    #: CPU seconds each daemon spent while the N routes were loaded.
    cpu_load_s: dict[str, float] = field(default_factory=dict)
    cpu_withdraw_s: dict[str, float] = field(default_factory=dict)
    progress: list[tuple[float, int]] = field(default_factory=list)  # (s, route flows)
    #: A host pinging its gateway (through the packet relay) while the routes load.
    relay_ping: dict[str, float] = field(default_factory=dict)
    #: --restart-proxy: rfproxy SIGKILLed and restarted with the N routes on the
    #: switch; seconds from the restart until it logged "reconciled switch".
    restart_reconcile_s: float | None = None
    #: The restarted rfproxy's peak RSS (VmHWM, MB), reconciliation included.
    restart_rss_peak_mb: float | None = None
    #: The killed rfproxy's RSS (VmRSS, MB) just before: its steady state.
    restart_rss_before_mb: float | None = None
    #: Its diff: flows_add/flows_delete/flows_unchanged, groups_*.
    restart_diff: dict[str, int] = field(default_factory=dict)
    #: --wipe-switch: rfproxy SIGKILLed, every flow and group of the switch
    #: deleted, rfproxy restarted: seconds from the restart until the switch
    #: holds all its flows (both tables) and groups again.
    wipe_s: float | None = None
    wipe_rate: float | None = None  # routes / wipe_s
    wipe_ratio: float | None = None  # wipe_rate / raw_rate
    #: How long Open vSwitch took to delete everything (not part of wipe_s).
    wipe_clear_s: float | None = None
    #: From the restart until rfproxy logged its reconciliation (sent it all).
    wipe_reconcile_logged_s: float | None = None
    #: From the switch's connection to the restarted rfproxy (its log line)
    #: until the full table: wipe_s less starting up and Open vSwitch's
    #: reconnection backoff, and its ratio to the raw baseline.
    wipe_connected_s: float | None = None
    wipe_connected_ratio: float | None = None
    wipe_rss_peak_mb: float | None = None
    wipe_diff: dict[str, int] = field(default_factory=dict)
    #: --table: the file, its make-up (table_stats), the peers it is spread
    #: over, the prefixes offered by several, and the routes per next hop.
    table: str | None = None
    table_stats: dict[str, object] = field(default_factory=dict)
    peers: int = 1
    shared_prefixes: int | None = None
    routes_per_peer: dict[str, int] = field(default_factory=dict)
    #: --peer-down: peer 0 dies with the table loaded (see _peer_down): seconds
    #: until no group rewrites to it, until every prefix is on its new next hop
    #: on the switch, and the kernel's own re-routing; prefixes moved and gone.
    peer_down_off_s: float | None = None
    peer_down_moved_s: float | None = None
    peer_down_kernel_s: float | None = None
    peer_down_lag_ratio: float | None = None  # moved_s / kernel_s
    peer_down_moved: int | None = None
    peer_down_gone: int | None = None
    #: CPU seconds each daemon spent until every prefix was re-routed.
    cpu_peer_down_s: dict[str, float] = field(default_factory=dict)
    run_dir: str = ""
    command: str = ""

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def bench_plan() -> LabPlan:
    return plan(parse_lab(BENCH_LAB, "<bench fib>"))


def load_bench_table(path: str) -> list[TableEntry]:
    """A table file fit for the bench lab (TableError naming the file, and line, if not)."""
    table = read_table_file(path)
    lab = bench_plan()
    vm = lab.vm(SWITCH)
    own = [i.subnet for i in vm.interfaces] + [f"{h.address}/32" for h in lab.hosts] + [NET6]
    fibtable.check_table(table, path, own)
    return table


class _BenchRun(LabRun):
    """The lab of the benchmark: FRR only on request, no flow statistics polling."""

    frr: bool = False

    def start_frr_daemon(self, vm, daemon):  # type: ignore[override]
        if self.frr:
            super().start_frr_daemon(vm, daemon)


# --- reading Open vSwitch -----------------------------------------------------------


def _ofctl(run: LabRun, *args: str) -> str:
    return run.ovs.ofctl("-O", "OpenFlow13", *args)


_TABLE_ACTIVE = re.compile(r"table (\d+):\s*\n\s*active=(\d+)")


def table_active(run: LabRun, bridge: str, table: int = of.TABLE_FIB) -> int:
    """Flows in one table, as OVS counts them (cheap: no flow walk, and no process
    started per poll, see tablestats.py)."""
    count = tablestats.table_active(run.ovs.rundir, bridge, table)
    if count is not None:
        return count
    for m in _TABLE_ACTIVE.finditer(_ofctl(run, "dump-tables", bridge)):
        if int(m.group(1)) == table:
            return int(m.group(2))
    raise LabFailure(f"no table {table} in dump-tables of {bridge}")


def aggregate_count(run: LabRun, bridge: str, match: str) -> int:
    out = _ofctl(run, "dump-aggregate", bridge, match)
    m = re.search(r"flow_count=(\d+)", out)
    if m is None:
        raise LabFailure(f"unexpected dump-aggregate output: {out!r}")
    return int(m.group(1))


def group_ref_counts(run: LabRun, bridge: str) -> dict[int, int]:
    """Flows whose actions use each group, as OVS counts them (its group
    statistics' ref_count: no flow walk, unlike dump-aggregate with out_group,
    which costs the switch about 60 ms of CPU per call at 200k flows)."""
    out = _ofctl(run, "dump-group-stats", bridge)
    return {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"group_id=(\d+),.*?ref_count=(\d+)", out)
    }


def flows_per_group(run: LabRun, bridge: str) -> dict[int, int]:
    """FIB flows applying each group, counted by one walk of the flows (untimed
    checks: ``dump-flows``, one call whatever the number of shards, where a
    ``dump-aggregate out_group=G`` per shard walked the table once per group)."""
    out = _ofctl(run, "dump-flows", "--no-stats", bridge, f"table={of.TABLE_FIB}")
    counts: dict[int, int] = {}
    for m in re.finditer(r"actions=group:(\d+)", out):
        gid = int(m.group(1))
        counts[gid] = counts.get(gid, 0) + 1
    return counts


def flows_via(run: LabRun, bridge: str, groups: Iterable[int]) -> int:
    """Flows using any of ``groups`` (the shards of a next hop its routes made,
    openflow.GROUP_SHARDS)."""
    counts = group_ref_counts(run, bridge)
    return sum(counts.get(g, 0) for g in groups)


def groups_of_gateway(run: LabRun, bridge: str, mac: str) -> tuple[list[int], str]:
    """Every group that rewrites to ``mac`` (the shards of one next hop that exist), sorted."""
    out = _ofctl(run, "dump-groups", bridge)
    found = []
    for line in out.splitlines():
        m = re.search(r"group_id=(\d+)", line)
        if m and f"set_field:{mac}->eth_dst" in line:
            found.append(int(m.group(1)))
    return sorted(found), out


# --- reading our daemons from outside --------------------------------------------------


def _pid(run: LabRun, name: str) -> int | None:
    for t in run.procs.procs:
        if t.name == name:
            return t.pid
    return None


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(run: LabRun, names: Iterable[str]) -> dict[str, float]:
    """CPU seconds (user + system) each named lab process has used so far."""
    return {name: _cpu_s(_pid(run, name)) for name in names}


def _cpu_all(run: LabRun) -> dict[str, float]:
    return cpu_of(run, (*DAEMONS, "ovs-vswitchd"))


# --- the phases ------------------------------------------------------------------------


def _synthetic_flow_lines(result: FibBenchResult, net_ints: list[int]) -> Iterator[str]:
    prio = of.PRIO_ROUTE_BASE + result.prefixlen
    if result.ipv6:
        head = f"table={of.TABLE_FIB},priority={prio},cookie={ROUTE_COOKIE:#x},ipv6,ipv6_dst="
        tail = f"/{result.prefixlen},actions=group:1\n"
        return (f"{head}{ipaddress.IPv6Address(net)}{tail}" for net in net_ints)
    mask = (0xFFFFFFFF << (32 - result.prefixlen)) & 0xFFFFFFFF
    head = f"table={of.TABLE_FIB},priority={prio},cookie={ROUTE_COOKIE:#x},ip,nw_dst="
    tail = f"/{_dotted(mask)},actions=group:1\n"
    return (f"{head}{_dotted(net)}{tail}" for net in net_ints)


def _raw_baseline(
    run: LabRun,
    result: FibBenchResult,
    lines: Iterable[str],
    src_mac: str,
    group_macs: dict[int, str],
) -> None:
    """ovs-ofctl --bundle add-flows of the N route flows on a fresh bridge.

    ``group_macs``: the groups the flows point at (id -> next hop's MAC).
    """
    n = result.routes
    bridge = f"{run.prefix}raw"
    path = os.path.join(run.run_dir, "raw-flows.txt")
    with open(path, "w") as fh:
        fh.writelines(lines)
    run.ovs.vsctl(
        "add-br",
        bridge,
        "--",
        "set",
        "bridge",
        bridge,
        "datapath_type=netdev",
        "protocols=OpenFlow13",
        "fail_mode=secure",
    )
    try:
        for gid, mac in sorted(group_macs.items()):
            _ofctl(
                run,
                "add-group",
                bridge,
                f"group_id={gid},type=indirect,bucket=actions=set_field:{src_mac}->eth_src,"
                f"set_field:{mac}->eth_dst,dec_ttl,output:1",
            )
        t = time.monotonic()
        r = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", bridge, path],
            capture_output=True,
            text=True,
            env={**os.environ, **run.ovs.env},
            timeout=max(120, n / 2000),
        )
        elapsed = time.monotonic() - t
        if r.returncode != 0:
            result.fail(f"raw baseline: ovs-ofctl failed: {r.stderr.strip()[:300]}")
            return
        have = table_active(run, bridge)
        if have != n:
            result.fail(f"raw baseline: bridge holds {have} flows, not {n}")
        result.raw_s = round(elapsed, 3)
        result.raw_rate = round(n / elapsed, 1)
    finally:
        # No del-br: removing a million flows takes OVS longer than adding
        # them. The lab's teardown stops this OVS anyway.
        with contextlib.suppress(OSError):
            os.remove(path)


def _dotted(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _vm_python(run: LabRun, *args: str, stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    node = run.vm_node(SWITCH)
    return node.popen(
        [run.python, "-m", "routeflow.bench.nlroutes", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_count(
    run: LabRun,
    bridge: str,
    target: int,
    timeout: float,
    *,
    t0: float,
    base: int,
    loader: subprocess.Popen | None = None,
    progress: list[tuple[float, int]] | None = None,
    interval: float = 0.05,
) -> tuple[float | None, float | None, float | None]:
    """Poll table 1 until it holds ``target`` flows: (done at, loader done at, first change at)."""
    loader_done = first = None
    last = None
    at = 0.0

    def count() -> int:
        nonlocal loader_done, first, last, at
        if loader is not None and loader_done is None and loader.poll() is not None:
            loader_done = time.monotonic() - t0
        now = table_active(run, bridge)
        at = time.monotonic() - t0
        if first is None and now != base:
            first = at
        if progress is not None and now != last:
            progress.append((round(at, 3), now - base))
            last = now
        if now != target:
            _fail_if_dead(run)
        return now

    if not poll_until(count, lambda n: n == target, timeout=timeout, interval=interval):
        return None, loader_done, first
    if loader is not None and loader_done is None:
        loader.wait()
        loader_done = time.monotonic() - t0
    return at, loader_done, first


def _peer_down(
    run: LabRun,
    result: FibBenchResult,
    node,
    bridge: str,
    ifname: str,
    table: list[TableEntry],
    spread: tablepeers.Spread,
    peer_of: dict[tuple[int, int], fibtable.Peer],
    macs: dict[int, str],
    timeout: float,
    profile_dir: str | None = None,
) -> tuple[list[tuple[TableEntry, int]], int]:
    """Peer 0 dies: its neighbours go, BGP re-routes its prefixes.

    Returns the routes left and the number of host routes (of the dead
    peers' neighbour entries) that went with them.

    Its neighbour entries are deleted in the VM (the kernel no longer reaches
    it), and at the same moment the routes through it are replaced by the
    next peer's (or deleted where no other peer offers them), as bgpd does
    when the session drops. Timed: until no group of the switch rewrites to
    the dead peer's MACs (rfserver empties its groups: one group-mod each,
    whatever number of routes), until the switch holds every moved route on
    its new next hop, and the kernel's own time for the route changes.
    """
    moves, gone = fibtable.peer_down(table, spread, 0)
    left = [(e, p) for e, p in zip(table, spread.best, strict=True) if p != 0] + moves
    result.peer_down_moved = len(moves)
    result.peer_down_gone = len(gone)
    paths = {}
    loaders = []
    for op, lines in (
        ("add", [f"{e.prefix} {peer_of[(e.family, p)].address}\n" for e, p in moves]),
        ("del", [f"{e.prefix} {peer_of[(e.family, 0)].address}\n" for e in gone]),
    ):
        if not lines:
            continue
        paths[op] = os.path.join(run.run_dir, f"peer-down-{op}.txt")
        with open(paths[op], "w") as fh:
            fh.writelines(lines)
        args = ["--dev", ifname] if op == "add" else []
        loader = _vm_python(run, op, "--routes", paths[op], *args, "--ready", stdin=subprocess.PIPE)
        _go(loader)
        loaders.append(loader)
    dead = [peer_of[(f, 0)] for f in sorted(macs)]
    dead_groups = [g for f in macs for g in groups_of_gateway(run, bridge, macs[f])[0]]
    # Resolved neighbours are host routes too: the dead peers' go with them.
    hosts = sum(
        aggregate_count(
            run,
            bridge,
            f"table={of.TABLE_FIB},ipv6,ipv6_dst={p.address}/128"
            if p.family == AF_INET6
            else f"table={of.TABLE_FIB},ip,nw_dst={p.address}/32",
        )
        for p in dead
    )
    want_total = table_active(run, bridge) - len(gone) - hosts
    profilers = start_profilers(run, profile_dir, suffix="-peerdown") if profile_dir else []
    t0 = time.monotonic()
    node.cmd(
        "; ".join(
            f"ip {'-6 ' if p.family == AF_INET6 else ''}neigh del {p.address} dev {ifname}"
            for p in dead
        )
    )
    cpu0 = _cpu_all(run)
    for loader in loaders:
        assert loader.stdin is not None
        loader.stdin.write("go\n")
        loader.stdin.flush()
    off = moved = None
    while time.monotonic() - t0 < timeout:
        now = time.monotonic() - t0
        if off is None and not any(groups_of_gateway(run, bridge, m)[0] for m in macs.values()):
            off = now
        if off is not None and moved is None:
            # Polled through counters OVS keeps (group ref_count, table active
            # count): a flow walk per poll (dump-aggregate out_group, 60-80 ms
            # of the switch's CPU at 200k flows, one per dead group) took the
            # switch's main thread from the flow-mods being timed.
            # A group a next hop no longer has holds no flow (OVS deletes them with it).
            on_old = flows_via(run, bridge, dead_groups)
            if on_old == 0 and table_active(run, bridge) == want_total:
                moved = now
        if off is not None and moved is not None:
            break
        _fail_if_dead(run)
        time.sleep(0.002 if off is None else 0.05)
    cpu1 = _cpu_all(run)
    stop_profilers(profilers)
    result.cpu_peer_down_s = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
    if moved is not None:
        # Once, untimed: the flows themselves agree with the counters.
        per_group = flows_per_group(run, bridge)
        left_on_dead = sum(per_group.get(g, 0) for g in dead_groups)
        if left_on_dead:
            result.fail(f"peer down: {left_on_dead} flows still use the dead peer's groups")
    kernel = 0.0
    for loader in loaders:
        out = loader.communicate()[0]
        if loader.returncode != 0:
            result.fail(f"peer down: re-routing in the kernel failed: {out.strip()[-300:]}")
        # The loaders started together; each says how long the kernel took for its part.
        m = re.search(r"routes in ([\d.]+) s", out)
        kernel = max(kernel, float(m.group(1)) if m else 0.0)
    result.peer_down_off_s = None if off is None else round(off, 4)
    result.peer_down_moved_s = None if moved is None else round(moved, 3)
    result.peer_down_kernel_s = round(kernel, 4)
    if off is None:
        result.fail(f"peer down: a group still rewrites to the dead peer after {timeout:.0f} s")
    if moved is None:
        result.fail(f"peer down: the switch did not re-route every prefix in {timeout:.0f} s")
    elif kernel:
        result.peer_down_lag_ratio = round(moved / kernel, 2)
    return left, hosts


def _go(loader: subprocess.Popen) -> None:
    """Wait for a ``--ready`` loader to have packed its routes (its "ready" line)."""
    assert loader.stdout is not None
    line = loader.stdout.readline()
    if line.strip() != "ready":
        rest = line + loader.communicate()[0]
        raise LabFailure(f"the route loader failed before starting: {rest.strip()[-300:]}")


def _fail_if_dead(run: LabRun) -> None:
    dead = run.procs.dead()
    if dead:
        raise LabFailure("died: " + ", ".join(f"{t.name} (pid {t.pid})" for t in dead))


def run_fib_bench(
    routes: int,
    run_dir: str,
    *,
    prefixlen: int = 24,
    frr: bool = False,
    log_level: str = "WARNING",
    raw: bool = True,
    timeout: float | None = None,
    progress=None,
    profile_dir: str | None = None,
    restart_proxy: bool = False,
    wipe_switch: bool = False,
    ipv6: bool = False,
    table: list[TableEntry] | None = None,
    table_source: str | None = None,
    peers: int = 1,
    seed: int = 1,
    peer_down_phase: bool = False,
) -> FibBenchResult:
    """The whole benchmark; ``progress(text)`` is told what is happening.

    With ``table`` its prefixes (both families, any lengths) are the routes,
    spread over ``peers`` next hops (see tablepeers.py); ``routes``,
    ``prefixlen`` and ``ipv6`` are then ignored.
    """
    say = progress or (lambda _text: None)
    if table is not None:
        routes = len(table)
        families = {e.family for e in table}
        ipv6 = AF_INET6 in families
        prefixlen = 0  # mixed
    else:
        families = {AF_INET6 if ipv6 else AF_INET}
        if peers != 1:
            raise ValueError("--peers needs --table")
    spread = tablepeers.spread(table or [], peers, seed)
    result = FibBenchResult(routes=routes, prefixlen=prefixlen, ipv6=ipv6, run_dir=run_dir)
    result.command = " ".join(sys.argv) if sys.argv else ""
    result.peers = peers
    net_ints: list[int] = []
    if table is not None:
        result.table = table_source or "<table>"
        result.table_stats = table_stats(table)
        result.shared_prefixes = spread.shared()
    elif ipv6:
        net_ints = list(nlroutes.prefixes6(routes, prefixlen=prefixlen))
    else:
        net_ints = list(nlroutes.prefixes(routes, prefixlen=prefixlen))
    limit = timeout if timeout is not None else max(60.0, routes / 5000)
    lab = bench_plan()
    run = _BenchRun(lab, run_dir, log_level=log_level, stats_interval=0)
    run.frr = frr
    gw = lab.host(GATEWAY_HOST)
    vm = lab.vm(SWITCH)
    gw_port = next(i for i in vm.interfaces if i.peer == GATEWAY_HOST)
    if table is None:
        peer_of = fibtable.make_peers(families, 1, (gw.address, gw.mac), (GW6, GW6_MAC))
    else:
        # Made-up next hops next to the gateway host, not the host itself: a
        # dead peer must not answer ARP (it would come back with its MAC).
        v4 = (str(ipaddress.IPv4Address(gw.address) + 1), TABLE_MAC4)
        peer_of = fibtable.make_peers(families, peers, v4, (GW6, GW6_MAC))
    # The route flows expected per next hop: (family, peer) -> count.
    if table is not None:
        expected: dict[tuple[int, int], int] = {}
        for e, best in zip(table, spread.best, strict=True):
            expected[(e.family, best)] = expected.get((e.family, best), 0) + 1
    else:
        expected = {(next(iter(families)), 0): routes}
    result.routes_per_peer = {f"{peer_of[k].address}": n for k, n in sorted(expected.items()) if n}
    # The peer whose MAC the next-hop phase changes: peer 0 of the first family.
    first_peer = peer_of[(min(families), 0)]
    gw_mac = first_peer.mac
    relay_ping: subprocess.Popen | None = None
    profilers: list[subprocess.Popen] = []
    routes_path = os.path.join(run_dir, "routes.txt")
    try:
        say("starting the lab")
        run.start()
        bridge = run.bridges[SWITCH]
        if not checks.wait_until(lambda: _assoc_done(run), 60, 0.2):
            raise LabFailure("associations did not become active")
        node = run.vm_node(SWITCH)
        want = {f"{i.ip}/32" for i in vm.interfaces} | {i.subnet for i in vm.interfaces}
        if AF_INET6 in families:
            # The lab is IPv4 (static routing): the gateway link gets its IPv6
            # /64 by hand. Only the VM's side is needed; the gateways are
            # permanent neighbours, as the IPv4 ones are.
            node.cmd(f"ip -6 addr add {VM6}/64 dev {gw_port.ifname} nodad")
        for peer in sorted(peer_of.values(), key=lambda p: (p.family, p.index)):
            v = "-6 " if peer.family == AF_INET6 else ""
            node.cmd(
                f"ip {v}neigh replace {peer.address} dev {gw_port.ifname} "
                f"nud permanent lladdr {peer.mac}"
            )
        if all(p.address != gw.address for p in peer_of.values()):
            node.cmd(
                f"ip neigh replace {gw.address} dev {gw_port.ifname} nud permanent lladdr {gw.mac}"
            )
        # The relay host's /32 is part of every baseline count, also long after its ping
        # stopped: learned by ARP, its entry went stale and then FAILED on a loaded
        # machine, rfclient withdrew the /32, and the next-hop, wipe and withdrawal
        # stages each waited out their limit for a count one flow too high.
        relay = lab.host(RELAY_HOST)
        relay_port = next(i for i in vm.interfaces if i.peer == RELAY_HOST)
        node.cmd(
            f"ip neigh replace {relay.address} dev {relay_port.ifname} "
            f"nud permanent lladdr {relay.mac}"
        )
        v6 = "-6 " if first_peer.family == AF_INET6 else ""
        neigh = (
            f"ip {v6}neigh replace {first_peer.address} dev {gw_port.ifname} nud permanent lladdr"
        )
        if not checks.wait_until(lambda: want <= set(checks.fib_flows(run, SWITCH)), 30, 0.2):
            raise LabFailure(f"the connected routes never reached the switch: {want}")
        if AF_INET6 in families:
            want6 = {f"{VM6}/128", NET6}
            if not checks.wait_until(
                lambda: want6 <= set(checks.fib_flows(run, SWITCH, family=6)), 30, 0.2
            ):
                raise LabFailure(f"the IPv6 connected routes never reached the switch: {want6}")
        # Control traffic keeps flowing while the table loads: a host pings its
        # gateway (the VM), a path through rfproxy's packet relay. Started now,
        # so that the host's own /32 flow is part of the baseline.
        relay_host = lab.host(RELAY_HOST)
        relay_ping = run.host(RELAY_HOST).popen(
            ["ping", "-n", "-i", "0.05", "-W", "1", relay_host.gateway],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        host_route = f"{relay_host.address}/32"
        if not checks.wait_until(lambda: host_route in checks.fib_flows(run, SWITCH), 30, 0.2):
            raise LabFailure(f"{RELAY_HOST}'s host route never reached the switch")
        time.sleep(0.5)
        base = table_active(run, bridge)
        base_via = {}
        for hop in expected:
            base_via[hop] = flows_via(
                run, bridge, groups_of_gateway(run, bridge, peer_of[hop].mac)[0]
            )

        say(f"loading {routes} routes into the VM kernel and waiting for the switch")
        family = ["--ipv6"] if ipv6 else []
        if table is not None:
            with open(routes_path, "w") as fh:
                fh.writelines(fibtable.routes_lines(table, spread, peer_of))
            loader = _vm_python(
                run,
                "add",
                "--routes",
                routes_path,
                "--dev",
                gw_port.ifname,
                "--ready",
                stdin=subprocess.PIPE,
            )
            _go(loader)  # the clock starts once the loader has packed the table
        profilers = start_profilers(run, profile_dir) if profile_dir else []
        cpu0 = _cpu_all(run)
        t0 = time.monotonic()
        if table is None:
            loader = _vm_python(
                run,
                "add",
                "--count",
                str(routes),
                "--via",
                first_peer.address,
                "--dev",
                gw_port.ifname,
                "--prefixlen",
                str(prefixlen),
                *family,
            )
        else:
            assert loader.stdin is not None
            loader.stdin.write("go\n")
            loader.stdin.flush()  # communicate() closes it
        done, loaded, first = _wait_count(
            run,
            bridge,
            base + routes,
            limit,
            t0=t0,
            base=base,
            loader=loader,
            progress=result.progress,
        )
        out = loader.communicate()[0]
        cpu1 = _cpu_all(run)
        stop_profilers(profilers)
        profilers = []
        relay_ping.send_signal(signal.SIGINT)
        result.relay_ping = _ping_summary(relay_ping.communicate(timeout=10)[0])
        result.cpu_load_s = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
        if loader.returncode != 0:
            result.fail(f"loading routes failed: {out.strip()[-300:]}")
        result.kernel_load_s = None if loaded is None else round(loaded, 3)
        result.first_flow_s = None if first is None else round(first, 3)
        if done is None:
            have = table_active(run, bridge) - base
            result.fail(f"the switch holds {have} of {routes} route flows after {limit:.0f} s")
            return result
        result.ours_s = round(done, 3)
        result.ours_rate = round(routes / done, 1)

        group: list[int] = []  # the first peer's groups (its shards)
        per_group = flows_per_group(run, bridge)
        for hop, n in sorted(expected.items()):
            peer = peer_of[hop]
            gs, groups_text = groups_of_gateway(run, bridge, peer.mac)
            if not gs:
                result.fail(
                    f"no group rewrites to the next hop's MAC {peer.mac}: {groups_text[:300]}"
                )
                return result
            # Counted by a flow walk here (untimed), not by the groups' counters.
            count = sum(per_group.get(g, 0) for g in gs)
            if count != n + base_via[hop]:
                result.fail(
                    f"{count - base_via[hop]} route flows point at {peer.address}'s groups {gs}, "
                    f"not {n}"
                )
            if peer == first_peer:
                group, via_group = gs, count
        if not group:
            result.fail(f"no routes through {first_peer.address}: no next-hop change to time")
            return result

        if restart_proxy:
            say("SIGKILL rfproxy, restart it, wait for its reconciliation")
            _restart_proxy(run, result, limit, profile_dir)
            if table_active(run, bridge) != base + routes:
                result.fail("the route flows changed across the rfproxy restart")

        if wipe_switch:
            say("SIGKILL rfproxy, wipe the switch, restart rfproxy, wait for the full table")
            _wipe_switch(run, result, bridge, limit)
            after = flows_via(run, bridge, group)
            if after != via_group:
                result.fail(
                    f"after the wipe {after} flows point at {first_peer.address}'s "
                    f"groups {group}, not {via_group}"
                )

        say("changing the gateway's MAC in the VM")
        t0 = time.monotonic()
        node.cmd(f"{neigh} {NEW_MAC}")
        changed = None
        gs = []
        while time.monotonic() - t0 < 30:
            gs, _ = groups_of_gateway(run, bridge, NEW_MAC)
            if gs == group:  # every shard of the next hop
                changed = time.monotonic() - t0
                break
            time.sleep(0.002)
        if changed is None:
            result.fail(f"the gateway's groups {group} did not all take the new MAC (have {gs})")
        else:
            result.nexthop_change_s = round(changed, 4)
            per_group = flows_per_group(run, bridge)
            after = sum(per_group.get(g, 0) for g in group)
            result.nexthop_flows_unchanged = after == via_group and table_active(run, bridge) == (
                base + routes
            )
            if not result.nexthop_flows_unchanged:
                result.fail("the flows changed with the next hop's MAC")

        if peer_down_phase and table is not None:
            say("peer 0 goes down: its neighbours vanish, BGP moves its prefixes")
            macs = {f: peer_of[(f, 0)].mac for f in families}
            macs[first_peer.family] = NEW_MAC  # changed above
            remaining, hosts_gone = _peer_down(
                run,
                result,
                node,
                bridge,
                gw_port.ifname,
                table,
                spread,
                peer_of,
                macs,
                limit,
                profile_dir=profile_dir,
            )
            base -= hosts_gone
            routes_left = len(remaining)
            with open(routes_path, "w") as fh:
                fh.writelines(
                    f"{e.prefix} {peer_of[(e.family, p)].address}\n" for e, p in remaining
                )
        else:
            routes_left = routes

        say(f"withdrawing the {routes_left} routes")
        cpu0 = _cpu_all(run)
        t0 = time.monotonic()
        if table is None:
            loader = _vm_python(
                run, "del", "--count", str(routes), "--prefixlen", str(prefixlen), *family
            )
        else:
            loader = _vm_python(
                run, "del", "--routes", routes_path, "--ready", stdin=subprocess.PIPE
            )
            _go(loader)
            t0 = time.monotonic()
            assert loader.stdin is not None
            loader.stdin.write("go\n")
            loader.stdin.flush()  # communicate() closes it
        # Open vSwitch deletes flows more slowly than it adds them, a table of
        # many prefix lengths more slowly still: more time than for the load.
        wlimit = max(limit, routes_left / 2000)
        done, unloaded, _first = _wait_count(
            run, bridge, base, wlimit, t0=t0, base=base + routes_left, loader=loader
        )
        loader.communicate()
        cpu1 = _cpu_all(run)
        result.cpu_withdraw_s = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
        result.kernel_unload_s = None if unloaded is None else round(unloaded, 3)
        if done is None:
            result.fail(f"{table_active(run, bridge) - base} route flows left after withdrawal")
        else:
            result.withdraw_s = round(done, 3)
            result.withdraw_rate = round(routes_left / done, 1)
        if raw:
            say(f"raw baseline: ovs-ofctl --bundle add-flows of {routes} flows")
            if table is None:
                lines: Iterable[str] = _synthetic_flow_lines(result, net_ints)
                group_macs = {1: gw_mac}
            else:
                group_ids = {hop: i for i, hop in enumerate(sorted(peer_of), 1)}
                lines = fibtable.raw_flow_lines(table, spread, group_ids)
                group_macs = {i: peer_of[hop].mac for hop, i in group_ids.items()}
            _raw_baseline(run, result, lines, gw_port.mac, group_macs)
            if result.ours_rate and result.raw_rate:
                result.ratio = round(result.ours_rate / result.raw_rate, 3)
            if result.wipe_rate and result.raw_rate:
                result.wipe_ratio = round(result.wipe_rate / result.raw_rate, 3)
            if result.wipe_connected_s and result.raw_s:
                result.wipe_connected_ratio = round(result.raw_s / result.wipe_connected_s, 3)
    except LabFailure as exc:
        result.fail(str(exc))
    finally:
        tablestats.close_all()
        stop_profilers(profilers)
        if relay_ping is not None and relay_ping.poll() is None:
            relay_ping.kill()
            relay_ping.wait()
        for name in DAEMONS:
            pid = _pid(run, name)
            hwm = _status_kb(pid, "VmHWM") if pid else None
            if hwm is not None:
                key = name.split("@")[0]
                # The rfproxy killed by --restart-proxy left its peak there.
                result.rss_peak_mb[key] = max(round(hwm / 1024, 1), result.rss_peak_mb.get(key, 0))
        if result.rss_peak_mb:
            result.rss_peak_total_mb = round(sum(result.rss_peak_mb.values()), 1)
        say("tearing down")
        run.stop()
    return result


_RECONCILED = re.compile(
    r"reconciled switch (0x[0-9a-f]+): flows \+(\d+) -(\d+) =(\d+), "
    r"groups \+(\d+) ~(\d+) -(\d+) =(\d+)"
)
_DIFF_FIELDS = (
    "flows_add",
    "flows_delete",
    "flows_unchanged",
    "groups_add",
    "groups_modify",
    "groups_delete",
    "groups_unchanged",
)


def _restart_proxy(
    run: LabRun, result: FibBenchResult, timeout: float, profile_dir: str | None
) -> None:
    """SIGKILL rfproxy, restart it at once, time it until its reconciliation is logged.

    The restarted rfproxy logs at INFO (its "reconciled switch" line); the
    clock starts when the new process is spawned.
    """
    rss = _kill_proxy(run, result)
    if rss is not None:
        result.restart_rss_before_mb = rss
    t0, pid, log_at = _spawn_proxy(run)
    profilers = []
    if profile_dir and pid is not None:
        profilers = start_profilers(run, profile_dir, names=("rfproxy",), suffix="-restart")
    try:
        found = _wait_reconciled(run, log_at, t0 + timeout)
        if found is not None:
            result.restart_reconcile_s = round(time.monotonic() - t0, 3)
    finally:
        stop_profilers(profilers)
    hwm = _status_kb(pid, "VmHWM") if pid else None
    if hwm is not None:
        result.restart_rss_peak_mb = round(hwm / 1024, 1)
    if found is None:
        result.fail(f"rfproxy did not reconcile the switch within {timeout:.0f} s of its restart")
        return
    result.restart_diff = dict(zip(_DIFF_FIELDS, map(int, found.groups()[1:]), strict=True))
    d = result.restart_diff
    if d["flows_add"] or d["flows_delete"] or d["groups_add"] or d["groups_modify"]:
        result.fail(f"the restarted rfproxy re-installed or deleted state: {found.group(0)}")


def _kill_proxy(run: LabRun, result: FibBenchResult) -> float | None:
    """SIGKILL rfproxy, keeping its peak RSS for the report; returns its RSS (MB) before."""
    old = _pid(run, "rfproxy")
    hwm = _status_kb(old, "VmHWM") if old else None
    if hwm is not None:
        mb = round(hwm / 1024, 1)
        result.rss_peak_mb["rfproxy"] = max(mb, result.rss_peak_mb.get("rfproxy", 0))
    rss = _status_kb(old, "VmRSS") if old else None
    run.kill("rfproxy")
    return None if rss is None else round(rss / 1024, 1)


def _spawn_proxy(run: LabRun) -> tuple[float, int | None, tuple[str, int]]:
    """Start rfproxy logging at INFO: (spawned at, pid, (its log, where this run starts))."""
    log_path = os.path.join(run.run_dir, "rfproxy.log")
    offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    level, run.log_level = run.log_level, "INFO"
    t0 = time.monotonic()
    try:
        run.start_proxy_process()
    finally:
        run.log_level = level
    return t0, _pid(run, "rfproxy"), (log_path, offset)


def _wait_reconciled(run: LabRun, log_at: tuple[str, int], deadline: float) -> re.Match | None:
    """The restarted rfproxy's "reconciled switch" line, once it is logged."""
    path, offset = log_at

    def logged() -> re.Match | None:
        with open(path, errors="replace") as fh:
            fh.seek(offset)
            found = _RECONCILED.search(fh.read())
        if found is None:
            _fail_if_dead(run)
        return found

    return poll_until(logged, timeout=deadline - time.monotonic(), interval=0.05).value


_CONNECTED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) routeflow\.proxy INFO switch 0x[0-9a-f]+ connected",
    re.M,
)


def _connected_at(log_at: tuple[str, int]) -> float | None:
    """When (wall clock) the restarted rfproxy logged the physical switch's connection."""
    path, offset = log_at
    with open(path, errors="replace") as fh:
        fh.seek(offset)
        m = _CONNECTED.search(fh.read())
    if m is None:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _group_count(run: LabRun, bridge: str) -> int:
    return len(re.findall(r"group_id=\d+", _ofctl(run, "dump-groups", bridge)))


def _wipe_switch(run: LabRun, result: FibBenchResult, bridge: str, timeout: float) -> None:
    """The switch loses everything (a reboot, a wipe); a restarted rfproxy re-adds it all.

    rfproxy is killed first, so that nothing re-adds flows before the clock
    starts; the clock starts when the new rfproxy is spawned (as for
    --restart-proxy) and stops when Open vSwitch counts as many flows in
    both tables, and as many groups, as before the wipe.
    """
    want = (table_active(run, bridge, 0), table_active(run, bridge, 1), _group_count(run, bridge))
    _kill_proxy(run, result)
    t = time.monotonic()
    for what in ("del-flows", "del-groups"):
        # Open vSwitch deletes a million flows more slowly than it adds them:
        # longer than the lab's usual ovs-ofctl timeout.
        r = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", what, bridge],
            capture_output=True,
            text=True,
            env={**os.environ, **run.ovs.env},
            timeout=max(120, result.routes / 1000),
        )
        if r.returncode != 0:
            raise LabFailure(f"ovs-ofctl {what} {bridge} failed: {r.stderr.strip()[:300]}")
    result.wipe_clear_s = round(time.monotonic() - t, 3)
    left = (table_active(run, bridge, 0), table_active(run, bridge, 1), _group_count(run, bridge))
    if left != (0, 0, 0):
        result.fail(f"the wipe left flows or groups on the switch: {left}")
        return
    t0, pid, log_at = _spawn_proxy(run)
    deadline = t0 + timeout
    done = None

    def restored() -> tuple[int, int, int]:
        now = (
            table_active(run, bridge, 0),
            table_active(run, bridge, 1),
            _group_count(run, bridge),
        )
        if now != want:
            _fail_if_dead(run)
        return now

    got = poll_until(
        restored, lambda h: h == want, timeout=deadline - time.monotonic(), interval=0.05
    )
    have = got.value
    if got:
        done = time.monotonic() - t0
        done_wall = time.time()
    found = _wait_reconciled(run, log_at, max(deadline, time.monotonic() + 10))
    if found is not None:
        result.wipe_reconcile_logged_s = round(time.monotonic() - t0, 3)
    hwm = _status_kb(pid, "VmHWM") if pid else None
    if hwm is not None:
        result.wipe_rss_peak_mb = round(hwm / 1024, 1)
    if done is None:
        result.fail(
            f"{timeout:.0f} s after the restart the wiped switch holds {have[:2]} flows "
            f"(tables 0, 1), not {want[:2]}"
        )
        return
    result.wipe_s = round(done, 3)
    result.wipe_rate = round(result.routes / done, 1)
    connected = _connected_at(log_at)
    if connected is not None:
        result.wipe_connected_s = round(done_wall - connected, 3)
    if found is None:
        result.fail("the restarted rfproxy never logged its reconciliation of the wiped switch")
        return
    result.wipe_diff = dict(zip(_DIFF_FIELDS, map(int, found.groups()[1:]), strict=True))
    d = result.wipe_diff
    if (d["flows_add"], d["flows_delete"], d["flows_unchanged"]) != (want[0] + want[1], 0, 0):
        result.fail(f"the wiped switch was not simply re-added: {found.group(0)}")


def _ping_summary(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    if m:
        out["sent"], out["received"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/", text)
    if m:
        out["avg_ms"], out["max_ms"] = float(m.group(1)), float(m.group(2))
    return out


def start_profilers(
    run: LabRun, out_dir: str, names: tuple[str, ...] = DAEMONS, suffix: str = ""
) -> list[subprocess.Popen]:
    """py-spy on each daemon (collapsed stacks), for the load (or restart) phase only."""
    os.makedirs(out_dir, exist_ok=True)
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    procs = []
    for name in names:
        pid = _pid(run, name)
        if pid is None:
            continue
        out = os.path.join(out_dir, f"{name.split('@')[0]}{suffix}.txt")
        procs.append(
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--threads",
                    "--nonblocking",
                    "--output",
                    out,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(1.0)  # attached before the load starts
    return procs


def stop_profilers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _assoc_done(run: LabRun) -> bool:
    dead = run.procs.dead()
    if dead:
        raise LabFailure("died: " + ", ".join(f"{t.name} (pid {t.pid})" for t in dead))
    active, want = checks.associations_active(run)
    return active == want


def write_json(result: FibBenchResult, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(asdict(result), fh, indent=1)


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def print_result(result: FibBenchResult, console) -> None:
    from rich.table import Table

    n = result.routes
    family = "IPv6 " if result.ipv6 else ""
    if result.table:
        what = f"{n:,} routes of {result.table}"
        if result.peers > 1:
            what += f" over {result.peers} peers"
    else:
        what = f"{n:,} {family}/{result.prefixlen} routes"
    t = Table(title=f"bench fib: {what}, one switch, one VM")
    t.add_column("measure")
    t.add_column("value", justify="right")
    st = result.table_stats
    if st:
        t.add_row("table: IPv4 + IPv6 prefixes", f"{st['ipv4']:,} + {st['ipv6']:,}")
        t.add_row("  nested in a less specific one", f"{st['nested']:,} ({st['nested_share']:.0%})")
        t.add_row("  distinct AS paths", f"{st['as_paths']:,}")
        if result.peers > 1:
            t.add_row("  prefixes offered by several peers", f"{result.shared_prefixes:,}")
            t.add_row(
                "  routes per next hop",
                ", ".join(f"{n:,}" for n in result.routes_per_peer.values()),
            )
    t.add_row("raw: ovs-ofctl --bundle add-flows", f"{_fmt(result.raw_s, ' s', 3)}")
    t.add_row("raw rate", f"{_fmt(result.raw_rate, ' flows/s', 0)}")
    t.add_row("routeflow: kernel -> switch, all flows", f"{_fmt(result.ours_s, ' s', 3)}")
    t.add_row("routeflow rate", f"{_fmt(result.ours_rate, ' routes/s', 0)}")
    t.add_row("ratio routeflow / raw", _fmt(result.ratio, "", 3))
    t.add_row("  of which the kernel load (netlink batch)", _fmt(result.kernel_load_s, " s", 3))
    t.add_row("  first route flow on the switch after", _fmt(result.first_flow_s, " s", 3))
    rp = result.relay_ping
    if rp:
        t.add_row(
            "relay during the load: host -> gateway pings",
            f"{rp.get('received', 0):.0f}/{rp.get('sent', 0):.0f}, "
            f"avg {rp.get('avg_ms', 0):.1f} ms, max {rp.get('max_ms', 0):.1f} ms",
        )
    t.add_row("next-hop MAC change for all routes", _fmt(result.nexthop_change_s, " s", 4))
    t.add_row("  route flows untouched by it", str(result.nexthop_flows_unchanged))
    if result.peer_down_moved is not None:
        t.add_row(
            "peer 0 down: prefixes moved, gone",
            f"{result.peer_down_moved:,}, {result.peer_down_gone:,}",
        )
        t.add_row("  switch off the dead next hop after", _fmt(result.peer_down_off_s, " s", 4))
        t.add_row("  every prefix on its new next hop", _fmt(result.peer_down_moved_s, " s", 3))
        t.add_row("  the kernel's own re-routing", _fmt(result.peer_down_kernel_s, " s", 3))
        t.add_row("  switch / kernel", _fmt(result.peer_down_lag_ratio, "", 2))
        for name, cpu in sorted(result.cpu_peer_down_s.items()):
            t.add_row(f"  CPU meanwhile: {name}", f"{cpu:.2f} s")
    t.add_row("withdraw all routes", _fmt(result.withdraw_s, " s", 3))
    t.add_row("withdraw rate", _fmt(result.withdraw_rate, " routes/s", 0))
    t.add_row("  of which the kernel unload", _fmt(result.kernel_unload_s, " s", 3))
    if result.restart_diff or result.restart_reconcile_s is not None:
        t.add_row("rfproxy restart -> switch reconciled", _fmt(result.restart_reconcile_s, " s", 3))
        t.add_row("  peak RSS of the restarted rfproxy", _fmt(result.restart_rss_peak_mb, " MB", 1))
        t.add_row("  RSS of rfproxy before the kill", _fmt(result.restart_rss_before_mb, " MB", 1))
        d = result.restart_diff
        if d:
            t.add_row(
                "  its diff: flows +add -del =same",
                f"+{d['flows_add']} -{d['flows_delete']} ={d['flows_unchanged']:,}",
            )
    if result.wipe_diff or result.wipe_s is not None:
        t.add_row("switch wiped, rfproxy restart -> full table", _fmt(result.wipe_s, " s", 3))
        t.add_row("  rate", _fmt(result.wipe_rate, " routes/s", 0))
        t.add_row("  ratio to raw", _fmt(result.wipe_ratio, "", 3))
        t.add_row(
            "  of which from the switch's connection",
            f"{_fmt(result.wipe_connected_s, ' s', 3)}, "
            f"ratio to raw {_fmt(result.wipe_connected_ratio, '', 3)}",
        )
        t.add_row(
            "  rfproxy logged its reconciliation after",
            _fmt(result.wipe_reconcile_logged_s, " s", 3),
        )
        t.add_row("  OVS deleting it all took (not counted)", _fmt(result.wipe_clear_s, " s", 3))
        t.add_row("  peak RSS of the restarted rfproxy", _fmt(result.wipe_rss_peak_mb, " MB", 1))
        d = result.wipe_diff
        if d:
            t.add_row(
                "  its diff: flows +add -del =same, groups +add",
                f"+{d['flows_add']:,} -{d['flows_delete']} ={d['flows_unchanged']}, "
                f"+{d['groups_add']}",
            )
    for name, mb in sorted(result.rss_peak_mb.items()):
        t.add_row(f"peak RSS {name}", _fmt(mb, " MB", 1))
    t.add_row("peak RSS, all daemons", _fmt(result.rss_peak_total_mb, " MB", 1))
    for name, cpu in sorted(result.cpu_load_s.items()):
        per = f" ({cpu / n * 1e6:,.1f} us/route)" if n else ""
        t.add_row(f"CPU while loading: {name}", f"{cpu:.2f} s{per}")
    for name, cpu in sorted(result.cpu_withdraw_s.items()):
        t.add_row(f"CPU while withdrawing: {name}", f"{cpu:.2f} s")
    console.print(t)
    for problem in result.problems:
        console.print(f"{problem}", style="red", markup=False, highlight=False)
    console.print(f"logs: {result.run_dir}", markup=False)
    console.print("[green]OK[/green]" if result.ok else "[red]FAIL[/red]")


def main_fib(
    routes: int,
    json_path: str | None,
    prefixlen: int,
    frr: bool,
    raw: bool,
    run_dir: str | None,
    log_level: str,
    console,
    profile_dir: str | None = None,
    restart_proxy: bool = False,
    wipe_switch: bool = False,
    ipv6: bool = False,
    table_path: str | None = None,
    peers: int = 1,
    seed: int = 1,
    peer_down: bool = False,
) -> int:
    import logging

    from routeflow.lab.runner import Terminated
    from routeflow.lab.scenarios import default_run_dir, install_signal_handlers

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    from mininet.log import setLogLevel

    setLogLevel("error")  # Mininet warnings would garble the progress line
    table = None
    if table_path is not None:
        try:
            table = load_bench_table(table_path)
        except TableError as err:
            print(f"bench fib: {err}", file=sys.stderr)
            return 2
        routes = len(table)
    run_dir = run_dir or default_run_dir(f"bench-fib-{routes}")
    install_signal_handlers()
    try:
        with console.status("bench fib") as status:
            result = run_fib_bench(
                routes,
                run_dir,
                prefixlen=prefixlen,
                frr=frr,
                raw=raw,
                log_level=log_level,
                progress=lambda text: status.update(f"bench fib: {text}"),
                profile_dir=profile_dir,
                restart_proxy=restart_proxy,
                wipe_switch=wipe_switch,
                ipv6=ipv6,
                table=table,
                table_source=table_path,
                peers=peers,
                seed=seed,
                peer_down_phase=peer_down,
            )
    except (KeyboardInterrupt, Terminated):
        console.print("[yellow]interrupted; lab torn down[/yellow]")
        return 130
    print_result(result, console)
    if json_path:
        write_json(result, json_path)
    return 0 if result.ok else 1

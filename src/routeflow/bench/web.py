"""`routeflow bench web`: rfweb's paged /api/fib and /api/routes at a full table.

No switch and no VM: rfserver's routing table is fed N routes directly (one
VM on one switch, through 4 gateways, as RouteMods would), and the real
FastAPI app is asked for pages through its ASGI interface. It times the
first read (which builds the sorted prefix index), then pages at several
offsets, then pages after a small change (which the index follows instead
of sorting again), and what one sort of all the prefixes costs (what every
request cost before the index).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

from routeflow.bench import nlroutes
from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.server.routing import Binding
from routeflow.server.service import RFServer

__all__ = ["WebBenchResult", "load_server", "run_web_bench"]

VM, PORT, CT, DP = 0x99, 1, 1, 0x99
GATEWAYS = ("172.31.2.100", "172.31.2.101", "172.31.2.102", "172.31.2.103")
PAGE = 100


@dataclass
class WebBenchResult:
    routes: int
    load_s: float = 0.0
    rss_mb: float = 0.0
    sort_all_s: float = 0.0  # sorted() of every FIB prefix: each request before the index
    first_fib_ms: float = 0.0  # the first page: builds the index
    fib_ms: dict[str, float] = field(default_factory=dict)  # p50/p95/max over offsets
    routes_ms: dict[str, float] = field(default_factory=dict)
    after_change_ms: dict[str, float] = field(default_factory=dict)
    index_rebuilds: int = 0


def _dot(a: int) -> str:
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


def load_server(prefixes: list[str]) -> RFServer:
    server = RFServer([], MemoryStore())
    rt = server.routing
    rt.bind(VM, PORT, Binding(CT, DP, 1, "02:00:00:00:00:01"))
    rt.set_neighbours(
        VM,
        [
            p.Neighbour(vm_port=PORT, address=gw, hwaddress=f"06:00:00:00:00:{i:02x}")
            for i, gw in enumerate(GATEWAYS)
        ],
    )
    hops = [[p.NextHop(vm_port=PORT, gateway=gw)] for gw in GATEWAYS]
    for lo in range(0, len(prefixes), 10_000):
        rt.add_routes(
            VM,
            [
                p.Route(prefix=prefix, nexthops=hops[(lo + i) % len(hops)])
                for i, prefix in enumerate(prefixes[lo : lo + 10_000])
            ],
        )
    return server


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50": round(statistics.median(ms), 2),
        "p95": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 2),
        "max": round(ms[-1], 2),
    }


def run_web_bench(routes: int, table: list[str] | None = None) -> WebBenchResult:
    from fastapi.testclient import TestClient

    from routeflow.web.api import create_app

    prefixes = table if table is not None else [f"{_dot(a)}/24" for a in nlroutes.prefixes(routes)]
    result = WebBenchResult(routes=len(prefixes))
    t = time.perf_counter()
    server = load_server(prefixes)
    result.load_s = round(time.perf_counter() - t, 2)
    rt = server.routing
    t = time.perf_counter()
    sorted(rt.installed_prefixes(VM))
    result.sort_all_s = round(time.perf_counter() - t, 3)
    total = len(rt.installed_prefixes(VM))
    offsets = [0, total // 7, total // 3, total // 2, total - PAGE, total * 9 // 10]
    with TestClient(create_app(server)) as client:

        def get(path: str, offset: int) -> float:
            t0 = time.perf_counter()
            r = client.get(path, params={"limit": PAGE, "offset": offset})
            ms = (time.perf_counter() - t0) * 1000
            want = min(PAGE, max(0, int(r.headers.get("x-total-count", total)) - offset))
            if r.status_code != 200 or len(r.json()) != want:
                raise RuntimeError(f"{path} offset {offset}: HTTP {r.status_code}")
            return ms

        result.first_fib_ms = round(get("/api/fib", 0), 1)
        result.fib_ms = _summary([get("/api/fib", o) for o in offsets * 5])
        result.routes_ms = _summary([get("/api/routes", o) for o in offsets * 5])
        after = []
        gw = [p.NextHop(vm_port=PORT, gateway=GATEWAYS[0])]
        for i in range(20):  # a route comes, another goes, a page is read
            rt.add_routes(VM, [p.Route(prefix=f"9.{i}.0.0/16", nexthops=gw)])
            rt.delete_routes(VM, [prefixes[i * 997 % len(prefixes)]])
            after.append(get("/api/fib", offsets[i % len(offsets)]))
        result.after_change_ms = _summary(after)
    result.index_rebuilds = rt.prefix_index(VM).rebuilds
    result.rss_mb = round(_rss_mb(), 1)
    return result


def main_web(routes: int, table_path: str | None, json_path: str | None, console) -> int:
    import json

    table = None
    if table_path is not None:
        from routeflow.bench.table import TableError, read_table_file

        try:
            table = [e.prefix for e in read_table_file(table_path) if ":" not in e.prefix]
        except TableError as err:
            console.print(f"bench web: {err}")
            return 2
    with console.status(f"bench web: loading {len(table) if table else routes:,} routes"):
        result = run_web_bench(routes, table)
    r = result
    console.print(
        f"{r.routes:,} routes loaded in {r.load_s} s (process RSS {r.rss_mb} MB)\n"
        f"one sort of every FIB prefix (each request before the index): {r.sort_all_s} s\n"
        f"first /api/fib page (builds the index): {r.first_fib_ms} ms\n"
        f"/api/fib pages of {PAGE}: {r.fib_ms}\n"
        f"/api/routes pages of {PAGE}: {r.routes_ms}\n"
        f"/api/fib after each of 20 small changes: {r.after_change_ms} "
        f"(index sorted {r.index_rebuilds} time(s) in all)"
    )
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(asdict(result), fh, indent=1)
    return 0

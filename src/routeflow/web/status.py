"""`routeflow status`: the rfweb picture as terminal tables (reads the REST API)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:6680"

_STATE_STYLE = {
    "active": "green",
    "associated": "yellow",
    "idle_client": "dark_orange",
    "idle_datapath": "dark_orange",
    "down": "red",
}


class StatusError(RuntimeError):
    pass


def url_from_run_dir(run_dir: str) -> str:
    """The rfweb URL of a lab run's serving rfserver, from the run's manifest.

    A lab with a standby rfserver records every server's URL; only the leader
    serves rfweb, so the first that answers is the one.
    """
    path = os.path.join(run_dir, "manifest.json")
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise StatusError(f"cannot read {path}: {exc}") from exc
    url = manifest.get("web_url")
    candidates = list((manifest.get("web_urls") or {}).values())
    if len(candidates) > 1:
        for candidate in candidates:
            try:
                fetch(candidate, "/api/summary", timeout=1.0)
            except StatusError:
                continue
            return candidate
    if not url:
        raise StatusError(f"{path} has no web_url (a lab started without rfweb?)")
    return url


def fetch(base: str, path: str, token: str | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(base.rstrip("/") + path, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise StatusError(f"{base}{path}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError(f"cannot reach rfweb at {base}: {reason}") from exc


def collect(base: str, token: str | None = None, events: int = 10) -> dict[str, Any]:
    return {
        "summary": fetch(base, "/api/summary", token),
        "associations": fetch(base, "/api/associations", token),
        "vms": fetch(base, "/api/vms", token),
        "switches": fetch(base, "/api/switches", token),
        "flows": fetch(base, "/api/flows", token),
        "controllers": fetch(base, "/api/controllers", token),
        "events": fetch(base, f"/api/events?limit={events}", token),
        "links": fetch(base, "/api/links", token),
    }


def _ago(t: float | None) -> str:
    if t is None:
        return "never"
    return f"{max(0.0, time.time() - t):.0f} s ago"


def _state(code: str, text: str | None = None) -> str:
    return f"[{_STATE_STYLE.get(code, 'white')}]{text or code}[/]"


def render(console: Console, data: dict[str, Any], base: str) -> None:
    s = data["summary"]
    up = time.time() - s["started"]
    console.print(
        f"[bold]rfserver[/bold] {base} pid {s['pid']}, up {up / 60:.0f} min"
        + (f", lab [bold]{s['lab']}[/bold]" if s.get("lab") else "")
    )
    by_state = s["associations_by_state"]
    console.print(
        f"switches {s['switches_registered']}/{s['switches']}  "
        f"VMs {s['vms_connected']}/{s['vms']}  "
        f"associations active {by_state.get('active', 0)}/{s['associations']}  "
        f"routes {s['routes']}  FIB {s['fib_entries']}  next hops {s['nexthops']}  "
        f"flow packets {s['flow_packets']}  "
        f"relayed to VMs/switches {s['relayed_to_vm']}/{s['relayed_to_dp']}  "
        f"links {s.get('links', 0)}"
    )

    t = Table(title="associations", title_justify="left")
    for col in ("vm_id", "port", "if", "dp_id", "port", "name", "vs port", "state"):
        t.add_column(col)
    for a in data["associations"]:
        t.add_row(
            a["vm_id"] or "-",
            str(a["vm_port"] if a["vm_port"] is not None else "-"),
            a["vm_ifname"],
            a["dp_id"] or "-",
            str(a["dp_port"] if a["dp_port"] is not None else "-"),
            a["dp_port_name"],
            f"{a['vs_id']}:{a['vs_port']}" if a["vs_port"] is not None else "-",
            _state(a["state_code"], a["state"]),
        )
    console.print(t)

    # Counts only: a VM with a full table has a million routes (see /api/routes?limit=).
    t = Table(title="routes", title_justify="left")
    for col in ("vm", "name", "routes", "FIB entries"):
        t.add_column(col, justify="right" if col not in ("vm", "name") else "left")
    for v in data["vms"]:
        t.add_row(v["vm_id"], v["name"], str(v["routes"]), str(v.get("fib_entries", "-")))
    console.print(t)

    sw_names = {s["dp_id"]: s["name"] for s in data["switches"]}
    fib = {s["dp_id"]: s["fib_entries"] for s in data["switches"]}
    t = Table(title="flows", title_justify="left")
    for col in ("switch", "name", "flows", "FIB flows", "FIB entries", "packets", "bytes", "stats"):
        t.add_column(col, justify="right" if col not in ("switch", "name", "stats") else "left")
    for f in data["flows"]:
        t.add_row(
            f["dp_id"],
            sw_names.get(f["dp_id"], ""),
            str(len(f["flows"])),
            str(sum(1 for x in f["flows"] if x["table"] == 1)),
            str(fib.get(f["dp_id"], 0)),
            str(f["packets"]),
            str(f["bytes"]),
            _ago(f["stats_time"]),
        )
    console.print(t)

    t = Table(title="controllers", title_justify="left")
    for col in ("ct_id", "state", "peer", "sessions", "switches", "last stats"):
        t.add_column(col)
    for c in data["controllers"]:
        t.add_row(
            str(c["ct_id"]),
            _state("active", "connected") if c["connected"] else _state("down"),
            c["peer"] or "",
            str(c["sessions"]),
            " ".join(c["switches"]),
            _ago(c["last_stats_time"]),
        )
    console.print(t)

    if data.get("links"):
        t = Table(title="discovered links", title_justify="left")
        for col in ("from", "port", "name", "to", "port", "name", "both ways", "ct", "since"):
            t.add_column(col)
        for k in data["links"]:
            t.add_row(
                k["src_dp_id"],
                str(k["src_port"]),
                k["src_port_name"],
                k["dst_dp_id"],
                str(k["dst_port"]),
                k["dst_port_name"],
                "yes" if k["reverse"] else _state("idle_client", "one-way"),
                str(k["ct_id"]),
                _ago(k["since"]) if k["confirmed"] else _state("idle_client", "stored"),
            )
        console.print(t)

    t = Table(title="recent events", title_justify="left")
    t.add_column("time")
    t.add_column("kind")
    t.add_column("event")
    for e in data["events"]:
        t.add_row(time.strftime("%H:%M:%S", time.localtime(e["time"])), e["kind"], e["text"])
    console.print(t)


def main(
    url: str | None,
    run_dir: str | None,
    token: str | None,
    as_json: bool,
    events: int,
    console: Console,
) -> int:
    try:
        base = url or (url_from_run_dir(run_dir) if run_dir else None)
        base = base or os.environ.get("ROUTEFLOW_URL") or DEFAULT_URL
        data = collect(base, token, events)
    except StatusError as exc:
        console.print(f"{exc}", style="red", markup=False, highlight=False)
        return 1
    if as_json:
        console.print_json(json.dumps(data))
    else:
        render(console, data, base)
    return 0

"""`routeflow show ...`: one table of a running rfserver at a time, vtysh-style.

Reads rfweb's REST API (rfserver's ``--web``; 127.0.0.1:6680 in the sample config),
which an operator on the controller host reaches without credentials: reads need no
token. Human tables by default, the API's own JSON with ``--json``; the exit code
tells a script whether there was anything to show (see ``EXIT_CODES``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:6680"
OK, EMPTY, USAGE, UNREACHABLE = 0, 1, 2, 3
EXIT_CODES = f"""\b
Exit codes:
  {OK}  rows shown
  {EMPTY}  nothing to show: no rows, or no such VM or switch
  {USAGE}  usage error (bad option or id)
  {UNREACHABLE}  rfserver not reachable (not running, no --web, wrong --url) or broken answer
"""
#: The association states the API filters on (web/views.py ALL_STATE_CODES; a test
#: keeps them equal: importing views here would load the server for `routeflow --help`).
STATE_CODES = ("active", "associated", "idle_client", "idle_datapath", "down")
_STATE_STYLE = {"active": "green", "associated": "yellow", "down": "red"}


class ShowError(Exception):
    """A request that produced no table; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- talking to rfweb ------------------------------------------------------------------


def get(base: str, path: str, params: dict[str, Any], timeout: float) -> tuple[Any, int | None]:
    """GET an API document: (the JSON, X-Total-Count if the list is paged)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = base.rstrip("/") + path + (f"?{query}" if query else "")
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            total = resp.headers.get("X-Total-Count")
            return json.load(resp), int(total) if total is not None else None
    except urllib.error.HTTPError as exc:
        detail = _detail(exc)
        if exc.code == 404:
            raise ShowError(detail, EMPTY) from None
        if exc.code == 422:
            raise ShowError(f"rfserver refused the request: {detail}", USAGE) from None
        raise ShowError(f"{url}: HTTP {exc.code} {detail}", UNREACHABLE) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ShowError(f"cannot reach rfserver's rfweb at {base}: {reason}", UNREACHABLE) from None
    except ValueError as exc:  # not JSON: something else listens there
        raise ShowError(f"{url}: not an rfweb answer ({exc})", UNREACHABLE) from None


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.load(exc)
    except ValueError:
        return exc.reason
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(map(str, d.get('loc', ())))}: {d.get('msg')}" for d in detail)
    return str(detail or exc.reason)


# --- tables (pure: API rows in, a rich Table out) ---------------------------------------


def _s(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _state(code: str, text: str | None = None) -> str:
    return f"[{_STATE_STYLE.get(code, 'dark_orange')}]{text or code}[/]"


def _when(t: float | None) -> str:
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def associations_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="associations", title_justify="left")
    for col in ("vm_id", "vm_port", "ifname", "ct_id", "dp_id", "dp_port", "port name"):
        t.add_column(col, justify="right" if col.endswith(("port", "ct_id")) else "left")
    t.add_column("vs_id:port")
    t.add_column("state")
    for a in rows:
        t.add_row(
            _s(a["vm_id"]),
            _s(a["vm_port"]),
            _s(a["vm_ifname"]),
            _s(a["ct_id"]),
            _s(a["dp_id"]),
            _s(a["dp_port"]),
            _s(a["dp_port_name"]),
            f"{a['vs_id']}:{a['vs_port']}" if a["vs_port"] is not None else "-",
            _state(a["state_code"]),
        )
    return t


def _nexthops(hops: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"port {h['vm_port']}"
        + (f" via {h['gateway']}" if h.get("gateway") else "")
        + (f" weight {h['weight']}" if h.get("weight", 1) != 1 else "")
        for h in hops
    )


def routes_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="routes (as the VMs reported them)", title_justify="left")
    for col in ("vm_id", "prefix", "kind", "next hops", "installed"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["vm_id"],
            r["prefix"],
            r["kind"],
            _nexthops(r["nexthops"]),
            "[green]yes[/]" if r["installed"] else "[yellow]no[/]",
        )
    return t


def fib_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="FIB (entries rfserver asked the switches to hold)", title_justify="left")
    for col in ("ct_id", "dp_id", "prefix", "kind", "next hop", "dp_port"):
        t.add_column(col, justify="right" if col in ("ct_id", "next hop", "dp_port") else "left")
    for f in rows:
        t.add_row(
            str(f["ct_id"]),
            f["dp_id"],
            f["prefix"],
            f["kind"],
            str(f["nexthop_id"]),
            str(f["dp_port"]),
        )
    return t


def flows_table(switches: list[dict[str, Any]]) -> Table:
    t = Table(title="flows (the switches' last statistics)", title_justify="left")
    for col in ("dp_id", "table", "priority", "cookie", "match", "actions", "packets", "bytes"):
        t.add_column(
            col, justify="right" if col in ("table", "priority", "packets", "bytes") else "left"
        )
    for sw in switches:
        for f in sw["flows"]:
            t.add_row(
                sw["dp_id"],
                str(f["table"]),
                str(f["priority"]),
                f"{f['cookie']:#x}",
                f["match"] or "*",
                f["actions"] or "drop",
                str(f["packets"]),
                str(f["bytes"]),
            )
    return t


def controllers_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="controllers (rfproxy)", title_justify="left")
    for col in ("ct_id", "state", "peer", "master", "replicas", "switches", "sessions"):
        t.add_column(col, justify="right" if col in ("ct_id", "sessions") else "left")
    t.add_column("last stats")
    for c in rows:
        replicas = c.get("replicas") or {}
        t.add_row(
            str(c["ct_id"]),
            _state("active", "connected") if c["connected"] else _state("down"),
            _s(c["peer"]),
            _s(c.get("master")),
            ", ".join(f"{name} ({role or '?'})" for name, role in sorted(replicas.items())) or "-",
            " ".join(c["switches"]) or "-",
            str(c["sessions"]),
            _when(c["last_stats_time"]),
        )
    return t


def events_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="events (oldest first)", title_justify="left")
    for col in ("time", "kind", "event"):
        t.add_column(col)
    for e in rows:
        t.add_row(_when(e["time"]), e["kind"], e["text"])
    return t


# --- the commands ----------------------------------------------------------------------


class IdType(click.ParamType):
    """A VM or datapath id: hex with 0x (0x5) or decimal (5), up to 64 bits."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            number = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            self.fail(f"{value!r} is not an id (0x5 or 5)", param, ctx)
        if not 0 <= number < 2**64:
            self.fail(f"{value!r} is outside 0..2**64-1", param, ctx)
        return number


ID = IdType()


def _run(
    as_json: bool,
    url: str | None,
    run_dir: str | None,
    timeout: float,
    path: str,
    params: dict[str, Any],
    table: Callable[[list[dict[str, Any]]], Table],
    rows_of: Callable[[Any], list[Any]] = lambda data: data,
) -> None:
    console = Console(stderr=False)
    err = Console(stderr=True)
    try:
        base = _base(url, run_dir)
        data, total = get(base, path, params, timeout)
    except ShowError as exc:
        err.print(f"routeflow show: {exc}", style="red", markup=False, highlight=False)
        sys.exit(exc.code)
    rows = rows_of(data)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif rows:
        console.print(table(data))
    if total is not None and total > len(data):
        err.print(f"{len(data)} of {total} rows shown (--limit 0 shows all)", highlight=False)
    if not rows:
        if not as_json:
            err.print("nothing to show", highlight=False)
        sys.exit(EMPTY)


def _base(url: str | None, run_dir: str | None) -> str:
    if url:
        return url
    if run_dir:
        from routeflow.web.status import StatusError, url_from_run_dir

        try:
            return url_from_run_dir(run_dir)
        except StatusError as exc:
            raise ShowError(str(exc), UNREACHABLE) from None
    return os.environ.get("ROUTEFLOW_URL") or DEFAULT_URL


def _common(f: Callable[..., None]) -> Callable[..., None]:
    for option in (
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 300),
            default=5.0,
            show_default=True,
            help="seconds to wait for rfserver",
        ),
        click.option("--run-dir", default=None, help="a lab run directory: its rfserver"),
        click.option(
            "--url",
            default=None,
            help=f"rfserver's rfweb (its --web) [$ROUTEFLOW_URL, {DEFAULT_URL}]",
        ),
        click.option("--json", "as_json", is_flag=True, help="print the API's JSON (for scripts)"),
    ):
        f = option(f)
    return f


def _limit(f: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--limit",
        type=click.IntRange(0, 1_000_000),
        default=1000,
        show_default=True,
        help="at most this many rows (0: all; a full table is a million)",
    )(f)


@click.group(epilog=EXIT_CODES)
def show() -> None:
    """Show a running rfserver's state, one table at a time (reads its rfweb REST API)."""


@show.command("associations", epilog=EXIT_CODES)
@click.option("--state", type=click.Choice(STATE_CODES), default=None, help="only this state")
@_common
def show_associations(state, as_json, url, run_dir, timeout) -> None:
    """The association table: VM port <-> switch port, and its state."""
    _run(as_json, url, run_dir, timeout, "/api/associations", {"state": state}, associations_table)


@show.command("routes", epilog=EXIT_CODES)
@click.option("--vm", "vm_id", type=ID, default=None, help="only this VM (vm_id)")
@_limit
@_common
def show_routes(vm_id, limit, as_json, url, run_dir, timeout) -> None:
    """Routes the VMs reported, and whether rfserver installed them."""
    params = {"vm_id": None if vm_id is None else f"{vm_id:#x}", "limit": limit or None}
    _run(as_json, url, run_dir, timeout, "/api/routes", params, routes_table)


@show.command("fib", epilog=EXIT_CODES)
@click.option("--dp", "dp_id", type=ID, default=None, help="only this switch (dp_id)")
@_limit
@_common
def show_fib(dp_id, limit, as_json, url, run_dir, timeout) -> None:
    """FIB entries rfserver asked the switches to hold."""
    params = {"dp_id": None if dp_id is None else f"{dp_id:#x}", "limit": limit or None}
    _run(as_json, url, run_dir, timeout, "/api/fib", params, fib_table)


@show.command("flows", epilog=EXIT_CODES)
@click.option("--dp", "dp_id", type=ID, default=None, help="only this switch (dp_id)")
@click.option("--table", type=click.IntRange(0, 255), default=None, help="only this table")
@_common
def show_flows(dp_id, table, as_json, url, run_dir, timeout) -> None:
    """The switches' flows with their counters (from their last statistics report)."""
    params = {"dp_id": None if dp_id is None else f"{dp_id:#x}", "table": table}
    _run(
        as_json,
        url,
        run_dir,
        timeout,
        "/api/flows",
        params,
        flows_table,
        rows_of=lambda switches: [f for sw in switches for f in sw["flows"]],
    )


@show.command("controllers", epilog=EXIT_CODES)
@_common
def show_controllers(as_json, url, run_dir, timeout) -> None:
    """Controllers (rfproxy instances): connection, OpenFlow master, switches."""
    _run(as_json, url, run_dir, timeout, "/api/controllers", {}, controllers_table)


@show.command("events", epilog=EXIT_CODES)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--kind", default=None, help="only this kind (client, switch, controller, ...)")
@_common
def show_events(limit, kind, as_json, url, run_dir, timeout) -> None:
    """Recent events (registrations, associations, disconnects), oldest first."""
    _run(
        as_json, url, run_dir, timeout, "/api/events", {"limit": limit, "kind": kind}, events_table
    )

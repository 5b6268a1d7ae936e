"""rfweb: the REST API, the live page and /metrics of a running rfserver.

``create_app(server)`` builds a FastAPI application that only reads from the
server object (through views.py); it runs inside rfserver's own event loop
(see service.py), so every answer is the server's state at that instant, with
no copies to keep in sync.

Everything is readable without credentials. Anything that changes state
(today: POST /api/config/reload) needs ``Authorization: Bearer <token>`` and
is disabled (403) unless rfserver was given a token.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from routeflow.server.view import operator_view, status_document
from routeflow.web import metrics, views

if TYPE_CHECKING:
    from routeflow.server.service import RFServer
    from routeflow.web.tenant import TenantSource

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
ID_PATTERN = r"^(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,19})$"
ID_HELP = "hex with 0x, up to 16 digits (0x5), or decimal, up to 19 digits (5)"
KEEPALIVE_S = 15.0

StateCode = Enum("StateCode", {c: c for c in views.ALL_STATE_CODES}, type=str)
StateCode.__doc__ = "Association state: active, associated, idle_client, idle_datapath, down"


# --- response models (the OpenAPI document; views.py builds the data) ----------------


class TenantView(BaseModel):
    """The Tenants tab (web/tenant.py): from the tenant server's API when configured."""

    configured: bool
    source: str | None = None
    error: str | None = None
    networks: list[dict[str, Any]] = []
    routers: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    floating_ips: list[dict[str, Any]] = []


class Association(BaseModel):
    vm_id: str | None
    vm_port: int | None
    vm_ifname: str
    ct_id: int | None
    dp_id: str | None
    dp_port: int | None
    dp_port_name: str
    vs_id: str | None
    vs_port: int | None
    hwaddress: str | None
    state: str
    state_code: StateCode
    configured: bool


class NextHop(BaseModel):
    vm_port: int
    gateway: str | None
    weight: int


class RouteOut(BaseModel):
    vm_id: str
    prefix: str
    kind: Literal["unicast", "connected", "local"]
    nexthops: list[NextHop]
    installed: bool


class FibOut(BaseModel):
    ct_id: int
    dp_id: str
    prefix: str
    kind: Literal["unicast", "connected", "local"]
    nexthop_id: int
    dp_port: int


class FlowOut(BaseModel):
    table: int
    priority: int
    cookie: int
    match: str
    actions: str
    packets: int
    bytes: int


class SwitchFlows(BaseModel):
    ct_id: int
    dp_id: str
    stats_time: float
    flows: list[FlowOut]
    packets: int
    bytes: int
    relayed_to_vm: int
    relayed_to_dp: int
    relay_dropped: int


class PortOut(BaseModel):
    dp_port: int | None
    name: str
    vm_id: str | None
    vm_port: int | None
    state: str
    state_code: StateCode
    link_up: bool


class SwitchOut(BaseModel):
    dp_id: str
    ct_id: int | None
    name: str
    registered: bool
    controller_connected: bool
    ports: list[PortOut]
    fib_entries: int
    flows: int
    packets: int
    bytes: int
    stats_time: float | None


class InterfaceOut(BaseModel):
    vm_port: int | None
    ifname: str
    hwaddress: str | None
    dp_id: str | None
    dp_port: int | None
    state: str
    state_code: StateCode


class VmOut(BaseModel):
    vm_id: str
    name: str
    connected: bool
    peer: str | None
    sessions: int
    dp_id: str | None
    interfaces: list[InterfaceOut]
    routes: int
    #: FIB entries on its switch for its routes and resolved neighbours (host routes)
    fib_entries: int = 0


class ControllerOut(BaseModel):
    ct_id: int
    connected: bool
    peer: str | None
    sessions: int
    switches: list[str]
    last_stats_time: float | None
    #: The rfproxy replica rfserver made OpenFlow master (None: none connected).
    master: str | None = None
    #: Connected replicas and their roles ("master" | "slave" | "" not yet told).
    replicas: dict[str, str] = {}
    #: OpenFlow role generation id of the current master.
    generation: int = 0


class LinkOut(BaseModel):
    """A switch-to-switch link rfproxy discovered, one direction (its probes src -> dst)."""

    src_dp_id: str
    src_port: int
    src_port_name: str
    dst_dp_id: str
    dst_port: int
    dst_port_name: str
    #: The controller that heard it (the destination switch's).
    ct_id: int
    since: float
    #: Reported since rfserver started (else: remembered from the state store).
    confirmed: bool
    #: The opposite direction is discovered too.
    reverse: bool


class EventOut(BaseModel):
    time: float
    kind: str
    text: str


class Summary(BaseModel):
    pid: int
    started: float
    lab: str | None
    switches: int
    switches_registered: int
    vms: int
    vms_connected: int
    clients: int
    controllers: int
    associations: int
    associations_by_state: dict[str, int]
    routes: int
    fib_entries: int
    nexthops: int
    flows: int
    flow_packets: int
    flow_bytes: int
    relayed_to_vm: int
    relayed_to_dp: int
    messages_received: int
    messages_sent: int
    reconnects: dict[str, int]
    #: Discovered switch-to-switch links (cables: both directions count once).
    links: int = 0


class GraphNode(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    kind: Literal["switch", "vm", "host"]
    label: str
    state: str


class GraphEdge(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    source: str
    target: str
    kind: str
    state: str = "unknown"


class Topology(BaseModel):
    name: str | None
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class ReloadResult(BaseModel):
    ok: bool
    errors: list[str]


class Detail(BaseModel):
    detail: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Detail, "description": "unknown id"}}


# --- helpers ----------------------------------------------------------------------


def _id(value: str | None, field: str, where: str = "path") -> int | None:
    """Turn a validated id string into an int, or answer 422 naming the field."""
    if value is None:
        return None
    try:
        return views.parse_id(value)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": (where, field), "msg": str(exc), "input": value}]
        ) from None


_bearer = HTTPBearer(auto_error=False, description="the token given to rfserver")

IdPath = Annotated[str, Path(pattern=ID_PATTERN, description=ID_HELP, examples=["0x5"])]


#: Paging of the lists that grow with the routing table (a full table is a
#: million rows): X-Total-Count says how many there are in all.
Limit = Annotated[
    int | None, Query(ge=1, le=1_000_000, description="at most this many rows (default: all)")
]
Offset = Annotated[int, Query(ge=0, description="skip this many rows first")]


def _paged(response: Response, model, page: tuple[list[dict], int]) -> list:
    """One page of rows as ``model``s, the total in the X-Total-Count header."""
    rows, total = page
    response.headers["X-Total-Count"] = str(total)
    return [model(**r) for r in rows]


def _id_query(description: str):
    return Query(pattern=ID_PATTERN, description=f"{description}: {ID_HELP}")


def create_app(
    server: RFServer,
    *,
    token: str | None = None,
    topology: dict[str, Any] | None = None,
    tenant: TenantSource | None = None,
) -> FastAPI:
    """The rfweb application for ``server`` (an RFServer, read-only apart from reload);
    ``tenant`` feeds the Tenants tab (/api/tenant)."""
    app = FastAPI(
        title="routeflow rfserver",
        version="1",
        description=(
            "Live state of a routeflow rfserver: switches, VMs, the association table, "
            "routes, flows and their counters, controllers, recent events and the topology. "
            "Reading needs no credentials; changing state needs `Authorization: Bearer <token>` "
            "and is disabled unless rfserver runs with --web-token or --web-token-file."
        ),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: not at run time
        redoc_url=None,
    )
    app.state.server = server
    app.state.topology = topology
    app.state.closing = False
    registry = metrics.make_registry(server)

    def require_token(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if not token:
            raise HTTPException(
                403, "state-changing endpoints are disabled: rfserver has no --web-token"
            )
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "wrong token", headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        )
        return response

    # --- page ---------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(os.path.join(STATIC_DIR, "index.html"))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["meta"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # --- reads --------------------------------------------------------------------

    @app.get("/api/summary", tags=["state"], summary="Counts at a glance")
    def summary() -> Summary:
        return Summary(**views.summary(operator_view(server), topology))

    @app.get("/api/tenant", tags=["tenant"], summary="Tenant networks, routers, ports per node")
    async def tenant_networks() -> TenantView:
        if tenant is None:
            return TenantView(configured=False)
        view = await tenant.fetch()
        return TenantView(configured=True, source=tenant.url, **view)

    @app.get("/api/status", tags=["state"], summary="rfserver's own status snapshot")
    def status() -> dict[str, Any]:
        return status_document(operator_view(server))

    @app.get("/api/switches", tags=["switches"], summary="Switches and their ports")
    def switches() -> list[SwitchOut]:
        return [SwitchOut(**s) for s in views.switches(operator_view(server), topology)]

    def _switch(dp: int) -> dict[str, Any]:
        for s in views.switches(operator_view(server), topology):
            if s["dp_id"] == views.hexid(dp):
                return s
        raise HTTPException(404, f"no switch with dp_id {dp:#x}")

    @app.get("/api/switches/{dp_id}", tags=["switches"], summary="One switch", responses=NOT_FOUND)
    def switch(dp_id: IdPath) -> SwitchOut:
        return SwitchOut(**_switch(_id(dp_id, "dp_id")))

    @app.get(
        "/api/switches/{dp_id}/flows",
        tags=["switches"],
        summary="A switch's flows with packet and byte counters",
        responses=NOT_FOUND,
    )
    def switch_flows(
        dp_id: IdPath,
        table: Annotated[int | None, Query(ge=0, le=255, description="only this table")] = None,
    ) -> SwitchFlows:
        dp = _id(dp_id, "dp_id")
        found = views.flows(operator_view(server), dp, table)
        if not found:
            _switch(dp)  # 404 if the switch is unknown
            raise HTTPException(404, f"no flow statistics from switch {dp:#x} yet")
        return SwitchFlows(**found[0])

    @app.get("/api/vms", tags=["vms"], summary="VMs and their interfaces")
    def vms() -> list[VmOut]:
        return [VmOut(**v) for v in views.vms(operator_view(server), topology)]

    @app.get("/api/vms/{vm_id}", tags=["vms"], summary="One VM", responses=NOT_FOUND)
    def vm(vm_id: IdPath) -> VmOut:
        ident = views.hexid(_id(vm_id, "vm_id"))
        for v in views.vms(operator_view(server), topology):
            if v["vm_id"] == ident:
                return VmOut(**v)
        raise HTTPException(404, f"no VM with vm_id {ident}")

    @app.get("/api/vms/{vm_id}/routes", tags=["vms"], summary="A VM's routes", responses=NOT_FOUND)
    def vm_routes(
        vm_id: IdPath, response: Response, limit: Limit = None, offset: Offset = 0
    ) -> list[RouteOut]:
        vm_int = _id(vm_id, "vm_id")
        if not any(v.vm_id == vm_int for v in operator_view(server).vms):
            raise HTTPException(404, f"no VM with vm_id {vm_int:#x}")
        return _paged(response, RouteOut, views.routes(server, vm_int, limit, offset))

    @app.get("/api/associations", tags=["state"], summary="The association table")
    def associations(
        state: Annotated[StateCode | None, Query(description="only rows in this state")] = None,
    ) -> list[Association]:
        rows = views.associations(operator_view(server))
        if state is not None:
            rows = [r for r in rows if r["state_code"] == state.value]
        return [Association(**r) for r in rows]

    @app.get("/api/routes", tags=["state"], summary="Routes per VM (as the VMs reported them)")
    def routes(
        response: Response,
        vm_id: Annotated[str | None, _id_query("only this VM")] = None,
        limit: Limit = None,
        offset: Offset = 0,
    ) -> list[RouteOut]:
        page = views.routes(server, _id(vm_id, "vm_id", "query"), limit, offset)
        return _paged(response, RouteOut, page)

    @app.get("/api/fib", tags=["state"], summary="FIB entries rfserver asked switches to hold")
    def fib(
        response: Response,
        dp_id: Annotated[str | None, _id_query("only this switch")] = None,
        limit: Limit = None,
        offset: Offset = 0,
    ) -> list[FibOut]:
        return _paged(
            response, FibOut, views.fib(server, _id(dp_id, "dp_id", "query"), limit, offset)
        )

    @app.get("/api/flows", tags=["switches"], summary="Flows and counters of every switch")
    def flows(
        dp_id: Annotated[str | None, _id_query("only this switch")] = None,
        table: Annotated[int | None, Query(ge=0, le=255, description="only this table")] = None,
    ) -> list[SwitchFlows]:
        found = views.flows(operator_view(server), _id(dp_id, "dp_id", "query"), table)
        return [SwitchFlows(**f) for f in found]

    @app.get("/api/controllers", tags=["state"], summary="Controllers (rfproxy instances)")
    def controllers() -> list[ControllerOut]:
        return [ControllerOut(**c) for c in views.controllers(operator_view(server))]

    @app.get("/api/links", tags=["switches"], summary="Discovered switch-to-switch links")
    def links() -> list[LinkOut]:
        return [LinkOut(**row) for row in views.links(operator_view(server))]

    @app.get("/api/events", tags=["state"], summary="Recent events, oldest first")
    def events(
        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
        kind: Annotated[
            str | None,
            Query(pattern=r"^[a-z_]{1,32}$", description="only this kind (client, switch, ...)"),
        ] = None,
    ) -> list[EventOut]:
        return [EventOut(**e) for e in views.events(operator_view(server), limit, kind)]

    @app.get("/api/topology", tags=["state"], summary="Graph: switches, VMs, hosts, links")
    def topo() -> Topology:
        return Topology(**views.topology(operator_view(server), topology))

    @app.get(
        "/api/stream",
        tags=["state"],
        summary="Server-sent events: a full snapshot whenever anything changes",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        interval: Annotated[
            float, Query(ge=0.1, le=60.0, description="seconds between checks")
        ] = 1.0,
        max_events: Annotated[
            int | None, Query(ge=1, le=1_000_000, description="end after this many snapshots")
        ] = None,
    ) -> StreamingResponse:
        async def generate():
            last = None
            sent = 0
            last_write = time.monotonic()
            while not app.state.closing:
                body = json.dumps(views.snapshot(server, topology), separators=(",", ":"))
                if body != last:
                    last = body
                    sent += 1
                    last_write = time.monotonic()
                    yield f"event: snapshot\nid: {sent}\ndata: {body}\n\n"
                    if max_events is not None and sent >= max_events:
                        return
                elif time.monotonic() - last_write >= KEEPALIVE_S:
                    last_write = time.monotonic()
                    yield ": keepalive\n\n"
                await asyncio.sleep(interval)
                if await request.is_disconnected():
                    return

        return StreamingResponse(
            generate(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/metrics",
        tags=["meta"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)

    # --- changes (need the token) ----------------------------------------------------

    @app.post(
        "/api/config/reload",
        tags=["config"],
        summary="Re-read the mapping CSV (like SIGHUP)",
        dependencies=[Depends(require_token)],
        responses={
            401: {"model": Detail, "description": "missing or wrong token"},
            403: {"model": Detail, "description": "no token configured: changes disabled"},
            409: {"model": ReloadResult, "description": "the new config was refused"},
        },
    )
    async def reload_config() -> ReloadResult:
        errors = server.reload_config()
        if errors:
            return JSONResponse(  # type: ignore[return-value]
                ReloadResult(ok=False, errors=errors).model_dump(), status_code=409
            )
        return ReloadResult(ok=True, errors=[])

    return app

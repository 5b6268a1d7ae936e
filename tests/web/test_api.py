"""REST API against a real RFServer fed through IPC (see conftest for the states)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from routeflow.rflib.store import MemoryStore
from routeflow.server.config import dump_config
from routeflow.server.service import RFServer
from routeflow.web.api import create_app

from .conftest import CONFIG, MAC1, TOKEN, VM


def _by(rows, **want):
    return [r for r in rows if all(r.get(k) == v for k, v in want.items())]


def test_summary(client):
    s = client.get("/api/summary").json()
    assert s["lab"] == "webtest"
    assert s["associations_by_state"] == {
        "active": 1,
        "associated": 1,
        "idle_client": 1,
        "idle_datapath": 1,
        "down": 1,
    }
    assert s["clients"] == 1 and s["controllers"] == 1
    assert s["vms"] == 2 and s["vms_connected"] == 1
    assert s["switches"] == 2 and s["switches_registered"] == 1
    assert s["routes"] == 3
    assert s["flow_packets"] == 112
    assert s["relayed_to_vm"] == 11 and s["relayed_to_dp"] == 13
    assert s["messages_received"] > 0 and s["messages_sent"] > 0


def test_association_table_has_every_state(client):
    rows = client.get("/api/associations").json()
    active = _by(rows, state_code="active")
    assert len(active) == 1
    a = active[0]
    assert (a["vm_id"], a["vm_port"], a["dp_id"], a["dp_port"]) == ("0x5", 1, "0x5", 1)
    assert a["vm_ifname"] == "eth1" and a["dp_port_name"] == "s1-eth1"
    assert a["hwaddress"] == MAC1 and a["vs_port"] == 1
    assert a["state"] == "active client-datapath association"
    assert _by(rows, state_code="associated")[0]["vm_port"] == 2
    assert _by(rows, state_code="idle_client")[0]["vm_port"] == 3
    idle_dp = _by(rows, state_code="idle_datapath")[0]
    assert idle_dp["dp_port"] == 9 and idle_dp["configured"] is False
    down = _by(rows, state_code="down")[0]
    assert (down["vm_id"], down["dp_id"]) == ("0x6", "0x6")
    only = client.get("/api/associations", params={"state": "active"}).json()
    assert only == active


def test_switches_and_ports(client):
    sws = {s["dp_id"]: s for s in client.get("/api/switches").json()}
    assert set(sws) == {"0x5", "0x6"}
    a = sws["0x5"]
    assert a["name"] == "A" and a["registered"] and a["controller_connected"]
    ports = {p["dp_port"]: p for p in a["ports"]}
    assert ports[1]["name"] == "s1-eth1" and ports[1]["state_code"] == "active"
    assert ports[9]["state_code"] == "idle_datapath"
    assert a["flows"] == 3 and a["packets"] == 112 and a["fib_entries"] >= 3
    assert not sws["0x6"]["registered"]
    assert client.get("/api/switches/0x5").json() == a
    assert client.get("/api/switches/5").json() == a  # decimal works too


def test_vms_and_interfaces(client):
    vms = {v["vm_id"]: v for v in client.get("/api/vms").json()}
    v = vms["0x5"]
    assert v["name"] == "vm-A" and v["connected"] and v["sessions"] == 1
    assert v["dp_id"] == "0x5" and v["routes"] == 3
    assert v["fib_entries"] == 4  # its 3 routes and the resolved neighbour's host route
    assert [i["ifname"] for i in v["interfaces"]] == ["eth1", "eth2", "eth3"]
    assert not vms["0x6"]["connected"]
    assert client.get(f"/api/vms/{VM:#x}").json() == v


def test_routes_and_fib(client):
    routes = client.get("/api/routes").json()
    by_prefix = {r["prefix"]: r for r in routes}
    assert by_prefix["10.9.0.0/16"]["kind"] == "unicast"
    assert by_prefix["10.9.0.0/16"]["nexthops"] == [
        {"vm_port": 1, "gateway": "172.31.1.2", "weight": 1}
    ]
    assert by_prefix["172.31.1.0/24"]["kind"] == "connected"
    assert all(r["installed"] for r in routes)  # port 1 is active
    assert client.get("/api/routes", params={"vm_id": "0x5"}).json() == routes
    assert client.get("/api/routes", params={"vm_id": "0x6"}).json() == []
    assert client.get("/api/vms/0x5/routes").json() == routes
    page = client.get("/api/routes", params={"limit": 1, "offset": 1})
    assert page.json() == routes[1:2] and page.headers["X-Total-Count"] == str(len(routes))
    assert client.get("/api/fib", params={"limit": 0}).status_code == 422
    fib = client.get("/api/fib", params={"dp_id": "0x5"}).json()
    assert {"10.9.0.0/16", "172.31.1.0/24", "172.31.1.1/32"} <= {f["prefix"] for f in fib}
    unicast = _by(fib, prefix="10.9.0.0/16")[0]
    assert unicast["nexthop_id"] > 0


def test_flows_with_counters(client):
    flows = client.get("/api/flows").json()
    assert len(flows) == 1 and flows[0]["dp_id"] == "0x5"
    assert flows[0]["relayed_to_vm"] == 11
    fib = client.get("/api/switches/0x5/flows", params={"table": 1}).json()
    assert [f["packets"] for f in fib["flows"]] == [5, 100]  # by priority, highest first
    assert fib["packets"] == 105
    assert client.get("/api/flows", params={"dp_id": "0x6"}).json() == []
    r = client.get("/api/switches/0x6/flows")
    assert r.status_code == 404 and "no flow statistics" in r.json()["detail"]


def test_controllers_and_events(client):
    (ct,) = client.get("/api/controllers").json()
    assert ct["ct_id"] == 1 and ct["connected"] and ct["sessions"] == 1
    assert ct["switches"] == ["0x5", "0x6"] and ct["last_stats_time"] is not None
    # One replica (an old-style register names none): it is the OpenFlow master.
    assert ct["master"] == "ct1" and ct["replicas"] == {"ct1": "master"}, ct
    assert ct["generation"] >= 1, ct
    events = client.get("/api/events").json()
    kinds = {e["kind"] for e in events}
    assert {"client", "controller", "association"} <= kinds
    assert len(client.get("/api/events", params={"limit": 1}).json()) == 1
    only = client.get("/api/events", params={"kind": "association"}).json()
    assert only and all(e["kind"] == "association" for e in only)


def test_topology_merges_file_and_live_state(client):
    t = client.get("/api/topology").json()
    nodes = {n["id"]: n for n in t["nodes"]}
    assert set(nodes) == {"sw-0x5", "sw-0x6", "vm-0x5", "vm-0x6", "host-h1"}
    assert nodes["sw-0x5"]["state"] == "up" and nodes["sw-0x6"]["state"] == "down"
    assert nodes["vm-0x5"]["state"] == "up" and nodes["vm-0x6"]["state"] == "down"
    assert nodes["host-h1"]["state"] == "up"
    edges = {(e["source"], e["target"], e["kind"]): e for e in t["edges"]}
    assert edges[("vm-0x5", "sw-0x5", "association")]["state"] == "associated"  # worst of 2
    assert edges[("vm-0x5", "sw-0x5", "association")]["label"] == "1/2"
    assert edges[("vm-0x6", "sw-0x6", "association")]["state"] == "down"
    assert edges[("sw-0x5", "sw-0x6", "link")]["state"] == "down"  # sw-0x6 port 1 is not up
    assert edges[("host-h1", "sw-0x5", "host")]["state"] == "up"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/switches/zz", "dp_id"),
        ("/api/switches/0x1ffffffffffffffff", "dp_id"),
        ("/api/switches/99999999999999999999", "dp_id"),
        ("/api/switches/-1", "dp_id"),
        ("/api/switches/0x5/flows?table=256", "table"),
        ("/api/vms/0xg/routes", "vm_id"),
        ("/api/vms/%E2%9C%93", "vm_id"),
        ("/api/routes?vm_id=5x", "vm_id"),
        ("/api/fib?dp_id=", "dp_id"),
        ("/api/flows?table=-1", "table"),
        ("/api/associations?state=happy", "state"),
        ("/api/events?limit=0", "limit"),
        ("/api/events?limit=abc", "limit"),
        ("/api/events?kind=%00", "kind"),
        ("/api/stream?interval=0", "interval"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client, url, field):
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert any(d["loc"][-1] == field for d in r.json()["detail"]), r.text


@pytest.mark.parametrize("url", ["/api/switches/0x99", "/api/vms/0x99", "/api/vms/0x99/routes"])
def test_unknown_ids_are_404(client, url):
    assert client.get(url).status_code == 404


def test_event_stream_sends_a_snapshot(client):
    with client.stream("GET", "/api/stream", params={"max_events": 1}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert text.startswith("event: snapshot\nid: 1\ndata: ")
    snap = json.loads(text.split("data: ", 1)[1])
    assert set(snap) == {
        "summary",
        "topology",
        "associations",
        "routes",
        "flows",
        "controllers",
        "events",
    }
    assert len(snap["flows"]) == 3 and snap["summary"]["flow_packets"] == 112
    assert snap["routes"] == client.get("/api/routes").json()  # the same rows as the API


def test_metrics(client):
    from prometheus_client.parser import text_string_to_metric_families

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("routeflow_associations", (("state", "active"),))] == 1
    assert samples[("routeflow_associations", (("state", "down"),))] == 1
    assert samples[("routeflow_routes", (("vm_id", "0x5"),))] == 3
    assert samples[("routeflow_fib_entries", (("ct_id", "1"), ("dp_id", "0x5")))] >= 3
    assert samples[("routeflow_nexthops", ())] >= 1
    assert samples[("routeflow_messages_received_total", (("type", "PortRegister"),))] == 3
    assert samples[("routeflow_messages_received_total", (("type", "RouteMod"),))] == 1
    assert samples[("routeflow_messages_sent_total", (("type", "FibMod"),))] >= 1
    assert samples[("routeflow_messages_sent_total", (("type", "PortConfig"),))] >= 2
    assert samples[("routeflow_ipc_connections", (("kind", "client"),))] == 1
    assert samples[("routeflow_ipc_sessions_total", (("kind", "controller"),))] == 1
    assert samples[("routeflow_ipc_reconnects_total", (("kind", "client"),))] == 0
    assert samples[("routeflow_switch_flows", (("dp_id", "0x5"),))] == 3
    key = ("routeflow_switch_flow_packets_total", (("dp_id", "0x5"), ("table", "1")))
    assert samples[key] == 105
    relay = ("routeflow_relayed_packets_total", (("ct_id", "1"), ("direction", "to_vm")))
    assert samples[relay] == 11
    assert any(name.startswith("process_") for name, _ in samples)


def test_openapi_document(client):
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/api/summary",
        "/api/switches",
        "/api/switches/{dp_id}",
        "/api/switches/{dp_id}/flows",
        "/api/vms",
        "/api/vms/{vm_id}/routes",
        "/api/associations",
        "/api/routes",
        "/api/fib",
        "/api/flows",
        "/api/controllers",
        "/api/events",
        "/api/topology",
        "/api/stream",
        "/api/config/reload",
        "/metrics",
    } <= paths
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    # No Swagger UI / ReDoc: they would load scripts from a CDN.
    assert client.get("/docs").status_code == 404


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and 'id="graph"' in r.text
    assert "/static/vendor/cytoscape.min.js" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from a CDN
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]


# --- changing state: the token --------------------------------------------------------


def test_changes_disabled_without_a_token(live):
    with TestClient(create_app(live.server)) as c:
        r = c.post("/api/config/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403
        assert "--web-token" in r.json()["detail"]
        assert c.get("/api/summary").status_code == 200  # reading needs nothing


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-000"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_changes_need_the_right_token(client, headers):
    r = client.post("/api/config/reload", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def _reloadable(tmp_path, text: str) -> RFServer:
    """A real RFServer whose config file now holds ``text``."""
    path = tmp_path / "rfserver.csv"
    path.write_text(dump_config(CONFIG))
    server = RFServer(list(CONFIG), MemoryStore(), config_path=str(path))
    path.write_text(text)
    return server


def _reload(server: RFServer):
    with TestClient(create_app(server, token=TOKEN)) as c:
        return c.post("/api/config/reload", headers={"Authorization": f"Bearer {TOKEN}"})


def test_reload_with_the_token(tmp_path):
    server = _reloadable(tmp_path, dump_config(CONFIG[:2]))
    r = _reload(server)
    assert r.status_code == 200 and r.json() == {"ok": True, "errors": []}
    assert server.table.config == tuple(CONFIG[:2])


def test_reload_refused_is_409_with_the_errors(tmp_path):
    server = _reloadable(tmp_path, dump_config([]) + "not-a-vm,1,1,5,1\n")
    r = _reload(server)
    assert r.status_code == 409
    body = r.json()
    assert body["ok"] is False and len(body["errors"]) == 1
    assert body["errors"][0].endswith("rfserver.csv:2: vm_id: 'not-a-vm' is not a hexadecimal id")
    assert server.table.config == tuple(CONFIG)


def test_reload_without_a_config_file_is_409_saying_so(live):
    r = _reload(live.server)
    assert r.status_code == 409
    assert r.json() == {"ok": False, "errors": ["no config file to reload"]}


def test_link_down_shows_on_ports_and_edges(live, client):
    live.server.links.down.add((1, 5, 1))
    try:
        ports = {p["dp_port"]: p for p in client.get("/api/switches/0x5").json()["ports"]}
        assert ports[1]["link_up"] is False and ports[2]["link_up"] is True
        edges = {e["kind"]: e for e in client.get("/api/topology").json()["edges"]}
        assert edges["host"]["state"] == "down"
    finally:
        live.server.links.down.clear()
    edges = {e["kind"]: e for e in client.get("/api/topology").json()["edges"]}
    assert edges["host"]["state"] == "up"


def test_the_status_file_and_the_api_show_one_view(live, client):
    """Both render server.view.OperatorView: same rows, same roles, same counts."""
    status = client.get("/api/status").json()
    direct = live.server.status()
    # The two documents are rendered a moment apart: the time and each switch's
    # report age may differ by that moment, nothing else may.
    for doc in (status, direct):
        ages = [s.pop("age_s") for s in doc["switch_stats"].values()]
        assert all(0 <= a < 60 for a in ages)
    assert status == {**direct, "time": status["time"]}
    rows = [r for r in client.get("/api/associations").json() if r["state_code"] != "down"]
    as_hex = [
        {
            k: (hex(v) if k in ("vm_id", "dp_id", "vs_id") and v is not None else v)
            for k, v in a.items()
        }
        for a in status["associations"]
    ]
    keep = (
        "vm_id",
        "vm_port",
        "ct_id",
        "dp_id",
        "dp_port",
        "vs_id",
        "vs_port",
        "hwaddress",
        "state",
    )
    assert as_hex == [{k: r[k] for k in keep} for r in rows]
    controllers = {str(c["ct_id"]): c for c in client.get("/api/controllers").json()}
    for ct, roles in status["controller_roles"].items():
        assert roles == {k: controllers[ct][k] for k in ("master", "generation", "replicas")}
    summary = client.get("/api/summary").json()
    assert summary["fib_entries"] == sum(status["fib_entries"].values())
    assert summary["routes"] == sum(status["routes"].values())
    assert summary["clients"] == len(status["clients"])


def test_discovered_links_show_in_the_api_the_graph_and_the_metrics(live, client):
    """Links rfproxy discovered: /api/links, the summary, the drawn edge marked, a new edge."""
    from routeflow.rflib import protocol as p

    def ends(sd, sp, dd, dport):
        return p.LinkEnds(src_dp_id=sd, src_port=sp, dst_dp_id=dd, dst_port=dport)

    drawn = [ends(5, 2, 6, 1), ends(6, 1, 5, 2)]  # the topology file's A-B link, both ways
    new = [ends(5, 3, 6, 4)]  # one way only, not drawn
    topo = live.server.topology
    topo.table(p.DatapathLinks(ct_id=1, links=drawn + new, dp_ids=[5, 6]), 100.0)
    try:
        rows = client.get("/api/links").json()
        assert [(r["src_dp_id"], r["src_port"], r["reverse"]) for r in rows] == [
            ("0x5", 2, True),
            ("0x5", 3, False),
            ("0x6", 1, True),
        ]
        assert rows[0]["src_port_name"] == "s1-eth2" and rows[0]["confirmed"]
        assert client.get("/api/summary").json()["links"] == 2
        edges = [e for e in client.get("/api/topology").json()["edges"] if e["kind"] == "link"]
        by_port = {(e["source_port"], e["target_port"]): e for e in edges}
        assert by_port[(2, 1)]["discovered"] == "both"
        assert by_port[(3, 4)]["discovered"] == "one-way"
        assert by_port[(3, 4)]["state"] == "one-way"
        metrics = client.get("/metrics").text
        assert 'routeflow_discovered_links{confirmed="true",ct_id="1"} 3.0' in metrics
        status = client.get("/api/status").json()
        assert len(status["links"]) == 3 and status["links"][0]["src_dp_id"] == 5
    finally:
        topo.table(p.DatapathLinks(ct_id=1, links=[], dp_ids=[5, 6]), 101.0)
    assert client.get("/api/links").json() == []

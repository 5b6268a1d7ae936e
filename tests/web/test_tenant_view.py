"""rfweb's Tenants tab: /api/tenant shapes the tenant server's API, and the page shows
networks, routers and ports per compute node in a real browser (Debian chromium).

The tenant API is the real app (tenant/api.py over a memory store) and rfweb the real
app over a fed RFServer (conftest ``live``), each served by uvicorn on a loopback port.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from routeflow.rflib.store import MemoryStore
from routeflow.tenant.api import create_app as tenant_app
from routeflow.tenant.identity import Auth
from routeflow.tenant.repo import Repository
from routeflow.web.api import create_app as web_app
from routeflow.web.tenant import TenantSource, tenant_view

from .conftest import TOPOLOGY, free_port

TOKEN = "tenant-view-token"
H = {"X-Auth-Token": TOKEN}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"


class Served:
    """An ASGI app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def tenants() -> Iterator[tuple[Served, TestClient, Repository]]:
    repo = Repository(MemoryStore())
    app = tenant_app(repo, Auth(static_token=TOKEN))
    c = TestClient(app)
    net = c.post("/v2.0/networks", json={"network": {"name": "web"}}, headers=H).json()["network"]
    sub = c.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"],
                 "cidr": "10.5.0.0/24", "name": "web-v4"}}, headers=H).json()["subnet"]  # fmt: skip
    router = c.post("/v2.0/routers", json={"router": {"name": "edge"}}, headers=H).json()["router"]
    c.put(f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]},
          headers=H)  # fmt: skip
    for name, host in (("vm-a", "c1"), ("vm-b", "c1"), ("vm-c", "c2")):
        port = c.post("/v2.0/ports", json={"port": {"network_id": net["id"], "name": name,
                      "binding:host_id": host}}, headers=H).json()["port"]  # fmt: skip
        repo.bind_port(port["id"], host, True)  # what the node agent reports
    served = Served(app)
    try:
        yield served, c, repo
    finally:
        served.stop()


def test_the_view_groups_ports_by_node_and_names_router_interfaces() -> None:
    view = tenant_view(
        [{"id": "n1", "name": "web", "project_id": "p", "provider:segmentation_id": 7}],
        [{"network_id": "n1", "cidr": "10.5.0.0/24"}],
        [{"id": "r1", "name": "edge", "project_id": "p", "external_gateway_info": None}],
        [
            {"id": "i1", "network_id": "n1", "device_owner": "network:router_interface",
             "device_id": "r1", "fixed_ips": [{"ip_address": "10.5.0.1"}]},
            {"id": "p1", "network_id": "n1", "binding:host_id": "c2", "name": "vm",
             "fixed_ips": [{"ip_address": "10.5.0.9"}], "status": "ACTIVE"},
            {"id": "p2", "network_id": "n1", "fixed_ips": []},
        ],
    )  # fmt: skip
    assert view["networks"][0]["cidrs"] == ["10.5.0.0/24"] and view["networks"][0]["vni"] == 7
    assert view["routers"][0]["interfaces"] == ["web 10.5.0.1"]
    assert [n["node"] for n in view["nodes"]] == ["c2", "(unbound)"]
    assert view["nodes"][0]["ports"][0]["ips"] == ["10.5.0.9"]


def test_api_tenant_says_when_it_is_not_configured_or_unreachable(live: Any) -> None:
    assert TestClient(web_app(live.server)).get("/api/tenant").json()["configured"] is False
    gone = TenantSource(f"http://127.0.0.1:{free_port()}", TOKEN)
    body = TestClient(web_app(live.server, tenant=gone)).get("/api/tenant").json()
    assert body["configured"] and "ConnectError" in body["error"]


#: What this test checks is what rfweb says, not how fast: the tenant server runs in a
#: thread of this (niced, loaded) test process, where a connect took over the default 3 s.
SLOW_OK = 30.0


def test_api_tenant_reads_the_tenant_server(live: Any, tenants: Any) -> None:
    served, _c, _repo = tenants
    body = (
        TestClient(web_app(live.server, tenant=TenantSource(served.url, TOKEN, SLOW_OK)))
        .get("/api/tenant")
        .json()
    )
    assert body["error"] is None, body
    assert {n["node"]: len(n["ports"]) for n in body["nodes"]} == {"c1": 2, "c2": 1}
    assert body["routers"][0]["interfaces"] == ["web 10.5.0.1"]
    wrong = TenantSource(served.url, "not-the-token", SLOW_OK)
    body = TestClient(web_app(live.server, tenant=wrong)).get("/api/tenant").json()
    assert "HTTP 401" in body["error"]


def _wait(value: Callable[[], Any], pred: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + 20
    while not pred(got := value()):
        assert time.monotonic() < deadline, f"{what}: last value {got!r}"
        time.sleep(0.1)
    return got


@pytest.mark.component  # a real browser process
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian chromium")
@pytest.mark.skipif(
    not os.path.exists(os.path.join(ROOT, "src/routeflow/web/static/vendor/cytoscape.min.js")),
    reason="cytoscape.min.js is not vendored: run `make setup`",
)
def test_the_tenants_tab_in_chromium(live: Any, tenants: Any) -> None:
    from playwright.sync_api import sync_playwright

    served, c, repo = tenants
    web = Served(web_app(live.server, topology=TOPOLOGY, tenant=TenantSource(served.url, TOKEN)))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}"))
                page.goto(web.url + "/")
                assert page.is_hidden("#view-tenants")
                page.click("#tabs button[data-tab=tenants]")
                _wait(lambda: page.get_attribute("body", "data-tenant-updates"), bool,
                      f"the tenants tab drawn ({errors})")  # fmt: skip
                assert page.is_hidden("#view-network") and page.is_visible("#view-tenants")

                def per_node() -> dict[str, int]:
                    return {
                        d.get_attribute("data-node"): len(d.query_selector_all("tbody tr"))
                        for d in page.query_selector_all(".tenant-node")
                    }

                assert _wait(per_node, lambda v: v == {"c1": 2, "c2": 1}, "ports per node")
                nets = page.inner_text("#tenant-networks tbody")
                assert "web" in nets and "10.5.0.0/24" in nets, nets
                assert "10.5.0.1" in page.inner_text("#tenant-routers tbody")
                # A port created through the API shows up on its node without a reload.
                net_id = next(iter(repo.snapshot().networks))
                c.post("/v2.0/ports", json={"port": {"network_id": net_id, "name": "vm-d",
                       "binding:host_id": "c2"}}, headers=H)  # fmt: skip
                _wait(per_node, lambda v: v.get("c2") == 2, "the new port on c2")
                # The Network tab is still the lab's page.
                page.click("#tabs button[data-tab=network]")
                assert page.is_visible("#view-network") and page.is_hidden("#view-tenants")
                assert errors == [], errors
            finally:
                browser.close()
    finally:
        web.stop()

"""The live page of a real rftest2 lab in a real browser (Debian chromium via Playwright).

Every switch and VM appears in the graph, the association table turns all
active, and a flow counter climbs while a ping runs through the switches.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest

from routeflow.lab import checks, scenarios
from routeflow.lab.model import load_lab, plan
from routeflow.lab.runner import LabRun

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT = os.path.join(ROOT, "docs", "rfweb.png")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


@pytest.fixture
def run_dir(request):
    """Like tests/e2e: reachable by user frr; removed afterwards unless ROUTEFLOW_KEEP_RUNS."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end labs need root")
    for tool in ("ovs-vswitchd", "mnexec", "vtysh", CHROMIUM):
        if shutil.which(tool) is None and not os.path.exists(tool):
            pytest.skip(f"missing {tool}: run `make setup`")
    if not os.path.exists(os.path.join(ROOT, "src/routeflow/web/static/vendor/cytoscape.min.js")):
        pytest.skip("cytoscape.min.js is not vendored: run `make setup`")
    base = "/tmp/routeflow-tests"
    os.makedirs(base, mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    path = os.path.join(base, f"{request.node.name[:40]}-{os.getpid()}-{secrets.token_hex(2)}")
    yield path
    if os.environ.get("ROUTEFLOW_KEEP_RUNS"):  # keep everything, screenshot included
        return
    shutil.rmtree(path, ignore_errors=True)


def _wait(page_value, pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = page_value()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: last value {value!r}")
        time.sleep(0.25)


def test_rfweb_page_shows_a_live_lab(run_dir):
    from playwright.sync_api import sync_playwright

    lab = plan(load_lab(os.path.join(ROOT, "labs", "rftest2.yaml")))
    run = LabRun(lab, run_dir, stats_interval=1.0)
    result = scenarios.CheckResult(lab=lab.name)
    try:
        run.start()
        assert scenarios.converge(run, result, time.monotonic(), 120), result.stages
        h4 = lab.host("h4")
        assert checks.wait_until(lambda: checks.ping(run, "h1", h4.address), 60), "h1 -> h4"

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(run.web_url)
                page.wait_for_selector("body[data-updates]", state="attached", timeout=15000)

                # Every switch, VM and host of the lab is a node of the graph.
                want = {f"sw-{vm.dp_id:#x}" for vm in lab.vms}
                want |= {f"vm-{vm.vm_id:#x}" for vm in lab.vms}
                want |= {f"host-{h.name}" for h in lab.hosts}
                ids = set(page.evaluate("window.rfweb.cy.nodes().map(n => n.id())"))
                assert want <= ids, want - ids
                dom_ids = {
                    li.get_attribute("data-id") for li in page.query_selector_all("#graph-nodes li")
                }
                assert want <= dom_ids
                kinds = page.evaluate("window.rfweb.cy.edges().map(e => e.data('kind'))")
                assert kinds.count("link") == len(lab.links), kinds
                assert kinds.count("host") == len(lab.hosts), kinds
                assert kinds.count("association") == len(lab.vms), kinds

                # The association table: every entry active.
                n_ports = sum(len(vm.interfaces) for vm in lab.vms)

                def assoc_states():
                    rows = page.query_selector_all("#assoc-table tbody tr")
                    return [r.get_attribute("data-state") for r in rows]

                _wait(
                    assoc_states,
                    lambda s: len(s) == n_ports and set(s) == {"active"},
                    30,
                    "association table all active",
                )
                states = page.evaluate(
                    "window.rfweb.cy.nodes().map(n => n.data('kind') + ':' + n.data('state'))"
                )
                assert not [s for s in states if s.endswith(":down")], states
                edge_states = page.evaluate(
                    "window.rfweb.cy.edges().map(e => e.data('kind') + ':' + e.data('state'))"
                )
                assert set(edge_states) == {"link:up", "host:up", "association:active"}, edge_states

                # Counters move while traffic flows (rfproxy polls flow stats every 1 s).
                def packets() -> int:
                    value = page.get_attribute("#flow-packets", "data-packets")
                    return int(value) if value else 0

                before = _wait(packets, lambda v: v > 0, 20, "flow packets reported")
                ping = run.host("h1").popen(
                    ["ping", "-c", "100", "-i", "0.1", "-q", h4.address],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                try:
                    _wait(packets, lambda v: v >= before + 40, 20, f"flow packets above {before}")
                    # A row is marked when its switch's latest sample counted more than
                    # the one before. Open vSwitch refreshes its counters on its own
                    # schedule, so on a loaded machine two samples in a row can repeat
                    # the same figures: the mark is looked for while traffic flows.
                    _wait(
                        lambda: len(page.query_selector_all("#flows-table tbody tr.grew")),
                        lambda n: n > 0,
                        8,
                        "a flow row marked as grown",
                    )
                finally:
                    ping.communicate(timeout=30)
                assert not errors, errors

                time.sleep(1.5)  # let the last counters arrive for the picture
                page.screenshot(path=os.path.join(run_dir, "rfweb.png"))
                if not os.path.exists(SCREENSHOT) or os.environ.get("ROUTEFLOW_UPDATE_SCREENSHOT"):
                    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
                    shutil.copyfile(os.path.join(run_dir, "rfweb.png"), SCREENSHOT)
            finally:
                browser.close()
    finally:
        run.stop()

"""End-to-end fixtures: real labs (Mininet, private OVS, FRR) that always tear down."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

from routeflow.lab.model import load_lab, plan
from routeflow.lab.procs import Tracked

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABS = os.path.join(ROOT, "labs")


def lab_plan(name: str):
    return plan(load_lab(os.path.join(LABS, f"{name}.yaml")))


def leftovers(manifest: dict) -> list[str]:
    """What a lab's manifest names that still exists: interfaces with its prefix, processes
    and namespace-holding node shells (by recorded pid)."""
    found = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if manifest["prefix"] in links:
        found.append("interfaces named " + manifest["prefix"])
    pids = list(manifest["processes"].values()) + list(manifest["node_pids"].values())
    found += [f"pid {pid}" for pid in pids if Tracked("leftover?", pid).alive()]
    return found


def _missing_tools() -> list[str]:
    tools = ["ovs-vswitchd", "ovsdb-server", "mnexec", "/usr/lib/frr/zebra", "vtysh"]
    return [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]


@pytest.fixture(autouse=True)
def _need_root_and_tools():
    """Skips here, fails in CI (tests/conftest.py)."""
    if os.geteuid() != 0:
        pytest.skip("end-to-end labs need root")
    missing = _missing_tools()
    if missing:
        pytest.skip(f"missing tools {missing}: run `make setup`")


@pytest.fixture
def run_dir(request):
    """A run directory FRR (user frr) can reach; pytest's tmp_path is private (0700)."""
    base = "/tmp/routeflow-tests"
    os.makedirs(base, mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    path = os.path.join(base, f"{request.node.name[:40]}-{os.getpid()}-{secrets.token_hex(2)}")
    yield path
    shutil.rmtree(path, ignore_errors=True)

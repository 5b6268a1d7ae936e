"""The cloud lab end to end: `routeflow lab check labs/cloud.yaml` as an operator runs it.

One bring-up for the check's assertions (three OVS nodes, the tenant server, three node
agents, two tenants bootstrapped with openstacksdk, six VMs on busybox udhcpc), read
from its --json result; then `lab up` once, stopped with Ctrl-C, which must leave no
process and no namespace behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from cloudkit import ENV, lab_check, needs_udhcpc, processes_naming
from conftest import LABS

pytestmark = needs_udhcpc

CLOUD = os.path.join(LABS, "cloud.yaml")


def namespaces(tag: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if f"-{tag}" in line]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    yield from lab_check("cloud", "cloud-check", tmp_path_factory)


def test_every_stage_passes(check):
    failed = [s for s in check["stages"] if not s["ok"]]
    assert check["ok"] and check["exit"] == 0, f"{failed}\n{check['output'][-3000:]}"
    names = [s["stage"] for s in check["stages"]]
    for stage in [
        "bootstrap through the API",
        "VMs plugged, ports ACTIVE",
        "DHCP lease with MTU 1450",
        "same-network ping across nodes",
        "routed ping across nodes",
        "1450-byte don't-fragment ping",
        "isolation between tenants",
        "security groups allow and block what their rules say",
        "rule removed: ping blocked, established connection stays",
        "flows equal the compiler's on every node",
        "port delete removes its flows everywhere",
        "flows equal the compiler's after the delete",
        "teardown",
    ]:
        assert stage in names, names


def test_what_the_stages_saw(check):
    stage = {s["stage"]: s for s in check["stages"]}
    assert sorted(check["dhcp_lease_s"]) == ["a1", "a2", "a3", "b1", "b2", "b3"]
    assert "(ttl 63)" in stage["routed ping across nodes"]["detail"]
    assert (
        "12 pings to other tenants' addresses unanswered, 2 to addresses both tenants use"
        in (stage["isolation between tenants"]["detail"])
    )
    sg = stage["security groups allow and block what their rules say"]["detail"]
    assert "b1 -> tcp/22 open, tcp/2222 timeout (both open before: open, open)" in sg, sg
    assert "ping answered; b2 -> b1 ping blocked" in sg, sg
    kept = stage["rule removed: ping blocked, established connection stays"]["detail"]
    assert "ping blocked; the tcp/22 connection opened before still echoes; a new one: open" in (
        kept
    )
    assert "on no node after" in stage["port delete removes its flows everywhere"]["detail"]
    assert check["port_delete_s"] is not None


def test_the_check_leaves_nothing_behind(check):
    assert check["tag"] and namespaces(check["tag"]) == []
    alive = [pid for pid in check["pids"].values() if os.path.exists(f"/proc/{pid}")]
    assert alive == [] or all(_zombie_or_gone(pid) for pid in alive)
    assert not os.path.exists(check["run_dir"])  # removed after a pass


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] == "Z"
    except OSError:
        return True


def test_lab_up_stops_cleanly_on_ctrl_c(check):
    run_dir = f"/tmp/routeflow-tests/cloud-up-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "routeflow.cli", "lab", "up", CLOUD, "--run-dir", run_dir],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "running; Ctrl-C" in line or proc.poll() is not None:
                break
        text = "".join(lines)
        assert "running; Ctrl-C" in text, text
        assert "MTU 1450" in text and "clouds.yaml" in text, text
        tag = text.split("run tag ", 1)[1].split(",", 1)[0]
        assert len(namespaces(tag)) == 3 + 1 + 6  # nodes, underlay, VMs
        assert processes_naming(run_dir)
        # the clouds.yaml it printed works for the openstack CLI
        clouds = text.split("clouds.yaml ", 1)[1].split()[0]
        env = {**ENV, "OS_CLIENT_CONFIG_FILE": clouds, "OS_CLOUD": "rf"}
        listed = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "openstack"), "port", "list",
             "-f", "value", "-c", "Name", "-c", "Status"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        vms = dict(line.split() for line in listed.stdout.splitlines() if len(line.split()) == 2)
        assert vms == dict.fromkeys(["a1", "a2", "a3", "b1", "b2", "b3"], "ACTIVE"), (
            listed.stdout + listed.stderr
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:  # a failed assertion: still tear the lab down (Ctrl-C)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, "".join(lines)
    assert namespaces(tag) == []
    assert processes_naming(run_dir) == []
    assert not os.path.exists(run_dir)

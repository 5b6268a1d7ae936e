"""The manual's walkthrough, docs/examples/rftest1-by-hand.sh, works as the manual says.

The script builds rftest1 by hand (Open vSwitch bridges, VM and host namespaces, the three
daemons from config files) and pings h1 -> h2 through the switch. It runs here in network,
mount and pid namespaces of its own (`unshare`), with a private Open vSwitch, so its fixed
names (br-s1, vm1, h1, h2) meet nothing else on the machine, and its `down`, which stops
daemons by the pids it wrote, can only ever signal processes of its own. Whatever is left
(the private Open vSwitch) dies with the namespace's first process: the kernel kills every
process of a pid namespace when its init exits, and unshare's --kill-child makes that
init die with unshare itself (a timeout here). Killing by recorded pids from outside, as
this test once did, could hit a stranger if one of those daemons had died and its pid
been handed on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from routeflow.lab.ovs import unix_socket_accepts

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "docs" / "examples" / "rftest1-by-hand.sh"
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")

# What runs inside the namespaces: a private Open vSwitch, then the walkthrough up and down.
INSIDE = r"""
set -euo pipefail
mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
ip link set lo up
ovsdb-tool create "$OVS_RUNDIR/conf.db" "$SCHEMA"
ovsdb-server "$OVS_RUNDIR/conf.db" --remote="punix:$OVS_RUNDIR/db.sock" \
    --pidfile="$OVS_RUNDIR/ovsdb-server.pid" --log-file="$OVS_RUNDIR/ovsdb-server.log" \
    -vconsole:off --detach
ovs-vsctl --no-wait init
ovs-vswitchd "unix:$OVS_RUNDIR/db.sock" --pidfile="$OVS_RUNDIR/ovs-vswitchd.pid" \
    --log-file="$OVS_RUNDIR/ovs-vswitchd.log" -vconsole:off --detach
rc=0
bash "$SCRIPT" up || rc=$?
bash "$SCRIPT" down
exit $rc
"""


def test_rftest1_by_hand_routes_h1_to_h2(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, Open vSwitch)")
    for tool in ("unshare", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ethtool", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make setup)")
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} is missing (openvswitch-switch)")
    ovs = tmp_path / "ovs"
    ovs.mkdir()
    routeflow = tmp_path / "routeflow"  # the command the script calls, from this checkout
    routeflow.write_text(f'#!/bin/sh\nexec {sys.executable} -m routeflow.cli "$@"\n')
    routeflow.chmod(0o755)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "SCRIPT": str(SCRIPT),
        "SCHEMA": str(SCHEMA),
        "OVS_RUNDIR": str(ovs),
        "OVS_DBDIR": str(ovs),
        "OVS_LOGDIR": str(ovs),
        "ETC": str(tmp_path / "etc"),
        "RUN": str(tmp_path / "run"),
        "STATE": str(tmp_path / "state"),
        "ROUTEFLOW": str(routeflow),
    }
    proc = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
         "bash", "-c", INSIDE],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    logs = "".join(
        f"\n--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted((tmp_path / "run").glob("*.log"))
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}{logs}"
    assert not unix_socket_accepts(str(ovs / "db.sock"))  # the private OVS went with its namespace
    for daemon in ("server", "proxy", "client"):
        assert f"settings for routeflow {daemon})" in proc.stdout  # config check: ok
    assert "3 received, 0% packet loss" in proc.stdout
    assert "ttl=63" in proc.stdout  # routed by the switch's FIB, not bridged
    assert "actions=group:" in proc.stdout  # the host routes point at next-hop groups
    assert proc.stdout.count("association active: vm 0x99 port") == 2  # routeflow status

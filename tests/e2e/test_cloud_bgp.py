"""bgp mode end to end: `routeflow lab check labs/cloud-bgp.yaml` as an operator runs it.

One bring-up (4 eBGP routeflow switches, 2 compute + 2 gateway nodes, each gateway
node's ExaBGP + bfdd peering with its switch's VM), read from its --json result: the
sessions come up with BFD, the gateway node serving the router announces its SNAT
address and the floating IP, the outside sees the one and reaches a VM through the
other, a re-associated floating IP answers from the new VM, and the gateway node
serving it, killed under a 20 ms ping, hands its /32s to the other one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from conftest import LABS, ROOT

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/udhcpc") and not os.path.exists("/sbin/udhcpc"),
    reason="needs busybox udhcpc (scripts/setup.sh)",
)

LAB = os.path.join(LABS, "cloud-bgp.yaml")
ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("cloud-bgp") / "result.json"
    run_dir = f"/tmp/routeflow-tests/cloud-bgp-{os.getpid()}"
    t = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "routeflow.cli", "lab", "check", LAB, "--json", str(out),
         "--run-dir", run_dir],
        capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    seconds = time.monotonic() - t
    assert out.exists(), done.stdout + done.stderr
    result = json.loads(out.read_text())
    result["exit"] = done.returncode
    result["output"] = done.stdout + done.stderr
    result["run_dir"] = run_dir
    print(f"\ncloud-bgp lab check: {seconds:.1f} s")
    for s in result["stages"]:
        print(f"  {s['stage']}: {s['seconds']:.2f} s {s['detail']}")
    return result


def stage(check, prefix: str) -> dict:
    found = [s for s in check["stages"] if s["stage"].startswith(prefix)]
    assert found, [s["stage"] for s in check["stages"]]
    return found[0]


def test_every_stage_passes(check):
    failed = [s for s in check["stages"] if not s["ok"]]
    assert check["ok"] and check["exit"] == 0, f"{failed}\n{check['output'][-3000:]}"


def test_sessions_bfd_and_announcements(check):
    sessions = stage(check, "gateway nodes' BGP sessions up, with BFD")["detail"]
    assert sessions.count("Established, BFD up") == 2, sessions
    announced = stage(check, "gateway nodes announce what they serve")["detail"]
    # One gateway node serves the router: its SNAT address and the floating IP.
    served = re.findall(r"(gw\d): ((?:198\.18\.0\.\d+/32 ?)+)", announced)
    assert len(served) == 1 and len(served[0][1].split()) == 2, announced
    assert "nothing" in announced, announced


def test_outside_sees_snat_and_reaches_the_floating_ip(check):
    assert re.search(r"a2 -> out as 198\.18\.0\.\d+$", stage(check, "outside sees")["detail"])
    fip = stage(check, "outside reaches a1 through its floating IP")["detail"]
    assert "answered by a1" in fip and "reply from 198.18.0." in fip, fip
    moved = stage(check, "floating IP re-association moves within a second")
    assert moved["ok"] and moved["seconds"] <= 1.0, moved


def test_gateway_failover_moves_the_announcement_and_traffic_resumes(check):
    s = stage(check, "gateway failover (BFD)")
    assert s["ok"], s
    m = re.search(r"killed .*: (\S+) answered again via (gw\d) after (\d+) ms", s["detail"])
    assert m, s["detail"]
    assert f"/32 now announced by {m.group(2)}" in s["detail"]
    # The figure is reported, not bounded here (a loaded CI machine): see docs/tenant.md.
    assert 0 < int(m.group(3)) < 15000


def test_the_check_leaves_nothing_behind(check):
    assert not os.path.exists(os.path.join(check["run_dir"], "cloud"))
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if check["run_dir"].encode() in fh.read():
                        left.append(pid)
            except OSError:
                continue
    assert left == []

"""Security groups end to end: openstacksdk -> tenant server -> node agents -> OVS -> pings.

The cloud lab check of ``labs/cloud.yaml`` (every VM in its tenant's ``default`` group, as
the API makes ports), then extra stages on the same run with a1 (node c1) and a3 (c3,
routed from a1; the check deleted a2): a3 moved to a group with no ingress rule stops
answering a1; an ICMP rule on that group opens ping again, deleting it
closes it; with port security off a3 is not filtered, while a1 (still in ``default``)
refuses a3, no longer a member. The node agents apply each change as a flow diff; the
stages wait for it.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import LABS

from routeflow.lab.cloudcheck import run_cloud_check
from routeflow.lab.model import load_lab

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not os.path.exists("/usr/sbin/udhcpc") and not os.path.exists("/sbin/udhcpc"),
        reason="needs busybox udhcpc (scripts/setup.sh)",
    ),
]


def _until(answer, want: bool, timeout: float = 15.0) -> tuple[bool, float]:
    """Poll ``answer()`` until it gives ``want``: (reached, seconds)."""
    t0 = time.monotonic()
    while True:
        if answer() == want:
            return True, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return False, time.monotonic() - t0


def secgroup_stages(run, result) -> None:
    conn = run.connect()
    a1, a3 = run.vms["a1"], run.vms["a3"]

    def ping(src, dst) -> bool:
        return run.ping(src, dst.fixed_ip, wait=1).returncode == 0

    default = conn.network.get_port(a3.port_id).security_group_ids
    result.add("sg: ports got the default group", len(default) == 1, 0.0, str(default))
    closed = conn.network.create_security_group(name="closed", project_id="tenant-a")
    conn.network.update_port(a3.port_id, security_group_ids=[closed.id])
    ok, dt = _until(lambda: ping(a1, a3), False)
    result.add("sg: a3 outside a1's group is closed", ok, dt)
    rule = conn.network.create_security_group_rule(
        security_group_id=closed.id, direction="ingress", protocol="icmp", ethertype="IPv4",
        project_id="tenant-a",
    )  # fmt: skip
    ok, dt = _until(lambda: ping(a1, a3), True)
    result.add("sg: an icmp rule opens ping", ok, dt)
    conn.network.delete_security_group_rule(rule)
    ok, dt = _until(lambda: ping(a1, a3), False)
    result.add("sg: deleting the rule closes it again", ok, dt)
    conn.network.update_port(a3.port_id, security_group_ids=[], port_security_enabled=False)
    ok, dt = _until(lambda: ping(a1, a3), True)
    # a3 is unfiltered now; a1, still in its default group, refuses a3 (no member).
    result.add("sg: port security off, a3 unfiltered", ok and not ping(a3, a1), dt)


def test_security_groups_through_the_whole_stack(tmp_path):
    cloud = load_lab(os.path.join(LABS, "cloud.yaml")).cloud
    result = run_cloud_check(
        "cloud", cloud, str(tmp_path / "run"), extra_checks=secgroup_stages, timeout=60.0
    )
    for s in result.stages:
        print(f"  {s['stage']}: {'ok' if s['ok'] else 'FAIL'} {s['seconds']:.2f} s {s['detail']}")
    failed = [s for s in result.stages if not s["ok"]]
    assert result.ok, failed
    assert sum(1 for s in result.stages if s["stage"].startswith("sg: ")) == 5

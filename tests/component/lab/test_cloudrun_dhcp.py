"""CloudRun.dhcp when no DHCP server answers: a clear CloudFailure in about its timeout.

`lab up` once died with a TimeoutExpired traceback: udhcpc was given more retries
(timeout / 0.5, each waiting 1 s) than the subprocess's own deadline allowed. A real
udhcpc on one end of a veth pair, both ends in a namespace of our own: nobody answers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest

from routeflow.lab.cloudrun import CloudFailure, CloudRun, Vm
from routeflow.lab.model import load_lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("udhcpc") is None, reason="needs busybox udhcpc"),
]


def test_no_offer_is_a_clear_failure_within_the_timeout(tmp_path):
    ns = f"rfdhcp-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv in (
            ["link", "add", "eth0", "type", "veth", "peer", "name", "p0"],  # no dummy module
            ["link", "set", "eth0", "up"],
            ["link", "set", "p0", "up"],
        ):
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        cloud = load_lab(os.path.join(ROOT, "labs", "cloud.yaml")).cloud
        run = CloudRun(cloud, str(tmp_path))
        vm = Vm("a1", ns, "c1", "port-1", "fa:16:3e:00:00:01", "10.0.1.11", "net-1")
        t = time.monotonic()
        with pytest.raises(CloudFailure, match="a1: udhcpc got no lease in"):
            run.dhcp(vm, timeout=3.0)
        # three discovers a second apart, then udhcpc gives up: about 3 s, where twice
        # the tries took 6 s (and at the default timeout outran the subprocess deadline)
        assert time.monotonic() - t < 5
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)

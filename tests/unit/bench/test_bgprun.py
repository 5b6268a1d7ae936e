"""bench/bgprun.py's readers of FRR and iproute2 text: what `bench bgp --peer-down`
times and checks is read from these."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from routeflow.bench.bgprun import kernel_out_count, pin_threads, routes_via, split_cpus
from routeflow.lab.procs import ProcessSet

# `show zebra dplane providers` of FRR 8.4.4 (Debian 12), after a 5000-prefix table.
PROVIDERS = """Zebra dataplane providers:
Kernel (1): in: 5008, q: 0, q_max: 100, out: 5007, q: 5008, q_max: 5008
"""


def test_kernel_provider_counts_are_read():
    assert kernel_out_count(PROVIDERS) == (5008, 5007)


def test_no_kernel_provider_is_none_not_zero():
    # Zero would look like "nothing done yet" and time the kernel wrong.
    assert kernel_out_count("Zebra dataplane providers:\n") is None
    assert kernel_out_count("% Unknown command: show zebra dplane providers") is None


def test_routes_via_reads_gateways_of_both_families():
    v4 = (
        "10.0.0.0/8 nhid 12 via 192.0.2.6 dev eth3 proto bgp metric 20 \n"
        "198.51.100.7 nhid 12 via 192.0.2.6 dev eth3 proto bgp metric 20 \n"
        "default nhid 10 via 192.0.2.2 dev eth2 proto bgp metric 20 \n"
        "203.0.113.0/24 dev eth1 proto bgp scope link metric 20 \n"
    )
    assert routes_via(v4, 4) == {
        "10.0.0.0/8": "192.0.2.6",
        "198.51.100.7/32": "192.0.2.6",
        "0.0.0.0/0": "192.0.2.2",
        "203.0.113.0/24": "",
    }
    v6 = (
        "2001:db8::/32 nhid 20 via fd00:0:2::100 dev eth3 proto bgp metric 20 pref medium\n"
        "::ffff:10.1.0.0/112 nhid 20 via fd00:0:2::100 dev eth3 proto bgp metric 20 pref medium\n"
    )
    assert routes_via(v6, 6) == {
        "2001:db8::/32": "fd00:0:2::100",
        "::ffff:a01:0/112": "fd00:0:2::100",  # as kernel_bgp_prefixes writes it
    }


def test_a_multipath_route_is_read_by_its_first_hop():
    text = (
        "10.0.0.0/8 proto bgp metric 20 \n"
        "\tnexthop via 192.0.2.2 dev eth2 weight 1 \n"
        "\tnexthop via 192.0.2.6 dev eth3 weight 1 \n"
        "10.1.0.0/16 via 192.0.2.6 dev eth3 proto bgp metric 20 \n"
    )
    assert routes_via(text, 4) == {"10.0.0.0/8": "192.0.2.2", "10.1.0.0/16": "192.0.2.6"}


def _allowed(pid: int) -> dict[int, set[int]]:
    return {int(tid): os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_pinning_moves_every_thread_and_threads_started_later():
    # --split-cpus: sched_setaffinity(pid) alone would leave OVS's and rfproxy's other
    # threads free to run on the other side's CPU.
    cpu = min(os.sched_getaffinity(0))
    code = (
        "import threading, time, sys\n"
        "for _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('up', flush=True); sys.stdin.readline()\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('more', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "up\n"
        assert pin_threads(proc.pid, {cpu})
        before = _allowed(proc.pid)
        assert len(before) == 4 and all(c == {cpu} for c in before.values()), before
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "more\n"
        after = _allowed(proc.pid)
        assert len(after) == 5 and all(c == {cpu} for c in after.values()), after
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{proc.pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pin_threads(proc.pid, {cpu})  # gone: said, not raised


def test_split_puts_the_vm_on_one_cpu_and_the_switch_side_on_another():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    first, second = sorted(os.sched_getaffinity(0))[:2]
    procs = ProcessSet()
    names = ("zebra@A", "bgpd@A", "rfclient@A", "zebra@B", "rfserver", "rfproxy",
             "ovs-vswitchd", "ovsdb-server", "bgpfeed@x1")  # fmt: skip
    try:
        for name in names:
            procs.add_popen(name, subprocess.Popen(["sleep", "60"]))
        sides = split_cpus(SimpleNamespace(procs=procs), "A")
        assert sides == {
            str(first): ["zebra@A", "bgpd@A", "rfclient@A"],
            str(second): ["rfserver", "rfproxy", "ovs-vswitchd", "ovsdb-server"],
        }
        allowed = {t.name: os.sched_getaffinity(t.pid) for t in procs.procs}
        assert allowed["rfclient@A"] == {first} and allowed["ovs-vswitchd"] == {second}
        # Another VM and the speakers stay free.
        assert allowed["zebra@B"] == allowed["bgpfeed@x1"] == os.sched_getaffinity(0)
    finally:
        procs.stop_all()

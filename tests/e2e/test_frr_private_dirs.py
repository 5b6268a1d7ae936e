"""A lab's FRR state stays in its run directory, out of FRR's shared directories.

Left to itself, FRR 8.4 writes ospfd-gr.json, ospf6d-gr.json, ospf6d-at-seq-no.dat and
bfdd.sock to /var/run/frr, and log buffers to /var/tmp/frr. Other engineers' labs (and
older checkouts) write there too, so comparing listings of the shared directories before
and after a run could flake. What cannot flake is what the daemons
themselves see: if every daemon's /var/run/frr and /var/tmp/frr are the lab's own
directories, the shared ones are out of its reach, and the files it creates must turn up in
the lab's.
"""

from __future__ import annotations

import glob
import os

import msgspec
from conftest import LABS

from routeflow.lab import checks
from routeflow.lab.model import load_lab, plan
from routeflow.lab.procs import Tracked
from routeflow.lab.runner import FRR_PRIVATE_DIRS, LabRun

#: What FRR 8.4 writes to /var/run/frr beyond the paths the lab sets on its command line.
STATE_FILES = {"ospfd-gr.json", "ospf6d-gr.json", "ospf6d-at-seq-no.dat", "bfdd.sock"}


def _same_dir(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _listing(path: str) -> list[str]:
    return os.listdir(path) if os.path.isdir(path) else [f"(no directory {path})"]


def _daemon_pids(run: LabRun) -> dict[str, int]:
    return {t.name.split("@")[0]: t.pid for t in run.procs.procs if t.pidfile}


def _assert_sees_own_dirs(vm_dir: str, daemon: str, pid: int) -> None:
    for target, (name, _mode) in FRR_PRIVATE_DIRS.items():
        # /proc/<pid>/root resolves paths in the daemon's own mount namespace, but an
        # absolute symbolic link on the way (/var/run -> /run) would lead back to ours.
        seen = f"/proc/{pid}/root{os.path.realpath(target)}"
        assert _same_dir(seen, os.path.join(vm_dir, name)), (
            f"{daemon} (pid {pid}) writes to the shared {target}"
        )
        assert not _same_dir(target, os.path.join(vm_dir, name)), (
            f"the lab's mount of {target} leaked to the host"
        )
    assert glob.glob(os.path.join(vm_dir, "frr-tmp", f"{daemon}.*")), (
        f"no log buffers of {daemon} in the lab's /var/tmp/frr"
    )


def test_frr_state_stays_in_the_run_directory(run_dir):
    # rftest1 made dual-stack with BFD: its one VM runs every daemon that writes such state
    # (zebra, bfdd, ospfd, ospf6d).
    lab = load_lab(os.path.join(LABS, "rftest1.yaml"))
    lab = msgspec.structs.replace(lab, ipv6=True, ospf=msgspec.structs.replace(lab.ospf, bfd=True))
    run = LabRun(plan(lab), run_dir, start_proxy=False)
    vm = run.plan.vms[0]
    vm_dir = run.vm_dir(vm)
    own_run = os.path.join(vm_dir, FRR_PRIVATE_DIRS["/var/run/frr"][0])
    started: dict[str, int] = {}
    try:
        run.start()
        pids = _daemon_pids(run)
        started.update(pids)
        assert set(pids) == {"zebra", "bfdd", "ospfd", "ospf6d"}, pids
        assert checks.wait_until(lambda: set(_listing(own_run)) >= STATE_FILES, 20), _listing(
            own_run
        )
        for daemon, pid in pids.items():
            _assert_sees_own_dirs(vm_dir, daemon, pid)
        # A daemon restarted in a running lab (as the fault tests do) stays private too.
        run.kill(f"ospfd@{vm.switch}")
        os.remove(os.path.join(own_run, "ospfd-gr.json"))
        run.start_frr_daemon(vm, "ospfd")
        started["ospfd (restarted)"] = _daemon_pids(run)["ospfd"]
        _assert_sees_own_dirs(vm_dir, "ospfd", started["ospfd (restarted)"])
        assert checks.wait_until(lambda: os.path.exists(os.path.join(own_run, "ospfd-gr.json")), 20)
    finally:
        run.stop()
    # Nothing of the lab keeps its mount namespace (and so its view of the directories).
    assert [n for n, pid in started.items() if Tracked(n, pid).alive()] == []

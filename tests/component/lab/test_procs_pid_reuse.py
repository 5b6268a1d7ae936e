"""A lab never signals a reuse of a pid it recorded (lab/procs.py), shown with a real reuse.

In a pid namespace of its own, the test makes the kernel hand a dead daemon's pid to a new
process (ns_last_pid, as CRIU restores pids), then asks the ProcessSet to stop the dead
daemon: the newcomer must live. Recording pids alone (what procs.py did before) kills it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")

SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from routeflow.lab.procs import ProcessSet

    d = sys.argv[1]
    pidfile = f"{d}/daemon.pid"
    # A self-daemonizing process, as FRR's: the shell writes the pid of a detached sleep.
    subprocess.run(["sh", "-c", f"sleep 600 >/dev/null 2>&1 & echo $! > {pidfile}"], check=True)
    procs = ProcessSet()
    t = procs.add_pidfile("daemon", pidfile)
    old = t.pid
    os.kill(old, signal.SIGKILL)  # it dies behind the lab's back (a crash, a chaos test)
    while t.alive():
        time.sleep(0.01)
    os.waitpid(old, 0)  # orphans come to this namespace's init, this script: reap it
    with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
        fh.write(str(old - 1))
    newcomer = subprocess.Popen(["sleep", "600"])
    assert newcomer.pid == old, (newcomer.pid, old)
    procs.stop_all()
    time.sleep(0.2)
    alive = newcomer.poll() is None
    newcomer.kill()
    newcomer.wait()
    print("newcomer alive" if alive else "newcomer killed")
    """
)


def test_a_dead_daemon_s_pid_given_to_another_process_is_not_signalled(tmp_path) -> None:
    r = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "newcomer alive"

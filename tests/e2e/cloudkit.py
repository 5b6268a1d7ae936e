"""What the cloud lab files share: `routeflow lab check LAB --json` run once, as an
operator runs it, its stages read back, and the processes it may have left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import LABS, ROOT

#: The cloud labs' VMs lease their addresses with busybox udhcpc.
needs_udhcpc = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/udhcpc") and not os.path.exists("/sbin/udhcpc"),
    reason="needs busybox udhcpc (scripts/setup.sh)",
)
ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}


def lab_check(lab: str, run_tag: str, tmp_path_factory) -> Iterator[dict]:
    """A module fixture's body: the --json result of `lab check labs/LAB.yaml`, with its
    exit code, output and run directory (the stages printed, with -s, for the closing
    notes); the run directory, which a fabric lab keeps for its logs, goes afterwards
    (ROUTEFLOW_KEEP_RUNS keeps it)."""
    out = tmp_path_factory.mktemp(lab) / "result.json"
    run_dir = f"/tmp/routeflow-tests/{run_tag}-{os.getpid()}"
    t = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "routeflow.cli", "lab", "check", os.path.join(LABS, f"{lab}.yaml"),
         "--json", str(out), "--run-dir", run_dir],
        capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    seconds = time.monotonic() - t
    assert out.exists(), done.stdout + done.stderr
    result = json.loads(out.read_text())
    result["exit"] = done.returncode
    result["output"] = done.stdout + done.stderr
    result["run_dir"] = run_dir
    print(f"\n{lab} lab check: {seconds:.1f} s")
    for s in result["stages"]:
        print(f"  {s['stage']}: {s['seconds']:.2f} s {s['detail']}")
    yield result
    if not os.environ.get("ROUTEFLOW_KEEP_RUNS"):
        shutil.rmtree(run_dir, ignore_errors=True)


def stage(check: dict, prefix: str) -> dict:
    """The first stage whose name starts with ``prefix`` (failing if there is none)."""
    found = [s for s in check["stages"] if s["stage"].startswith(prefix)]
    assert found, [s["stage"] for s in check["stages"]]
    return found[0]


def processes_naming(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (the run directory)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found

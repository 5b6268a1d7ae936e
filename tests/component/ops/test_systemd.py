"""The daemons as systemd runs them: readiness, watchdog, stop (fake NOTIFY_SOCKET),
and the unit files in etc/systemd as `systemd-analyze verify` reads them.

PID 1 here is not systemd, so no scratch systemd can start the units; the
daemons get the environment systemd would give them (NOTIFY_SOCKET,
WATCHDOG_USEC) and the test reads the datagrams systemd would read.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNITS = sorted((ROOT / "etc" / "systemd").glob("*.service"))
MAPPING = "vm_id,vm_port,ct_id,dp_id,dp_port\n0x5,1,1,0x5,1\n"


def _messages(sock: socket.socket, until: str, timeout: float = 20) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.extend(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            break
        if until in got:
            return got
    raise AssertionError(f"no {until} from the daemon; got {got}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def notify(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    yield sock
    sock.close()


def _daemon(tmp_path, argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (the child keeps it)
    return subprocess.Popen(
        [sys.executable, "-m", "routeflow.cli", *argv], env=env, stdout=log, stderr=log
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_rfserver_says_ready_pings_the_watchdog_and_says_stopping(tmp_path, notify):
    (tmp_path / "mapping.csv").write_text(MAPPING)
    proc = _daemon(
        tmp_path,
        [
            "server",
            "--mapping",
            str(tmp_path / "mapping.csv"),
            "--store",
            "memory:",
            "--listen",
            f"unix:{tmp_path / 'rf.sock'}",
        ],
    )
    try:
        got = _messages(notify, "READY=1")
        assert (tmp_path / "rf.sock").exists(), "READY before the socket listens"
        assert any(m.startswith("STATUS=serving RFProtocol") for m in got)
        _messages(notify, "WATCHDOG=1", timeout=5)
        _messages(notify, "WATCHDOG=1", timeout=5)
        proc.send_signal(signal.SIGTERM)
        _messages(notify, "STOPPING=1", timeout=10)
        assert proc.wait(10) == 0
    finally:
        _stop(proc)
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def test_rfproxy_says_ready_once_openflow_listens(tmp_path, notify):
    port = _free_port()
    proc = _daemon(
        tmp_path,
        [
            "proxy",
            "--server",
            f"unix:{tmp_path / 'nobody.sock'}",
            "--ct-id",
            "1",
            "--ofp-host",
            "127.0.0.1",
            "--ofp-port",
            str(port),
        ],
    )
    try:
        _messages(notify, "READY=1")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the OpenFlow listener is up when READY=1 is said
        _messages(notify, "WATCHDOG=1", timeout=5)
    finally:
        _stop(proc)


def test_tenant_server_says_ready_once_the_api_answers(tmp_path, notify):
    import urllib.request

    port = _free_port()
    proc = _daemon(
        tmp_path,
        [
            "tenant",
            "server",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:{tmp_path / 'tenant.db'}",
            "--log-format",
            "json",
        ],
    )
    try:
        got = _messages(notify, "READY=1")
        assert any(m.startswith("STATUS=serving the Neutron API") for m in got), got
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
            assert reply.status == 200  # READY=1 was said once the API answers
        _messages(notify, "WATCHDOG=1", timeout=5)
        proc.send_signal(signal.SIGTERM)
        _messages(notify, "STOPPING=1", timeout=10)
        proc.wait(10)
    finally:
        _stop(proc)
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_files_verify(tmp_path, unit):
    """`systemd-analyze verify` on each unit, ExecStart pointed at this checkout's routeflow."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (apt install systemd)"
    routeflow = Path(sys.prefix) / "bin" / "routeflow"
    assert routeflow.exists(), f"{routeflow} missing: the package is not installed in the venv"
    text = unit.read_text().replace("/usr/local/bin/routeflow", str(routeflow))
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=on-failure" in text
    name = unit.name.replace("@.service", "@vm1.service")
    (tmp_path / unit.name).write_text(text)
    if name != unit.name:
        (tmp_path / name).symlink_to(tmp_path / unit.name)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # PID 1 is not systemd here: verify cannot look up the running manager's units
        if line.strip() and "network-online.target" not in line and "multi-user" not in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr

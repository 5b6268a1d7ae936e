"""A real `routeflow tenant server` process per test module, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
TOKEN = "rf-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TenantServer:
    """One server process; `restart(kill=True)` SIGKILLs it and starts it on the same store."""

    workdir: Path
    port: int
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        cmd = [
            sys.executable,
            "-m",
            "routeflow.cli",
            "tenant",
            "server",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            f"sqlite:{self.workdir / 'tenant.db'}",
            "--token-file",
            str(self.workdir / "token"),
            *self.extra,
        ]
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"tenant server exited: {(self.workdir / 'server.log').read_text()}"
                )
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tenant server did not answer within 15 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, kill: bool = True) -> None:
        self.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.start()

    def clouds_yaml(self) -> Path:
        path = self.workdir / "clouds.yaml"
        path.write_text(
            "clouds:\n  rf:\n    auth_type: admin_token\n"
            f"    auth: {{endpoint: '{self.url}', token: {TOKEN}}}\n"
            f"    network_endpoint_override: '{self.url}/'\n    region_name: RegionOne\n"
        )
        return path


def start_server(tmp: Path, extra: tuple[str, ...] = ()) -> TenantServer:
    (tmp / "token").write_text(TOKEN + "\n")
    server = TenantServer(tmp, free_port(), extra)
    server.start()
    return server


@pytest.fixture(scope="module")
def tenant_server(tmp_path_factory) -> Iterator[TenantServer]:
    server = start_server(tmp_path_factory.mktemp("tenant"))
    try:
        yield server
    finally:
        server.stop()

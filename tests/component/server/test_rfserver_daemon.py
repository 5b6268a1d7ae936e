"""rfserver as a process: bad input from outside never takes it down.

Each test runs the real daemon (python -m routeflow.server) on a unix socket
in a temporary directory and talks to it with the real codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from routeflow.rflib import auth, codec, ipc
from routeflow.rflib import protocol as p

CSV = "vm_id,vm_port,ct_id,dp_id,dp_port\n0x5,1,1,0x5,1\n0x5,2,1,0x5,2\n"


class Daemon:
    def __init__(self, tmp_path, *extra: str, config: str = CSV):
        self.dir = tmp_path
        self.config = tmp_path / "rfserver.csv"
        self.config.write_text(config)
        self.sock = str(tmp_path / "s.sock")
        self.status = tmp_path / "status.json"
        self.log = tmp_path / "rfserver.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "routeflow.server",
                "--config",
                str(self.config),
                "--store",
                "memory:",
                "--listen",
                f"unix:{self.sock}",
                "--status-file",
                str(self.status),
                *extra,
            ],
            stdout=open(self.log, "wb"),  # noqa: SIM115 (the child keeps it)
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while not self.status.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "rfserver did not start"
            time.sleep(0.05)

    def state(self) -> dict:
        return json.loads(self.status.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    d.wait_ready()
    yield d
    d.stop()


def raw_send(path: str, data: bytes) -> bytes:
    """Send raw bytes and end our side (a truncated frame stays truncated, instead of
    waiting out the timeout); return what the server answers before closing."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


async def register_port(
    path: str, vm_id: int, secret: bytes | None = None, refused: bool = False
) -> list:
    """A VM registering a port; what rfserver sent back. ``refused``: read until rfserver
    closes the connection (up to 15 s: on a loaded machine its Error took over 0.6 s)."""
    conn = await ipc.open_connection(f"unix:{path}")
    hello = p.ClientHello(vm_id=vm_id)
    await conn.send(hello)
    if secret is not None:
        challenge = await conn.recv()
        assert isinstance(challenge, p.AuthChallenge)
        await conn.send(
            p.AuthResponse(mac=auth.answer(secret, challenge.nonce, auth.identity(hello)))
        )
    got = []
    # A refused peer may find the socket already closed by rfserver: what it was told
    # before that (an Error) is still read below.
    with contextlib.suppress(ConnectionError):
        await conn.send(p.PortRegister(vm_id=vm_id, vm_port=1, hwaddress="02:00:00:00:00:01"))
    await asyncio.sleep(0.3)
    try:
        while (msg := await asyncio.wait_for(conn.recv(), 15 if refused else 0.3)) is not None:
            got.append(msg)
    except (TimeoutError, ConnectionError):
        pass
    await conn.close()
    return got


def vm_ports(d: Daemon) -> list:
    return [a for a in d.state()["associations"] if a["vm_id"] == 5]


def test_bad_config_at_start_names_file_line_and_field(tmp_path):
    d = Daemon(tmp_path, config="vm_id,vm_port,ct_id,dp_id,dp_port\n0x5,1,1,0x5,x1\n")
    assert d.proc.wait(15) == 2
    out = d.log.read_text()
    assert "rfserver.csv:2" in out and "dp_port" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00" * 64,  # garbage
        b"RF\x01\x00\x00\x00\x00\x10abc",  # truncated, then closed
        b"RF\x09\x00\x00\x00\x00\x02\x80\x80",  # wrong version
        b"RF\x01\x00\xff\xff\xff\xff",  # oversized length
        codec.encode(p.ClientHello(vm_id=5))[:8] + b"\xc1" * 20,  # undecodable body
    ],
    ids=["garbage", "truncated", "wrong-version", "oversized", "undecodable"],
)
def test_bad_frames_close_that_connection_only(daemon, frame):
    raw_send(daemon.sock, frame)
    assert daemon.proc.poll() is None
    asyncio.run(register_port(daemon.sock, 5))
    assert [a["state"] for a in vm_ports(daemon)] == ["idle client port"]


def test_sighup_reload_keeps_old_config_when_new_one_is_bad(daemon):
    assert daemon.state()["config_entries"] == 2
    daemon.config.write_text("vm_id,vm_port,ct_id,dp_id\n0x5,1,1,0x5\n")
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert daemon.proc.poll() is None
    assert daemon.state()["config_entries"] == 2
    assert "keeping the old one" in daemon.log.read_text()
    daemon.config.write_text(CSV + "0x5,3,1,0x5,3\n")
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while daemon.state()["config_entries"] != 3:
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.1)


@pytest.fixture
def secured(tmp_path):
    secret_file = tmp_path / "secret"
    secret = auth.write_secret(str(secret_file))
    d = Daemon(tmp_path, "--secret-file", str(secret_file))
    d.wait_ready()
    yield d, secret
    d.stop()


def test_authenticated_peer_is_served(secured):
    d, secret = secured
    asyncio.run(register_port(d.sock, 5, secret))
    assert [a["state"] for a in vm_ports(d)] == ["idle client port"]


@pytest.mark.parametrize("secret", [None, b"not-the-right-secret-at-all"], ids=["none", "wrong"])
def test_unauthenticated_peer_is_refused_and_logged(secured, secret):
    d, _right = secured
    if secret is None:
        got = asyncio.run(register_port(d.sock, 5, refused=True))
    else:
        got = asyncio.run(register_port(d.sock, 5, secret, refused=True))
    assert vm_ports(d) == []
    assert any(isinstance(m, p.Error) and m.code == "auth-failed" for m in got), got
    assert "refused vm:0x5" in d.log.read_text()
    assert d.state()["auth_failures"] == 1


def test_secret_file_readable_by_others_is_refused(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("x" * 40)
    os.chmod(secret_file, 0o644)
    d = Daemon(tmp_path, "--secret-file", str(secret_file))
    assert d.proc.wait(15) == 2
    assert "chmod 600" in d.log.read_text()

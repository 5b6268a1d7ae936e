"""sd_notify against a fake NOTIFY_SOCKET: the datagrams systemd would read."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from routeflow.rflib import sdnotify


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def test_outside_systemd_every_call_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_states_go_as_one_datagram_of_lines(notify_socket):
    assert sdnotify.notify("READY=1", "STATUS=serving")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving"


def test_abstract_namespace_socket(monkeypatch):
    name = f"routeflow-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(64) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_a_vanished_socket_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "period"),
    [
        (None, None, None),
        ("0", None, None),
        ("junk", None, None),
        ("10000000", None, 5.0),
        ("10000000", "self", 5.0),
        ("10000000", "1", None),  # meant for another process
    ],
)
def test_watchdog_period_is_half_of_watchdogsec(monkeypatch, usec, pid, period):
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(os.getpid()) if value == "self" else value)
    assert sdnotify.watchdog_period() == period


def test_watchdog_pings_from_the_loop(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # a ping every 10 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    async def run() -> None:
        task = asyncio.ensure_future(sdnotify.watchdog())
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(run())
    pings = []
    notify_socket.settimeout(0.2)
    try:
        while True:
            pings.append(notify_socket.recv(64))
    except TimeoutError:
        pass
    assert len(pings) >= 3 and set(pings) == {b"WATCHDOG=1"}

"""The Wireshark dissector (tools/wireshark/rfprotocol.lua) decodes real rfserver traffic.

Captures on loopback with dumpcap while real RFProtocol peers talk to an rfserver
listening on TCP, then lets tshark decode the capture with the Lua dissector.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import pytest

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p

from .conftest import MAC1, VM, free_port, rfserver_argv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LUA = os.path.join(ROOT, "tools", "wireshark", "rfprotocol.lua")

pytestmark = pytest.mark.component  # captures as root


def _tools() -> tuple[str, str]:
    tshark, dumpcap = shutil.which("tshark"), shutil.which("dumpcap")
    if not tshark or not dumpcap:
        pytest.skip("tshark/dumpcap not installed (scripts/setup.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("capturing on lo needs root here")
    return tshark, dumpcap


def _start_capture(dumpcap: str, port: int, path: str) -> subprocess.Popen:
    cap = subprocess.Popen(
        [dumpcap, "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        if cap.poll() is not None:
            pytest.skip(f"dumpcap cannot capture on lo here: {cap.stderr.read().strip()}")
        if time.monotonic() > deadline:
            cap.kill()
            pytest.skip("dumpcap did not start capturing on lo")
        time.sleep(0.05)
    time.sleep(0.3)  # the filter is attached once the file header is written
    return cap


async def _talk(address: str) -> None:
    conn = await ipc.open_connection(address)
    await conn.send(p.ClientHello(vm_id=VM, hostname="vm-A"))
    await conn.send(p.PortRegister(vm_id=VM, vm_port=1, hwaddress=MAC1, ifname="eth1"))
    await conn.send(
        p.RouteMod(
            mod=p.Mod.ADD,
            vm_id=VM,
            routes=[
                p.Route(prefix="10.9.0.0/16", nexthops=[p.NextHop(vm_port=1, gateway="10.0.0.2")]),
                p.Route(prefix="172.31.1.0/24", kind=p.RouteKind.CONNECTED),
            ],
        )
    )
    # A frame much larger than one loopback segment: TCP reassembly must kick in.
    big = [
        p.Route(prefix=f"10.{i // 256}.{i % 256}.0/24", nexthops=[p.NextHop(vm_port=1)])
        for i in range(3000)
    ]
    await conn.send(p.RouteMod(mod=p.Mod.ADD, vm_id=VM, routes=big))
    await asyncio.sleep(0.3)
    await conn.close()


def test_dissector_decodes_rfprotocol(tmp_path):
    tshark, dumpcap = _tools()
    port = free_port()
    server = subprocess.Popen(
        rfserver_argv(tmp_path, f"tcp:127.0.0.1:{port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pcap = str(tmp_path / "rf.pcapng")
    cap = None
    try:
        cap = _start_capture(dumpcap, port, pcap)
        asyncio.run(_wait_and_talk(f"tcp:127.0.0.1:{port}"))
        time.sleep(0.5)
    finally:
        if cap is not None:
            cap.send_signal(signal.SIGTERM)
            cap.wait(10)
        server.terminate()
        server.wait(10)

    def dissect(*args: str) -> subprocess.CompletedProcess:
        """tshark over the capture with our dissector, RFProtocol frames only."""
        return subprocess.run(
            [
                tshark,
                "-r",
                pcap,
                "-X",
                f"lua_script:{LUA}",
                "-o",
                f"rfprotocol.tcp_port:{port}",
                "-Y",
                "rfprotocol",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = dissect(
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
        "-e",
        "rfprotocol.version",
        "-e",
        "rfprotocol.type",
        "-e",
        "rfprotocol.key",
    )
    assert out.returncode == 0, out.stderr
    types: list[str] = []
    keys: list[str] = []
    for line in out.stdout.splitlines():
        version, kinds, fields = [*line.split("\t"), "", ""][:3]
        assert set(version.split("|")) == {"1"}, line
        types += kinds.split("|")
        keys += fields.split("|")
    assert types == ["ClientHello", "PortRegister", "RouteMod", "RouteMod"], out.stdout
    assert {"vm_id", "hostname", "vm_port", "hwaddress", "ifname", "mod", "routes"} <= set(keys)

    # The packet details show decoded values, nested arrays included.
    detail = dissect("-V").stdout
    assert "RouteFlow RFProtocol: PortRegister" in detail
    assert f'hwaddress: "{MAC1}"' in detail
    assert "vm_id: 5" in detail
    assert 'prefix: "10.9.0.0/16"' in detail
    assert 'gateway: "10.0.0.2"' in detail


async def _wait_and_talk(address: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = await ipc.open_connection(address, timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        await conn.close()  # a connection that sends nothing: the server just drops it
        break
    await _talk(address)

"""rfserver's log lines about a VM, a controller, an association carry their ids (--log-format)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p

CSV = "vm_id,vm_port,ct_id,dp_id,dp_port\n0x5,1,1,0x5,1\n"


async def _one_association(address: str) -> None:
    ct = await ipc.open_connection(address)
    await ct.send(p.ControllerRegister(ct_id=1))
    vm = await ipc.open_connection(address)
    await vm.send(p.ClientHello(vm_id=0x5, hostname="vm-A"))
    await vm.send(
        p.PortRegister(vm_id=0x5, vm_port=1, hwaddress="02:00:00:00:05:01", ifname="eth1")
    )
    await ct.send(p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1, name="s1-eth1"))
    await asyncio.sleep(0.3)
    await ct.send(p.VirtualPlaneMap(vm_id=0x5, vm_port=1, vs_id=0x99, vs_port=1))
    await asyncio.sleep(0.5)
    for c in (vm, ct):
        await c.close()
    await asyncio.sleep(0.3)


def _run(tmp_path, fmt: str) -> str:
    (tmp_path / "m.csv").write_text(CSV)
    sock, status = tmp_path / "s.sock", tmp_path / "status.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "routeflow.server", "--mapping", str(tmp_path / "m.csv"),
         "--store", "memory:", "--listen", f"unix:{sock}", "--status-file", str(status),
         "--log-format", fmt],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not status.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "rfserver did not start"
            time.sleep(0.05)
        asyncio.run(_one_association(f"unix:{sock}"))
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_json_lines_carry_the_ids(tmp_path):
    lines = [json.loads(line) for line in _run(tmp_path, "json").splitlines()]
    by_message = {d["message"].split(" from ")[0]: d for d in lines}
    vm = by_message["rfclient vm 0x5 connected"]
    assert vm["vm_id"] == "0x5" and vm["level"] == "INFO" and vm["logger"] == "routeflow.server"
    assert by_message["rfproxy ct_id 1 replica ct1 connected"]["ct_id"] == "1"
    active = by_message["association active: vm 0x5 port 1 <-> dp 0x5 port 1"]
    assert {k: active[k] for k in ("vm_id", "vm_port", "ct_id", "dp_id", "dp_port")} == {
        "vm_id": "0x5", "vm_port": "1", "ct_id": "1", "dp_id": "0x5", "dp_port": "1",
    }  # fmt: skip
    assert "vm_id" not in by_message["rfserver listening on unix:" + str(tmp_path / "s.sock")]


@pytest.mark.parametrize("fmt", ["text", "auto"])  # auto: stderr is no journal here
def test_text_lines_end_with_key_value_ids(tmp_path, fmt):
    out = _run(tmp_path, fmt)
    assert "association active: vm 0x5 port 1 <-> dp 0x5 port 1 vm_id=0x5 vm_port=1 ct_id=1" in out
    assert "rfclient vm 0x5 disconnected" in out and "Traceback" not in out, out

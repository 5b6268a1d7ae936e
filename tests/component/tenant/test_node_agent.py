"""The node agent against a real private OVS: it installs the diff, and a SIGKILL plus
restart writes nothing (the flows are read back by cookie, never flushed).

br-int gets its controller in the transaction that creates it (OVS flushes a
bridge's flows when it first gets a controller). The tenant server side is
``serve_nodes`` over a unix socket with an in-memory repository; the pipeline
is the toy of ``toypipe.py``. Every process is stopped by its recorded pid.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from routeflow.lab.ovs import OvsInstance
from routeflow.lab.procs import ProcessSet
from routeflow.tenant.model import Change, Cloud, Kind
from routeflow.tenant.nodelink import serve_nodes
from unit.tenant.cloudfix import VM1, MemoryRepo, cloud

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

TESTS = Path(__file__).resolve().parents[2]
SRC = TESTS.parent / "src"


def wait(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Server:
    """serve_nodes on an asyncio loop of its own thread."""

    def __init__(self, path: str, model: Cloud) -> None:
        self.repo = MemoryRepo(model)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.link = asyncio.run_coroutine_threadsafe(
            serve_nodes(self.repo, f"unix:{path}"), self.loop
        ).result(10)

    def emit(self, change: Change) -> None:
        self.loop.call_soon_threadsafe(self.repo.emit, change)

    def close(self) -> None:
        async def stop() -> None:
            self.link.close()
            await self.link.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _node(
    tmp_path_factory: pytest.TempPathFactory, vifs: dict[str, int], model: Cloud
) -> Iterator[dict[str, object]]:
    ns = f"rftn-{secrets.token_hex(3)}"
    procs = ProcessSet()
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    server: Server | None = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=10)
        rundir = tmp_path_factory.mktemp("ovs")
        ovs = OvsInstance(str(rundir), procs)
        ovs.start(
            popen=lambda argv, **kw: subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], start_new_session=True, **kw
            )
        )
        with socket.socket() as s:  # a free port (the namespace has its own, but be tidy)
            s.bind(("127.0.0.1", 0))
            ofp_port = s.getsockname()[1]
        cmd = [
            "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
            "fail-mode=secure", "protocols=OpenFlow13", "other-config:disable-in-band=true",
            "--", "set-controller", "br-int", f"tcp:127.0.0.1:{ofp_port}",
            "--", "add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0",
            "type=vxlan", "ofport_request=100", "options:remote_ip=flow", "options:key=flow",
        ]  # fmt: skip
        for i, (port_id, ofport) in enumerate(sorted(vifs.items())):
            dev = f"vm{i}"
            cmd += [
                "--", "add-port", "br-int", dev, "--", "set", "interface", dev, "type=internal",
                f"ofport_request={ofport}", f"external_ids:iface-id={port_id}",
            ]  # fmt: skip
        ovs.vsctl(*cmd)
        server = Server(str(rundir / "nodes.sock"), model)
        yield {
            "ns": ns,
            "ovs": ovs,
            "procs": procs,
            "server": server,
            "ofp_port": ofp_port,
            "rundir": rundir,
        }
    finally:
        if server is not None:
            server.close()
        procs.stop_all()
        subprocess.run(["ip", "netns", "delete", ns], timeout=10, check=False)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    yield from _node(tmp_path_factory, {VM1.id: 1}, cloud())


def start_agent(
    node: dict[str, object], log: Path, name: str = "c1", pipeline: str = "component.tenant.toypipe"
) -> subprocess.Popen[bytes]:
    ovs = node["ovs"]
    assert isinstance(ovs, OvsInstance)
    rundir = node["rundir"]
    env = {**os.environ, **ovs.env, "PYTHONPATH": f"{SRC}:{TESTS}"}
    argv = [
        "ip", "netns", "exec", str(node["ns"]), sys.executable, "-m", "routeflow.tenant.nodemain",
        "--name", name, "--server", f"unix:{rundir}/nodes.sock", "--tunnel-ip", "198.51.100.1",
        "--ofp-port", str(node["ofp_port"]), "--ovsdb", f"unix:{rundir}/db.sock",
    ]  # fmt: skip
    if pipeline:
        argv += ["--pipeline", pipeline]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    procs = node["procs"]
    assert isinstance(procs, ProcessSet)
    procs.add_popen("agent", proc)
    return proc


def flows(node: dict[str, object]) -> list[str]:
    ovs = node["ovs"]
    assert isinstance(ovs, OvsInstance)
    text = ovs.ofctl("-O", "OpenFlow13", "dump-flows", "br-int")
    return [line.strip() for line in text.splitlines() if "cookie=" in line]


def durations(lines: list[str]) -> list[float]:
    return [float(m.group(1)) for line in lines if (m := re.search(r"duration=([\d.]+)s", line))]


def test_install_then_sigkill_restart_writes_nothing(
    node: dict[str, object], tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    server = node["server"]
    assert isinstance(server, Server)
    agent = start_agent(node, log)
    # net 100 and vm1 -> vxlan0 (port-1 is in the model and plugged here)
    wait(lambda: len(flows(node)) == 2, "the agent's first install")
    wait(lambda: ("port-1", "c1", True) in server.repo.binds, "the binding report")
    before = flows(node)
    assert any("in_port=1" in f and "output:100" in f for f in before), before

    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    time.sleep(1.0)  # the flows age while no agent runs
    agent = start_agent(node, log)
    wait(lambda: log.read_text().count("switch holds 2 of our flows") == 1, "the read-back")
    wait(lambda: len(server.link.nodes) == 1 and log.read_text().count("connected") >= 2, "link")
    time.sleep(0.5)
    after = flows(node)
    assert len(after) == 2
    assert min(durations(after)) >= 1.0, f"flows were re-installed: {after}"
    assert log.read_text().count("flows: +") == 1, "the restart wrote flows"

    # a delta still reaches the switch as a diff: deleting the port removes its flow
    server.emit(Change(kind=Kind.PORT, id=VM1.id, revision=50))
    wait(lambda: len(flows(node)) == 1, "the port's flow to go")
    agent.send_signal(signal.SIGTERM)
    agent.wait(10)


@pytest.fixture(scope="module")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    from routeflow.tenant import sample

    yield from _node(tmp_path_factory, sample.bindings("n1"), sample.cloud())


def test_the_tenant_compiler_restart_writes_nothing(
    real_node: dict[str, object], tmp_path: Path
) -> None:
    """The real pipeline: the switch ends up with exactly compile_node's flows, and a
    SIGKILL + restart reads them back equal (ovs-ofctl + ovstext) and writes none."""
    ofmsg = pytest.importorskip("routeflow.tenant.ofmsg")  # H2's flow messages (landing)
    from routeflow.tenant import compiler, sample

    want = compiler.compile_node(sample.cloud(), compiler.NodeContext("n1", sample.bindings("n1")))
    ovs = real_node["ovs"]
    assert isinstance(ovs, OvsInstance)

    def problems() -> list[str]:
        return ofmsg.same_flows(want, ovs.ofctl("-O", "OpenFlow13", "dump-flows", "br-int"))

    log = tmp_path / "agent.log"
    agent = start_agent(real_node, log, name="n1", pipeline="")
    try:
        wait(lambda: not problems(), "the compiler's flows on the switch")
    except AssertionError:
        raise AssertionError("\n".join(problems()[:8])) from None
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    agent = start_agent(real_node, log, name="n1", pipeline="")
    wait(lambda: f"switch holds {len(want)} of our flows" in log.read_text(), "the read-back")
    time.sleep(0.5)
    assert log.read_text().count("flows: +") == 1, "the restart wrote flows"
    assert not problems()
    agent.send_signal(signal.SIGTERM)
    agent.wait(10)

"""Killing tenant daemons under traffic: the data plane does not notice, nothing is lost.

Two compute nodes on real Open vSwitch (lab/cloudrun.py: private ovs-vswitchd per node,
VXLAN underlay), the real tenant server (SQLite store) and two real node agents, one
network with a VM on each node, created through the API. A ping every 20 ms runs from
c1's VM to c2's VM while:

1. c1's node agent is SIGKILLed and started again: it reads br-int's flows back and
   writes none (no "flows: +" line, every flow older than the kill), and not one ping
   is lost;
2. the tenant server is SIGKILLed while a client creates networks as fast as it is
   answered: the ping goes on; the restarted server (same store, same port) answers,
   holds every network it acknowledged, the agents come back to it and write nothing.

A ping is lost when its sequence number is below the last one answered and never got
an answer (one still in flight when the ping stops is not counted).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from routeflow.lab.cloud import CloudLab, CloudNode, TenantLab, TenantNetwork, TenantVm
from routeflow.lab.cloudrun import CloudRun, Vm, cloud_up

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

CIDR = "10.7.0.0/24"
CLOUD = CloudLab(
    nodes=(
        CloudNode(name="c1", index=1, tunnel_ip="198.51.100.1/24"),
        CloudNode(name="c2", index=2, tunnel_ip="198.51.100.2/24"),
    ),
    underlay="198.51.100.0/24",
    underlay_mtu=1500,
    mtu=1450,
    api_listen="127.0.0.1:0",
    tenants=(
        TenantLab(
            name="rel",
            networks=(TenantNetwork(name="rel-net", cidr=CIDR, gateway_ip="10.7.0.1"),),
            routers=(),
            vms=(
                TenantVm(name="v1", network="rel-net", node="c1", ip="10.7.0.11"),
                TenantVm(name="v2", network="rel-net", node="c2", ip="10.7.0.12"),
            ),
        ),
    ),
)


def wait(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


@dataclass
class Pinger:
    """``ping -i 0.02`` from a VM; ``stop()`` returns (sent, answered, lost seqs)."""

    run: CloudRun
    vm: Vm
    dst: str
    proc: subprocess.Popen[str] | None = None
    out: list[str] = field(default_factory=list)

    def start(self) -> None:
        argv = ["ip", "netns", "exec", self.vm.ns, "ping", "-n", "-i", "0.02", "-W", "1", self.dst]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line)

    def answered(self) -> set[int]:
        return {
            int(m.group(1))
            for line in list(self.out)
            if (m := re.search(r"icmp_seq=(\d+) ttl", line))
        }

    def stop(self) -> tuple[int, int, list[int]]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        got = self.answered()
        last = max(got, default=0)
        lost = sorted(set(range(1, last + 1)) - got)
        return last, len(got), lost


def agent_log(run: CloudRun, name: str) -> str:
    with open(os.path.join(run.run_dir, f"agent-{name}.log")) as fh:
        return fh.read()


def server_log(run: CloudRun) -> str:
    with open(os.path.join(run.run_dir, "tenant-server.log")) as fh:
        return fh.read()


def flow_ages(run: CloudRun, name: str) -> list[float]:
    text = run.nodes[name].ofctl("dump-flows", "br-int")
    return [float(m.group(1)) for m in re.finditer(r"duration=([\d.]+)s", text)]


@pytest.fixture
def pinger(cloud: Any) -> Iterator[Pinger]:
    """v1 -> v2 every 20 ms (started by the test); stopped whatever happens."""
    run, vms = cloud
    ping = Pinger(run, vms["v1"], vms["v2"].fixed_ip)
    try:
        yield ping
    finally:
        if ping.proc is not None and ping.proc.poll() is None:
            ping.proc.kill()
            ping.proc.wait(10)


@pytest.fixture(scope="module")
def cloud() -> Iterator[tuple[CloudRun, dict[str, Vm]]]:
    with cloud_up(CLOUD, bootstrap=False) as run:
        ports = run.bootstrap()
        vms = {
            vm.name: vm
            for vm in run.plug_many([(n, p.binding_host_id, p) for n, p in ports.items()])
        }
        assert run.wait_active(list(vms.values())) == []
        for vm in vms.values():  # the port's own address (port security checks it)
            assert (
                run.vm_exec(vm, "ip", "addr", "add", f"{vm.fixed_ip}/24", "dev", "eth0").returncode
                == 0
            )
        r = run.ping(vms["v1"], vms["v2"].fixed_ip, count=3, wait=2)
        assert r.returncode == 0, r.stdout + r.stderr
        for node in run.nodes:
            assert run.flow_problems(node) == [], node
        yield run, vms


def test_node_agent_sigkill_under_a_20ms_ping_loses_nothing(cloud: Any, pinger: Pinger) -> None:
    run, _vms = cloud
    writes = agent_log(run, "c1").count("flows: +")
    ping = pinger
    ping.start()
    wait(lambda: len(ping.answered()) >= 10, "the ping to run")
    run.kill("agent-c1")
    killed = time.monotonic()
    time.sleep(0.5)  # pings go on with no agent at all
    holds = agent_log(run, "c1").count("switch holds")
    run.restart_agent("c1")
    wait(lambda: agent_log(run, "c1").count("switch holds") > holds, "the restarted agent's switch")
    wait(lambda: agent_log(run, "c1").count("model full state") >= 2, "the agent's server session")
    up = time.monotonic() - killed
    time.sleep(0.5)
    sent, answered, lost = ping.stop()
    ages = flow_ages(run, "c1")
    print(f"\nagent SIGKILL: back in {up:.1f} s; ping {answered}/{sent} answered, lost {lost}")
    assert lost == [], f"lost pings {lost} of {sent}"
    assert agent_log(run, "c1").count("flows: +") == writes, "the restarted agent wrote flows"
    assert ages and min(ages) >= up, f"a flow was re-installed: ages {sorted(ages)[:5]} < {up:.1f}"
    assert run.flow_problems("c1") == []


def _api(run: CloudRun, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        run.api_url + path, data=data, method=method,
        headers={"X-Auth-Token": run.token, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


def test_tenant_server_sigkill_under_ping_and_writes_loses_nothing(
    cloud: Any, pinger: Pinger
) -> None:
    run, _vms = cloud
    writes = {n: agent_log(run, n).count("flows: +") for n in run.nodes}
    sessions = {n: agent_log(run, n).count("model full state") for n in run.nodes}
    acked: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def client() -> None:  # creates networks back to back; records what was acknowledged
        i = 0
        while not stop.is_set():
            i += 1
            try:
                net = _api(run, "POST", "/v2.0/networks", {"network": {"name": f"w{i}"}})
                acked.append(net["network"]["id"])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                refused.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.02)

    ping = pinger
    ping.start()
    writer = threading.Thread(target=client, daemon=True)
    writer.start()
    try:
        wait(lambda: len(acked) >= 20, "the client's first acknowledged writes")
        run.kill("tenant-server")
        down = time.monotonic()
        at_kill = len(acked)
        time.sleep(0.5)  # the data plane alone
        run.restart_server()
        back = time.monotonic() - down
        wait(
            lambda: len(acked) >= at_kill + 20,
            f"writes acknowledged by the restarted server (refused: {refused[-3:]}; "
            f"{server_log(run)[-1500:]})",
        )
    finally:
        stop.set()
        writer.join(10)
    for node in run.nodes:
        wait(
            lambda n=node: agent_log(run, n).count("model full state") > sessions[n], f"{node} back"
        )
    time.sleep(0.5)
    sent, answered, lost = ping.stop()
    stored = {n["id"] for n in _api(run, "GET", "/v2.0/networks")["networks"]}
    missing = [oid for oid in acked if oid not in stored]
    print(
        f"\ntenant server SIGKILL: API back in {back:.1f} s; {len(acked)} writes acknowledged, "
        f"{len(refused)} refused meanwhile, {len(missing)} missing; ping {answered}/{sent}, "
        f"lost {lost}"
    )
    assert missing == [], f"acknowledged but gone after the restart: {missing}"
    assert lost == [], f"lost pings {lost} of {sent}"
    for node in run.nodes:
        assert agent_log(run, node).count("flows: +") == writes[node], f"{node} wrote flows"
        assert run.flow_problems(node) == [], node

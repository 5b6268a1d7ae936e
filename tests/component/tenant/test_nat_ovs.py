"""SNAT and floating IPs on real Open vSwitch: two compute nodes, a gateway node, "outside".

The sample cloud with its external network (tenant/sample.py ``cloud_external``):
nodes n1 and n2 hold VMs, g1 is the gateway node, whose external port (br-int ofport
101) is a veth to the namespace "outside" (203.0.113.1, the external subnet's gateway).
Flows are ``compile_node`` loaded with ``ovs-ofctl``; g1's next-hop MAC is given as its
agent would learn it (tenant/extarp.py has its own tests). Traffic is UDP: each side
runs a tiny echo server that answers with the address it saw the request come from.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import msgspec
import pytest

from routeflow.lab.ovsnode import OvsNode, Underlay, netns_add, netns_delete, run
from routeflow.lab.procs import ProcessSet
from routeflow.tenant import ofmsg, sample
from routeflow.tenant import pipeline as p
from routeflow.tenant.compiler import NodeContext, compile_node
from routeflow.tenant.model import Cloud, SecurityGroupRule

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

NODES = {"n1": sample.NODES["n1"], "n2": sample.NODES["n2"], "g1": sample.GATEWAY_NODE[1]}
OUTSIDE_IP, OUTSIDE_MAC = sample.EXTERNAL[3], "02:00:5e:00:01:01"
FID, FIP, _ = sample.FLOATING_IP
PORT = 7777
ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "while True:\n"
    "    d,a=s.recvfrom(100)\n"
    "    s.sendto((sys.argv[2]+' '+a[0]).encode(),a)\n"
)
ASK = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.settimeout(0.3)\n"
    "s.sendto(b'?',(sys.argv[1],int(sys.argv[2])))\n"
    "d,a=s.recvfrom(100)\n"
    "print(d.decode(),a[0])\n"
)


def cloud() -> Cloud:
    """Tenant A's default group also lets UDP in from anywhere (the floating IP's way)."""
    c = sample.cloud_external()
    sg = c.security_groups["sg-tenant-a"]
    udp = SecurityGroupRule(
        id="udp-in", direction="ingress", protocol="udp", remote_ip_prefix="0.0.0.0/0", key=99
    )
    sg = msgspec.structs.replace(sg, rules=(*sg.rules, udp))
    return msgspec.structs.replace(c, security_groups={**c.security_groups, sg.id: sg})


def moved(c: Cloud, port: str) -> Cloud:
    fip = msgspec.structs.replace(
        c.floatingips[FID], port_id=port, fixed_ip_address=sample.VMS[port][2]
    )
    return msgspec.structs.replace(c, floatingips={FID: fip})


class Lab:
    def __init__(self, tag: str, nodes: dict[str, OvsNode], outside: str, procs: ProcessSet):
        self.tag, self.nodes, self.outside, self.procs = tag, nodes, outside, procs

    def ns(self, vm: str) -> str:
        return self.outside if vm == "outside" else f"{vm}-{self.tag}"

    def load(self, c: Cloud) -> None:
        """Every node's switch holds exactly the compiled flows of ``c`` (one bundle each)."""
        for name, node in self.nodes.items():
            ctx = NodeContext(name, node.bindings())
            if name == "g1":
                ctx = NodeContext(
                    name, {}, external_ofport=p.EXTERNAL_OFPORT,
                    neighbours={OUTSIDE_IP: OUTSIDE_MAC},
                )  # fmt: skip
            flows = compile_node(c, ctx)
            with tempfile.NamedTemporaryFile("w", suffix=".flows", dir=node.rundir) as fh:
                fh.write(ofmsg.flows_text(flows))
                fh.flush()
                node.ofctl("--bundle", "replace-flows", "br-int", fh.name)

    def echo(self, where: str, name: str) -> None:
        cmd = ["ip", "netns", "exec", self.ns(where), sys.executable, "-c", ECHO, str(PORT), name]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.add_popen(f"echo-{name}", proc)

    def ask(self, where: str, dst: str, deadline: float = 5.0) -> tuple[str, str, str]:
        """(who answered, the source it saw, the reply's source), retried until
        ``deadline`` (the first packet may meet an unresolved underlay neighbour)."""
        end = time.monotonic() + deadline
        while True:
            r = subprocess.run(
                ["ip", "netns", "exec", self.ns(where), sys.executable, "-c", ASK, dst, str(PORT)],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            if r.returncode == 0:
                who, seen, src = r.stdout.split()
                return who, seen, src
            if time.monotonic() > end:
                raise AssertionError(f"no answer from {dst} to {where}: {r.stderr[-300:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tag = secrets.token_hex(2)
    procs = ProcessSet()
    ul = Underlay(f"ul-{tag}")
    nodes = {n: OvsNode(f"{n}-{tag}", str(tmp_path_factory.mktemp(n)), procs) for n in NODES}
    outside = f"out-{tag}"
    made_outside = False
    try:
        ul.start()
        for name, node in nodes.items():
            node.start()
            node.add_underlay(ul, f"{NODES[name]}/24")
            node.add_br_int(local_ip=NODES[name])
        netns_add(outside)
        made_outside = True
        nodes["g1"].add_external("eth0", outside)
        run(["ip", "-n", outside, "link", "set", "eth0", "address", OUTSIDE_MAC])
        run(["ip", "-n", outside, "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0"])
        for vm in ("a1", "a2", "a3"):
            _net, where, ip = sample.VMS[vm]
            nodes[where].plug_vm(
                f"{vm}-{tag}", vm, sample.mac(list(sample.VMS).index(vm) + 1), f"{ip}/24",
                gateway=ip.rsplit(".", 1)[0] + ".1", ofport=sample.bindings(where)[vm],
            )  # fmt: skip
        for name, node in nodes.items():
            node.resolve_underlay(ip for n, ip in NODES.items() if n != name)
        lab = Lab(tag, nodes, outside, procs)
        lab.load(cloud())
        lab.echo("outside", "outside")
        for vm in ("a1", "a2", "a3"):
            lab.echo(vm, vm)
        yield lab
    finally:
        procs.stop_all()
        for node in nodes.values():
            node.stop()
        if made_outside:
            netns_delete(outside)
        ul.stop()


def test_outside_sees_the_snat_address(lab):
    who, seen, src = lab.ask("a1", OUTSIDE_IP)  # a1 on n1, NAT on g1
    assert (who, seen, src) == ("outside", sample.ROUTER_GATEWAY_IP, OUTSIDE_IP)
    who, seen, _ = lab.ask("a2", OUTSIDE_IP)
    assert seen == sample.ROUTER_GATEWAY_IP


def test_floating_ip_reaches_its_vm_and_is_its_source(lab):
    who, seen, src = lab.ask("outside", FIP)
    assert (who, seen, src) == ("a3", OUTSIDE_IP, FIP)
    _, seen, _ = lab.ask("a3", OUTSIDE_IP)  # a3's own connections leave from its FIP
    assert seen == FIP


def test_reassociation_moves_the_floating_ip(lab):
    try:
        lab.load(moved(cloud(), "a1"))
        start = time.monotonic()
        who, _, src = lab.ask("outside", FIP)
        took = time.monotonic() - start
        assert (who, src) == ("a1", FIP)
        print(f"floating IP moved a3 -> a1: first answer {took * 1000:.0f} ms after the flows")
    finally:
        lab.load(cloud())

"""Security groups on real Open vSwitch: two nodes over VXLAN, VMs that ping and talk TCP.

The sample cloud's tenant A on nodes n1 (a1, a4) and n2 (a2); every VM starts in the
tenant's ``default`` group. Each step changes the model, compiles every node again and
applies only the difference (``ovs-ofctl del-flows --strict`` of what went, ``add-flows``
of what came), then checks the switch holds exactly the compiled flows and that real
traffic does what the rules say: the default group admits members only; a tcp rule
opens exactly its port; a TCP connection established under a rule keeps working while
the rule is replaced by a wider one (conntrack entries stay, only the rule flows change);
a port without port security is not filtered.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import msgspec
import pytest

from routeflow.lab.ovsnode import OvsNode, Underlay
from routeflow.lab.procs import ProcessSet
from routeflow.rflib import ofsim, ovstext
from routeflow.tenant import ofmsg, sample
from routeflow.tenant import pipeline as p
from routeflow.tenant.compiler import NodeContext, compile_node, diff
from routeflow.tenant.model import Cloud, SecurityGroup, SecurityGroupRule

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

CLOUD = sample.cloud()
NODES = ("n1", "n2")
VMS = {vm: spec for vm, spec in sample.VMS.items() if vm in ("a1", "a2", "a4")}
IP = {name: ip for name, (_, _, ip) in VMS.items()}
MAC = {port.id: port.mac_address for port in CLOUD.ports.values()}
PORTS = (2222, 2223)

ECHO = """
import socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    while (data := c.recv(100)):
        c.sendall(data)
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("connected", flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    print(s.recv(100).decode().strip(), flush=True)
"""
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)"


def group(gid: str, key: int, *rules: SecurityGroupRule) -> SecurityGroup:
    egress = SecurityGroupRule(id=f"{gid}-out", direction="egress", key=key * 10)
    return SecurityGroup(id=gid, name=gid, project_id="tenant-a", key=key, rules=(egress, *rules))


def tcp_rule(rid: str, key: int, lo: int, hi: int) -> SecurityGroupRule:
    return SecurityGroupRule(
        id=rid, direction="ingress", protocol="tcp", port_range_min=lo, port_range_max=hi, key=key
    )


def change(cloud: Cloud, groups: tuple[SecurityGroup, ...] = (), **ports: dict) -> Cloud:
    sgs = {**cloud.security_groups, **{g.id: g for g in groups}}
    changed = {pid: msgspec.structs.replace(cloud.ports[pid], **kw) for pid, kw in ports.items()}
    return msgspec.structs.replace(cloud, security_groups=sgs, ports={**cloud.ports, **changed})


class Lab:
    def __init__(self, tag: str, nodes: dict[str, OvsNode]) -> None:
        self.tag, self.nodes = tag, nodes
        self.flows: dict[str, frozenset[ofsim.Flow]] = {n: frozenset() for n in nodes}
        self.bindings = {n: node.bindings() for n, node in nodes.items()}
        self.procs: list[subprocess.Popen[str]] = []

    def vm(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def apply(self, cloud: Cloud) -> dict[str, tuple[list[ofsim.Flow], list[ofsim.Flow]]]:
        """Compile every node, apply only the difference, check the switch; the diffs."""
        diffs = {}
        for name, node in self.nodes.items():
            new = compile_node(cloud, NodeContext(name, self.bindings[name]))
            removed, added = diff(self.flows[name], new)
            for f in removed:
                where = f"table={f.table},priority={f.priority},{ovstext.match_text(f.match)}"
                node.ofctl("--strict", "del-flows", "br-int", where.rstrip(","))
            if added:
                node.add_flows(ofmsg.flows_text(added).splitlines())
            self.flows[name] = new
            assert ofmsg.same_flows(new, node.dump_flows()) == [], name
            diffs[name] = (removed, added)
        return diffs

    def ping(self, src: str, dst: str) -> bool:
        r = subprocess.run(
            ["ip", "netns", "exec", self.vm(src), "ping", "-c", "1", "-W", "1", IP[dst]],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return r.returncode == 0

    def connects(self, src: str, dst: str, port: int) -> bool:
        argv = ["ip", "netns", "exec", self.vm(src), sys.executable, "-c", CONNECT]
        r = subprocess.run([*argv, IP[dst], str(port)], capture_output=True, timeout=10)
        return r.returncode == 0

    def spawn(self, vm: str, code: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.vm(vm), sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)
        self.procs = []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tag = secrets.token_hex(2)
    procs = ProcessSet()
    ul = Underlay(f"sgu-{tag}")
    nodes = {n: OvsNode(f"sg{n}-{tag}", str(tmp_path_factory.mktemp(n)), procs) for n in NODES}
    lab = None
    try:
        ul.start()
        for name, node in nodes.items():
            node.start()
            node.add_underlay(ul, f"{sample.NODES[name]}/24")
            node.add_br_int(local_ip=sample.NODES[name])
        for vm, (_net, where, ip) in sorted(VMS.items()):
            nodes[where].plug_vm(
                f"{vm}-{tag}", vm, MAC[vm], f"{ip}/24", mtu=1450,
                ofport=sample.bindings(where)[vm],
            )  # fmt: skip
        for name, node in nodes.items():
            node.resolve_underlay(ip for n, ip in sample.NODES.items() if n in NODES and n != name)
        lab = Lab(tag, nodes)
        lab.apply(CLOUD)
        server = lab.spawn("a2", ECHO, *map(str, PORTS))
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield lab
    finally:
        if lab is not None:
            lab.stop()
        for node in nodes.values():
            node.stop()
        ul.stop()
        procs.stop_all()


def test_default_group_admits_members_and_blocks_the_rest(lab):
    lab.apply(CLOUD)
    assert lab.ping("a1", "a2") and lab.ping("a1", "a4")  # members, across nodes and local
    assert lab.connects("a1", "a2", PORTS[0])
    # a1 leaves the default group for one that only lets it out: a2 and a4 refuse it,
    # and nothing reaches a1 unasked; a4 and a2 still talk.
    lab.apply(change(CLOUD, (group("other", 7),), a1={"security_groups": ("other",)}))
    assert not lab.ping("a1", "a2") and not lab.ping("a1", "a4")
    assert not lab.ping("a2", "a1")
    assert lab.ping("a4", "a2")


def test_a_rule_opens_exactly_its_port_and_established_connections_survive_changes(lab):
    web = group("web", 8)
    base = change(CLOUD, (web,), a2={"security_groups": ("web",)})
    lab.apply(base)
    assert not lab.connects("a1", "a2", PORTS[0]) and not lab.ping("a1", "a2")
    ssh = msgspec.structs.replace(web, rules=(*web.rules, tcp_rule("r1", 81, 2222, 2222)))
    lab.apply(change(base, (ssh,)))
    assert lab.connects("a1", "a2", 2222)
    assert not lab.connects("a1", "a2", 2223) and not lab.ping("a1", "a2")
    # A connection established under the 2222 rule...
    client = lab.spawn("a1", CLIENT, IP["a2"], "2222")
    assert client.stdin is not None and client.stdout is not None
    assert client.stdout.readline().strip() == "connected"
    client.stdin.write("one\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "one"
    # ...keeps working when the rule is replaced by a wider one: the change is a few
    # rule flows on a2's node (n2) only, the conntrack and base flows stay.
    wide = msgspec.structs.replace(web, rules=(*web.rules, tcp_rule("r2", 82, 2000, 2300)))
    diffs = lab.apply(change(base, (wide,)))
    removed, added = diffs["n2"]
    assert {f.table for f in removed + added} == {p.INGRESS_SG}
    assert diffs["n1"] == ([], [])
    client.stdin.write("two\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "two"
    assert lab.connects("a1", "a2", 2223)  # in the new range
    icmp = SecurityGroupRule(id="r3", direction="ingress", protocol="icmp", key=83)
    lab.apply(change(base, (msgspec.structs.replace(wide, rules=(*wide.rules, icmp)),)))
    assert lab.ping("a1", "a2")
    client.stdin.write("three\n")
    client.stdin.flush()
    assert client.stdout.readline().strip() == "three"


def test_port_security_off_means_no_filtering(lab):
    closed = group("closed", 9)  # egress only: nothing comes in
    lab.apply(change(CLOUD, (closed,), a2={"security_groups": ("closed",)}))
    assert not lab.ping("a1", "a2") and not lab.connects("a1", "a2", PORTS[1])
    lab.apply(change(CLOUD, a2={"security_groups": (), "port_security_enabled": False}))
    assert lab.ping("a1", "a2") and lab.connects("a1", "a2", PORTS[1])
    # a2 is unfiltered but a1 still is: a2, in no group, cannot open a1.
    assert not lab.ping("a2", "a1")

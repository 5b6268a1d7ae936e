"""The compiled tenant pipeline on real Open vSwitch: three nodes, VXLAN, VMs that ping.

The sample cloud (tenant/sample.py) on three private OVS instances in namespaces with a
VXLAN underlay (lab/ovsnode.py, the recipe of notes/tenant-networks.md §3.1); VMs are
namespaces with static addresses plugged by ``external_ids:iface-id``. Each node's
flows are ``compile_node`` of the cloud and the bindings read back from OVSDB, loaded
with ``ovs-ofctl --bundle add-flows``. Then real pings: same network across nodes,
routed across nodes (one hop: ttl 63), tenant isolation with overlapping addresses,
1450-byte don't-fragment packets; the switch holds exactly the compiled flows; and the
simulator's answer equals ``ofproto/trace`` for a few packets.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess

import pytest

from routeflow.lab.ovsnode import OvsNode, Underlay
from routeflow.lab.procs import ProcessSet
from routeflow.rflib import ofsim, ovstrace
from routeflow.tenant import ofmsg, sample
from routeflow.tenant import pipeline as p
from routeflow.tenant.compiler import NodeContext, compile_node

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

CLOUD = sample.cloud()
IP = {name: ip for name, (_, _, ip) in sample.VMS.items()}
NODE = {name: node for name, (_, node, _) in sample.VMS.items()}
MAC = {port.id: port.mac_address for port in CLOUD.ports.values()}


class Lab:
    def __init__(self, tag: str, nodes: dict[str, OvsNode], ul: Underlay) -> None:
        self.tag, self.nodes, self.ul = tag, nodes, ul
        self.flows: dict[str, frozenset[ofsim.Flow]] = {}

    def vm(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def ping(self, src: str, dst_ip: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.vm(src), "ping", "-c", "1", "-W", "2", *args, dst_ip],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tag = secrets.token_hex(2)
    procs = ProcessSet()
    ul = Underlay(f"ul-{tag}")
    nodes = {n: OvsNode(f"{n}-{tag}", str(tmp_path_factory.mktemp(n)), procs) for n in sample.NODES}
    try:
        ul.start()
        for name, node in nodes.items():
            node.start()
            node.add_underlay(ul, f"{sample.NODES[name]}/24")
            node.add_br_int(local_ip=sample.NODES[name])
        for vm, (_net, where, ip) in sorted(sample.VMS.items()):
            nodes[where].plug_vm(
                f"{vm}-{tag}", vm, MAC[vm], f"{ip}/24", mtu=1450,
                gateway=ip.rsplit(".", 1)[0] + ".1", ofport=sample.bindings(where)[vm],
            )  # fmt: skip
        for name, node in nodes.items():
            node.resolve_underlay(ip for n, ip in sample.NODES.items() if n != name)
        lab = Lab(tag, nodes, ul)
        for name, node in nodes.items():
            bindings = node.bindings()  # what a node agent reads from OVSDB
            assert bindings == sample.bindings(name)
            lab.flows[name] = compile_node(CLOUD, NodeContext(name, bindings))
            node.add_flows(ofmsg.flows_text(lab.flows[name]).splitlines())
        yield lab
    finally:
        for node in nodes.values():
            node.stop()
        ul.stop()
        procs.stop_all()


def test_every_switch_holds_exactly_the_compiled_flows(lab):
    for name, node in lab.nodes.items():
        assert ofmsg.same_flows(lab.flows[name], node.dump_flows()) == [], name


def test_same_network_ping_across_nodes(lab):
    r = lab.ping("a1", IP["a2"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ttl=64" in r.stdout  # switched, not routed


def test_routed_ping_across_nodes_is_one_hop(lab):
    r = lab.ping("a1", IP["a3"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ttl=63" in r.stdout
    r = lab.ping("b1", IP["b2"])  # tenant B: n1 -> n3
    assert r.returncode == 0 and "ttl=63" in r.stdout, r.stdout + r.stderr


def test_router_answers_ping_on_its_interfaces(lab):
    for target in ("10.0.1.1", "10.0.2.1"):
        r = lab.ping("a1", target)
        assert r.returncode == 0, r.stdout + r.stderr


def test_tenants_with_overlapping_addresses_are_isolated(lab):
    # b1 has the same address as a1; 10.0.1.12 (a2) and 10.0.2.13 (a3) exist only in A.
    assert lab.ping("b1", IP["a2"]).returncode != 0
    assert lab.ping("b1", IP["a3"]).returncode != 0
    assert lab.ping("a1", IP["b2"]).returncode != 0  # 10.0.2.12 exists only in B


def test_1450_byte_packets_pass_without_fragments(lab):
    r = lab.ping("a1", IP["a2"], "-M", "do", "-s", "1422")
    assert r.returncode == 0, r.stdout + r.stderr
    r = lab.ping("a1", IP["a3"], "-M", "do", "-s", "1422")  # routed as well
    assert r.returncode == 0, r.stdout + r.stderr
    # One byte more does not fit the VM's MTU of 1450: refused at once, not lost.
    r = lab.ping("a1", IP["a2"], "-M", "do", "-s", "1423")
    assert r.returncode != 0 and "message too long" in (r.stdout + r.stderr).lower()


def _trace(node: OvsNode, packet: dict) -> tuple[tuple, set]:
    ports = ovstrace.parse_dpif_ports(node.appctl("dpif/show"), "br-int")
    return ovstrace.trace_every_way(
        lambda flow: node.appctl("ofproto/trace", "br-int", flow), packet, ports
    )


def test_the_simulator_answers_as_ovs_does(lab):
    n1 = lab.nodes["n1"]
    lab.ping("a1", IP["a2"])  # the underlay neighbour is known before tracing a tunnel
    port = sample.bindings("n1")
    ip = {
        "eth_type": 0x0800, "ip_proto": 1, "icmpv4_type": 8, "icmpv4_code": 0, "nw_ttl": 64,
        "in_port": port["a1"], "eth_src": MAC["a1"], "ipv4_src": IP["a1"],
    }  # fmt: skip
    arp = {
        "eth_type": 0x0806, "arp_op": 1, "in_port": port["a1"], "eth_src": MAC["a1"],
        "eth_dst": "ff:ff:ff:ff:ff:ff", "arp_sha": MAC["a1"], "arp_spa": IP["a1"],
        "arp_tha": "00:00:00:00:00:00",
    }  # fmt: skip
    packets = [
        {**ip, "eth_dst": MAC["a4"], "ipv4_dst": IP["a4"]},  # local
        {**ip, "eth_dst": MAC["a2"], "ipv4_dst": IP["a2"]},  # tunnel
        {**ip, "eth_dst": MAC["ri-A1"], "ipv4_dst": IP["a3"]},  # routed, tunnel
        {**ip, "eth_dst": MAC["ri-A1"], "ipv4_dst": "10.0.1.1"},  # echo responder
        {**ip, "eth_dst": MAC["a4"], "ipv4_dst": IP["a4"], "ipv4_src": "10.0.1.99"},  # spoof
        {**arp, "arp_tpa": IP["a2"]},  # ARP responder
        {**arp, "arp_tpa": "10.0.1.77"},  # unknown: local flood
        {"eth_type": 0x0800, "ip_proto": 17, "nw_ttl": 64, "in_port": port["a1"],
         "eth_src": MAC["a1"], "eth_dst": "ff:ff:ff:ff:ff:ff", "ipv4_src": "0.0.0.0",
         "ipv4_dst": "255.255.255.255", "udp_src": 68, "udp_dst": 67},  # DHCP
        {**ip, "in_port": port["b1"], "eth_src": MAC["b1"], "eth_dst": MAC["a4"],
         "ipv4_dst": IP["a4"]},  # other tenant
    ]  # fmt: skip
    pipe = ofsim.Pipeline(lab.flows["n1"])
    for packet in packets:
        sim = pipe.run(packet)
        hits, ways = _trace(n1, packet)
        sim_hits = tuple(
            (s.table, s.flow.priority if s.flow else None)
            for s in sim.trace
            if isinstance(s, ofsim.TableHit)
        )
        assert hits == sim_hits, packet
        assert ways == {ex.outcomes for ex in sim.executions}, packet
    assert any(o.port == p.TUNNEL_OFPORT for pk in packets for o in pipe.run(pk).outputs)


def test_the_renderer_s_openflow_messages_say_what_the_compiler_says(lab, tmp_path):
    """os-ken FlowMods, decoded by ovs-ofctl, are the compiled flows (moves, registers,
    tunnel fields and metadata included)."""
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    class Datapath:
        ofproto, ofproto_parser, id = ofproto_v1_3, ofproto_v1_3_parser, 1

        def set_xid(self, msg):
            msg.xid = 1

    flows = lab.flows["n1"]
    blob = tmp_path / "flowmods.of"
    data = b""
    for f in flows:
        msg = ofmsg.flow_mod(Datapath(), f)
        msg.xid = 1
        msg.serialize()
        data += bytes(msg.buf)
    blob.write_bytes(data)
    text = subprocess.run(
        ["ovs-ofctl", "ofp-parse", str(blob)], capture_output=True, text=True, check=True
    ).stdout
    lines = []
    for line in text.splitlines():
        m = re.match(r"OFPT_FLOW_MOD \(OF1\.3\) \(xid=\S+\): ADD (.*)$", line)
        assert m, line
        body = m[1].replace(" out_port:0", "")
        body = re.sub(r"^table:(\d+) ", r"table=\1,", body)
        body = re.sub(r" cookie:(\S+) actions=", r",cookie=\1 actions=", body)
        lines.append(body)
    assert ofmsg.same_flows(flows, "\n".join(lines)) == []


def test_a_strict_delete_names_exactly_one_flow(lab, tmp_path):
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    class Datapath:
        ofproto, ofproto_parser, id = ofproto_v1_3, ofproto_v1_3_parser, 1

    flow = max(lab.flows["n1"], key=lambda f: (f.table == 50, f.priority))  # echo responder
    msg = ofmsg.flow_delete(Datapath(), flow)
    msg.xid = 1
    msg.serialize()
    blob = tmp_path / "delete.of"
    blob.write_bytes(bytes(msg.buf))
    text = subprocess.run(
        ["ovs-ofctl", "ofp-parse", str(blob)], capture_output=True, text=True, check=True
    ).stdout
    assert "DEL_STRICT table:50 priority=1001," in text, text
    assert f"cookie:{flow.cookie:#x}/0xffffffffffffffff" in text, text

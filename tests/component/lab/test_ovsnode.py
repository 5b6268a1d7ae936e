"""Compute nodes with private OVS instances: two nodes, VXLAN between them, VMs ping.

The recipe of notes/tenant-networks.md §3.1 through lab/ovsnode.py, with two hand-written
flows per node; everything started here is stopped by pid and every namespace deleted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

from routeflow.lab.ovsnode import TUNNEL_OFPORT, OvsNode, Underlay
from routeflow.lab.procs import ProcessSet

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]


def test_two_nodes_tunnel_a_ping_and_report_bindings(tmp_path):
    tag = secrets.token_hex(3)
    procs = ProcessSet()
    ul = Underlay(f"ul-{tag}")
    nodes = [OvsNode(f"n{i}-{tag}", str(tmp_path / f"n{i}"), procs) for i in (1, 2)]
    try:
        ul.start()
        for i, node in enumerate(nodes, 1):
            node.start()
            node.add_underlay(ul, f"198.51.100.{i}/24")
            node.add_br_int(local_ip=f"198.51.100.{i}")
            port = node.plug_vm(
                f"vm{i}-{tag}", f"port-{i}", f"fa:16:3e:00:00:0{i}", f"10.10.0.1{i}/24", ofport=1
            )
            assert port == 1
            assert node.bindings() == {f"port-{i}": 1}
            peer = 3 - i
            node.add_flows(
                [
                    f"table=0,priority=100,in_port=1,actions=set_field:198.51.100.{peer}->tun_dst,"
                    f"set_field:100->tun_id,output:{TUNNEL_OFPORT}",
                    f"table=0,priority=100,in_port={TUNNEL_OFPORT},tun_id=100,actions=output:1",
                ]
            )
        out = nodes[0].vm_exec(f"vm1-{tag}", "ping", "-c", "1", "-W", "3", "10.10.0.12")
        assert "1 received" in out
        # 1450-byte packets fit the 1500-byte underlay with VXLAN's 50 bytes.
        out = nodes[0].vm_exec(
            f"vm1-{tag}", "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "1422", "10.10.0.12"
        )
        assert "1 received" in out
        assert "tun_id=0x64" in nodes[1].dump_flows()
    finally:
        for node in nodes:
            node.stop()
        ul.stop()
        procs.stop_all()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tag not in names

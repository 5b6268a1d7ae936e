"""The IPv6 checks read `ip -6 -j` and `ovs-ofctl dump-flows` right (no lab needed).

The texts below have the shapes iproute2 6.1 and Open vSwitch 3.1 print; a lab run
(tests/e2e/test_ipv6.py) feeds the same functions the real thing.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from routeflow.lab import checks
from routeflow.lab.model import load_lab, plan

LABS = Path(__file__).resolve().parents[3] / "labs"
P = "fd00:1:2"  # a prefix for the texts; the checks take whatever the kernel says
LL_B = "fe80::ff:fe06:2"  # B's link-local towards A
LL_D = "fe80::ff:fe08:4"  # D's link-local towards A
MAC_B, MAC_D = "02:00:00:06:00:02", "02:00:00:08:00:04"

ROUTES = [
    {"dst": f"{P}:1::/64", "dev": "eth1", "protocol": "kernel", "metric": 256, "flags": []},
    {"dst": "fe80::/64", "dev": "eth1", "protocol": "kernel", "metric": 256, "flags": []},
    {"dst": "fe80::/64", "dev": "eth2", "protocol": "kernel", "metric": 256, "flags": []},
    {
        "dst": f"{P}:2::/64",
        "nhid": 30,
        "gateway": LL_B,
        "dev": "eth2",
        "protocol": "ospf",
        "metric": 20,
        "flags": [],
    },
    {
        "dst": f"{P}:8001::/64",
        "nhid": 41,
        "protocol": "ospf",
        "metric": 20,
        "flags": [],
        "nexthops": [
            {"gateway": LL_D, "dev": "eth4", "weight": 1, "flags": []},
            {"gateway": LL_B, "dev": "eth2", "weight": 1, "flags": []},
        ],
    },
    {"dst": "default", "gateway": LL_B, "dev": "eth2", "protocol": "static", "flags": []},
    {"dst": f"{P}:99::5", "dev": "lo", "protocol": "static", "flags": []},  # not a VM port
    {"type": "unreachable", "dst": f"{P}:77::/64", "dev": "lo", "flags": []},
    {"type": "multicast", "dst": "ff00::/8", "dev": "eth1", "flags": []},
]
NEIGH = [
    {"dst": LL_B, "dev": "eth2", "lladdr": MAC_B, "router": None, "state": ["REACHABLE"]},
    {"dst": LL_D, "dev": "eth4", "lladdr": MAC_D, "router": None, "state": ["STALE"]},
    {"dst": f"{P}:1::100", "dev": "eth1", "lladdr": "06:00:00:05:00:01", "state": ["DELAY"]},
    {"dst": f"{P}:1::200", "dev": "eth1", "state": ["FAILED"]},
    {"dst": f"{P}:1::300", "dev": "eth1", "state": ["INCOMPLETE"]},
]
LOCAL = [
    {"type": "local", "dst": "::1", "dev": "lo", "protocol": "kernel", "flags": []},
    {"type": "anycast", "dst": f"{P}:1::", "dev": "eth1", "protocol": "kernel", "flags": []},
    {"type": "local", "dst": f"{P}:1::1", "dev": "eth1", "protocol": "kernel", "flags": []},
    {"type": "anycast", "dst": "fe80::", "dev": "eth1", "protocol": "kernel", "flags": []},
    {"type": "local", "dst": "fe80::ff:fe05:1", "dev": "eth1", "protocol": "kernel", "flags": []},
    {"type": "multicast", "dst": "ff00::/8", "dev": "eth1", "protocol": "kernel", "flags": []},
]


def flow(prio: int, match: str, actions: str, table: int = 1) -> str:
    return (
        f" cookie=0x5246040000000000, duration=5.1s, table={table}, n_packets=7, n_bytes=700,"
        f" priority={prio},{match} actions={actions}"
    )


GOOD_FLOWS = [
    flow(0, "", "drop", table=0).replace("priority=0,", "priority=0"),
    flow(2000, "in_port=2,ipv6,ipv6_dst=ff02::/16", "CONTROLLER:65535", table=0),
    flow(0, "", "drop").replace("priority=0,", "priority=0"),
    flow(1088, f"ipv6,ipv6_dst={P}:1::/64", "group:1"),
    flow(1088, f"ipv6,ipv6_dst={P}:2::/64", "group:2"),
    flow(1088, f"ipv6,ipv6_dst={P}:8001::/64", "group:3"),
    flow(1024, "ipv6", "group:2"),
    flow(3000, f"ipv6,ipv6_dst={P}:1::1", "CONTROLLER:65535"),
    flow(3000, "ipv6,ipv6_dst=fe80::ff:fe05:1", "CONTROLLER:65535"),
    flow(1152, f"ipv6,ipv6_dst={P}:1::100", "group:4"),
    flow(1056, "ip,nw_dst=172.31.1.0/24", "group:9"),  # IPv4: not this check's business
]
GROUPS = [
    "OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):",
    " group_id=1,type=indirect,bucket=actions=CONTROLLER:65535",
    f" group_id=2,type=indirect,bucket=actions=set_field:{MAC_B}->eth_dst,dec_ttl,output:2",
    f" group_id=3,type=select,bucket=weight:100,actions=set_field:{MAC_D}->eth_dst,output:4,"
    f"bucket=weight:100,actions=set_field:{MAC_B}->eth_dst,output:2",
    " group_id=4,type=indirect,bucket=actions=set_field:06:00:00:05:00:01->eth_dst,output:1",
]


class FakeNode:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def cmd(self, command: str) -> str:
        return self.outputs[command.removesuffix(" 2>/dev/null")]


class FakeOvs:
    def __init__(self, flows: list[str]) -> None:
        self.flows = flows

    def ofctl(self, *args: str) -> str:
        if "dump-flows" in args:
            return "OFPST_FLOW reply (OF1.3) (xid=0x2):\n" + "\n".join(self.flows) + "\n"
        assert "dump-groups" in args
        return "\n".join(GROUPS) + "\n"


class FakeRun:
    """Just what the checks touch of a LabRun: one VM (A) on one switch."""

    def __init__(self, flows: list[str] = GOOD_FLOWS, routes=ROUTES, neigh=NEIGH) -> None:
        full = plan(load_lab(LABS / "rftest2-v6.yaml"))
        self.plan = msgspec.structs.replace(full, vms=(full.vm("A"),))
        self.bridges = {"A": "br-A"}
        self.ovs = FakeOvs(flows)
        self.node = FakeNode(
            {
                "ip -6 -j route show table main": json.dumps(routes),
                "ip -6 -j neigh show": json.dumps(neigh),
                "ip -6 -j route show table local": json.dumps(LOCAL),
            }
        )

    def vm_node(self, switch: str) -> FakeNode:
        assert switch == "A"
        return self.node


def test_kernel_routes6_keeps_global_unicast_routes_on_vm_ports() -> None:
    assert checks.kernel_routes6(FakeRun(), "A") == {
        f"{P}:1::/64": (),
        f"{P}:2::/64": ((LL_B, "eth2"),),
        f"{P}:8001::/64": ((LL_B, "eth2"), (LL_D, "eth4")),
        "::/0": ((LL_B, "eth2"),),
    }


def test_kernel_neighbours6_keyed_by_address_and_port() -> None:
    assert checks.kernel_neighbours6(FakeRun(), "A") == {
        (LL_B, "eth2"): MAC_B,
        (LL_D, "eth4"): MAC_D,
        (f"{P}:1::100", "eth1"): "06:00:00:05:00:01",
    }


def test_kernel_local6_are_the_ports_own_local_routes() -> None:
    assert checks.kernel_local6(FakeRun(), "A") == {f"{P}:1::1", "fe80::ff:fe05:1"}


def test_fib_flows6_reads_table_1_ipv6_only() -> None:
    assert checks.fib_flows(FakeRun(), "A", family=6) == {
        f"{P}:1::/64": "group:1",
        f"{P}:2::/64": "group:2",
        f"{P}:8001::/64": "group:3",
        "::/0": "group:2",
        f"{P}:1::1/128": "CONTROLLER:65535",
        "fe80::ff:fe05:1/128": "CONTROLLER:65535",
        f"{P}:1::100/128": "group:4",
    }
    assert checks.flow_packets(FakeRun(), "A", family=6)[f"{P}:2::/64"] == 7


def test_check_flows6_accepts_a_matching_switch() -> None:
    result = checks.check_flows6(FakeRun())
    assert result.ok, result
    assert result.routes == 4


def test_check_flows6_reports_missing_and_extra_flows() -> None:
    flows = [f for f in GOOD_FLOWS if "fe80::ff:fe05:1" not in f and f"{P}:2::/64" not in f]
    flows.append(flow(1088, f"ipv6,ipv6_dst={P}:66::/64", "group:2"))
    result = checks.check_flows6(FakeRun(flows))
    assert not result.ok
    assert result.missing == {"A": sorted([f"{P}:2::/64", "fe80::ff:fe05:1/128"])}
    assert result.extra == {"A": [f"{P}:66::/64"]}


def test_check_flows6_checks_every_ecmp_next_hop_mac() -> None:
    # D's MAC changed in the kernel, but the group still rewrites to the old one.
    neigh = [dict(n, lladdr="02:00:00:08:00:99") if n["dst"] == LL_D else n for n in NEIGH]
    result = checks.check_flows6(FakeRun(neigh=neigh))
    assert not result.ok
    assert list(result.bad_rewrite) == ["A"]
    assert len(result.bad_rewrite["A"]) == 1
    assert result.bad_rewrite["A"][0].startswith(f"{P}:8001::/64 via {LL_D}%eth4")


def test_check_flows6_flags_a_gateway_route_that_does_not_use_a_group() -> None:
    flows = [
        f.replace("actions=group:2", "actions=CONTROLLER:65535") if f"{P}:2::/64" in f else f
        for f in GOOD_FLOWS
    ]
    result = checks.check_flows6(FakeRun(flows))
    assert not result.ok and list(result.bad_rewrite) == ["A"]


def test_a_vm_lacking_ipv6_routes_leaves_its_ospfv3_state_in_the_run_dir(tmp_path):
    """The lab is gone when its check is read: what OSPFv3 said in the VMs that lacked
    routes is kept (ospf6-at-failure.txt), neighbours first."""
    from types import SimpleNamespace

    from routeflow.lab import scenarios

    asked = []

    def vtysh(switch, command):
        asked.append((switch, command))
        return f"{switch} answers {command}"

    scenarios._save_ospf6_state(SimpleNamespace(run_dir=str(tmp_path), vtysh=vtysh), ["DE", "ME"])
    text = (tmp_path / "ospf6-at-failure.txt").read_text()
    assert "=== DE: show ipv6 ospf6 neighbor\nDE answers show ipv6 ospf6 neighbor\n" in text
    assert [sw for sw, _ in asked] == ["DE"] * 4 + ["ME"] * 4
    assert asked[0][1] == "show ipv6 ospf6 neighbor"

"""Security groups compiled and run in ofsim, conntrack included.

The sample cloud: every VM is in its tenant's ``default`` group (egress open, ingress
from members). Connections are followed across packets by feeding a run's ``commits``
(what ``ct(commit)`` recorded) to the next run, as the switch's conntrack table would.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import ofsim
from routeflow.tenant import pipeline as p
from routeflow.tenant import sample, secgroups
from routeflow.tenant.compiler import NodeContext, compile_node, diff
from routeflow.tenant.model import (
    Cloud,
    FixedIP,
    Port,
    SecurityGroup,
    SecurityGroupRule,
)

CLOUD = sample.cloud()
BINDINGS = sample.bindings("n1")  # a1, a4 (tenant A, net A1) and b1 (tenant B)
IP = {name: ip for name, (_, _, ip) in sample.VMS.items()}
MAC = {port.id: port.mac_address for port in CLOUD.ports.values()}
SG_TABLES = {p.EGRESS_CT, p.EGRESS_SG, p.INGRESS_CT, p.INGRESS_SG}


def flows(cloud: Cloud) -> frozenset[ofsim.Flow]:
    return compile_node(cloud, NodeContext("n1", BINDINGS))


def tcp(src: str, dst: str, dport: int, sport: int = 40000, reply: bool = False) -> dict:
    """A TCP segment from VM ``src`` to VM ``dst`` (same network, on n1)."""
    if reply:
        src, dst, sport, dport = dst, src, dport, sport
    return {
        "in_port": BINDINGS[src], "eth_src": MAC[src], "eth_dst": MAC[dst],
        "eth_type": 0x0800, "ip_proto": 6, "ipv4_src": IP[src], "ipv4_dst": IP[dst],
        "nw_ttl": 64, "tcp_src": sport, "tcp_dst": dport,
    }  # fmt: skip


def icmp(src: str, dst: str, src_ip: str | None = None) -> dict:
    return {
        "in_port": BINDINGS[src], "eth_src": MAC[src], "eth_dst": MAC[dst],
        "eth_type": 0x0800, "ip_proto": 1, "icmpv4_type": 8, "icmpv4_code": 0,
        "ipv4_src": src_ip or IP[src], "ipv4_dst": IP[dst], "nw_ttl": 64,
    }  # fmt: skip


def with_group(cloud: Cloud, group: SecurityGroup, **ports: tuple[str, ...]) -> Cloud:
    groups = {**cloud.security_groups, group.id: group}
    changed = {
        pid: msgspec.structs.replace(cloud.ports[pid], security_groups=sgs)
        for pid, sgs in ports.items()
    }
    return msgspec.structs.replace(cloud, security_groups=groups, ports={**cloud.ports, **changed})


def rule(key: int, direction: str = "ingress", **kw: object) -> SecurityGroupRule:
    return SecurityGroupRule(id=f"r{key}", direction=direction, key=key, **kw)  # type: ignore[arg-type]


EGRESS = (rule(900, "egress"),)
WEB = SecurityGroup(
    id="web", name="web", project_id="tenant-a", key=9,
    rules=(*EGRESS, rule(901, protocol="tcp", port_range_min=22, port_range_max=22)),
)  # fmt: skip


def test_default_group_admits_members_and_replies_only():
    pipe = ofsim.Pipeline(flows(CLOUD))
    # a1 -> a4: both in tenant A's default group: new, committed in both zones.
    first = pipe.run(tcp("a1", "a4", 80))
    assert first.ports == {BINDINGS["a4"]}
    zones = {zone for zone, _ in first.commits}
    assert zones == {CLOUD.ports["a1"].key, CLOUD.ports["a4"].key}
    # The reply is established both ways.
    reply = pipe.run(tcp("a1", "a4", 80, reply=True), conntrack=first.commits)
    assert reply.ports == {BINDINGS["a1"]} and not reply.commits
    # A packet a4 starts towards a1 on its own is new and allowed too (same group).
    assert pipe.run(tcp("a4", "a1", 5000)).ports == {BINDINGS["a1"]}


def test_ingress_from_outside_the_group_is_dropped():
    # a4 moves to "web" (ssh only): a1, in default, no longer reaches it but on tcp/22;
    # and a4's default group no longer lists a4, so a4 -> a1 is refused at a1.
    cloud = with_group(CLOUD, WEB, a4=("web",))
    pipe = ofsim.Pipeline(flows(cloud))
    assert pipe.run(icmp("a1", "a4")).dropped
    assert pipe.run(tcp("a1", "a4", 23)).dropped
    assert pipe.run(tcp("a1", "a4", 22)).ports == {BINDINGS["a4"]}
    assert pipe.run(tcp("a4", "a1", 80)).dropped
    # The reply to a1's ssh connection comes back through a1's ingress: established.
    ssh = pipe.run(tcp("a1", "a4", 22))
    assert pipe.run(tcp("a1", "a4", 22, reply=True), conntrack=ssh.commits).ports == {
        BINDINGS["a1"]
    }


def test_a_rule_change_is_a_flow_diff_and_keeps_established_connections():
    before = with_group(CLOUD, WEB, a4=("web",))
    wider = msgspec.structs.replace(
        WEB,
        rules=(*EGRESS, rule(902, protocol="tcp", port_range_min=20, port_range_max=30)),
        revision_number=1,
    )
    after = with_group(CLOUD, wider, a4=("web",))
    old, new = flows(before), flows(after)
    removed, added = diff(old, new)
    assert removed and added
    changed = removed + added
    assert {f.table for f in changed} <= {p.INGRESS_SG}
    assert all(p.cookie_kind(f.cookie)[0] is not p.Kind.BASE for f in changed)  # type: ignore[index]
    # Established through the old rule, still allowed: both directions keep passing.
    ssh = ofsim.Pipeline(old).run(tcp("a1", "a4", 22))
    pipe = ofsim.Pipeline(new)
    assert pipe.run(tcp("a1", "a4", 22), conntrack=ssh.commits).ports == {BINDINGS["a4"]}
    assert pipe.run(tcp("a1", "a4", 22, reply=True), conntrack=ssh.commits).ports == {
        BINDINGS["a1"]
    }
    assert pipe.run(tcp("a1", "a4", 25)).ports == {BINDINGS["a4"]}
    assert pipe.run(tcp("a1", "a4", 31)).dropped


def test_icmp_and_prefix_rules():
    ping = SecurityGroup(
        id="ping", name="ping", project_id="tenant-a", key=8,
        rules=(*EGRESS, rule(903, protocol="icmp", remote_ip_prefix="10.0.1.11/32")),
    )  # fmt: skip
    cloud = with_group(CLOUD, ping, a4=("ping",))
    pipe = ofsim.Pipeline(flows(cloud))
    assert pipe.run(icmp("a1", "a4")).ports == {BINDINGS["a4"]}  # a1 is 10.0.1.11
    assert pipe.run(tcp("a1", "a4", 22)).dropped


def test_port_security_off_means_no_filtering():
    cloud = with_group(CLOUD, WEB, a4=())
    a4 = msgspec.structs.replace(cloud.ports["a4"], port_security_enabled=False)
    cloud = msgspec.structs.replace(cloud, ports={**cloud.ports, "a4": a4})
    f = flows(cloud)
    pipe = ofsim.Pipeline(f)
    assert pipe.run(tcp("a1", "a4", 23)).ports == {BINDINGS["a4"]}
    # a4's own traffic is not filtered; a1, still in its group, refuses a non-member.
    back = pipe.run(tcp("a4", "a1", 80))
    assert back.dropped and back.trace[-1].table == p.INGRESS_SG  # type: ignore[union-attr]
    assert not any(
        ("reg6", a4.key, 0xFFFFFFFF) in x.match or ("reg7", a4.key, 0xFFFFFFFF) in x.match
        for x in f
        if x.table in SG_TABLES
    )


def test_egress_rules_filter_the_source_side():
    out_ssh = SecurityGroup(
        id="out", name="out", project_id="tenant-a", key=7,
        rules=(rule(904, "egress", protocol="tcp", port_range_min=22, port_range_max=22),
               rule(905, remote_group_id="sg-tenant-a")),
    )  # fmt: skip
    cloud = with_group(with_group(CLOUD, WEB), out_ssh, a1=("out",), a4=("web",))
    pipe = ofsim.Pipeline(flows(cloud))
    assert pipe.run(tcp("a1", "a4", 22)).ports == {BINDINGS["a4"]}
    out80 = pipe.run(tcp("a1", "a4", 80))
    assert out80.dropped and out80.trace[-1].table == p.EGRESS_SG  # type: ignore[union-attr]
    # DHCP is never filtered.
    dhcp = {
        "in_port": BINDINGS["a1"], "eth_src": MAC["a1"], "eth_dst": "ff:ff:ff:ff:ff:ff",
        "eth_type": 0x0800, "ip_proto": 17, "ipv4_src": "0.0.0.0",
        "ipv4_dst": "255.255.255.255", "nw_ttl": 64, "udp_src": 68, "udp_dst": 67,
    }  # fmt: skip
    assert pipe.run(dhcp).punted


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_ranges_cover_exactly_the_range(a, b):
    lo, hi = min(a, b), max(a, b)
    pieces = secgroups.port_ranges(lo, hi)
    assert len(pieces) <= 32
    for port in {lo, hi, (lo + hi) // 2, max(lo - 1, 0), min(hi + 1, 65535)}:
        inside = sum(1 for v, m in pieces if port & m == v)
        assert inside == (1 if lo <= port <= hi else 0)


def _crowd(n: int) -> tuple[Cloud, NodeContext]:
    """``n`` VMs of tenant A on n1, all in the default group (ingress from each other)."""
    ports = dict(CLOUD.ports)
    bindings = {}
    for i in range(n):
        pid = f"x{i}"
        ports[pid] = Port(
            id=pid, network_id="A1", project_id="tenant-a", mac_address=sample.mac(300 + i),
            fixed_ips=(FixedIP("sA1", f"10.0.1.{100 + i}"),), device_owner="compute:nova",
            binding_host_id="n1", security_groups=("sg-tenant-a",), key=300 + i,
        )  # fmt: skip
        bindings[pid] = 10 + i
    cloud = msgspec.structs.replace(CLOUD, ports=ports)
    return cloud, NodeContext("n1", bindings)


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 40))
def test_remote_group_flows_grow_linearly_with_members(n):
    """Remote-group rules are conjunctions: SG flows grow as O(ports), never O(ports^2)."""
    cloud, ctx = _crowd(n)
    sg = [f for f in compile_node(cloud, ctx) if f.table in SG_TABLES]
    # Per port: its egress rule, its ingress clause and its address; plus fixed flows.
    assert len(sg) <= 3 * n + 20, len(sg)
    # Any two of them still talk.
    pipe = ofsim.Pipeline(compile_node(cloud, ctx))
    x0, xl = cloud.ports["x0"], cloud.ports[f"x{n - 1}"]
    packet = {
        "in_port": ctx.bindings["x0"], "eth_src": x0.mac_address, "eth_dst": xl.mac_address,
        "eth_type": 0x0800, "ip_proto": 6, "ipv4_src": x0.fixed_ips[0].ip_address,
        "ipv4_dst": xl.fixed_ips[0].ip_address, "nw_ttl": 64, "tcp_src": 1, "tcp_dst": 2,
    }  # fmt: skip
    assert pipe.run(packet).ports == {ctx.bindings[f"x{n - 1}"]}

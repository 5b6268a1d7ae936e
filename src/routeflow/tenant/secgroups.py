"""Security groups as flows (pure): stateful with conntrack, one zone per port.

A port with ``port_security_enabled`` goes through conntrack on its way out (tables
EGRESS_CT -> EGRESS_SG, on its own node) and on its way in (INGRESS_CT -> INGRESS_SG,
on the destination's node). The zone is the low 16 bits of the port's key, taken from
the register that already holds it (``reg6`` out, ``reg7`` in), so the ct flows are the
same for every port. In the SG tables:

* invalid -> drop; established and related -> go on (both ways: a reply is
  established in the zone the first packet was committed in);
* a DHCP request goes on untouched (the node agent answers it);
* a new connection that matches one of the port's rules is committed in the port's
  zone and goes on; anything else is dropped.

Rules with a remote IP prefix (or none) are one flow per port, rule and masked port
range piece. Rules with a remote group are conjunctions: clause 1 is the port and the
rule's protocol and ports (per port), clause 2 the group members' addresses (one flow per
member address, shared by every rule that names the group), so a remote group costs
O(ports + members), never a flow per pair. ``conj_id`` is the rule's key.

Scope: IPv4 rules (the data plane is IPv4; IPv6 rules compile to nothing); DCCP and
UDP-Lite port ranges are not matched (the protocol is); a remote group's address set
is its members' fixed IPv4 addresses and allowed address pairs (as Neutron's). Zones
are unique per node while port keys stay below 65536.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from routeflow.rflib import ofsim
from routeflow.rflib.ofsim import (
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_REL,
    CT_TRK,
    ApplyActions,
    Conjunction,
    Ct,
    Flow,
    GotoTable,
)
from routeflow.tenant import pipeline as p
from routeflow.tenant.model import Cloud, Port, SecurityGroup, SecurityGroupRule

ETH_IPV4 = 0x0800
_L4 = {6: "tcp", 17: "udp", 132: "sctp"}
#: Neutron's protocol names (neutron-lib's IP_PROTOCOL_MAP) -> IP protocol number.
PROTOCOLS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113,
    "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}  # fmt: skip
IPV6_ONLY = {58, 43, 44, 59, 60}

# Priorities inside the SG tables.
PRI_INVALID = p.PRI_HIGH + 2
PRI_ESTABLISHED = p.PRI_HIGH + 1
PRI_RELATED = p.PRI_HIGH
PRI_DHCP = p.PRI_HIGH - 1
PRI_RULE = 200
PRI_CONJ = 150

_ZONE_OUT = Ct(table=p.EGRESS_SG, zone_src=p.SRC_PORT_REG)
_ZONE_IN = Ct(table=p.INGRESS_SG, zone_src=p.DST_PORT_REG)


def ct_zone(port: Port) -> int:
    """The port's conntrack zone on its node (both directions)."""
    return port.key & 0xFFFF


def _ct_state(on: int, off: int = 0) -> tuple[int, int]:
    return on, on | off


def port_ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] as the fewest (value, mask) pairs a 16-bit field can match."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 0xFFFF ^ (size - 1)))
        lo += size
    return out


def protocol_number(protocol: str | None) -> int | None:
    """The IP protocol a stored rule's ``protocol`` names; None: any protocol."""
    if protocol is None or protocol in ("any", "0"):
        return None
    return int(protocol) if protocol.isdigit() else PROTOCOLS[protocol]


def base_flows() -> list[Flow]:
    """The fixed flows of the four tables (the same on every node)."""
    c = p.cookie_of(p.Kind.BASE)
    out = []
    for ct_table, sg_table, ct, nxt in (
        (p.EGRESS_CT, p.EGRESS_SG, _ZONE_OUT, p.SERVICES),
        (p.INGRESS_CT, p.INGRESS_SG, _ZONE_IN, p.OUTPUT),
    ):
        go = GotoTable(nxt)
        out += [
            Flow(ct_table, p.PRI_PORT, {"eth_type": ETH_IPV4}, (ApplyActions((ct,)),), c),
            Flow(ct_table, p.PRI_DEFAULT, {}, (go,), c),
            Flow(sg_table, PRI_INVALID, {"ct_state": _ct_state(CT_INV | CT_TRK)}, (), c),
            Flow(sg_table, PRI_ESTABLISHED, {"ct_state": _ct_state(CT_EST | CT_TRK)}, (go,), c),
            Flow(
                sg_table,
                PRI_RELATED,
                {"ct_state": _ct_state(CT_REL | CT_TRK, CT_EST)},
                (go,),
                c,
            ),
            Flow(sg_table, p.PRI_DEFAULT, {}, (), c),
        ]
    dhcp = {
        "eth_type": ETH_IPV4,
        "ip_proto": 17,
        "udp_src": p.DHCP_CLIENT_PORT,
        "udp_dst": p.DHCP_SERVER_PORT,
    }
    out.append(Flow(p.EGRESS_SG, PRI_DHCP, dhcp, (GotoTable(p.SERVICES),), c))
    return out


def _rule_match(rule: SecurityGroupRule) -> list[dict[str, object]] | None:
    """The L3/L4 part of a rule's match, one dict per port range piece; None: the rule
    cannot apply to IPv4 traffic."""
    proto = protocol_number(rule.protocol)
    if rule.ethertype != "IPv4" or proto in IPV6_ONLY:
        return None
    match: dict[str, object] = {"eth_type": ETH_IPV4}
    if proto is not None:
        match["ip_proto"] = proto
    if rule.remote_ip_prefix is not None:
        net = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if net.version != 4:
            return None
        if net.prefixlen:
            match["ipv4_src" if rule.direction == "ingress" else "ipv4_dst"] = str(net)
    if proto == 1:
        if rule.port_range_min is not None:
            match["icmpv4_type"] = rule.port_range_min
            if rule.port_range_max is not None:
                match["icmpv4_code"] = rule.port_range_max
        return [match]
    if proto in _L4 and rule.port_range_min is not None and rule.port_range_max is not None:
        field = f"{_L4[proto]}_dst"
        return [
            {**match, field: (v, m)}
            for v, m in port_ranges(rule.port_range_min, rule.port_range_max)
        ]
    return [match]


def port_addresses(cloud: Cloud, port: Port) -> tuple[str, ...]:
    """What ``port`` adds to the address set of each of its groups: its fixed IPv4
    addresses and allowed address pairs, as Neutron's (sorted, /32 as a bare address)."""
    nets: set[ipaddress.IPv4Network] = set()
    for fip in port.fixed_ips:
        sub = cloud.subnets.get(fip.subnet_id)
        if sub is not None and sub.ip_version == 4:
            nets.add(ipaddress.IPv4Network(fip.ip_address))
    for pair in port.allowed_address_pairs:
        try:
            net = ipaddress.ip_network(pair.ip_address, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets.add(net)
    return tuple(str(n) if n.prefixlen < 32 else str(n.network_address) for n in sorted(nets))


def address_sets(cloud: Cloud) -> dict[str, list[str]]:
    """Every group's address set (one pass over the ports): its members' fixed IPv4
    addresses and allowed address pairs, as Neutron's."""
    sets: dict[str, set[str]] = {}
    for port in cloud.ports.values():
        if not port.security_groups:
            continue
        addresses = port_addresses(cloud, port)
        for gid in port.security_groups:
            sets.setdefault(gid, set()).update(addresses)
    return {gid: sorted(ips, key=lambda a: ipaddress.IPv4Network(a)) for gid, ips in sets.items()}


def port_flows(port: Port, groups: Iterable[SecurityGroup]) -> list[Flow]:
    """A guarded port's own rule flows on its node (a remote-group rule's clause 1)."""
    c = p.cookie_of(p.Kind.PORT, port.key)
    return [f for group in groups for rule in group.rules for f in _port_rule_flows(port, rule, c)]


def remote_rule_flow(
    group: SecurityGroup, rule: SecurityGroupRule, remote: SecurityGroup | None, members: bool
) -> list[Flow]:
    """A remote-group rule's conj_id flow: only while its remote group exists and has an
    address (clause 1 alone never completes: nothing passes, as in Neutron)."""
    if remote is None or not members or _rule_match(rule) is None:
        return []
    table, _reg, nxt, commit = _sides(rule)
    gc = p.cookie_of(p.Kind.SECURITY_GROUP, group.key)
    match = {"conj_id": rule.key, "eth_type": ETH_IPV4}
    return [Flow(table, PRI_CONJ, match, (commit, nxt), gc)]


def member_flows(
    rule: SecurityGroupRule, remote: SecurityGroup | None, addresses: Iterable[str]
) -> list[Flow]:
    """A remote-group rule's clause 2 for one member's addresses (members with the
    same address give the same flow: the caller keeps one)."""
    if remote is None or _rule_match(rule) is None:
        return []
    table, _reg, _nxt, _commit = _sides(rule)
    side = "ipv4_src" if rule.direction == "ingress" else "ipv4_dst"
    rc = p.cookie_of(p.Kind.SECURITY_GROUP, remote.key)
    clause = (ApplyActions((Conjunction(rule.key, 2, 2),)),)
    return [Flow(table, PRI_CONJ, {"eth_type": ETH_IPV4, side: ip}, clause, rc) for ip in addresses]


def local_flows(cloud: Cloud, ports: Iterable[Port]) -> list[Flow]:
    """The flows of the ports' groups on their node: per port, its rules (both
    directions; a remote-group rule's clause 1); per remote-group rule once, its
    members' clause 2 flows and its conj_id flow. ``merge`` then joins clause flows
    with one match."""
    out: list[Flow] = []
    remote_rules: dict[int, tuple[SecurityGroup, SecurityGroupRule]] = {}
    for port in ports:
        c = p.cookie_of(p.Kind.PORT, port.key)
        for gid in port.security_groups:
            group = cloud.security_groups.get(gid)
            if group is None:
                continue
            for rule in group.rules:
                out += _port_rule_flows(port, rule, c)
                if rule.remote_group_id is not None:
                    remote_rules[rule.key] = (group, rule)
    sets = address_sets(cloud) if remote_rules else {}
    for _key, (group, rule) in sorted(remote_rules.items()):
        out += _remote_rule_flows(cloud, group, rule, sets)
    return out


def _sides(rule: SecurityGroupRule) -> tuple[int, str, GotoTable, ApplyActions]:
    """(table, the port's register, next table, commit) for the rule's direction."""
    ingress = rule.direction == "ingress"
    reg = p.DST_PORT_REG if ingress else p.SRC_PORT_REG
    commit = ApplyActions((Ct(commit=True, zone_src=reg),))
    if ingress:
        return p.INGRESS_SG, reg, GotoTable(p.OUTPUT), commit
    return p.EGRESS_SG, reg, GotoTable(p.SERVICES), commit


def _port_rule_flows(port: Port, rule: SecurityGroupRule, c: int) -> list[Flow]:
    matches = _rule_match(rule)
    if matches is None:
        return []
    table, reg, nxt, commit = _sides(rule)
    mine = {reg: port.key, "ct_state": _ct_state(CT_NEW | CT_TRK)}
    if rule.remote_group_id is None:
        return [Flow(table, PRI_RULE, {**mine, **m}, (commit, nxt), c) for m in matches]
    clause = (ApplyActions((Conjunction(rule.key, 1, 2),)),)
    return [Flow(table, PRI_CONJ, {**mine, **m}, clause, c) for m in matches]


def _remote_rule_flows(
    cloud: Cloud, group: SecurityGroup, rule: SecurityGroupRule, sets: dict[str, list[str]]
) -> list[Flow]:
    remote = cloud.security_groups.get(rule.remote_group_id or "")
    members = sets.get(rule.remote_group_id or "", [])
    if remote is None or not members or _rule_match(rule) is None:
        return []  # clause 1 alone never completes: nothing passes, as in Neutron
    table, _reg, nxt, commit = _sides(rule)
    side = "ipv4_src" if rule.direction == "ingress" else "ipv4_dst"
    rc = p.cookie_of(p.Kind.SECURITY_GROUP, remote.key)
    clause = (ApplyActions((Conjunction(rule.key, 2, 2),)),)
    out = [Flow(table, PRI_CONJ, {"eth_type": ETH_IPV4, side: ip}, clause, rc) for ip in members]
    gc = p.cookie_of(p.Kind.SECURITY_GROUP, group.key)
    match = {"conj_id": rule.key, "eth_type": ETH_IPV4}
    out.append(Flow(table, PRI_CONJ, match, (commit, nxt), gc))
    return out


def merge(flows: Iterable[Flow]) -> list[Flow]:
    """One flow per (table, priority, match): conjunctive flows with one match join their
    conjunction actions (OVS takes one flow per match); the lowest cookie stays."""
    plain: list[Flow] = []
    joined: dict[tuple[int, int, object], list[Flow]] = {}
    for f in set(flows):
        if f.conjunctive:
            joined.setdefault((f.table, f.priority, f.match), []).append(f)
        else:
            plain.append(f)
    for group in joined.values():
        plain.append(join(group))
    return plain


def join(group: Iterable[Flow]) -> Flow:
    """Conjunctive flows of one (table, priority, match) as the one flow OVS holds."""
    group = list(group)
    actions: set[ofsim.Action] = set()
    for f in group:
        actions.update(f.instructions[0].actions)  # type: ignore[union-attr]
    ordered = tuple(sorted(actions, key=_conj_order))
    first = group[0]
    cookie = min(f.cookie for f in group)
    return Flow(first.table, first.priority, first.match, (ApplyActions(ordered),), cookie)


def _conj_order(a: ofsim.Action) -> tuple[int, int]:
    return (a.id, a.clause) if isinstance(a, Conjunction) else (0, 0)

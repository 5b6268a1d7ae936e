"""ovs-ofctl's text for flows and groups <-> ofsim (pure).

``parse_flows``/``parse_groups`` read ``ovs-ofctl -O OpenFlow13 dump-flows`` and
``dump-groups`` output, so the simulator can run what a real switch holds (a
component test, a lab); ``flow_text``/``group_text`` write what ``add-flow(s)``
and ``add-group(s)`` accept. OVS prints its own field names (``dl_dst``,
``nw_dst``, ``tp_dst``, ``icmp_type``...) and protocol shorthands (``ip``,
``icmp6``...); both are mapped to the OXM names ofsim uses. Anything not
understood raises ``SimError`` rather than being skipped, so a silent gap
cannot make a check pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from routeflow.rflib import ofsim
from routeflow.rflib.ofsim import SimError

#: Protocol shorthands OVS prints first in a match.
PROTOCOLS: dict[str, dict[str, int]] = {
    "eth": {},
    "ip": {"eth_type": 0x0800},
    "ipv6": {"eth_type": 0x86DD},
    "arp": {"eth_type": 0x0806},
    "rarp": {"eth_type": 0x8035},
    "icmp": {"eth_type": 0x0800, "ip_proto": 1},
    "icmp6": {"eth_type": 0x86DD, "ip_proto": 58},
    "tcp": {"eth_type": 0x0800, "ip_proto": 6},
    "tcp6": {"eth_type": 0x86DD, "ip_proto": 6},
    "udp": {"eth_type": 0x0800, "ip_proto": 17},
    "udp6": {"eth_type": 0x86DD, "ip_proto": 17},
    "sctp": {"eth_type": 0x0800, "ip_proto": 132},
    "sctp6": {"eth_type": 0x86DD, "ip_proto": 132},
}

#: OVS name -> OXM name, where they differ and do not depend on the protocol.
_OVS_NAMES = {
    "dl_dst": "eth_dst",
    "dl_src": "eth_src",
    "dl_type": "eth_type",
    "nw_proto": "ip_proto",
    "nw_ecn": "ip_ecn",
    "ipv6_label": "ipv6_flabel",
    "nd_target": "ipv6_nd_target",
    "nd_sll": "ipv6_nd_sll",
    "nd_tll": "ipv6_nd_tll",
    "tun_id": "tunnel_id",
    "tun_dst": "tun_ipv4_dst",
    "ip_src": "ipv4_src",
    "ip_dst": "ipv4_dst",
}

#: OXM name -> the name ovs-ofctl accepts (flows, set_field, ofproto/trace).
OVS_NAME = {
    "ipv4_src": "nw_src",
    "ipv4_dst": "nw_dst",
    "ipv6_flabel": "ipv6_label",
    "ipv6_nd_target": "nd_target",
    "ipv6_nd_sll": "nd_sll",
    "ipv6_nd_tll": "nd_tll",
    "icmpv4_type": "icmp_type",
    "icmpv4_code": "icmp_code",
    "tunnel_id": "tun_id",
    "tun_ipv4_dst": "tun_dst",
}

#: OXM name -> the NXM name OVS prints in ``move:`` and ``load:`` (Nicira actions).
NXM_NAME = {
    "in_port": "NXM_OF_IN_PORT",
    "eth_src": "NXM_OF_ETH_SRC",
    "eth_dst": "NXM_OF_ETH_DST",
    "eth_type": "NXM_OF_ETH_TYPE",
    "ipv4_src": "NXM_OF_IP_SRC",
    "ipv4_dst": "NXM_OF_IP_DST",
    "ip_proto": "NXM_OF_IP_PROTO",
    "nw_ttl": "NXM_NX_IP_TTL",
    "icmpv4_type": "NXM_OF_ICMP_TYPE",
    "icmpv4_code": "NXM_OF_ICMP_CODE",
    "arp_op": "NXM_OF_ARP_OP",
    "arp_spa": "NXM_OF_ARP_SPA",
    "arp_tpa": "NXM_OF_ARP_TPA",
    "arp_sha": "NXM_NX_ARP_SHA",
    "arp_tha": "NXM_NX_ARP_THA",
    "tunnel_id": "NXM_NX_TUN_ID",
    "tun_ipv4_dst": "NXM_NX_TUN_IPV4_DST",
    "metadata": "OXM_OF_METADATA",
    **{f"reg{i}": f"NXM_NX_REG{i}" for i in range(16)},
}
_NXM_FIELD = {v: k for k, v in NXM_NAME.items()}

_PORT_NAMES = {
    "IN_PORT": ofsim.IN_PORT,
    "TABLE": ofsim.TABLE,
    "NORMAL": ofsim.NORMAL,
    "FLOOD": ofsim.FLOOD,
    "ALL": ofsim.ALL,
    "CONTROLLER": ofsim.CONTROLLER,
    "LOCAL": ofsim.LOCAL,
    "ANY": ofsim.ANY,
}
_PORT_TEXT = {v: k for k, v in _PORT_NAMES.items()}

#: Keys of a dump-flows line that describe the entry, not its match.
_FLOW_STATS = {
    "duration", "n_packets", "n_bytes", "idle_timeout", "hard_timeout", "idle_age",
    "hard_age", "importance", "send_flow_rem", "check_overlap", "reset_counts",
    "no_packet_counts", "no_byte_counts", "out_port", "out_group",
}  # fmt: skip


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside parentheses (``write_actions(a,b)``, ``controller(...)``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def _port(text: str) -> int:
    name = text.split(":", 1)[0] if text.startswith("CONTROLLER") else text
    if name in _PORT_NAMES:
        return _PORT_NAMES[name]
    try:
        return int(text, 0)
    except ValueError:
        raise SimError(f"not a port: {text!r}") from None


# --- match -------------------------------------------------------------------


def parse_match(text: str) -> dict[str, object]:
    """``ip,in_port=1,nw_dst=10.0.0.0/24`` -> {eth_type: 0x800, in_port: 1, ipv4_dst: ...}."""
    out: dict[str, object] = {}
    pending: list[tuple[str, str]] = []
    for token in split_top(text):
        if "=" not in token:
            if token not in PROTOCOLS:
                raise SimError(f"unknown protocol keyword {token!r}")
            out.update(PROTOCOLS[token])
            continue
        name, value = token.split("=", 1)
        pending.append((name, value))
    for name, value in pending:  # protocol-dependent names need eth_type/ip_proto first
        key, val = _oxm(name, value, out)
        out[key] = val
    return out


def _oxm(name: str, value: str, ctx: dict[str, object]) -> tuple[str, object]:
    eth_type, proto = ctx.get("eth_type"), ctx.get("ip_proto")
    if name in ("nw_src", "nw_dst"):
        if eth_type == 0x0806:
            return ("arp_spa" if name == "nw_src" else "arp_tpa"), value
        return ("ipv4_src" if name == "nw_src" else "ipv4_dst"), value
    if name in ("tp_src", "tp_dst"):
        l4 = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto) if isinstance(proto, int) else None
        if l4 is None:
            raise SimError(f"{name} without tcp/udp/sctp")
        return f"{l4}{name[2:]}", value if "/" in value else _int(value)
    if name in ("icmp_type", "icmp_code"):
        family = "icmpv6" if eth_type == 0x86DD else "icmpv4"
        return f"{family}{name[4:]}", _int(value)
    if name == "in_port":
        return name, _port(value)
    if name == "ct_state":
        return name, _ct_state(value)
    if name == "nw_tos":
        return "ip_dscp", _int(value) >> 2
    if name == "dl_vlan":
        return "vlan_vid", ofsim.OFPVID_PRESENT | _int(value)
    if name == "dl_vlan_pcp":
        return "vlan_pcp", _int(value)
    if name == "vlan_tci":
        v, _, m = value.partition("/")
        tci, mask = _int(v), _int(m) if m else 0xFFFF
        if mask & 0xEFFF not in (0, 0x0FFF) or mask & 0x1000 == 0:
            raise SimError(f"vlan_tci={value} is beyond this model")
        return "vlan_vid", (tci & 0x1FFF, mask & 0x1FFF)
    key = _OVS_NAMES.get(name, name)
    if key not in ofsim.FIELDS:
        raise SimError(f"unknown match field {name!r}")
    kind = ofsim.FIELDS[key][0]
    return key, _int(value) if kind == ofsim.INT and "/" not in value else value


def _ct_state(text: str) -> tuple[int, int]:
    """``+new+trk`` / ``-est+trk`` / ``0x21/0x21`` -> (value, mask)."""
    if not text or text[0] not in "+-":
        v, _, m = text.partition("/")
        return _int(v), _int(m) if m else 0xFFFFFFFF
    value = mask = 0
    for sign, flag in re.findall(r"([+-])([a-z]+)", text):
        if flag not in ofsim.CT_FLAGS:
            raise SimError(f"unknown ct_state flag {flag!r}")
        mask |= ofsim.CT_FLAGS[flag]
        if sign == "+":
            value |= ofsim.CT_FLAGS[flag]
    return value, mask


def _ct_state_text(value: int, mask: int) -> str:
    return "".join(
        ("+" if value & bit else "-") + flag for flag, bit in ofsim.CT_FLAGS.items() if mask & bit
    )


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise SimError(f"not a number: {text!r}") from None


def match_text(match: tuple[ofsim.MatchItem, ...]) -> str:
    """Prerequisites first (eth_type, ip_proto), as OVS parses left to right."""
    parts = []
    first = {"eth_type": 0, "ip_proto": 1}
    for name, value, mask in sorted(match, key=lambda m: (first.get(m[0], 2), m[0])):
        full = (1 << ofsim.FIELDS[name][1]) - 1
        if name == "ct_state":
            parts.append(f"ct_state={_ct_state_text(value, mask)}")
            continue
        v = ofsim.render(name, value)
        hexa = mask != full or name in ("eth_type", "metadata", "tunnel_id")
        text = str(v) if not isinstance(v, int) else (f"{v:#x}" if hexa else str(v))
        if mask != full:
            m = ofsim.render(name, mask)
            text += f"/{m:#x}" if isinstance(m, int) else f"/{m}"
        parts.append(f"{OVS_NAME.get(name, name)}={text}")
    return ",".join(parts)


# --- actions -----------------------------------------------------------------


def parse_actions(text: str) -> tuple[ofsim.Instruction, ...]:
    """A flow's ``actions=`` text -> instructions (OVS prints instructions as actions)."""
    applied: list[ofsim.Action] = []
    instructions: list[ofsim.Instruction] = []
    for token in split_top(text):
        if token == "drop":
            continue
        if token.startswith("goto_table:"):
            instructions.append(ofsim.GotoTable(_int(token.split(":", 1)[1])))
        elif token == "clear_actions":
            instructions.append(ofsim.ClearActions())
        elif token.startswith("write_actions(") and token.endswith(")"):
            instructions.append(ofsim.WriteActions(_actions(token[len("write_actions(") : -1])))
        elif token.startswith("write_metadata:"):
            v, _, m = token.split(":", 1)[1].partition("/")
            instructions.append(ofsim.WriteMetadata(_int(v), _int(m) if m else (1 << 64) - 1))
        elif token.startswith("meter:"):
            continue  # rate limiting: no effect on where a packet goes
        else:
            applied.extend(_actions(token))
    if applied:
        instructions.insert(0, ofsim.ApplyActions(tuple(applied)))
    return tuple(instructions)


def _actions(text: str) -> tuple[ofsim.Action, ...]:
    return tuple(_action(t) for t in split_top(text))


def _action(token: str) -> ofsim.Action:
    if token in ("dec_ttl", "dec_nw_ttl"):
        return ofsim.DecTtl()
    if token in ("pop_vlan", "strip_vlan"):
        return ofsim.PopVlan()
    if token.startswith("push_vlan:"):
        return ofsim.PushVlan(_int(token.split(":", 1)[1]))
    if token.startswith("group:"):
        return ofsim.Group(_int(token.split(":", 1)[1]))
    if token.startswith("output:"):
        return ofsim.Output(_port(token.split(":", 1)[1]))
    if token.startswith("CONTROLLER:"):
        return ofsim.Output(ofsim.CONTROLLER, _int(token.split(":", 1)[1]))
    if token.startswith("controller(") or token == "controller":
        return ofsim.Output(ofsim.CONTROLLER)
    if token in _PORT_NAMES:
        return ofsim.Output(_PORT_NAMES[token])
    if token.isdigit():
        return ofsim.Output(int(token))
    if token.startswith("move:") and "->" in token:
        src, dst = token[len("move:") :].split("->", 1)
        (sname, sofs, sbits), (dname, dofs, dbits) = _subfield(src), _subfield(dst)
        if sbits != dbits:
            raise SimError(f"move of {sbits} bits into {dbits}: {token!r}")
        whole = sofs == dofs == 0 and sbits == ofsim.FIELDS[sname][1] == ofsim.FIELDS[dname][1]
        return ofsim.Move(sname, dname, 0 if whole else sbits, sofs, dofs)
    if token.startswith("load:") and "->" in token:
        value, dst = token[len("load:") :].split("->", 1)
        name, ofs, bits = _subfield(dst)
        if ofs != 0 or bits != ofsim.FIELDS[name][1]:
            raise SimError(f"load into part of a field is beyond this model: {token!r}")
        return ofsim.SetField(name, _int(value))
    if token.startswith("set_field:") and "->" in token:
        value, name = token[len("set_field:") :].rsplit("->", 1)
        key, val = _set_name(name), value
        if ofsim.FIELDS.get(key, (None,))[0] == ofsim.INT:
            return ofsim.SetField(key, _int(val))
        return ofsim.SetField(key, val)
    for prefix, key in (
        ("mod_dl_src:", "eth_src"),
        ("mod_dl_dst:", "eth_dst"),
        ("mod_nw_src:", "ipv4_src"),
        ("mod_nw_dst:", "ipv4_dst"),
        ("mod_nw_ttl:", "nw_ttl"),
    ):
        if token.startswith(prefix):
            value = token[len(prefix) :]
            return ofsim.SetField(key, _int(value) if key == "nw_ttl" else value)
    if token.startswith("ct(") and token.endswith(")"):
        return _ct(token[3:-1])
    if token.startswith("conjunction(") and token.endswith(")"):
        cid, _, clause = token[len("conjunction(") : -1].partition(",")
        k, _, n = clause.strip().partition("/")
        return ofsim.Conjunction(_int(cid), _int(k), _int(n))
    if token.startswith("mod_vlan_vid:"):
        return ofsim.SetField("vlan_vid", ofsim.OFPVID_PRESENT | _int(token.split(":", 1)[1]))
    raise SimError(f"no simulation of action {token!r}")


def _ct(text: str) -> ofsim.Ct:
    commit, table, zone, zone_src = False, None, 0, None
    nat: ofsim.Nat | None = None
    for item in split_top(text):
        key, _, value = item.partition("=")
        if item == "nat":
            nat = ofsim.Nat()
        elif item.startswith("nat(") and item.endswith(")"):
            kind, _, address = item[4:-1].partition("=")
            if kind not in ("src", "dst") or "-" in address or ":" in address:
                raise SimError(f"no simulation of ct option {item!r}")
            nat = ofsim.Nat(kind, address)
        elif key == "commit":
            commit = True
        elif key == "table":
            table = _int(value)
        elif key == "zone" and "[" in value:
            field, ofs, bits = _subfield(value)
            if ofs != 0 or bits != 16:
                raise SimError(f"ct zone from bits other than 0..15: {text!r}")
            zone_src = field
        elif key == "zone":
            zone = _int(value)
        else:
            raise SimError(f"no simulation of ct option {item!r}")
    return ofsim.Ct(commit=commit, table=table, zone=zone, zone_src=zone_src, nat=nat)


def _subfield(text: str) -> tuple[str, int, int]:
    """``NXM_NX_REG6[]``, ``NXM_NX_REG6[0..15]``, ``reg6[3]`` -> (field, offset, bits)."""
    name, sep, rng = text.partition("[")
    if not sep or not rng.endswith("]"):
        raise SimError(f"not a field reference: {text!r}")
    field = _NXM_FIELD.get(name) or _set_name(name)
    width = ofsim.FIELDS[field][1]
    rng = rng[:-1]
    if not rng:
        return field, 0, width
    lo, _, hi = rng.partition("..")
    start, end = _int(lo), _int(hi or lo)
    if not 0 <= start <= end < width:
        raise SimError(f"bits out of range in {text!r}")
    return field, start, end - start + 1


#: set_field names OVS prints that name an IPv4 field (set_field has no match context).
_SET_NAMES = {
    "nw_src": "ipv4_src",
    "nw_dst": "ipv4_dst",
    "icmp_type": "icmpv4_type",
    "icmp_code": "icmpv4_code",
}


def _set_name(name: str) -> str:
    key = _OVS_NAMES.get(name, _SET_NAMES.get(name, name))
    if key not in ofsim.FIELDS:
        raise SimError(f"set_field of unknown field {name!r}")
    return key


def actions_text(actions: tuple[ofsim.Action, ...]) -> str:
    out = []
    for a in actions:
        if isinstance(a, ofsim.Output):
            if a.port == ofsim.CONTROLLER:
                out.append(f"CONTROLLER:{a.max_len}")
            else:
                out.append(_PORT_TEXT.get(a.port, f"output:{a.port}"))
        elif isinstance(a, ofsim.SetField):
            value = ofsim.render(a.field, int(a.value))
            out.append(f"set_field:{value}->{OVS_NAME.get(a.field, a.field)}")
        elif isinstance(a, ofsim.Move):
            out.append(
                f"move:{_ref(a.src, a.src_ofs, a.n_bits)}->{_ref(a.dst, a.dst_ofs, a.n_bits)}"
            )
        elif isinstance(a, ofsim.DecTtl):
            out.append("dec_ttl")
        elif isinstance(a, ofsim.PushVlan):
            out.append(f"push_vlan:{a.ethertype:#x}")
        elif isinstance(a, ofsim.PopVlan):
            out.append("pop_vlan")
        elif isinstance(a, ofsim.Group):
            out.append(f"group:{a.group_id}")
        elif isinstance(a, ofsim.Ct):
            opts = ["commit"] if a.commit else []
            if a.table is not None:
                opts.append(f"table={a.table}")
            if a.zone_src is not None:
                opts.append(f"zone={_ref(a.zone_src, 0, 16)}")
            elif a.zone:
                opts.append(f"zone={a.zone}")
            if a.nat is not None:
                addr = ofsim.render("ipv4_src", int(a.nat.address))
                opts.append(f"nat({a.nat.kind}={addr})" if a.nat.kind else "nat")
            out.append(f"ct({','.join(opts)})")
        elif isinstance(a, ofsim.Conjunction):
            out.append(f"conjunction({a.id},{a.clause}/{a.n_clauses})")
    return ",".join(out)


def _ref(field: str, ofs: int, bits: int) -> str:
    if field not in NXM_NAME:
        raise SimError(f"no NXM name for {field}")
    whole = ofs == 0 and bits == ofsim.FIELDS[field][1]
    return f"{NXM_NAME[field]}[{'' if whole else f'{ofs}..{ofs + bits - 1}'}]"


def instructions_text(instructions: tuple[ofsim.Instruction, ...]) -> str:
    out = []
    for i in instructions:
        if isinstance(i, ofsim.ApplyActions):
            out.append(actions_text(i.actions))
        elif isinstance(i, ofsim.ClearActions):
            out.append("clear_actions")
        elif isinstance(i, ofsim.WriteActions):
            out.append(f"write_actions({actions_text(i.actions)})")
        elif isinstance(i, ofsim.WriteMetadata):
            out.append(f"write_metadata:{i.value:#x}/{i.mask:#x}")
        elif isinstance(i, ofsim.GotoTable):
            out.append(f"goto_table:{i.table}")
    return ",".join(p for p in out if p) or "drop"


# --- flows and groups --------------------------------------------------------


def flow_text(flow: ofsim.Flow) -> str:
    """One line for ``ovs-ofctl -O OpenFlow13 add-flows``."""
    head = f"table={flow.table},priority={flow.priority},cookie={flow.cookie:#x}"
    match = match_text(flow.match)
    return f"{head}{',' + match if match else ''},actions={instructions_text(flow.instructions)}"


def group_text(group: ofsim.GroupEntry) -> str:
    """One line for ``ovs-ofctl -O OpenFlow13 add-groups``."""
    parts = [f"group_id={group.group_id}", f"type={group.type}"]
    for b in group.buckets:
        bucket = []
        if group.type == "select":
            bucket.append(f"weight:{b.weight}")
        if group.type == "ff":
            bucket.append(f"watch_port:{_PORT_TEXT.get(b.watch_port, b.watch_port)}")
        bucket.append(f"actions={actions_text(b.actions) or 'drop'}")
        parts.append("bucket=" + ",".join(bucket))
    return ",".join(parts)


def parse_flows(text: str) -> list[ofsim.Flow]:
    """``ovs-ofctl -O OpenFlow13 dump-flows`` (or ``add-flows`` input) -> flows."""
    return [_flow(line) for line in _lines(text)]


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("OFPST_", "NXST_", "#")):
            yield line


def _flow(line: str) -> ofsim.Flow:
    left, sep, actions = line.partition("actions=")
    if not sep:
        raise SimError(f"no actions in {line!r}")
    table, priority, cookie = 0, 32768, 0  # OVS omits priority 32768 (the default)
    match_tokens = []
    for token in split_top(left.replace(" ", ",")):
        name, _, value = token.partition("=")
        if name == "table":
            table = _int(value)
        elif name == "priority":
            priority = _int(value)
        elif name == "cookie":
            cookie = _int(value.split("/")[0])
        elif name not in _FLOW_STATS:
            match_tokens.append(token)
    match = parse_match(",".join(match_tokens))
    return ofsim.Flow(table, priority, match, parse_actions(actions.strip()), cookie)


def parse_groups(text: str) -> list[ofsim.GroupEntry]:
    """``ovs-ofctl -O OpenFlow13 dump-groups`` (or ``add-groups`` input) -> groups."""
    return [_group(line) for line in _lines(text)]


def _group(line: str) -> ofsim.GroupEntry:
    head, *bucket_texts = line.split(",bucket=")
    attrs = dict(t.partition("=")[::2] for t in split_top(head))
    if "group_id" not in attrs or "type" not in attrs:
        raise SimError(f"not a group: {line!r}")
    buckets = []
    for text in bucket_texts:
        weight, watch = 1, ofsim.ANY
        rest = text
        while not rest.startswith("actions="):
            item, _, rest = rest.partition(",")
            key, _, value = item.partition(":")
            if key == "weight":
                weight = _int(value)
            elif key == "watch_port":
                watch = _port(value)
            elif key not in ("bucket_id", "watch_group"):
                raise SimError(f"unknown bucket item {item!r} in {line!r}")
            if not rest:
                raise SimError(f"bucket without actions in {line!r}")
        actions = rest[len("actions=") :]
        acts = () if actions == "drop" else _actions(actions)
        buckets.append(ofsim.Bucket(acts, weight, watch))
    return ofsim.GroupEntry(_int(attrs["group_id"]), attrs["type"], tuple(buckets))


def parse_live_ports(text: str) -> set[int]:
    """``ovs-ofctl -O OpenFlow13 dump-ports-desc`` -> the ports whose state is LIVE.

    Fast-failover groups choose by liveness (``ofsim.Pipeline(down=...)``).
    """
    live, port = set(), None
    for line in text.splitlines():
        head = line.strip().split("(", 1)[0]
        if line.startswith(" ") and not line.startswith("  ") and "(" in line:
            port = _PORT_NAMES.get(head) if not head.isdigit() else int(head)
        elif (
            line.strip().startswith("state:")
            and port is not None
            and "LIVE" in line.split(":", 1)[1].split()
        ):
            live.add(port)
    return live

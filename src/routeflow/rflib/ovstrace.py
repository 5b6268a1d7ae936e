"""Open vSwitch's ``ofproto/trace`` as ofsim outcomes (pure), to hold the simulator to OVS.

``trace_flow`` writes a packet in the flow syntax ``ofproto/trace`` takes;
``parse_trace`` reads its answer: the OpenFlow tables hit (table, priority) and
the final ``Datapath actions`` replayed on the packet's headers, so each output
becomes an ofsim ``Outcome`` with the headers it leaves with. A frame sent out a
flow-based tunnel port (``tnl_push`` on the userspace datapath) is an output of that
port whose ``tunnel`` holds the VNI and remote endpoint; what the outer frame then
does on the underlay bridge is not the traced bridge's business and is left out. Datapath port
numbers are not OpenFlow ones: ``parse_dpif_ports`` reads ``dpif/show``.

A select group on the userspace datapath hashes by recirculating
(``hash(...),recirc(...)``), which a trace cannot follow: ``parse_trace``
then says ``recirculated``, and the caller traces again with a ``dp_hash``
in the flow (which picks the bucket directly); that trace's megaflow gives
the bucket table's mask (``dp_hash_mask``), so every bucket is reached by
tracing each value up to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from routeflow.rflib import ofsim
from routeflow.rflib.ofsim import SimError
from routeflow.rflib.ovstext import OVS_NAME, split_top

_PROTOCOL_KEYWORD = {
    (0x0800, 1): "icmp",
    (0x0800, 6): "tcp",
    (0x0800, 17): "udp",
    (0x0800, 132): "sctp",
    (0x86DD, 58): "icmp6",
    (0x86DD, 6): "tcp6",
    (0x86DD, 17): "udp6",
    (0x86DD, 132): "sctp6",
}
_ETH_KEYWORD: dict[int | None, str] = {0x0800: "ip", 0x86DD: "ipv6", 0x0806: "arp"}


def trace_flow(packet: Mapping[str, object]) -> str:
    """A packet dict as ``ofproto/trace`` flow text (protocol keyword first)."""
    fields = {name: ofsim.field_value(name, value)[0] for name, value in packet.items()}
    eth_type = fields.pop("eth_type", None)
    proto = fields.get("ip_proto")
    parts = []
    if eth_type is not None and proto is not None and (eth_type, proto) in _PROTOCOL_KEYWORD:
        parts.append(_PROTOCOL_KEYWORD[(eth_type, proto)])
        fields.pop("ip_proto")
    elif eth_type in _ETH_KEYWORD:
        parts.append(_ETH_KEYWORD[eth_type])
    elif eth_type is not None:
        parts.append(f"dl_type={eth_type:#x}")
    for name, value in fields.items():
        if name == "ip_dscp":
            parts.append(f"nw_tos={value << 2}")
        else:
            parts.append(f"{OVS_NAME.get(name, name)}={ofsim.render(name, value)}")
    return ",".join(parts)


def parse_dpif_ports(text: str, bridge: str) -> dict[int, int]:
    """``ovs-appctl dpif/show`` -> {datapath port: OpenFlow port} of one bridge."""
    ports: dict[int, int] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^  (\S+):$", line)
        if m:
            current = m[1]
            continue
        m = re.match(r"^    (\S+) (\d+)/(\d+):", line)
        if m and current == bridge:
            of_port = int(m[2])
            ports[int(m[3])] = ofsim.LOCAL if of_port == 65534 else of_port
    return ports


@dataclass(frozen=True)
class Trace:
    hits: tuple[tuple[int, int | None], ...]  # (table, priority); None: no match
    outcomes: tuple[ofsim.Outcome, ...]
    recirculated: bool = False  # a select group hashed: trace again with a dp_hash
    dp_hash_mask: int | None = None  # the bits of dp_hash the select group looked at


_RECIRC_HEADER = re.compile(r"^=+\n(recirc\(0x[0-9a-f]+\) - .*)\n=+$", re.M)


def parse_trace(text: str, packet: Mapping[str, object], dp_ports: Mapping[int, int]) -> Trace:
    """Tables hit in the first bridge and the outcomes; a frame tunnelled out (native
    tunnelling, ``tnl_push``) is one output of the tunnel port with its ``tunnel``.

    A ``ct(table=...)`` recirculation is followed as OVS's trace follows it (sections
    "recirc(0x..) - resume conntrack", with ct_state=trk|new as ofsim assumes for a
    connection it was not told of): the hits of every section in order, and the outputs of
    every section's datapath actions (conntrack actions change no header)."""
    if "Translation failed" in text:
        raise SimError(f"OVS could not translate the packet:\n{text}")
    parts = _RECIRC_HEADER.split(text)
    sections = [parts[0]]
    for header, body in zip(parts[1::2], parts[2::2], strict=True):
        if "resume conntrack" not in header:
            raise SimError(f"recirculation other than conntrack's: {header}")
        sections.append(body)
    hits: list[tuple[int, int | None]] = []
    outcomes: list[ofsim.Outcome] = []
    mask = None
    for i, section in enumerate(sections):
        bridges = 0
        for line in section.splitlines():
            if line.strip().startswith('bridge("'):
                bridges += 1  # a second bridge: a tunnelled frame's way through the underlay
            if bridges > 1:
                continue
            m = re.match(r"^\s*(\d+)\. (?:.*, )?priority (\d+)", line)
            if m:
                hits.append((int(m[1]), int(m[2])))
            elif m := re.match(r"^\s*(\d+)\. No match", line):
                hits.append((int(m[1]), None))
        m = re.search(r"^Datapath actions: (.*)$", section, re.M)
        if m is None:
            raise SimError(f"no datapath actions in the trace:\n{text}")
        actions = split_top(m[1])
        if any(a.startswith("recirc(") for a in actions):
            if any(a.startswith("hash(") for a in actions):
                return Trace(tuple(hits), (), recirculated=True)
            if i + 1 >= len(sections) or not any(a.startswith("ct(") for a in actions):
                raise SimError(f"recirculation other than a select group's hash: {m[1]}")
        actions = [a for a in actions if not a.startswith(("ct(", "recirc("))]
        outcomes += [o for o in replay(actions, packet, dp_ports) if o.kind != ofsim.DROP]
        found = re.search(r"^Megaflow: .*\bdp_hash=\w+/(0x[0-9a-f]+)", section, re.M)
        mask = int(found[1], 16) if found else mask
    return Trace(tuple(hits), tuple(outcomes) or (ofsim.Outcome(ofsim.DROP),), dp_hash_mask=mask)


def replay(
    actions: list[str], packet: Mapping[str, object], dp_ports: Mapping[int, int]
) -> tuple[ofsim.Outcome, ...]:
    """Datapath actions run on the packet's headers: one outcome per output or upcall."""
    headers = {k: v for k, v in packet.items() if k not in ofsim.PIPELINE_FIELDS}
    headers = {k: ofsim.render(k, ofsim.field_value(k, v)[0]) for k, v in headers.items()}
    outcomes: list[ofsim.Outcome] = []
    outer = False  # after tnl_push: the outer frame's way out of another bridge follows

    def emit(kind: str, port: int | None = None) -> None:
        outcomes.append(ofsim.Outcome(kind, port, tuple(sorted(headers.items()))))

    for action in actions:
        if action == "drop":
            continue
        if action.isdigit():
            dp_port = int(action)
            if dp_port not in dp_ports and outer:
                continue  # the encapsulated frame leaving the underlay bridge
            if dp_port not in dp_ports:
                raise SimError(f"datapath port {dp_port} is not on the bridge")
            emit(ofsim.OUTPUT, dp_ports[dp_port])
        elif action.startswith("tnl_push("):
            # Native tunnelling: the frame leaves the flow-based tunnel port with the
            # VNI and remote endpoint the pipeline set (ofsim's Outcome.tunnel).
            port = re.search(r"tnl_port\((\d+)\)", action)
            vni = re.search(r"vni=(0x[0-9a-f]+|\d+)", action)
            dst = re.search(r"ipv4\(src=[^,]+,dst=([0-9.]+)", action)
            if port is None or vni is None or dst is None or int(port[1]) not in dp_ports:
                raise SimError(f"no replay of datapath action {action!r}")
            tunnel = (("tunnel_id", int(vni[1], 0)), ("tun_ipv4_dst", dst[1]))
            outer = True
            outcomes.append(
                ofsim.Outcome(
                    ofsim.OUTPUT, dp_ports[int(port[1])], tuple(sorted(headers.items())), tunnel
                )
            )
        elif action.startswith("userspace(") and "controller(" in action:
            reason = re.search(r"reason=(\d+)", action)
            expired = reason is not None and reason[1] == "2"  # OFPR_INVALID_TTL
            emit(ofsim.TTL_EXPIRED if expired else ofsim.CONTROLLER_OUT)
        elif action.startswith("set(") or action.startswith("masked_set("):
            _set(action, headers)
        elif action.startswith("push_vlan("):
            vid = int(re.search(r"vid=(\d+)", action)[1])  # type: ignore[index]
            pcp = int(re.search(r"pcp=(\d+)", action)[1])  # type: ignore[index]
            headers["vlan_vid"] = ofsim.OFPVID_PRESENT | vid
            headers["vlan_pcp"] = pcp
        elif action == "pop_vlan":
            headers.pop("vlan_vid", None)
            headers.pop("vlan_pcp", None)
        else:
            raise SimError(f"no replay of datapath action {action!r}")
    return tuple(outcomes) or (ofsim.Outcome(ofsim.DROP),)


#: (datapath key, attribute) -> OXM field.
_ODP = {
    ("eth", "src"): "eth_src",
    ("eth", "dst"): "eth_dst",
    ("ipv4", "src"): "ipv4_src",
    ("ipv4", "dst"): "ipv4_dst",
    ("ipv4", "ttl"): "nw_ttl",
    ("ipv4", "proto"): "ip_proto",
    ("ipv6", "src"): "ipv6_src",
    ("ipv6", "dst"): "ipv6_dst",
    ("ipv6", "hlimit"): "nw_ttl",
    ("ipv6", "label"): "ipv6_flabel",
    ("ipv6", "proto"): "ip_proto",
    ("tcp", "src"): "tcp_src",
    ("tcp", "dst"): "tcp_dst",
    ("udp", "src"): "udp_src",
    ("udp", "dst"): "udp_dst",
    ("icmp", "type"): "icmpv4_type",
    ("icmp", "code"): "icmpv4_code",
    ("arp", "sip"): "arp_spa",
    ("arp", "tip"): "arp_tpa",
    ("arp", "op"): "arp_op",
    ("arp", "sha"): "arp_sha",
    ("arp", "tha"): "arp_tha",
}


def _set(action: str, headers: dict[str, object]) -> None:
    m = re.fullmatch(r"(?:masked_)?set\((\w+)\((.*)\)\)", action)
    if m is None:
        raise SimError(f"no replay of datapath action {action!r}")
    key = m[1]
    for item in split_top(m[2]):
        attr, _, text = item.partition("=")
        if (key, attr) in (("ipv4", "tos"), ("ipv6", "tclass")):
            value = int(text.split("/")[0], 0)
            headers["ip_dscp"], headers["ip_ecn"] = value >> 2, value & 3
            continue
        name = _ODP.get((key, attr))
        if name is None:
            raise SimError(f"no replay of {key}({attr}=...) in {action!r}")
        v, m_ = ofsim.field_value(name, text)
        if "/" in text:  # masked: only the mask's bits change
            old = ofsim.field_value(name, headers[name])[0] if name in headers else 0
            v = (old & ~m_) | v
        headers[name] = ofsim.render(name, v)


def trace_every_way(
    trace: Callable[[str], str], packet: Mapping[str, object], dp_ports: Mapping[int, int]
) -> tuple[tuple[tuple[int, int | None], ...], set[tuple[ofsim.Outcome, ...]]]:
    """(tables hit, every execution's outcomes) for ``packet``; ``trace`` runs ofproto/trace.

    Comparable with ``{ex.outcomes for ex in ofsim_result.executions}``.
    """
    flow = trace_flow(packet)
    first = parse_trace(trace(flow), packet, dp_ports)
    if not first.recirculated:
        return first.hits, {first.outcomes}
    ways: set[tuple[ofsim.Outcome, ...]] = set()
    dp_hash, last = 1, 1
    while dp_hash <= last:  # dp_hash 0 means "not computed": start at 1, end at mask + 1
        t = parse_trace(trace(f"dp_hash={dp_hash},{flow}"), packet, dp_ports)
        if t.recirculated or t.dp_hash_mask is None:
            raise SimError(f"a trace with dp_hash={dp_hash} did not pick a bucket")
        last = t.dp_hash_mask + 1
        ways.add(t.outcomes)
        dp_hash += 1
    return first.hits, ways

"""Framework-free specs <-> os-ken OpenFlow 1.3 messages (the os-ken layer).

rfproxy's decisions are made on openflow.py's FlowSpec/GroupSpec and the
core's actions; this module is where they become os-ken message objects, and
where os-ken's objects (flow statistics, group descriptions, ports, errors)
become the plain values and normalised texts the rest of the proxy compares.
It is the analogue of faucet's valve_of.py: builders and formatters, no state
(the log lines of role replies and errors included, as core.Notice).

One more thing lives here because it is os-ken plumbing: a replacement for
os-ken's multipart-reply parser that leaves flow statistics raw
(``install_flow_stats_parser``). It patches os-ken's global parser table, so
it is installed by the application when it starts, never by an import.
"""

from __future__ import annotations

import logging
import struct

from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import openflow as of
from routeflow.proxy.actions import Notice, Port
from routeflow.rflib import protocol as p

__all__ = [
    "LazyFlowStatsReply",
    "actions",
    "barrier_request",
    "delete_strict",
    "delete_strict_raw",
    "error_notice",
    "flow_mod",
    "flow_stat",
    "format_group",
    "format_instructions",
    "format_match",
    "group_mod",
    "install_flow_stats_parser",
    "packet_out",
    "parse_flow_stats_entry",
    "port_desc",
    "port_reason",
    "role_reply_notice",
    "role_request",
    "serialize",
    "switch_state_requests",
]

_PARSER = ofproto_v1_3_parser
_OFP = ofproto_v1_3


# --- building -------------------------------------------------------------------------------


def actions(dp, acts: tuple[of.Action, ...]) -> tuple[list, list]:
    """Returns (apply actions, goto instructions)."""
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    apply: list = []
    goto: list = []
    for a in acts:
        if isinstance(a, of.Output):
            apply.append(parser.OFPActionOutput(a.port))
        elif isinstance(a, of.ToController):
            apply.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
        elif isinstance(a, of.Group):
            apply.append(parser.OFPActionGroup(a.group_id))
        elif isinstance(a, of.SetEthSrc):
            apply.append(parser.OFPActionSetField(eth_src=a.mac))
        elif isinstance(a, of.SetEthDst):
            apply.append(parser.OFPActionSetField(eth_dst=a.mac))
        elif isinstance(a, of.DecTtl):
            apply.append(parser.OFPActionDecNwTtl())
        elif isinstance(a, of.PushVlan):
            apply.append(parser.OFPActionPushVlan(0x8100))
        elif isinstance(a, of.SetVlanVid):
            apply.append(parser.OFPActionSetField(vlan_vid=ofp.OFPVID_PRESENT | a.vid))
        elif isinstance(a, of.PopVlan):
            apply.append(parser.OFPActionPopVlan())
        elif isinstance(a, of.Goto):
            goto.append(parser.OFPInstructionGotoTable(a.table))
    return apply, goto


def flow_mod(dp, flow: of.FlowSpec, delete: bool):
    """An ADD of ``flow``, or with ``delete`` a DELETE_STRICT of its (table, priority, match)."""
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    match = parser.OFPMatch(**dict(flow.match))
    if delete:
        return delete_strict(dp, flow.table, flow.priority, match)
    apply, goto = actions(dp, flow.actions)
    inst = []
    if apply:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, apply))
    inst.extend(goto)
    return parser.OFPFlowMod(
        datapath=dp,
        cookie=flow.cookie,
        table_id=flow.table,
        command=ofp.OFPFC_ADD,
        priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        match=match,
        instructions=inst,
    )


def delete_strict(dp, table: int, priority: int, match):
    ofp = dp.ofproto
    return dp.ofproto_parser.OFPFlowMod(
        datapath=dp,
        table_id=table,
        command=ofp.OFPFC_DELETE_STRICT,
        priority=priority,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=match,
    )


def delete_strict_raw(dp, table: int, priority: int, match: bytes):
    """DELETE_STRICT of a flow the switch reported, its ofp_match echoed as it was read."""
    return delete_strict(dp, table, priority, dp.ofproto_parser.OFPMatch.parser(match, 0))


def group_mod(dp, group: of.GroupSpec, command: str):
    """``command`` is "add", "modify" or "delete" (a delete carries no buckets)."""
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    cmd = {
        "add": ofp.OFPGC_ADD,
        "modify": ofp.OFPGC_MODIFY,
        "delete": ofp.OFPGC_DELETE,
    }[command]
    gtype = ofp.OFPGT_SELECT if group.select else ofp.OFPGT_INDIRECT
    buckets = []
    if command != "delete":
        for acts, weight in group.buckets:
            apply, _ = actions(dp, acts)
            buckets.append(
                parser.OFPBucket(
                    weight=weight if group.select else 0,
                    watch_port=ofp.OFPP_ANY,
                    watch_group=ofp.OFPG_ANY,
                    actions=apply,
                )
            )
    return parser.OFPGroupMod(dp, cmd, gtype, group.group_id, buckets)


def role_request(dp, master: bool, generation: int):
    ofp = dp.ofproto
    role = ofp.OFPCR_ROLE_MASTER if master else ofp.OFPCR_ROLE_SLAVE
    return dp.ofproto_parser.OFPRoleRequest(dp, role, generation)


def packet_out(dp, port: int, frame: bytes):
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    return parser.OFPPacketOut(
        datapath=dp,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=ofp.OFPP_CONTROLLER,
        actions=[parser.OFPActionOutput(port)],
        data=frame,
    )


def barrier_request(dp):
    return dp.ofproto_parser.OFPBarrierRequest(dp)


def switch_state_requests(dp) -> tuple:
    """Requests for all of the switch's flows and groups, their xids already set."""
    parser = dp.ofproto_parser
    flows = parser.OFPFlowStatsRequest(dp)
    groups = parser.OFPGroupDescStatsRequest(dp, 0)
    dp.set_xid(flows)
    dp.set_xid(groups)
    return flows, groups


def serialize(dp, msg) -> bytes:
    dp.set_xid(msg)
    msg.serialize()
    return bytes(msg.buf)


# --- reading --------------------------------------------------------------------------------


def format_match(match) -> str:
    parts = []
    for key, value in match.items():
        if isinstance(value, tuple):
            value = "/".join(str(v) for v in value)
        parts.append(f"{key}={str(value).lower()}")
    return ",".join(sorted(parts))


def format_instructions(instructions) -> str:
    out = []
    for inst in instructions:
        if hasattr(inst, "table_id") and not hasattr(inst, "actions"):
            out.append(f"goto_table:{inst.table_id}")
            continue
        for a in getattr(inst, "actions", []):
            name = type(a).__name__.removeprefix("OFPAction")
            if name == "Output":
                port = "CONTROLLER" if a.port == 0xFFFFFFFD else str(a.port)
                out.append(f"output:{port}")
            elif name == "Group":
                out.append(f"group:{a.group_id}")
            elif name == "SetField":
                out.append(f"set_field:{a.value}->{a.key}")
            else:
                out.append(name.lower())
    return ",".join(out) or "drop"


def format_group(group) -> str:
    """A group (mod or desc stats entry) as comparable text: type and buckets."""
    kind = {0: "all", 1: "select", 2: "indirect", 3: "ff"}.get(group.type, str(group.type))
    buckets = ";".join(f"w={b.weight}:" + format_instructions([b]) for b in group.buckets)
    return f"{kind}[{buckets}]"


def parse_flow_stats_entry(buf, offset: int) -> tuple[str, str]:
    """(match, actions) text of one ofp_flow_stats entry, by os-ken (the slow path)."""
    st = _PARSER.OFPFlowStats.parser(buf, offset)
    return format_match(st.match), format_instructions(st.instructions)


def flow_stat(st) -> p.FlowStat:
    """One os-ken OFPFlowStats as rfserver hears of it."""
    return p.FlowStat(
        table=st.table_id,
        priority=st.priority,
        cookie=st.cookie,
        match=format_match(st.match),
        actions=format_instructions(st.instructions),
        packets=st.packet_count,
        bytes=st.byte_count,
    )


def port_desc(ofp, port) -> Port:
    """An os-ken OFPPort as the core sees it."""
    name = port.name
    up = not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)
    return Port(
        port.port_no,
        port.hw_addr,
        name.decode(errors="replace") if isinstance(name, bytes) else str(name),
        bool(up),
    )


def port_reason(ofp, reason: int) -> str:
    """An OFPT_PORT_STATUS reason as the core takes it: "add", "delete" or "modify"."""
    return {ofp.OFPPR_ADD: "add", ofp.OFPPR_DELETE: "delete"}.get(reason, "modify")


def role_reply_notice(msg, replica: str) -> Notice:
    """The log line of an OFPT_ROLE_REPLY."""
    ofp = msg.datapath.ofproto
    role = {
        ofp.OFPCR_ROLE_MASTER: "master",
        ofp.OFPCR_ROLE_SLAVE: "slave",
        ofp.OFPCR_ROLE_EQUAL: "equal",
        ofp.OFPCR_ROLE_NOCHANGE: "nochange",
    }.get(msg.role, str(msg.role))
    return Notice(
        logging.INFO,
        "switch %#x: replica %s is %s (generation %d)",
        (msg.datapath.id or 0, replica, role, msg.generation_id),
    )


def error_notice(msg, replica: str, role: str, generation: int) -> Notice:
    """The log line of an OFPT_ERROR, for a replica holding ``role`` and ``generation``."""
    ofp = msg.datapath.ofproto
    dp_id = msg.datapath.id or 0
    if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED:
        why = {
            ofp.OFPRRFC_STALE: "stale generation (a newer master exists)",
            ofp.OFPRRFC_UNSUP: "roles not supported",
            ofp.OFPRRFC_BAD_ROLE: "bad role",
        }.get(msg.code, f"code {msg.code}")
        return Notice(
            logging.ERROR,
            "switch %#x refused role %s (generation %d) of replica %s: %s",
            (dp_id, role, generation, replica, why),
        )
    if msg.type == ofp.OFPET_BAD_REQUEST and msg.code == ofp.OFPBRC_IS_SLAVE:
        return Notice(
            logging.WARNING,
            "switch %#x refused a write: replica %s is slave there (xid %s)",
            (dp_id, replica, msg.xid),
        )
    return Notice(
        logging.WARNING,
        "switch %#x rejected a message: type=%d code=%d (xid %s)",
        (dp_id, msg.type, msg.code, msg.xid),
    )


# --- flow statistics stay raw ---------------------------------------------------------------


class LazyFlowStatsReply(_PARSER.OFPFlowStatsReply):
    """An OFPMP_FLOW reply whose ``body`` os-ken parses only when first read.

    os-ken parses every multipart reply in its receive loop, before any
    handler runs: for a full table that is a million OFPFlowStats with their
    matches and instructions (seconds, and hundreds of MB). Reconciliation
    reads the raw bytes (``msg.buf``, see reconcile.read_flow_stats); the
    statistics poll reads ``body``.
    """

    @property
    def body(self):
        body = self.__dict__.get("_body")
        if body is None:
            body = []
            offset = _OFP.OFP_MULTIPART_REPLY_SIZE
            while offset < self.msg_len:
                entry = _PARSER.OFPFlowStats.parser(self.buf, offset)
                body.append(entry)
                offset += entry.length
            self._body = body
        return body

    @body.setter
    def body(self, value):
        self._body = value


# os-ken finds a message's event class by the message class's name.
LazyFlowStatsReply.__name__ = LazyFlowStatsReply.__qualname__ = "OFPFlowStatsReply"
_MP_HEAD = struct.Struct(_OFP.OFP_MULTIPART_REPLY_PACK_STR)
#: os-ken's own multipart reply parser, once install_flow_stats_parser has replaced it.
_os_ken_multipart_reply = None


def _multipart_reply(datapath, version, msg_type, msg_len, xid, buf):
    """os-ken's multipart reply parser, except that flow statistics stay raw."""
    type_, flags = _MP_HEAD.unpack_from(buf, _OFP.OFP_HEADER_SIZE)
    if type_ != _OFP.OFPMP_FLOW:
        return _os_ken_multipart_reply(datapath, version, msg_type, msg_len, xid, buf)
    msg = LazyFlowStatsReply(datapath)
    msg.set_headers(version, msg_type, msg_len, xid)
    msg.set_buf(buf)
    msg.type = type_
    msg.flags = flags
    return msg


def install_flow_stats_parser() -> None:
    """Make os-ken leave OFPMP_FLOW replies raw (process-wide; idempotent)."""
    global _os_ken_multipart_reply
    table = _PARSER._MSG_PARSERS
    current = table[_OFP.OFPT_MULTIPART_REPLY]
    if current is _multipart_reply:
        return
    _os_ken_multipart_reply = current
    table[_OFP.OFPT_MULTIPART_REPLY] = _multipart_reply

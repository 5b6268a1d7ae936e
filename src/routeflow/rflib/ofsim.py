"""An OpenFlow 1.3 pipeline executed on one packet (pure): where it goes, and how rewritten.

Flows are checked by running them, not by reading their text: a test states
"this frame leaves port 2 with these MACs and TTL 63" or "this ARP never
reaches the controller", and the answer comes in milliseconds without a
switch (faucet's ``FakeOFTable`` plays the same part). Nothing here knows
routeflow: flows and groups come from any source (routeflow's FlowSpecs via
``proxy/specsim.py``, an ``ovs-ofctl`` dump via ``rflib/ovstext.py``), and a
component test holds the answers to Open vSwitch's ``ofproto/trace`` so the
model cannot drift from the switch.

The rules (OpenFlow 1.3.5 section 5; where it leaves room, what OVS does):

* A packet is a dict of header fields named as OXM fields are (``eth_dst``,
  ``ipv4_dst``, ``arp_tpa``...), plus ``nw_ttl`` (IPv4 TTL or IPv6 hop limit)
  and ``in_port``. A field the packet lacks matches only flows that do not
  name it, which is how match prerequisites work out. An untagged packet
  has no ``vlan_vid`` and matches ``vlan_vid=0`` (OFPVID_NONE).
* Per table the matching flow of highest priority wins; two matching flows
  at that priority are an error (the switch's choice is undefined). No
  matching flow drops the packet (the 1.3 table miss).
* A flow's instructions run in the order the spec fixes, whatever order
  they are given in: apply-actions, clear-actions, write-actions,
  write-metadata, goto-table. Without goto-table the action set runs: pop
  VLAN, push VLAN, decrement TTL, set-fields, then the group if any, else
  the output.
* Group buckets run as action sets (as OVS runs them). ``all`` runs every
  bucket on a copy; ``indirect`` its one bucket; ``select`` one bucket, and
  each bucket of positive weight is one possible execution (the result lists
  them all); ``ff`` the first bucket whose watch port is live. A group
  works on a copy: the actions after it see the packet as it was.
* Output to the port the packet came in on is dropped unless the port is
  ``IN_PORT``. Decrementing a TTL of 0 or 1 ends that action list (in
  apply-actions: the packet's way through the tables, action set included);
  the outcome is ``ttl_expired`` (OVS sends it to the controller as invalid
  TTL). Actions are not checked against the match's prerequisites (OVS
  refuses ``dec_ttl`` in a flow that does not match IP).
* Nicira extensions as OVS offers them in 1.3: registers ``reg0``-``reg15``,
  ``tunnel_id`` and ``tun_ipv4_dst`` are pipeline fields, 0 until set (so
  matchable on any packet) and not part of an outcome's headers; ``Move``
  copies bits between fields (apply-actions only). An output made while
  ``tun_ipv4_dst`` is set carries ``tunnel`` = (tunnel_id, tun_ipv4_dst): what
  a flow-based tunnel port (``remote_ip=flow, key=flow``) encapsulates with.
* Connection tracking as OVS's ``ct`` action does it, for the questions a security
  group asks: ``Ct(table=T, zone=...)`` looks the packet's connection up in the zone
  (5-tuple; ICMP by addresses only) among the connections the caller says exist
  (``run(packet, conntrack=...)``) and those committed earlier in the same run, sets
  ``ct_state`` (+trk and +new, or +est, with +rpl for the reply direction) and
  ``ct_zone`` and goes on in table T with a copy (OVS recirculates a clone); the
  original goes on with the next action. ``Ct(commit=True)`` records the connection: a
  result's ``commits`` are what the switch would now hold. The zone is a number or the
  low 16 bits of a register (``zone_src``). Related and invalid states are not modelled.
  ``Ct(nat=Nat("src"|"dst", address))`` translates a new connection's source or
  destination address (committed: recorded with its translated reply, a 3-tuple in
  ``commits``); ``Nat()`` alone and any ``nat`` on a known connection apply the recorded
  translation in the packet's direction, as OVS's ``ct(nat)`` does. Ports are never
  changed (OVS picks another source port only on a clash, which this model has not).
* Conjunctive matches (``Conjunction(id, k, n)`` actions): at a priority where no other
  flow matches, flows that carry only conjunction actions are collected; when every
  clause 1..n of an id matched, the table is searched again with ``conj_id=id``,
  ignoring conjunctive flows; found nothing: the lookup goes on at lower priorities.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# --- ports -----------------------------------------------------------------

IN_PORT = 0xFFFFFFF8
TABLE = 0xFFFFFFF9
NORMAL = 0xFFFFFFFA
FLOOD = 0xFFFFFFFB
ALL = 0xFFFFFFFC
CONTROLLER = 0xFFFFFFFD
LOCAL = 0xFFFFFFFE
ANY = 0xFFFFFFFF

OFPVID_PRESENT = 0x1000
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_IPV6 = 0x86DD


class SimError(ValueError):
    """The flows or the packet are outside what a switch would accept or this model knows."""


# --- fields ----------------------------------------------------------------

MAC, IPV4, IPV6, INT = "mac", "ipv4", "ipv6", "int"

#: name -> (kind, width in bits). OXM names; nw_ttl is OVS's (no OXM matches a TTL).
FIELDS: dict[str, tuple[str, int]] = {
    "in_port": (INT, 32),
    "in_phy_port": (INT, 32),
    "metadata": (INT, 64),
    "tunnel_id": (INT, 64),
    "eth_dst": (MAC, 48),
    "eth_src": (MAC, 48),
    "eth_type": (INT, 16),
    "vlan_vid": (INT, 13),
    "vlan_pcp": (INT, 3),
    "ip_dscp": (INT, 6),
    "ip_ecn": (INT, 2),
    "ip_proto": (INT, 8),
    "nw_ttl": (INT, 8),
    "ipv4_src": (IPV4, 32),
    "ipv4_dst": (IPV4, 32),
    "tcp_src": (INT, 16),
    "tcp_dst": (INT, 16),
    "udp_src": (INT, 16),
    "udp_dst": (INT, 16),
    "sctp_src": (INT, 16),
    "sctp_dst": (INT, 16),
    "icmpv4_type": (INT, 8),
    "icmpv4_code": (INT, 8),
    "arp_op": (INT, 16),
    "arp_spa": (IPV4, 32),
    "arp_tpa": (IPV4, 32),
    "arp_sha": (MAC, 48),
    "arp_tha": (MAC, 48),
    "ipv6_src": (IPV6, 128),
    "ipv6_dst": (IPV6, 128),
    "ipv6_flabel": (INT, 20),
    "icmpv6_type": (INT, 8),
    "icmpv6_code": (INT, 8),
    "ipv6_nd_target": (IPV6, 128),
    "ipv6_nd_sll": (MAC, 48),
    "ipv6_nd_tll": (MAC, 48),
    # Nicira extensions OVS offers in OpenFlow 1.3 (the tenant pipeline uses them).
    "tun_ipv4_dst": (IPV4, 32),
    **{f"reg{i}": (INT, 32) for i in range(16)},
    "ct_state": (INT, 32),
    "ct_zone": (INT, 16),
    "conj_id": (INT, 32),
}

#: ``ct_state`` bits (ovs-fields(7)).
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CT_FLAGS = {"new": CT_NEW, "est": CT_EST, "rel": CT_REL, "rpl": CT_RPL, "inv": CT_INV,
            "trk": CT_TRK, "snat": 0x40, "dnat": 0x80}  # fmt: skip

#: Fields of the pipeline, not of the frame: not part of an outcome's headers.
PIPELINE_FIELDS = frozenset(
    {"in_port", "in_phy_port", "metadata", "tunnel_id", "tun_ipv4_dst"}
    | {f"reg{i}" for i in range(16)}
    | {"ct_state", "ct_zone", "conj_id"}
)
#: Fields every packet has, 0 until set (OVS: registers, metadata, tunnel metadata);
#: an untagged packet matches ``vlan_vid=0``.
ZERO_WHEN_ABSENT = PIPELINE_FIELDS - {"in_port", "in_phy_port"} | {"vlan_vid"}
#: What a flow-based tunnel port encapsulates with (an outcome's ``tunnel``).
TUNNEL_FIELDS = ("tunnel_id", "tun_ipv4_dst")


def _kind(name: str) -> tuple[str, int]:
    try:
        return FIELDS[name]
    except KeyError:
        raise SimError(f"unknown field {name!r}") from None


def _scalar(kind: str, bits: int, text: object) -> int:
    if isinstance(text, bool):
        raise SimError(f"not a field value: {text!r}")
    if isinstance(text, int):
        value = text
    elif not isinstance(text, str):
        raise SimError(f"not a field value: {text!r}")
    elif kind == MAC:
        parts = text.split(":")
        if len(parts) != 6:
            raise SimError(f"not a MAC address: {text!r}")
        value = int("".join(p.zfill(2) for p in parts), 16)
    elif kind in (IPV4, IPV6):
        try:
            address = ipaddress.IPv4Address if kind == IPV4 else ipaddress.IPv6Address
            value = int(address(text))
        except ValueError:
            raise SimError(f"not an IP address: {text!r}") from None
    else:
        value = int(text, 0)
    if not 0 <= value < 1 << bits:
        raise SimError(f"{text!r} does not fit {bits} bits")
    return value


def field_value(name: str, value: object) -> tuple[int, int]:
    """A match value in any usual spelling -> (value, mask), value already masked.

    Accepted: an int; text (MAC, IP address, ``0x800``); ``(value, mask)``; and
    ``value/mask`` or ``address/prefixlen`` text. Cached: compilers build many flows
    from few distinct values.
    """
    if type(value) in (int, str):  # not bool (True == 1 to a cache), not a tuple of them
        return _field_value(name, value)
    return _field_value.__wrapped__(name, value)


@functools.lru_cache(maxsize=1 << 16)
def _field_value(name: str, value: object) -> tuple[int, int]:
    kind, bits = _kind(name)
    full = (1 << bits) - 1
    if isinstance(value, tuple):
        if len(value) != 2:
            raise SimError(f"{name}: expected (value, mask), got {value!r}")
        v, m = _scalar(kind, bits, value[0]), _scalar(kind, bits, value[1])
    elif isinstance(value, str) and "/" in value:
        head, tail = value.split("/", 1)
        v = _scalar(kind, bits, head)
        if kind in (IPV4, IPV6) and tail.isdigit():
            plen = int(tail)
            if plen > bits:
                raise SimError(f"{name}: prefix length {plen} > {bits}")
            m = full ^ ((1 << (bits - plen)) - 1)
        else:
            m = _scalar(kind, bits, tail)
    else:
        v, m = _scalar(kind, bits, value), full
    return v & m, m


def render(name: str, value: int) -> object:
    """A field value as people write it: MAC and IP addresses as text, the rest as int."""
    kind, _ = _kind(name)
    if kind == MAC:
        return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -1, -8))
    if kind == IPV4:
        return str(ipaddress.IPv4Address(value))
    if kind == IPV6:
        return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
    return value


MatchItem = tuple[str, int, int]  # (field, value, mask)


def make_match(match: Mapping[str, object] | Iterable[tuple[str, object]]) -> tuple[MatchItem, ...]:
    items = match.items() if isinstance(match, Mapping) else match
    out: dict[str, MatchItem] = {}
    for name, value in items:
        if name in out:
            raise SimError(f"field {name} matched twice")
        v, m = field_value(name, value)
        if m:  # an all-zero mask matches anything: the switch stores no field
            out[name] = (name, v, m)
    return tuple(sorted(out.values()))


# --- actions and instructions ----------------------------------------------


@dataclass(frozen=True)
class Output:
    port: int
    max_len: int = 0xFFFF


@dataclass(frozen=True)
class SetField:
    """``value`` in any spelling ``field_value`` takes; stored as an int."""

    field: str
    value: int | str

    def __post_init__(self) -> None:
        v, m = field_value(self.field, self.value)
        if m != (1 << FIELDS[self.field][1]) - 1:
            raise SimError(f"set_field {self.field}: a masked value is not a value")
        object.__setattr__(self, "value", v)


@dataclass(frozen=True)
class Move:
    """Nicira ``move``: copy ``n_bits`` of ``src`` (from bit ``src_ofs``) into ``dst``.

    ``n_bits`` 0 means the whole field (both fields must then have one width).
    """

    src: str
    dst: str
    n_bits: int = 0
    src_ofs: int = 0
    dst_ofs: int = 0

    def __post_init__(self) -> None:
        sw, dw = _kind(self.src)[1], _kind(self.dst)[1]
        if self.n_bits == 0:
            if sw != dw or self.src_ofs or self.dst_ofs:
                raise SimError(f"move {self.src}->{self.dst}: widths {sw} and {dw} differ")
            object.__setattr__(self, "n_bits", sw)
        if self.src_ofs + self.n_bits > sw or self.dst_ofs + self.n_bits > dw:
            raise SimError(f"move {self.src}->{self.dst}: bits out of range")


@dataclass(frozen=True)
class DecTtl:
    pass


@dataclass(frozen=True)
class PushVlan:
    ethertype: int = 0x8100


@dataclass(frozen=True)
class PopVlan:
    pass


@dataclass(frozen=True)
class Group:
    group_id: int


@dataclass(frozen=True)
class Nat:
    """OVS ``nat`` inside ``ct``: ``kind`` "src" or "dst" with an IPv4 ``address``;
    "" (plain ``nat``) only applies a known connection's translation."""

    kind: str = ""
    address: int | str = 0

    def __post_init__(self) -> None:
        if self.kind not in ("", "src", "dst"):
            raise SimError(f"nat kind {self.kind!r} is not src or dst")
        object.__setattr__(self, "address", field_value("ipv4_src", self.address)[0])
        if bool(self.kind) != bool(self.address):
            raise SimError(f"nat({self.kind}={self.address}): an address needs a kind")


@dataclass(frozen=True)
class Ct:
    """OVS ``ct``: track in ``zone`` (or the low 16 bits of register ``zone_src``), go on
    in ``table`` with the tracked copy, and/or ``commit`` the connection; ``nat``
    translates (see the module docstring)."""

    commit: bool = False
    table: int | None = None
    zone: int = 0
    zone_src: str | None = None
    nat: Nat | None = None

    def __post_init__(self) -> None:
        if self.zone_src is not None and _kind(self.zone_src)[1] < 16:
            raise SimError(f"ct zone from {self.zone_src}: fewer than 16 bits")
        if not 0 <= self.zone < 1 << 16:
            raise SimError(f"ct zone {self.zone} does not fit 16 bits")


@dataclass(frozen=True)
class Conjunction:
    """Nicira ``conjunction(id, clause/n_clauses)``; ``clause`` counts from 1."""

    id: int
    clause: int
    n_clauses: int

    def __post_init__(self) -> None:
        if not 1 <= self.clause <= self.n_clauses or self.n_clauses < 2:
            raise SimError(f"conjunction({self.id},{self.clause}/{self.n_clauses}) is invalid")


Action = Output | SetField | Move | DecTtl | PushVlan | PopVlan | Group | Ct | Conjunction

#: A tracked connection: (zone, (ipv4_src, ipv4_dst, ip_proto, l4 src, l4 dst)), and for a
#: NATed one the reply it expects as a third item.
FiveTuple = tuple[int, int, int, int, int]
Connection = tuple[int, FiveTuple] | tuple[int, FiveTuple, FiveTuple]


@dataclass(frozen=True)
class ApplyActions:
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class WriteActions:
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class ClearActions:
    pass


@dataclass(frozen=True)
class WriteMetadata:
    value: int
    mask: int = (1 << 64) - 1


@dataclass(frozen=True)
class GotoTable:
    table: int


Instruction = ApplyActions | WriteActions | ClearActions | WriteMetadata | GotoTable
_INSTRUCTION_ORDER = (ApplyActions, ClearActions, WriteActions, WriteMetadata, GotoTable)


@dataclass(frozen=True)
class Flow:
    """A flow entry; ``match`` takes any form ``make_match`` does and is stored normalised."""

    table: int
    priority: int
    # Given: a Mapping or (name, value) pairs; stored: a tuple of MatchItems, sorted.
    match: Any = ()
    instructions: tuple[Instruction, ...] = ()  # none: drop
    cookie: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", make_match(_match_pairs(self.match)))
        kinds = [type(i) for i in self.instructions]
        if len(set(kinds)) != len(kinds):
            raise SimError(f"an instruction given twice: {self.instructions}")
        ordered = tuple(sorted(self.instructions, key=lambda i: _INSTRUCTION_ORDER.index(type(i))))
        object.__setattr__(self, "instructions", ordered)

    def matches(self, packet: Mapping[str, int]) -> bool:
        for name, value, mask in self.match:
            have = packet.get(name, 0 if name in ZERO_WHEN_ABSENT else None)
            if have is None or have & mask != value:
                return False
        return True

    @property
    def goto(self) -> int | None:
        return next((i.table for i in self.instructions if isinstance(i, GotoTable)), None)

    @property
    def conjunctive(self) -> bool:
        """Only conjunction actions: part of a conjunctive match, never a hit by itself."""
        return (
            len(self.instructions) == 1
            and isinstance(self.instructions[0], ApplyActions)
            and bool(self.instructions[0].actions)
            and all(isinstance(a, Conjunction) for a in self.instructions[0].actions)
        )


def _match_pairs(match: Any) -> Iterable[tuple[str, object]]:
    if isinstance(match, Mapping):
        return match.items()
    # Already normalised (name, value, mask) triples, or (name, value) pairs.
    return [(m[0], (m[1], m[2])) if len(m) == 3 else (m[0], m[1]) for m in match]


@dataclass(frozen=True)
class Bucket:
    actions: tuple[Action, ...]
    weight: int = 1
    watch_port: int = ANY


GROUP_TYPES = ("all", "select", "indirect", "ff")


@dataclass(frozen=True)
class GroupEntry:
    group_id: int
    type: str
    buckets: tuple[Bucket, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in GROUP_TYPES:
            raise SimError(f"group {self.group_id}: unknown type {self.type!r}")
        if self.type == "indirect" and len(self.buckets) != 1:
            raise SimError(f"indirect group {self.group_id} has {len(self.buckets)} buckets")


# --- results ---------------------------------------------------------------

OUTPUT, CONTROLLER_OUT, DROP, TTL_EXPIRED = "output", "controller", "drop", "ttl_expired"


@dataclass(frozen=True)
class Outcome:
    """One copy of the packet leaving the pipeline, with its headers as they leave."""

    kind: str  # output | controller | drop | ttl_expired
    port: int | None = None  # output only
    fields: tuple[tuple[str, object], ...] = ()
    # (tunnel_id, tun_ipv4_dst) when the pipeline set a tunnel destination: what a
    # flow-based tunnel port (remote_ip=flow, key=flow) sends the frame with.
    tunnel: tuple[tuple[str, object], ...] = ()

    @property
    def packet(self) -> dict[str, object]:
        return dict(self.fields)

    def __repr__(self) -> str:
        where = f" port {self.port}" if self.port is not None else ""
        tunnel = f" tunnel {dict(self.tunnel)}" if self.tunnel else ""
        return f"<{self.kind}{where}{tunnel} {self.packet}>"


@dataclass(frozen=True)
class TableHit:
    table: int
    flow: Flow | None  # None: table miss


@dataclass(frozen=True)
class BucketHit:
    group_id: int
    bucket: int


Step = TableHit | BucketHit


@dataclass(frozen=True)
class Execution:
    """One way the packet can go: every select group made one choice."""

    outcomes: tuple[Outcome, ...]  # never empty: nothing out is one ``drop``
    trace: tuple[Step, ...]
    notes: tuple[str, ...] = ()  # why copies were dropped
    commits: tuple[Connection, ...] = ()  # connections ``ct(commit)`` recorded


@dataclass(frozen=True)
class Result:
    executions: tuple[Execution, ...]

    @property
    def outcomes(self) -> tuple[Outcome, ...]:
        """Every possible outcome, once each, in order (several only via all/select groups)."""
        seen: dict[Outcome, None] = {}
        for ex in self.executions:
            seen.update(dict.fromkeys(ex.outcomes))
        return tuple(seen)

    @property
    def trace(self) -> tuple[Step, ...]:
        """The first execution's steps (executions differ only after a select group)."""
        return self.executions[0].trace

    @property
    def flows(self) -> tuple[Flow | None, ...]:
        return tuple(s.flow for s in self.trace if isinstance(s, TableHit))

    @property
    def outputs(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.kind == OUTPUT)

    @property
    def ports(self) -> set[int]:
        return {o.port for o in self.outputs if o.port is not None}

    @property
    def punted(self) -> bool:
        """Some copy reaches the controller (invalid TTL included)."""
        return any(o.kind in (CONTROLLER_OUT, TTL_EXPIRED) for o in self.outcomes)

    @property
    def dropped(self) -> bool:
        return all(o.kind == DROP for o in self.outcomes)

    @property
    def commits(self) -> frozenset[Connection]:
        """Every connection committed on some way through (feed them to the next run)."""
        return frozenset(c for ex in self.executions for c in ex.commits)


# --- the pipeline ----------------------------------------------------------

_MAX_EXECUTIONS = 4096


class Pipeline:
    """Flows and groups of one switch; ``run`` sends a packet through them.

    ``ports`` (the switch's ports) is needed only for ALL and FLOOD outputs;
    ``down`` lists ports that are not live (fast-failover groups skip them).
    """

    def __init__(
        self,
        flows: Iterable[Flow],
        groups: Iterable[GroupEntry] = (),
        ports: Iterable[int] | None = None,
        down: Iterable[int] = (),
    ) -> None:
        self.tables: dict[int, list[Flow]] = {}
        keys: set[tuple[int, int, tuple[MatchItem, ...]]] = set()
        for flow in flows:
            key = (flow.table, flow.priority, flow.match)
            if key in keys:
                raise SimError(f"two flows with one identity: table {flow.table} {flow.match}")
            keys.add(key)
            self.tables.setdefault(flow.table, []).append(flow)
        for table in self.tables.values():
            table.sort(key=lambda f: -f.priority)
        self.groups: dict[int, GroupEntry] = {}
        for g in groups:
            if g.group_id in self.groups:
                raise SimError(f"group {g.group_id} given twice")
            self.groups[g.group_id] = g
        self.ports = None if ports is None else tuple(ports)
        self.down = frozenset(down)

    def lookup(
        self, table: int, packet: Mapping[str, int], conjunctive: bool = True
    ) -> Flow | None:
        flows = self.tables.get(table, [])
        i = 0
        while i < len(flows):
            priority = flows[i].priority
            j = i
            while j < len(flows) and flows[j].priority == priority:
                j += 1
            level, i = flows[i:j], j
            hits = [f for f in level if not f.conjunctive and f.matches(packet)]
            if len(hits) > 1:
                raise SimError(
                    f"table {table}: two flows of priority {priority} match: "
                    f"{hits[0].match} and {hits[1].match}"
                )
            if hits:
                return hits[0]
            if not conjunctive:
                continue
            found = self._conjunction(table, level, packet)
            if found is not None:
                return found
        return None

    def _conjunction(self, table: int, level: list[Flow], packet: Mapping[str, int]) -> Flow | None:
        clauses: dict[int, set[int]] = {}
        need: dict[int, int] = {}
        for f in level:
            if f.conjunctive and f.matches(packet):
                for a in f.instructions[0].actions:  # type: ignore[union-attr]
                    assert isinstance(a, Conjunction)
                    clauses.setdefault(a.id, set()).add(a.clause)
                    need[a.id] = a.n_clauses
        for cid in sorted(clauses):
            if len(clauses[cid]) == need[cid]:
                found = self.lookup(table, {**packet, "conj_id": cid}, conjunctive=False)
                if found is not None:
                    return found
        return None

    def run(self, packet: Mapping[str, object], conntrack: Iterable[Connection] = ()) -> Result:
        """Every way ``packet`` (header fields; ``in_port`` required) goes through the tables.

        ``conntrack``: the connections the switch holds (a previous result's ``commits``).
        """
        start = _packet(packet)
        tracked = frozenset(conntrack)
        executions: list[tuple[tuple[int, ...], Execution]] = []
        pending: list[tuple[int, ...]] = [()]
        while pending:
            prefix = pending.pop()
            run = _Run(self, prefix, tracked)
            run.table(0, dict(start))
            made = tuple(run.made)
            executions.append((made, run.execution()))
            if len(executions) > _MAX_EXECUTIONS:
                raise SimError(f"more than {_MAX_EXECUTIONS} ways through the select groups")
            for i in range(len(prefix), len(made)):
                pending.extend((*made[:i], alt) for alt in run.options[i][1:])
        executions.sort(key=lambda e: e[0])
        return Result(tuple(ex for _, ex in executions))


def _packet(packet: Mapping[str, object]) -> dict[str, int]:
    if "in_port" not in packet:
        raise SimError("a packet needs its in_port")
    out = {}
    for name, value in packet.items():
        v, m = field_value(name, value)
        if m != (1 << FIELDS[name][1]) - 1:
            raise SimError(f"packet field {name}: a masked value is not a value")
        out[name] = v
    eth_type = out.get("eth_type")
    if eth_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6) and "nw_ttl" not in out:
        raise SimError("an IP packet needs its nw_ttl (TTL or hop limit)")
    return out


class _ActionSet:
    """The 1.3 action set: one action per kind (set-fields: one per field), run in fixed order."""

    def __init__(self) -> None:
        self.pop: PopVlan | None = None
        self.push: PushVlan | None = None
        self.dec: DecTtl | None = None
        self.sets: dict[str, SetField] = {}
        self.group: Group | None = None
        self.output: Output | None = None

    def write(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, PopVlan):
                self.pop = a
            elif isinstance(a, PushVlan):
                self.push = a
            elif isinstance(a, DecTtl):
                self.dec = a
            elif isinstance(a, SetField):
                self.sets.pop(a.field, None)
                self.sets[a.field] = a
            elif isinstance(a, Group):
                self.group = a
            elif isinstance(a, Output):
                self.output = a
            elif isinstance(a, Move | Ct | Conjunction):
                raise SimError(f"{a} in an action set is beyond this model (use apply-actions)")

    def ordered(self) -> Iterator[Action]:
        yield from (a for a in (self.pop, self.push, self.dec) if a is not None)
        yield from self.sets.values()
        if self.group is not None:
            yield self.group
        elif self.output is not None:
            yield self.output


class _Run:
    """One deterministic execution; select groups take the choices in ``prefix``, then bucket 0."""

    def __init__(
        self, pipeline: Pipeline, prefix: tuple[int, ...], tracked: frozenset[Connection]
    ) -> None:
        self.p = pipeline
        self.prefix = prefix
        self.tracked = tracked
        self.commits: list[Connection] = []
        self.made: list[int] = []
        self.options: list[list[int]] = []
        self.outcomes: list[Outcome] = []
        self.trace: list[Step] = []
        self.notes: list[str] = []

    def execution(self) -> Execution:
        outcomes = tuple(self.outcomes) or (Outcome(DROP),)
        return Execution(outcomes, tuple(self.trace), tuple(self.notes), tuple(self.commits))

    def emit(self, kind: str, packet: dict[str, int], port: int | None = None) -> None:
        fields = tuple(
            (name, render(name, value))
            for name, value in sorted(packet.items())
            if name not in PIPELINE_FIELDS
        )
        tunnel: tuple[tuple[str, object], ...] = ()
        if kind == OUTPUT and packet.get("tun_ipv4_dst"):
            tunnel = tuple((n, render(n, packet.get(n, 0))) for n in TUNNEL_FIELDS)
        self.outcomes.append(Outcome(kind, port, fields, tunnel))

    def table(self, table_id: int, packet: dict[str, int]) -> None:
        action_set = _ActionSet()
        while True:
            flow = self.p.lookup(table_id, packet)
            self.trace.append(TableHit(table_id, flow))
            if flow is None:
                self.notes.append(f"table {table_id}: no flow matched")
                return
            for inst in flow.instructions:
                if isinstance(inst, ApplyActions):
                    if not self.apply(inst.actions, packet):
                        return
                elif isinstance(inst, ClearActions):
                    action_set = _ActionSet()
                elif isinstance(inst, WriteActions):
                    action_set.write(inst.actions)
                elif isinstance(inst, WriteMetadata):
                    old = packet.get("metadata", 0)
                    packet["metadata"] = (old & ~inst.mask) | (inst.value & inst.mask)
            goto = flow.goto
            if goto is None:
                self.apply(tuple(action_set.ordered()), packet)
                return
            if goto <= table_id:
                raise SimError(f"table {table_id}: goto_table {goto} does not go forward")
            table_id = goto

    def apply(self, actions: Iterable[Action], packet: dict[str, int]) -> bool:
        """Run an action list on ``packet`` (in place); False when an expired TTL ends it."""
        for a in actions:
            if isinstance(a, Output):
                self.output(a.port, packet)
            elif isinstance(a, SetField):
                packet[a.field] = int(a.value)
            elif isinstance(a, Move):
                if a.src not in packet and a.src not in ZERO_WHEN_ABSENT:
                    raise SimError(f"move from {a.src}, which the packet lacks")
                bits = (packet.get(a.src, 0) >> a.src_ofs) & ((1 << a.n_bits) - 1)
                mask = ((1 << a.n_bits) - 1) << a.dst_ofs
                packet[a.dst] = (packet.get(a.dst, 0) & ~mask) | (bits << a.dst_ofs)
            elif isinstance(a, DecTtl):
                if packet.get("eth_type") not in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
                    continue  # not IP: nothing to decrement (OVS ignores it too)
                if packet["nw_ttl"] <= 1:
                    self.emit(TTL_EXPIRED, packet)
                    return False
                packet["nw_ttl"] -= 1
            elif isinstance(a, PushVlan):
                if "vlan_vid" in packet:
                    raise SimError("a second VLAN tag is beyond this model")
                packet["vlan_vid"] = OFPVID_PRESENT
                packet["vlan_pcp"] = 0
            elif isinstance(a, PopVlan):
                if "vlan_vid" not in packet:
                    raise SimError("pop_vlan on an untagged packet")
                packet.pop("vlan_vid")
                packet.pop("vlan_pcp", None)
            elif isinstance(a, Group):
                self.group(a.group_id, dict(packet))
            elif isinstance(a, Ct):
                self.ct(a, packet)
            elif isinstance(a, Conjunction):
                raise SimError("a conjunction action next to other actions")
        return True

    def ct(self, a: Ct, packet: dict[str, int]) -> None:
        zone = a.zone if a.zone_src is None else packet.get(a.zone_src, 0) & 0xFFFF
        conn = _connection(packet)
        # Each known connection is found by its original tuple or by the reply it expects.
        forward: dict[tuple[int, FiveTuple], FiveTuple] = {}
        backward: dict[tuple[int, FiveTuple], FiveTuple] = {}
        for entry in (*self.tracked, *self.commits):
            orig = entry[1]
            reply = entry[2] if len(entry) == 3 else _reverse(orig)
            forward[(entry[0], orig)] = reply
            backward[(entry[0], reply)] = orig
        out = dict(packet)
        if conn is None:
            state = CT_TRK | CT_INV
        elif (zone, conn) in forward:
            state = CT_TRK | CT_EST
            if a.nat is not None:  # the original direction looks like the reversed reply
                _rewrite(out, _reverse(forward[(zone, conn)]))
        elif (zone, conn) in backward:
            state = CT_TRK | CT_EST | CT_RPL
            if a.nat is not None:
                _rewrite(out, _reverse(backward[(zone, conn)]))
        else:
            state = CT_TRK | CT_NEW
            translated = conn
            if a.nat is not None and a.nat.kind:
                src, dst, proto, sport, dport = conn
                addr = int(a.nat.address)
                if a.nat.kind == "src":
                    translated = (addr, dst, proto, sport, dport)
                else:
                    translated = (src, addr, proto, sport, dport)
                _rewrite(out, translated)
            if a.commit:
                if translated == conn:
                    self.commits.append((zone, conn))
                else:
                    self.commits.append((zone, conn, _reverse(translated)))
        if a.table is not None:
            self.table(a.table, {**out, "ct_state": state, "ct_zone": zone})

    def output(self, port: int, packet: dict[str, int]) -> None:
        in_port = packet["in_port"]
        if port == CONTROLLER:
            self.emit(CONTROLLER_OUT, packet)
        elif port == IN_PORT:
            self.emit(OUTPUT, packet, in_port)
        elif port in (ALL, FLOOD):
            if self.p.ports is None:
                raise SimError("output to ALL/FLOOD needs the pipeline's ports")
            for p in self.p.ports:
                if p != in_port:
                    self.emit(OUTPUT, packet, p)
        elif port in (TABLE, NORMAL, ANY):
            raise SimError(f"output to port {port:#x} is beyond this model")
        elif port == in_port:
            self.notes.append(f"output to the ingress port {port} is dropped")
        else:
            self.emit(OUTPUT, packet, port)

    def group(self, group_id: int, packet: dict[str, int]) -> None:
        g = self.p.groups.get(group_id)
        if g is None:
            raise SimError(f"no group {group_id}")
        if g.type == "all":
            chosen = list(range(len(g.buckets)))
        elif g.type == "indirect":
            chosen = [0]
        elif g.type == "ff":
            live = [i for i, b in enumerate(g.buckets) if b.watch_port not in self.p.down]
            chosen = live[:1]
        else:
            options = [i for i, b in enumerate(g.buckets) if b.weight > 0]
            chosen = [self.choose(options)] if options else []
        if not chosen:
            self.notes.append(f"group {group_id}: no live bucket")
        for i in chosen:
            self.trace.append(BucketHit(group_id, i))
            action_set = _ActionSet()
            action_set.write(g.buckets[i].actions)
            self.apply(tuple(action_set.ordered()), dict(packet))

    def choose(self, options: list[int]) -> int:
        i = len(self.made)
        choice = self.prefix[i] if i < len(self.prefix) else options[0]
        self.made.append(choice)
        self.options.append(options)
        return choice


def _connection(packet: Mapping[str, int]) -> FiveTuple | None:
    """The 5-tuple conntrack keys an IPv4 packet by (ICMP: addresses and protocol)."""
    if packet.get("eth_type") != ETH_TYPE_IPV4 or "ipv4_src" not in packet:
        return None
    proto = packet.get("ip_proto", 0)
    l4 = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto)
    sport = packet.get(f"{l4}_src", 0) if l4 else 0
    dport = packet.get(f"{l4}_dst", 0) if l4 else 0
    return (packet["ipv4_src"], packet["ipv4_dst"], proto, sport, dport)


def _reverse(conn: FiveTuple) -> FiveTuple:
    src, dst, proto, sport, dport = conn
    return (dst, src, proto, dport, sport)


def _rewrite(packet: dict[str, int], conn: FiveTuple) -> None:
    """Give ``packet`` the addresses and ports of ``conn`` (a NAT translation)."""
    src, dst, proto, sport, dport = conn
    packet["ipv4_src"], packet["ipv4_dst"] = src, dst
    l4 = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto)
    if l4:
        packet[f"{l4}_src"], packet[f"{l4}_dst"] = sport, dport


def run(
    flows: Iterable[Flow], groups: Iterable[GroupEntry], packet: Mapping[str, object]
) -> Result:
    """One packet through a pipeline built for it (tests of a single question)."""
    return Pipeline(flows, groups).run(packet)

"""RFProtocol: the messages exchanged by rfclient, rfserver and rfproxy.

The original RouteFlow message set (PortRegister, PortConfig, DatapathPortRegister,
DatapathDown, VirtualPlaneMap, DataPlaneMap, RouteMod, ControllerRegister) is kept
by name and meaning. Two things differ on purpose:

* Routes travel in batches (one RouteMod carries many routes), because a full
  BGP table arriving one message per prefix is what made the original slow.
* The server -> proxy direction speaks in forwarding terms, not VM terms:
  ``NextHopMod`` (one OpenFlow group per next hop) and ``FibMod`` (prefix ->
  next hop). A next-hop MAC change is then one message, not one per route.

Every message is a frozen msgspec Struct tagged by its class name, so a frame
decodes straight into the right type and unknown/ill-typed fields are rejected
by msgspec with a message that names the field.
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec

#: Bumped on any incompatible change; carried in every frame header (see codec).
PROTOCOL_VERSION = 1


class Mod(enum.IntEnum):
    ADD = 0
    DELETE = 1


class PortOperation(enum.IntEnum):
    """PortConfig operations, numbered as in the original RouteFlow."""

    SEND_MAPPING_PACKET = 0
    RESET = 1
    #: The switch port behind this VM port lost (or regained) its link: the VM
    #: interface follows, so routing reacts at once instead of after timers.
    LINK_DOWN = 2
    LINK_UP = 3


class RouteKind(enum.IntEnum):
    """What a route in the VM kernel means for the switch."""

    #: A prefix reached through one or more gateways (OSPF/BGP/static routes).
    UNICAST = 0
    #: The subnet of a VM interface: hosts on it are reached directly.
    CONNECTED = 1
    #: An address of the VM itself (/32, /128): traffic for it goes to the VM.
    LOCAL = 2


class Message(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Base of every RFProtocol message; the tag is the class name.

    Subclasses inherit ``frozen`` at run time; they repeat it for the type checker,
    which would otherwise take them for mutable dataclasses.
    """


# --- session --------------------------------------------------------------


class ClientHello(Message, frozen=True):
    """First message of an rfclient connection: who is speaking."""

    vm_id: int
    hostname: str = ""


class ControllerRegister(Message, frozen=True):
    """First message of an rfproxy connection (ct_id identifies the controller).

    A controller (ct_id) may be served by several rfproxy processes, its
    replicas: ``replica`` names this one (empty: the only one, "ct<ct_id>").
    ``ct_role`` is the OpenFlow role the replica holds right now ("master",
    "slave", or "" when it has none yet): after an rfserver restart the master
    keeps its role, so the switches see no churn. rfserver decides (ControllerRole).
    """

    ct_id: int
    ct_addr: str = ""
    ct_port: int = 0
    ct_role: str = ""
    replica: str = ""


#: ControllerRole.role values (and ControllerRegister.ct_role, besides "").
MASTER = "master"
SLAVE = "slave"


class ControllerRole(Message, frozen=True):
    """rfserver -> rfproxy: the OpenFlow role this replica must hold for ``ct_id``.

    The master programs the switches of ct_id; a slave keeps its switch
    connections but never writes to them. ``generation`` orders the masters
    (OpenFlow 1.3 role request generation_id): it grows with every promotion.
    """

    ct_id: int
    role: Literal["master", "slave"]
    generation: int


class Resync(Message, frozen=True):
    """Brackets a full-state dump (phase 'begin' ... 'end').

    Whatever the receiver held for ``scope`` before 'begin' and did not hear
    again before 'end' is stale and gets removed: reconciliation, not flush.
    """

    phase: str  # "begin" | "end"
    scope: int = 0  # vm_id (client) or dp_id (proxy); 0 = everything


class AuthChallenge(Message, frozen=True):
    """Server -> peer after its hello: prove you know the shared secret (see rflib.auth)."""

    nonce: str


class AuthResponse(Message, frozen=True):
    mac: str


class Error(Message, frozen=True):
    """Sent before closing a connection for a reason the peer should log."""

    code: str
    detail: str = ""


# --- association ----------------------------------------------------------


class PortRegister(Message, frozen=True):
    vm_id: int
    vm_port: int
    hwaddress: str
    ifname: str = ""


class PortConfig(Message, frozen=True):
    vm_id: int
    vm_port: int
    operation_id: PortOperation


class DatapathPortRegister(Message, frozen=True):
    ct_id: int
    dp_id: int
    dp_port: int
    hwaddress: str = ""
    name: str = ""


class DatapathPortStatus(Message, frozen=True):
    """A switch port's link went down or came up (OFPT_PORT_STATUS)."""

    ct_id: int
    dp_id: int
    dp_port: int
    up: bool


class DatapathDown(Message, frozen=True):
    ct_id: int
    dp_id: int


class VirtualPlaneMap(Message, frozen=True):
    vm_id: int
    vm_port: int
    vs_id: int
    vs_port: int


class DataPlaneMap(Message, frozen=True):
    """Tells the proxy that (dp_id, dp_port) <-> (vs_id, vs_port) is one router port.

    ``hwaddress`` is the MAC of the VM interface: the switch admits frames sent
    to it on ``dp_port`` into its FIB table, and rewrites routed frames leaving
    ``dp_port`` to come from it.
    """

    ct_id: int
    dp_id: int
    dp_port: int
    vs_id: int
    vs_port: int
    hwaddress: str


class DataPlaneUnmap(Message, frozen=True):
    ct_id: int
    dp_id: int
    dp_port: int


# --- routes: rfclient -> rfserver (VM view) -------------------------------


class NextHop(Message, frozen=True):
    """A next hop as the VM kernel sees it: its interface and gateway."""

    vm_port: int
    gateway: str | None = None
    weight: int = 1


class Route(Message, frozen=True):
    prefix: str
    kind: RouteKind = RouteKind.UNICAST
    nexthops: list[NextHop] = []


class RouteMod(Message, frozen=True):
    """A batch of route additions or deletions from the VM ``vm_id``."""

    mod: Mod
    vm_id: int
    routes: list[Route]


class Neighbour(Message, frozen=True):
    vm_port: int
    address: str
    hwaddress: str | None = None  # None: not (or no longer) resolved


class NeighbourMod(Message, frozen=True):
    """A batch of ARP/neighbour changes from the VM ``vm_id``."""

    mod: Mod
    vm_id: int
    neighbours: list[Neighbour]


# --- forwarding: rfserver -> rfproxy (switch view) ------------------------


class Bucket(Message, frozen=True):
    """One way out of a next hop group: rewrite MACs, decrement TTL, output."""

    dp_port: int
    src_hwaddress: str
    dst_hwaddress: str
    weight: int = 1


class NextHopMod(Message, frozen=True):
    """Create, change or remove one next hop (an OpenFlow group) on ``dp_id``.

    No buckets means unresolved: the group sends packets to the controller,
    which relays them to the VM; the VM resolves the neighbour, and the next
    NextHopMod turns the same group into a rewrite-and-output group.
    One bucket is an indirect group; several are an ECMP select group.
    """

    mod: Mod
    ct_id: int
    dp_id: int
    nexthop_id: int
    buckets: list[Bucket] = []


class FibEntry(Message, frozen=True):
    prefix: str
    kind: RouteKind
    nexthop_id: int = 0  # UNICAST only
    dp_port: int = 0  # CONNECTED / LOCAL: the router port it belongs to


class FibMod(Message, frozen=True):
    """A batch of FIB changes for one datapath."""

    mod: Mod
    ct_id: int
    dp_id: int
    entries: list[FibEntry]


# --- statistics: rfproxy -> rfserver ----------------------------------------


class FlowStat(Message, frozen=True):
    """One flow as the switch reports it (ground truth for counters and audits)."""

    table: int
    priority: int
    cookie: int
    match: str
    actions: str
    packets: int
    bytes: int


class DatapathStats(Message, frozen=True):
    """Periodic snapshot of one switch's flows and of the proxy's relay counters."""

    ct_id: int
    dp_id: int
    flows: list[FlowStat]
    relayed_to_vm: int = 0
    relayed_to_dp: int = 0
    relay_dropped: int = 0


# --- topology discovery: rfproxy -> rfserver ----------------------------------


class LinkEnds(Message, frozen=True):
    """A directed switch-to-switch link: rfproxy's probes sent out of the source
    port arrive at the destination port (see proxy/discovery.py)."""

    src_dp_id: int
    src_port: int
    dst_dp_id: int
    dst_port: int


class DatapathLink(Message, frozen=True):
    """A discovered link came up or went down (one direction; the other is its own).

    ``reason`` says why it went down: "aged" (probes stopped arriving), "port
    down", "switch left", "replaced" (another neighbour answers at the port).
    """

    ct_id: int
    link: LinkEnds
    up: bool
    reason: str = ""


class DatapathLinks(Message, frozen=True):
    """Every link heard at the switches ``dp_ids`` of ``ct_id``: their full table.

    rfserver drops the links of ct_id heard at those switches that the table
    lacks; links heard at other switches are left alone (a switch not yet
    probed long enough, or not connected, has nothing to say yet).
    """

    ct_id: int
    links: list[LinkEnds] = []
    dp_ids: list[int] = []


# --- tenant nodes (routeflow tenant server <-> node agents) ------------------


class NodeHello(Message, frozen=True):
    """First message of a tenant node agent: who it is and the model revision it holds.

    ``revision`` 0 means "nothing": the server sends the full state. The model
    objects themselves travel as msgpack in ``TenantChanges.changes`` so that
    this module does not depend on the tenant model (routeflow.tenant.model).
    """

    name: str
    tunnel_ip: str
    gateway: bool = False
    revision: int = 0


class TenantChanges(Message, frozen=True):
    """Server -> node: model changes (msgpack of ``list[tenant.model.Change]``).

    ``full`` marks the full state: the node replaces what it held with it
    (reconciliation, as ``Resync`` does for routes); otherwise a delta.
    """

    revision: int
    changes: bytes
    full: bool = False


class NodeBinding(Message, frozen=True):
    """Node -> server: a VIF for Neutron port ``port_id`` is plugged here (or gone)."""

    port_id: str
    plugged: bool = True


AnyMessage = (
    ClientHello
    | ControllerRegister
    | ControllerRole
    | Resync
    | Error
    | AuthChallenge
    | AuthResponse
    | PortRegister
    | PortConfig
    | DatapathPortRegister
    | DatapathDown
    | DatapathPortStatus
    | VirtualPlaneMap
    | DataPlaneMap
    | DataPlaneUnmap
    | RouteMod
    | NeighbourMod
    | NextHopMod
    | FibMod
    | DatapathStats
    | DatapathLink
    | DatapathLinks
    | NodeHello
    | TenantChanges
    | NodeBinding
)

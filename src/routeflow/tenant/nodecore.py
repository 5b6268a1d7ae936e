"""The node agent's decisions (pure): model and VIFs in, flow diffs and messages out.

The os-ken shell (``node.py``) turns OpenFlow, OVSDB and server traffic into the
events below and carries out the actions, in order. No sockets, clock or os-ken
here; the flow compiler is passed in, and flows are opaque hashable values.

Rules:

1. The node holds the model it was sent: a full state replaces it, a delta
   applies on top (``Cloud.apply``; stale deltas are ignored). A delta before
   any full state is ignored (the server always starts with one).
2. The agent never flushes. It writes to the switch only once it knows both
   the switch's flows (read back on every switch connect, by cookie) and a
   full model; then it installs the *difference* between what the compiler
   wants and what the switch holds. A restart with nothing changed writes
   nothing. Losing the server keeps the flows (forwarding goes on headless).
   With an ``Incremental`` compiler (compiler.NodeCompiler) a delta costs what
   it touches: the compiler returns the flow diff of the objects the delta
   names, and the switch's flows are compared in full only once per connect.
3. VIFs come from OVSDB (``external_ids:iface-id`` -> ofport). Each plugged or
   unplugged VIF is reported to the server (``NodeBinding``); on every server
   (re)connect all plugged VIFs are reported again, and ports the model binds
   here that are not plugged are reported unplugged.
4. DHCP requests (packet-in) are answered only for a plugged VIF on the port it
   came in on, within the port's rate limit (``dhcp.TokenBucket``).
5. A gateway node ARPs for its routers' external next hops on its external port
   (``arp_tick``, driven by the shell's timer) and learns their MACs from the replies
   the pipeline punts (``arp_reply``); a new MAC recompiles (tenant/extarp.py).
   In bgp mode (an ``uplink``) the one next hop is the uplink's, asked for at once.
6. In bgp mode a gateway node announces the /32s it serves (tenant/announce.py): after
   every model change that alters the set, an ``Announce`` with the whole set follows
   the flow diff (the shell hands it to the node's BGP speaker).
7. Connected mode: when a gateway node takes over an address (a router's gateway IP
   or floating IP, tenant/nat.py ``claimed_addresses``: a router scheduled here, a
   floating IP associated, a full state after a restart), it sends a gratuitous ARP
   for it right after the flows that answer it, and once more on the next ARP tick,
   so bridges and switches on the external link learn where the gateway port's MAC is
   now and neighbours refresh their entries. A model change handed a clock (``now``)
   also asks at once for next hops that are due (a router that just moved here), not
   on the next tick.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from routeflow.rflib import protocol as p
from routeflow.tenant import announce, dhcp, extarp, nat, wire
from routeflow.tenant.model import Cloud, Kind

__all__ = [
    "Announce",
    "DhcpReply",
    "InstallFlows",
    "NodeCore",
    "NodeView",
    "SendToServer",
]

F = TypeVar("F", bound=Hashable)
F_co = TypeVar("F_co", bound=Hashable, covariant=True)


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the compiler needs about this node besides the model."""

    name: str
    bindings: Mapping[str, int]  # port id -> ofport of its VIF on br-int
    tunnel_ofport: int
    external_ofport: int = 0  # a gateway node's external port (0: none)
    neighbours: Mapping[str, str] = field(default_factory=dict)  # next hop IP -> MAC
    uplink: nat.Uplink | None = None  # bgp mode: a gateway node's uplink


@dataclass(frozen=True, slots=True)
class SendToServer:
    msg: p.Message


@dataclass(frozen=True, slots=True)
class InstallFlows(Generic[F]):
    add: frozenset[F]
    delete: frozenset[F]


@dataclass(frozen=True, slots=True)
class DhcpReply:
    """A frame the shell sends out of ``ofport`` (packet-out): DHCP answers, ARP requests."""

    ofport: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class Announce:
    """bgp mode (rule 6): the /32s this gateway node announces now, next hop ``next_hop``."""

    prefixes: frozenset[str]
    next_hop: str


Action = SendToServer | InstallFlows[F] | DhcpReply | Announce

Compiler = Callable[[Cloud, NodeView], frozenset[F]]
Touched = frozenset[tuple[Kind, str]]


class Incremental(Protocol[F_co]):
    """A compiler that keeps its last output: ``update`` moves it to a snapshot and
    returns (added, deleted); ``touched`` names the objects changed since the last call
    (None: unknown, compare the snapshots). ``flows`` must equal ``compile`` of the same
    snapshot and view."""

    @property
    def flows(self) -> AbstractSet[F_co]: ...

    def update(
        self, cloud: Cloud, view: NodeView, touched: Touched | None = None
    ) -> tuple[frozenset[F_co], frozenset[F_co]]: ...


@dataclass
class _Counters:
    installs: int = 0
    flows_added: int = 0
    flows_deleted: int = 0
    dhcp_answered: int = 0
    dhcp_limited: int = 0
    dhcp_ignored: int = 0
    bad_messages: int = 0


@dataclass
class NodeCore(Generic[F]):
    name: str
    tunnel_ip: str
    compile: Compiler[F]
    gateway: bool = False
    tunnel_ofport: int = 0
    external_ofport: int = 0  # set with gateway: the external port's ofport
    #: bgp mode: the uplink of the external port (tenant/nat.py), and what was announced.
    uplink: nat.Uplink | None = None
    announced: frozenset[str] | None = None
    dhcp_rate: float = 5.0
    dhcp_burst: float = 10.0
    #: Optional: the same compiler kept incrementally (``compile`` stays the reference).
    incremental: Incremental[F] | None = None
    cloud: Cloud | None = None
    vifs: dict[str, int] = field(default_factory=dict)
    #: The switch's flows as last read or written; None while it is not connected.
    installed: set[F] | None = None
    server_up: bool = False
    counters: _Counters = field(default_factory=_Counters)
    _buckets: dict[str, dhcp.TokenBucket] = field(default_factory=dict)
    arp: extarp.Resolver = field(default_factory=extarp.Resolver)
    #: ``installed`` equals the incremental compiler's output (diffs apply as they are).
    _in_sync: bool = False
    #: Rule 7: the addresses last claimed, and those to announce again on the next tick.
    claimed: frozenset[tuple[str, str]] = frozenset()
    _garp_again: frozenset[tuple[str, str]] = frozenset()
    _hops_of: tuple[Cloud | None, list[tuple[str, str, str]]] = (None, [])

    # --- server -------------------------------------------------------------

    def hello(self) -> p.NodeHello:
        revision = self.cloud.revision if self.cloud is not None else 0
        return p.NodeHello(
            name=self.name, tunnel_ip=self.tunnel_ip, gateway=self.gateway, revision=revision
        )

    def server_connected(self) -> list[Action[F]]:
        """Rule 3: re-announce every plugged VIF (unplugged ones follow the full state)."""
        self.server_up = True
        return [SendToServer(p.NodeBinding(port_id=pid, plugged=True)) for pid in sorted(self.vifs)]

    def server_lost(self) -> list[Action[F]]:
        self.server_up = False
        return []

    def changes(self, msg: p.TenantChanges, now: float | None = None) -> list[Action[F]]:
        """Rule 1 (and 5-7 after it); a bad message is counted and dropped, never fatal."""
        try:
            changes = wire.decode(msg.changes)
        except wire.WireError:
            self.counters.bad_messages += 1
            return []
        out: list[Action[F]] = []
        touched: Touched | None = None
        if msg.full:
            self.cloud = wire.full_cloud(msg.revision, changes)
            out += self._unplugged_bound_here()
        elif self.cloud is None:
            return []
        else:
            self.cloud = self.cloud.apply_all(changes)
            touched = frozenset((c.kind, c.id) for c in changes)
        out += self._reconcile(touched) + self._announce() + self._claim()
        if now is not None:
            out += self.arp_requests(now)
        return out

    def _unplugged_bound_here(self) -> list[Action[F]]:
        assert self.cloud is not None
        return [
            SendToServer(p.NodeBinding(port_id=port.id, plugged=False))
            for port in sorted(self.cloud.ports.values(), key=lambda q: q.id)
            if port.binding_host_id == self.name and port.is_vif and port.id not in self.vifs
        ]

    # --- switch -------------------------------------------------------------

    def switch_connected(self, flows: frozenset[F]) -> list[Action[F]]:
        """Rule 2: ``flows`` are the switch's own (read back by cookie)."""
        self.installed = set(flows)
        self._in_sync = False
        return self._reconcile(frozenset())

    def switch_lost(self) -> list[Action[F]]:
        self.installed = None
        self._in_sync = False
        return []

    def vifs_read(self, vifs: Mapping[str, int], tunnel_ofport: int) -> list[Action[F]]:
        """Rule 3: the VIFs OVSDB holds now (read at start and on every port status)."""
        new = {pid: ofport for pid, ofport in vifs.items() if ofport > 0}
        out: list[Action[F]] = []
        if self.server_up:
            for pid in sorted(new.keys() - self.vifs.keys()):
                out.append(SendToServer(p.NodeBinding(port_id=pid, plugged=True)))
            for pid in sorted(self.vifs.keys() - new.keys()):
                out.append(SendToServer(p.NodeBinding(port_id=pid, plugged=False)))
        for pid in self.vifs.keys() - new.keys():
            self._buckets.pop(pid, None)
        changed = new != self.vifs or tunnel_ofport != self.tunnel_ofport
        self.vifs = new
        self.tunnel_ofport = tunnel_ofport
        return out + (self._reconcile(frozenset()) if changed else [])

    def view(self) -> NodeView:
        return NodeView(
            name=self.name,
            bindings=dict(self.vifs),
            tunnel_ofport=self.tunnel_ofport,
            external_ofport=self.external_ofport if self.gateway else 0,
            neighbours=dict(self.arp.neighbours),
            uplink=self.uplink if self.gateway else None,
        )

    # --- external next hops (rule 5) ------------------------------------------

    def _hops(self) -> list[tuple[str, str, str]]:
        """The external next hops, computed once per model (the timer asks often)."""
        if not self.gateway or not self.external_ofport or self.cloud is None:
            return []
        if self._hops_of[0] is not self.cloud:
            self._hops_of = (self.cloud, nat.next_hops(self.cloud, self.name, self.uplink))
        return self._hops_of[1]

    def _announce(self) -> list[Action[F]]:
        """Rule 6: the announcement follows the model, after the flows it needs."""
        if not self.gateway or self.uplink is None or self.cloud is None:
            return []
        now = announce.addresses(self.cloud, self.name)
        if now == self.announced:
            return []
        self.announced = now
        return [Announce(now, self.uplink.ip)]

    def _claim(self) -> list[Action[F]]:
        """Rule 7: gratuitous ARP for the addresses newly claimed."""
        if not self.gateway or not self.external_ofport or self.cloud is None:
            return []
        now = nat.claimed_addresses(self.cloud, self.name, self.uplink)
        new = now - self.claimed
        self.claimed = now
        self._garp_again = (self._garp_again & now) | new
        return self._garps(new)

    def _garps(self, addresses: AbstractSet[tuple[str, str]]) -> list[Action[F]]:
        return [
            DhcpReply(self.external_ofport, extarp.gratuitous(ip, mac))
            for ip, mac in sorted(addresses)
        ]

    def arp_requests(self, now: float) -> list[Action[F]]:
        """Rule 5: the ARP requests for the external next hops that are due ``now``."""
        return [DhcpReply(self.external_ofport, f) for f in self.arp.due(self._hops(), now)]

    def arp_tick(self, now: float) -> list[Action[F]]:
        """Rules 5 and 7, on the shell's timer."""
        again, self._garp_again = self._garp_again, frozenset()
        return self._garps(again) + self.arp_requests(now)

    def arp_reply(self, frame: bytes) -> list[Action[F]]:
        if self.arp.learn(frame, [hop for hop, _, _ in self._hops()]):
            return self._reconcile(frozenset())
        return []

    def desired(self) -> frozenset[F] | None:
        if self.cloud is None:
            return None
        if self.incremental is not None:
            self.incremental.update(self.cloud, self.view(), frozenset())
            return frozenset(self.incremental.flows)
        return self.compile(self.cloud, self.view())

    def _reconcile(self, touched: Touched | None = None) -> list[Action[F]]:
        """``touched``: the objects changed since the last call (None: unknown)."""
        if self.cloud is None:
            return []
        inc = self.incremental
        if inc is not None:
            # Kept current even without a switch, so a connect diffs against it.
            add, delete = inc.update(self.cloud, self.view(), touched)
            if self.installed is None:
                return []
            if not self._in_sync:  # once per connect: the switch's flows in full
                add = frozenset(inc.flows - self.installed)
                delete = frozenset(self.installed - inc.flows)
                self._in_sync = True
            self.installed -= delete
            self.installed |= add
        else:
            if self.installed is None:
                return []
            want = self.compile(self.cloud, self.view())
            add = frozenset(want - self.installed)
            delete = frozenset(self.installed - want)
            self.installed = set(want)
        if not add and not delete:
            return []
        self.counters.installs += 1
        self.counters.flows_added += len(add)
        self.counters.flows_deleted += len(delete)
        return [InstallFlows(add=frozenset(add), delete=frozenset(delete))]

    # --- DHCP ---------------------------------------------------------------

    def dhcp_request(self, ofport: int, frame: bytes, now: float) -> list[Action[F]]:
        """Rule 4."""
        pid = next((q for q, port in self.vifs.items() if port == ofport), None)
        port = self.cloud.ports.get(pid) if (self.cloud is not None and pid) else None
        if pid is None or port is None or self.cloud is None:
            self.counters.dhcp_ignored += 1
            return []
        bucket = self._buckets.setdefault(pid, dhcp.TokenBucket(self.dhcp_rate, self.dhcp_burst))
        if not bucket.allow(now):
            self.counters.dhcp_limited += 1
            return []
        lease = dhcp.lease_for(self.cloud, port)
        answer = dhcp.reply(frame, lease) if lease is not None else None
        if answer is None:
            self.counters.dhcp_ignored += 1
            return []
        self.counters.dhcp_answered += 1
        return [DhcpReply(ofport, answer)]

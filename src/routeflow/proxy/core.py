"""rfproxy's decisions, as a pure state machine: events in, actions out.

Rule 1: everything that decides what rfproxy writes to a switch, or tells
rfserver, lives here. Rule 2: this module knows no os-ken, no sockets, no
threads and no clock. The shell (app.py) decodes OpenFlow and rfserver
messages into calls of ``ProxyCore``, holds its lock around each call and
carries out the returned actions (actions.py); ofmsg.py builds the OpenFlow
messages. Switch connections are opaque handles to the core (``conn``), compared by
identity only.

Theory of operation:

* Desired state, per datapath (``DatapathState``): the ports the switch
  reported and their link states, and what rfserver wants on it (router
  ports, next-hop groups, the FIB). It outlives a reconnect that overlaps the
  old connection; a switch that leaves is forgotten, and rfserver
  re-associates and re-sends when it returns.
* Writing: a physical switch is written only while ``synced``, that is
  between rfserver's full state (Resync end, received as master) and the next
  rfserver session, Resync begin or demotion. A half-known state is recorded,
  never enforced. The virtual switch gets its own flows from every replica
  when it connects.
* Resync: begin forgets router ports, groups and FIB of every datapath (the
  ports and link states stay: they come from the switches). End, as master:
  relay mappings the full state no longer mentions are dropped, and every
  connected physical switch is reconciled. End while not master is ignored.
* Roles: every physical switch is told this replica's role (and generation)
  when rfserver assigns one, and on connect once there is one. A role other
  than master stops all writing. A replica that becomes master reports every
  port and link state, since rfserver ignored it while it was not.
* Reports: only the master's reports reach rfserver (port registrations, link
  changes, DatapathDown, mapping packets, statistics); only the master relays
  packets and polls statistics. The hello of every rfserver session carries
  the role held and the ports of every connected physical switch.
* Link state: at connect (port description) rfserver takes ports to be up, so
  only a port that is down, or was known down, is reported; afterwards (port
  status) every change is.
* Reconciliation of a switch: its flows and groups are read (two requests,
  matched by xid), the difference with the desired state is planned here
  (``plan``) and written by a stream of the shell. One stream per switch: a
  reconciliation asked for while one streams cancels it and starts when it
  has ended (the switch would be read half-written). A stream writes only
  while ``streaming`` says so (checked by the shell between chunks).
* Topology discovery (with a ``discovery_interval``): the master probes every
  up port of every physical switch at each ``discovery_tick`` (probe.py),
  every switch punts probes (openflow.discovery_flows, part of the desired
  base flows) and a probe that comes back is a link sighting for the link
  table (discovery.py). Link changes go to rfserver as DatapathLink; the full
  table (DatapathLinks) of a switch goes once the switch has been probed for
  a hold time, after each ControllerRole master from rfserver, each rfserver
  session and each connect (so a restarted rfproxy, or a switch reconnecting
  slowly, does not wipe links not seen again yet). LLDP from a physical
  switch is never relayed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from routeflow.proxy import discovery, probe, reconcile
from routeflow.proxy import openflow as of
from routeflow.proxy.actions import (
    Action,
    Barrier,
    ClosePipe,
    DeleteFlow,
    Notice,
    OpenPipe,
    PacketOut,
    Port,
    ReadSwitch,
    ReconcileCounts,
    ReconcilePlan,
    RequestFlowStats,
    SendRole,
    StartStream,
    Stream,
    SwitchRead,
    ToServer,
    WriteFlows,
    WriteGroup,
    debug,
    error,
    info,
    warning,
)
from routeflow.proxy.relay import Drop, Mapped, RelayLink, RelayTable, SendTo
from routeflow.proxy.vlinks import End, VirtualLink, VirtualLinks
from routeflow.rflib import protocol as p

__all__ = ["OFPP_MAX", "STATS_FIB_LIMIT", "DatapathState", "ProxyCore"]

#: Above this many FIB entries on a switch, flow statistics cover table 0 only.
STATS_FIB_LIMIT = 10_000
#: Port numbers from here up are OpenFlow's reserved ports, not switch ports.
OFPP_MAX = 0xFFFFFF00
_ALL_TABLES = 0xFF


# --- state ------------------------------------------------------------------------------


@dataclass
class DatapathState:
    """What routeflow wants on one switch, and what the switch said of its ports."""

    ports: dict[int, p.DatapathPortRegister] = field(default_factory=dict)
    router_ports: dict[int, str] = field(default_factory=dict)  # dp_port -> router MAC
    groups: dict[int, p.NextHopMod] = field(default_factory=dict)
    fib: dict[str, p.FibEntry] = field(default_factory=dict)
    #: The next-hop groups (shards, openflow.GROUP_SHARDS) that exist on the switch
    #: or are owed to it: a shard is added when a route first uses it (fibwriter,
    #: before that route's flow), goes when its next hop does, and a
    #: reconciliation makes it exactly the shards the FIB uses (``plan``).
    shards: set[int] = field(default_factory=set)
    link_up: dict[int, bool] = field(default_factory=dict)  # dp_port -> link state


# --- the core -----------------------------------------------------------------------------


class ProxyCore:
    """The desired state and the rules of one rfproxy replica (see the module doc)."""

    def __init__(
        self,
        ct_id: int,
        replica: str,
        vs_dpid: int,
        relay_links: dict[int, RelayLink] | None = None,
        virtual_links: list[VirtualLink] | None = None,
        *,
        mirror_discovered: bool = False,
        discovery_interval: float = 0.0,
        discovery_misses: int = discovery.DEFAULT_MISSES,
    ) -> None:
        self.ct_id = ct_id
        #: Virtual-domain control plane: switch links mirrored between VM ports (vlinks.py).
        self.vlinks = VirtualLinks(virtual_links or (), discovered=mirror_discovered)
        #: Seconds between link probes (0: no topology discovery); see discovery.py.
        self.discovery_interval = discovery_interval
        hold = (discovery_interval or discovery.DEFAULT_INTERVAL) * discovery_misses
        self.links = discovery.LinkTable(hold)
        #: Physical switch -> when this replica, as master, first probed it.
        self._probed_since: dict[int, float] = {}
        #: Physical switches whose full link table rfserver is owed (see discovery_tick).
        self._links_owed: set[int] = set()
        #: Datapath relay: dp_id -> its link to the virtual switch (absent: packet-in relay).
        self.relay_links = dict(relay_links or {})
        self.replica = replica
        self.vs_dpid = vs_dpid
        #: Connected switches (the virtual switch too): dp_id -> connection handle.
        self.switches: dict[int, object] = {}
        self.state: dict[int, DatapathState] = {}
        self.relay = RelayTable(vs_dpid)
        self.synced = False
        #: The OpenFlow role rfserver gave this replica ("" until it says).
        self.role = ""
        self.generation = 0
        #: Per physical switch: the reconciliation reading it, if one is.
        self.reads: dict[int, SwitchRead] = {}
        #: Per physical switch: the reconciliation writing to it, if one is.
        self.streams: dict[int, Stream] = {}
        self._server: dict[type, Callable[[p.Message], list[Action]]] = {
            p.DataPlaneMap: self._map,
            p.DataPlaneUnmap: self._unmap,
            p.Resync: self._resync,
            p.ControllerRole: self._role,
            p.NextHopMod: self._nexthop,
            p.AuthChallenge: lambda _m: [
                error("rfserver requires authentication: start rfproxy with --secret-file")
            ],
            p.Error: lambda m: [error("rfserver says %s: %s", m.code, m.detail)],
        }

    @property
    def is_master(self) -> bool:
        return self.role == p.MASTER

    def writes(self, dp_id: int) -> bool:
        """Whether rfserver's changes for physical switch ``dp_id`` are written to it now."""
        return self.synced and dp_id in self.switches and dp_id != self.vs_dpid

    def fib(self, dp_id: int) -> dict[str, p.FibEntry]:
        """The desired FIB of ``dp_id``."""
        return self._st(dp_id).fib

    def datapath(self, dp_id: int) -> DatapathState:
        """The desired state of ``dp_id``, for a FibMod to change in place (its FIB and
        the shards its routes make: fibwriter)."""
        return self._st(dp_id)

    # --- rfserver -----------------------------------------------------------------------

    def hello(self) -> list[p.Message]:
        """A new rfserver session: what it must hear first. Nothing is written until it resyncs."""
        # The role is kept across rfserver sessions: an unreachable (or
        # restarting) rfserver changes nothing on the switches.
        msgs: list[p.Message] = [
            p.ControllerRegister(ct_id=self.ct_id, replica=self.replica, ct_role=self.role)
        ]
        self.synced = False
        self._links_owed = set(self._physical())  # sent by discovery_tick when it may
        for dp_id in self._physical():
            msgs.extend(self._st(dp_id).ports.values())
        return msgs

    def server_message(self, msg: p.Message) -> list[Action]:
        """Any message from rfserver except a FibMod (see ``fib``)."""
        handler = self._server.get(type(msg))
        if handler is None:
            return [debug("ignoring %s from rfserver", type(msg).__name__)]
        return handler(msg)

    def _map(self, msg: p.DataPlaneMap) -> list[Action]:
        # A remapping replaces the virtual switch's flows of both old mappings.
        out: list[Action] = []
        old_dp = self.relay.dp_port_of(msg.vs_id, msg.vs_port)
        if old_dp is not None and old_dp != (msg.dp_id, msg.dp_port):
            out += self._vs_flows(*old_dp, msg.vs_port, delete=True)
        old_vs = self.relay.vs_port_of(msg.dp_id, msg.dp_port)
        if old_vs is not None and old_vs[1] != msg.vs_port:
            out += self._vs_flows(msg.dp_id, msg.dp_port, old_vs[1], delete=True)
        self.relay.map(msg.dp_id, msg.dp_port, msg.vs_id, msg.vs_port)
        self._st(msg.dp_id).router_ports[msg.dp_port] = msg.hwaddress
        out += self._mirror([(msg.dp_id, msg.dp_port), *([old_dp] if old_dp else [])])
        return [
            *out,
            *self._flows(msg.dp_id, self._port_flows(msg.dp_id, msg.dp_port, msg.hwaddress)),
            *self._vs_flows(msg.dp_id, msg.dp_port, msg.vs_port),
            info(
                "router port dp %#x port %d <-> vs port %d (mac %s)",
                msg.dp_id,
                msg.dp_port,
                msg.vs_port,
                msg.hwaddress,
            ),
        ]

    def _unmap(self, msg: p.DataPlaneUnmap) -> list[Action]:
        out = self._unrelay(msg.dp_id, msg.dp_port)
        mac = self._st(msg.dp_id).router_ports.pop(msg.dp_port, None)
        if mac is None:
            return out
        return out + self._flows(
            msg.dp_id, self._port_flows(msg.dp_id, msg.dp_port, mac), delete=True
        )

    def _resync(self, msg: p.Resync) -> list[Action]:
        if msg.phase == "begin":
            self.synced = False
            for st in self.state.values():
                st.router_ports.clear()
                st.groups.clear()
                st.fib.clear()
                st.shards.clear()
            return []
        if msg.phase != "end":
            return []
        if not self.is_master:
            return [warning("full state from rfserver while not master (%r): ignored", self.role)]
        # Relay mappings the full state no longer mentions are stale.
        out: list[Action] = []
        for dp_id, dp_port, _vs, _vp in self.relay.mappings():
            st = self.state.get(dp_id)
            if st is None or dp_port not in st.router_ports:
                out += self._unrelay(dp_id, dp_port)
        self.synced = True
        out.append(info("in sync with rfserver; reconciling %d switches", len(self.switches)))
        for dp_id in self._physical():
            out += self._reconcile(dp_id)
        return out

    def _role(self, msg: p.ControllerRole) -> list[Action]:
        """rfserver made this replica master or slave: tell the switches, then act on it."""
        if msg.ct_id != self.ct_id:
            return [
                error(
                    "rfserver sent a role for controller %d; this is controller %d: ignored",
                    msg.ct_id,
                    self.ct_id,
                )
            ]
        before = self.role
        self.role = msg.role
        self.generation = msg.generation
        if not self.is_master:
            # Never write again; a full state (Resync) comes with mastership.
            self.synced = False
            self.reads.clear()
            self.links.clear()  # a slave neither probes nor speaks for the links
            self._probed_since.clear()
        else:
            # rfserver hears only its master: the table goes after its word, even a
            # word that changes nothing here (it may have held this session back).
            self._links_owed = set(self._physical())
        dps = self._physical()
        out: list[Action] = [SendRole(dp_id, self.is_master, self.generation) for dp_id in dps]
        reports: list[p.Message] = []
        if self.is_master and before != p.MASTER:
            # rfserver ignored this replica's reports while it was not
            # master: tell it what the switches look like now.
            for dp_id in dps:
                st = self._st(dp_id)
                reports.extend(st.ports.values())
                reports.extend(
                    p.DatapathPortStatus(ct_id=self.ct_id, dp_id=dp_id, dp_port=port, up=up)
                    for port, up in sorted(st.link_up.items())
                )
        out.append(
            Notice(
                logging.WARNING if before and before != msg.role else logging.INFO,
                "replica %s of controller %d: role %s (was %s), generation %d; %d switches told",
                (self.replica, msg.ct_id, msg.role, before or "none", msg.generation, len(dps)),
            )
        )
        if reports:
            out.append(ToServer(tuple(reports)))
        return out

    def _nexthop(self, msg: p.NextHopMod) -> list[Action]:
        """A next hop's groups are the shards its routes made (none before its first
        route): a change rewrites each of them, a delete removes them."""
        st = self._st(msg.dp_id)
        existed = msg.nexthop_id in st.groups
        shards = [g for g in of.nexthop_group_ids(msg.nexthop_id) if g in st.shards]
        if msg.mod == p.Mod.DELETE:
            st.groups.pop(msg.nexthop_id, None)
            st.shards.difference_update(shards)
            if not existed:
                return []
            return [
                a
                for gid in shards
                for a in self._group(msg.dp_id, of.GroupSpec(gid, select=False), "delete")
            ]
        st.groups[msg.nexthop_id] = msg
        # A shard made while the next hop was unknown is not in st.shards (fibwriter
        # makes none without buckets): the next reconciliation adds it.
        return [
            a for g in of.nexthop_groups(msg, shards) for a in self._group(msg.dp_id, g, "modify")
        ]

    # --- switches ---------------------------------------------------------------------

    def switch_connected(self, dp_id: int, conn: object) -> list[Action]:
        self.switches[dp_id] = conn
        if dp_id == self.vs_dpid:
            relay: list[of.FlowSpec] = []
            for d, port, _vs, vs_port in self.relay.mappings():
                link = self.relay_links.get(d)
                if link is not None:
                    relay += of.vs_relay_flows(port, vs_port, link.vs_port)
            for m in self.vlinks.mirrored():
                relay += of.virtual_link_flows(m.vs_a, m.vs_b)
            return [
                info("virtual switch %#x connected", dp_id, dp_id=dp_id),
                *self._flows(dp_id, of.virtual_switch_flows() + relay),
            ]
        out: list[Action] = [info("switch %#x connected", dp_id, dp_id=dp_id)]
        if self.role:
            out.append(SendRole(dp_id, self.is_master, self.generation))  # before anything else
        out.append(OpenPipe(dp_id))
        self._st(dp_id)
        self._links_owed.add(dp_id)
        if self.synced and self.is_master:
            out += self._reconcile(dp_id)
        return out

    def switch_left(self, dp_id: int, conn: object) -> list[Action]:
        if self.switches.get(dp_id) is not conn:
            return []  # an older connection of a switch that has reconnected
        del self.switches[dp_id]
        if dp_id == self.vs_dpid:
            return [warning("virtual switch %#x left", dp_id, dp_id=dp_id)]
        unrelayed: list[Action] = []
        for d, port, _vs, _vp in self.relay.mappings():
            if d == dp_id:
                unrelayed += self._unrelay(d, port)
        self.reads.pop(dp_id, None)
        self._probed_since.pop(dp_id, None)
        self._links_owed.discard(dp_id)
        stream = self.streams.get(dp_id)
        if stream is not None:
            stream.cancelled = True
        # Forget what the server told us about it: on return the server
        # re-associates and re-sends, as the association algorithm says.
        self.state.pop(dp_id, None)
        out: list[Action] = [
            *unrelayed,
            warning("switch %#x left", dp_id, dp_id=dp_id),
            ClosePipe(dp_id),
            *self._link_changes(self.links.switch_left(dp_id)),
        ]
        if self.is_master:
            out.append(ToServer((p.DatapathDown(ct_id=self.ct_id, dp_id=dp_id),)))
        return out

    def ports_described(self, dp_id: int, ports: list[Port]) -> list[Action]:
        """The switch's port description (asked for on connect)."""
        if dp_id == self.vs_dpid:
            return []
        st = self._st(dp_id)
        msgs: list[p.Message] = []
        for port in ports:
            if port.port_no >= OFPP_MAX or self._is_relay_port(dp_id, port.port_no):
                continue
            msgs.append(self._register(dp_id, st, port))
            msgs += self._link_state(dp_id, st, port.port_no, port.up, initial=True)
        out: list[Action] = [info("switch %#x: %d ports registered", dp_id, len(msgs), dp_id=dp_id)]
        out += self._mirror([(dp_id, port.port_no) for port in ports])
        if self.is_master:  # a new master reports them all (_role)
            out.append(ToServer(tuple(msgs)))
        return out

    def port_status(self, dp_id: int | None, reason: str, port: Port) -> list[Action]:
        """A port was added, deleted or modified (``reason``: "add", "delete", "modify")."""
        if dp_id is None or dp_id == self.vs_dpid or port.port_no >= OFPP_MAX:
            return []
        if self._is_relay_port(dp_id, port.port_no):
            return []
        st = self._st(dp_id)
        msgs: list[p.Message] = []
        if reason == "add":
            msgs.append(self._register(dp_id, st, port))
        up = reason != "delete" and port.up
        changed = self._link_state(dp_id, st, port.port_no, up)
        out: list[Action] = self._mirror([(dp_id, port.port_no)])
        if changed:
            out.append(
                info(
                    "switch %#x port %d link %s",
                    dp_id,
                    port.port_no,
                    "up" if up else "down",
                    dp_id=dp_id,
                    dp_port=port.port_no,
                )
            )
        if self.is_master:
            out.append(ToServer(tuple(msgs + changed)))
        if not up:
            out += self._link_changes(self.links.port_down((dp_id, port.port_no)))
        return out

    def packet_in(self, dp_id: int, in_port: int, frame: bytes, now: float = 0.0) -> list[Action]:
        """A frame a switch sent to the controller (``now``: for a link probe's sighting)."""
        if not self.is_master:
            # The virtual switch hands its frames to every replica: only
            # the master relays (and a slave's switches send it nothing).
            return []
        if dp_id != self.vs_dpid and _is_lldp(frame):
            return self._probe_in(dp_id, in_port, frame, now)
        decision = self.relay.decide(dp_id, in_port, frame)
        if isinstance(decision, SendTo):
            if decision.dp_id not in self.switches:
                return []
            return [PacketOut(decision.dp_id, decision.port, frame)]
        if isinstance(decision, Mapped):
            return [
                info(
                    "mapping packet: vm %#x port %d is vs port %d",
                    decision.vm_id,
                    decision.vm_port,
                    decision.vs_port,
                    vm_id=decision.vm_id,
                    vm_port=decision.vm_port,
                ),
                ToServer(
                    (
                        p.VirtualPlaneMap(
                            vm_id=decision.vm_id,
                            vm_port=decision.vm_port,
                            vs_id=decision.vs_id,
                            vs_port=decision.vs_port,
                        ),
                    )
                ),
            ]
        assert isinstance(decision, Drop)
        return [debug("dropped packet-in from %#x port %d: %s", dp_id, in_port, decision.reason)]

    # --- statistics -------------------------------------------------------------------

    def poll_stats(self) -> list[Action]:
        """Time to ask the switches for their flows (rfserver only hears the master)."""
        if not self.is_master:
            return []
        # Per-flow statistics of a full table would be a million objects
        # every poll: past STATS_FIB_LIMIT routes, table 0 only.
        return [
            RequestFlowStats(
                dp_id, 0 if len(self._st(dp_id).fib) > STATS_FIB_LIMIT else _ALL_TABLES
            )
            for dp_id in self._physical()
        ]

    def stats_report(self, dp_id: int, flows: list[p.FlowStat]) -> list[Action]:
        """The switch's flow statistics are in (all reply parts)."""
        r = self.relay
        stats = p.DatapathStats(
            ct_id=self.ct_id,
            dp_id=dp_id,
            flows=flows,
            relayed_to_vm=r.relayed_to_vm,
            relayed_to_dp=r.relayed_to_dp,
            relay_dropped=r.dropped,
        )
        return [ToServer((stats,))]

    # --- reconciliation ---------------------------------------------------------------

    def read_started(self, dp_id: int, flow_xid: int, group_xid: int) -> None:
        """The shell sent ReadSwitch's requests with these xids."""
        self.reads[dp_id] = SwitchRead(self.switches[dp_id], flow_xid, group_xid)

    def flow_reply(self, dp_id: int, xid: int) -> SwitchRead | None:
        """The read a flow statistics reply part belongs to (None: not a reconciliation's)."""
        read = self.reads.get(dp_id)
        return read if read is not None and read.flow_xid == xid else None

    def flows_read(self, dp_id: int) -> list[Action]:
        """The last part of the switch's flows has been folded into its read."""
        read = self.reads[dp_id]
        read.flows_done = True
        return self._maybe_stream(dp_id, read)

    def group_reply(self, dp_id: int, xid: int, groups: dict[int, str], more: bool) -> list[Action]:
        """A part of a group description reply: group id -> reconcile.group_text form."""
        read = self.reads.get(dp_id)
        if read is None or xid != read.group_xid:
            return []
        read.groups.update(groups)
        if more:
            return []
        read.groups_done = True
        return self._maybe_stream(dp_id, read)

    def streaming(self, stream: Stream) -> bool:
        """Whether ``stream`` may still write to its switch."""
        return (
            not stream.cancelled
            and self.synced
            and self.is_master
            and self.switches.get(stream.dp_id) is stream.conn
        )

    def plan(self, stream: Stream, read: SwitchRead) -> ReconcilePlan:
        """Diff the switch (``read``) with the desired state."""
        dp_id = stream.dp_id
        st = self._st(dp_id)
        specs = list(of.base_flows())
        if self.discovery_interval > 0:
            specs += of.discovery_flows()
        for dp_port, mac in st.router_ports.items():
            specs.extend(self._port_flows(dp_id, dp_port, mac))
        # Route flows are compared as they are met, without a desired table of
        # the whole FIB; what the switch had is consumed by the comparison
        # (the plan keeps the matches of what it deletes), then let go.
        flows, fcounts = reconcile.plan_switch(specs, st.fib.values(), read.actual, of.is_ours)
        read.actual = {}
        # Exactly the shards the routes use (of next hops rfserver described): the
        # switch's others go after the flows (``finish``), whatever made them.
        groups: dict[int, of.GroupSpec] = {}
        for gid in sorted(flows.groups):
            mod = st.groups.get(of.nexthop_of_group(gid))
            if mod is not None:
                groups[gid] = of.nexthop_group(mod, gid)
        st.shards = set(groups)
        gdiff = reconcile.diff_groups(
            {gid: reconcile.group_text(g) for gid, g in groups.items()}, read.groups
        )
        first: list[Action] = [WriteGroup(dp_id, groups[gid], "add") for gid in gdiff.add]
        first += [WriteGroup(dp_id, groups[gid], "modify") for gid in gdiff.modify]
        if flows.add_now:
            first.append(WriteFlows(dp_id, tuple(flows.add_now)))
        first += [DeleteFlow(dp_id, k[0], k[1], match) for k, match in flows.delete_now]
        counts = ReconcileCounts(
            flows_add=fcounts.add,
            flows_delete=fcounts.delete,
            flows_unchanged=fcounts.unchanged,
            groups_add=len(gdiff.add),
            groups_modify=len(gdiff.modify),
            groups_delete=len(gdiff.delete),
            groups_unchanged=gdiff.unchanged,
        )
        return ReconcilePlan(dp_id, first, flows, gdiff.delete, counts)

    def finish(self, plan: ReconcilePlan) -> list[Action]:
        """The flows are written: delete the stale groups still not desired, then a barrier."""
        st = self.state.get(plan.dp_id)
        out: list[Action] = [
            WriteGroup(plan.dp_id, of.GroupSpec(gid, select=False), "delete")
            for gid in plan.stale_groups
            if st is None or gid not in st.shards
        ]
        out.append(Barrier(plan.dp_id))
        return out

    def stream_ended(self, stream: Stream) -> list[Action]:
        """The stream's thread is done (written, stopped or failed)."""
        if self.streams.get(stream.dp_id) is stream:
            del self.streams[stream.dp_id]
        again = stream.again
        if (
            again is not None
            and self.synced
            and self.is_master
            and self.switches.get(stream.dp_id) is again
        ):
            return self._reconcile(stream.dp_id)
        return []

    def _reconcile(self, dp_id: int) -> list[Action]:
        """Read the switch; while a stream writes to it, stop that one and read when it has."""
        stream = self.streams.get(dp_id)
        if stream is not None:
            stream.cancelled = True
            stream.again = self.switches.get(dp_id)
            return []
        return [ReadSwitch(dp_id)]

    def _maybe_stream(self, dp_id: int, read: SwitchRead) -> list[Action]:
        if not (read.flows_done and read.groups_done):
            return []
        del self.reads[dp_id]
        stream = self.streams[dp_id] = Stream(dp_id, read.conn)
        return [StartStream(stream, read)]

    # --- topology discovery -----------------------------------------------------------

    def discovery_tick(self, now: float) -> list[Action]:
        """Time to probe: age the link table, probe every up port, send what rfserver is owed."""
        if self.discovery_interval <= 0 or not self.is_master:
            return []
        out = self._link_changes(self.links.tick(now))
        ttl = math.ceil(self.links.hold)
        for dp_id in self._physical():
            self._probed_since.setdefault(dp_id, now)
            st = self._st(dp_id)
            for port_no, reg in sorted(st.ports.items()):
                if st.link_up.get(port_no, True):
                    frame = probe.build_probe(dp_id, port_no, reg.hwaddress or _NO_MAC, ttl)
                    out.append(PacketOut(dp_id, port_no, frame))
        # A switch's table is complete once every neighbour had a hold time to answer.
        ready = sorted(
            dp_id
            for dp_id in self._links_owed
            if dp_id in self._probed_since and now >= self._probed_since[dp_id] + self.links.hold
        )
        if ready:
            self._links_owed.difference_update(ready)
            table = [_ends(k) for k in self.links.links() if k.dst[0] in ready]
            out.append(ToServer((p.DatapathLinks(ct_id=self.ct_id, links=table, dp_ids=ready),)))
        return out

    def _probe_in(self, dp_id: int, in_port: int, frame: bytes, now: float) -> list[Action]:
        """LLDP from a physical switch: a sighting if it is a probe; never relayed."""
        if self.discovery_interval <= 0 or self._is_relay_port(dp_id, in_port):
            return []
        try:
            src_dp, src_port, _ttl = probe.parse_probe(frame)
        except probe.ProbeError as exc:
            return [debug("LLDP from %#x port %d is not a probe: %s", dp_id, in_port, exc)]
        return self._link_changes(self.links.seen((src_dp, src_port), (dp_id, in_port), now))

    def _link_changes(self, changes: list[discovery.Change]) -> list[Action]:
        """The link table's changes as notices, and reports for rfserver (master only)."""
        out: list[Action] = []
        msgs: list[p.Message] = []
        for c in changes:
            (sd, sp), (dd, dport) = c.link.src, c.link.dst
            if isinstance(c, discovery.LinkUp):
                out.append(info("link %#x:%d -> %#x:%d up", sd, sp, dd, dport))
                msgs.append(p.DatapathLink(ct_id=self.ct_id, link=_ends(c.link), up=True))
            else:
                out.append(info("link %#x:%d -> %#x:%d down (%s)", sd, sp, dd, dport, c.reason))
                msgs.append(
                    p.DatapathLink(ct_id=self.ct_id, link=_ends(c.link), up=False, reason=c.reason)
                )
        if msgs and self.is_master:
            out.append(ToServer(tuple(msgs)))
        if self.vlinks.discovered:
            out += self._discovered_mirrors(changes)
        return out

    def _discovered_mirrors(self, changes: list[discovery.Change]) -> list[Action]:
        """--virtual-links discovered: a link up both ways is mirrored; either way down
        takes the mirror down at once."""
        out: list[Action] = []
        touched: list[End] = []
        for c in changes:
            src, dst = c.link.src, c.link.dst
            if isinstance(c, discovery.LinkDown):
                for m in self.vlinks.discard(src) + self.vlinks.discard(dst):
                    out += self._flows(self.vs_dpid, of.virtual_link_flows(m.vs_a, m.vs_b), True)
                    out.append(info("virtual link %#x:%d - %#x:%d down", *m.link.a, *m.link.b))
            elif self.links.has(dst, src) and self.vlinks.add(VirtualLink(*sorted((src, dst)))):
                touched += [src, dst]
        return out + self._mirror(touched)

    # --- helpers ----------------------------------------------------------------------

    def _st(self, dp_id: int) -> DatapathState:
        return self.state.setdefault(dp_id, DatapathState())

    def _physical(self) -> list[int]:
        return [dp_id for dp_id in self.switches if dp_id != self.vs_dpid]

    def _port_flows(self, dp_id: int, dp_port: int, mac: str) -> list[of.FlowSpec]:
        """A router port's classifier flows: punts to the controller, or to the relay link."""
        link = self.relay_links.get(dp_id)
        if link is None:
            return of.router_port_flows(dp_port, mac)
        return [
            *of.router_port_flows(dp_port, mac, of.relay_punt(dp_port, link.dp_port)),
            *of.relay_flows(dp_port, mac, link.dp_port),
        ]

    def _vs_flows(
        self, dp_id: int, dp_port: int, vs_port: int, delete: bool = False
    ) -> list[Action]:
        """The virtual switch's datapath relay flows of a mapping (none in packet-in mode)."""
        link = self.relay_links.get(dp_id)
        if link is None:
            return []
        return self._flows(self.vs_dpid, of.vs_relay_flows(dp_port, vs_port, link.vs_port), delete)

    def _unrelay(self, dp_id: int, dp_port: int) -> list[Action]:
        """Forget a mapping, and its virtual switch flows."""
        old = self.relay.vs_port_of(dp_id, dp_port)
        self.relay.unmap(dp_id, dp_port)
        out = self._mirror([(dp_id, dp_port)])
        return out if old is None else out + self._vs_flows(dp_id, dp_port, old[1], delete=True)

    def _mirror(self, ends: list[End]) -> list[Action]:
        """Re-decide the virtual links of ``ends`` (vlinks.py); write what changed."""
        if not self.vlinks:
            return []
        out: list[Action] = []
        for m in self.vlinks.update(ends, self._vs_port_of_end, self._end_up):
            out += self._flows(self.vs_dpid, of.virtual_link_flows(m.vs_a, m.vs_b), m.delete)
            out.append(
                info(
                    "virtual link %#x:%d - %#x:%d %s (vs ports %d, %d)",
                    *m.link.a,
                    *m.link.b,
                    "down" if m.delete else "up",
                    m.vs_a,
                    m.vs_b,
                )
            )
        return out

    def _vs_port_of_end(self, end: End) -> int | None:
        vs = self.relay.vs_port_of(*end)
        return vs[1] if vs is not None and vs[0] == self.vs_dpid else None

    def _end_up(self, end: End) -> bool:
        st = self.state.get(end[0])
        return st is None or st.link_up.get(end[1], True)

    def _is_relay_port(self, dp_id: int, port_no: int) -> bool:
        link = self.relay_links.get(dp_id)
        return link is not None and link.dp_port == port_no

    def _flows(self, dp_id: int, flows: list[of.FlowSpec], delete: bool = False) -> list[Action]:
        if dp_id not in self.switches or (not self.synced and dp_id != self.vs_dpid):
            return []
        return [WriteFlows(dp_id, tuple(flows), delete)]

    def _group(self, dp_id: int, group: of.GroupSpec, command: str) -> list[Action]:
        if dp_id not in self.switches or not self.synced:
            return []
        return [WriteGroup(dp_id, group, command)]

    def _register(self, dp_id: int, st: DatapathState, port: Port) -> p.DatapathPortRegister:
        reg = p.DatapathPortRegister(
            ct_id=self.ct_id,
            dp_id=dp_id,
            dp_port=port.port_no,
            hwaddress=port.hw_addr,
            name=port.name,
        )
        st.ports[port.port_no] = reg
        return reg

    def _link_state(
        self, dp_id: int, st: DatapathState, dp_port: int, up: bool, initial: bool = False
    ) -> list[p.Message]:
        """Record a port's link state; a message for rfserver if it should hear of it."""
        before = st.link_up.get(dp_port)
        st.link_up[dp_port] = up
        report = (not up or before is False) if initial else before != up
        if not report:
            return []
        return [p.DatapathPortStatus(ct_id=self.ct_id, dp_id=dp_id, dp_port=dp_port, up=up)]


#: A probe needs a source MAC; a port that reported none sends from this one.
_NO_MAC = "02:00:00:00:00:00"


def _is_lldp(frame: bytes) -> bool:
    """LLDP, tagged or not (a switch may punt a probe with the VLAN tag of its port)."""
    kind = frame[12:14]
    if kind == b"\x81\x00":
        kind = frame[16:18]
    return kind == b"\x88\xcc"


def _ends(link: discovery.Link) -> p.LinkEnds:
    (sd, sp), (dd, dport) = link.src, link.dst
    return p.LinkEnds(src_dp_id=sd, src_port=sp, dst_dp_id=dd, dst_port=dport)

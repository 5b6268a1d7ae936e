"""rfproxy: the os-ken application, a thin shell.

Decisions live elsewhere: which flows and groups (openflow.py), where a
punted frame goes (relay.py), what the forwarding state should be (rfserver).
This shell keeps the desired state per datapath, so a switch that reconnects
is re-programmed from it, and executes decisions as OpenFlow 1.3 messages.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import struct
import threading
from dataclasses import dataclass, field

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from routeflow.proxy import fibwriter, reconcile
from routeflow.proxy import openflow as of
from routeflow.proxy.flowpipe import FlowPipe
from routeflow.proxy.relay import Drop, Mapped, RelayTable, SendTo
from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import protocol as p

log = logging.getLogger("routeflow.proxy")

MASTER = "master"

#: The original RouteFlow virtual switch datapath id: ASCII "rfvsrfvs".
DEFAULT_VS_DPID = int.from_bytes(b"rfvsrfvs", "big")


@dataclass
class ProxySettings:
    server: str = "unix:/run/routeflow/rfserver.sock"
    ct_id: int = 1
    #: This process among the replicas of ct_id (default "ct<ct_id>"); see ControllerRole.
    replica: str = ""
    vs_dpid: int = DEFAULT_VS_DPID
    stats_interval: float = 5.0  # 0 disables flow statistics polling
    secret: bytes | None = None
    ssl_context: object = None


#: Above this many FIB entries on a switch, flow statistics cover table 0 only.
STATS_FIB_LIMIT = 10_000

#: Set by routeflow.proxy.main before os-ken instantiates the app.
SETTINGS = ProxySettings()


@dataclass
class DatapathState:
    """What routeflow wants on one switch, kept across switch reconnects."""

    ports: dict[int, p.DatapathPortRegister] = field(default_factory=dict)
    router_ports: dict[int, str] = field(default_factory=dict)  # dp_port -> router MAC
    groups: dict[int, p.NextHopMod] = field(default_factory=dict)
    fib: dict[str, p.FibEntry] = field(default_factory=dict)
    link_up: dict[int, bool] = field(default_factory=dict)  # dp_port -> link state


@dataclass(eq=False)
class _Stream:
    """A reconciliation writing to one switch from a thread of its own."""

    pipe: FlowPipe
    cancelled: bool = False
    #: A reconciliation asked for while this one ran (the datapath): started when it ends.
    again: object = None


def _guarded(handler):
    """Keep os-ken's event loop alive whatever a handler raises.

    With os-ken 4's native threads hub, ``hub.TaskExit`` is ``Exception``, so
    its event loop re-raises any handler exception and the application thread
    ends silently: one malformed packet-in would leave a deaf controller.
    """

    @functools.wraps(handler)
    def wrapper(self, ev):
        try:
            return handler(self, ev)
        except Exception:
            log.exception("%s failed on %s; continuing", handler.__name__, type(ev).__name__)

    return wrapper


class RFProxy(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = SETTINGS
        self._lock = threading.RLock()
        self.datapaths: dict[int, object] = {}
        self.state: dict[int, DatapathState] = {}
        self.relay = RelayTable(self.settings.vs_dpid)
        # Until rfserver has sent its full state (Resync end), desired state is
        # only recorded, never pushed: a half-known state must not be enforced.
        self.synced = False
        #: The OpenFlow role rfserver gave this replica ("" until it says):
        #: only a master writes to the switches of its controller and relays.
        self.role = ""
        self.generation = 0
        self.replica = self.settings.replica or f"ct{self.settings.ct_id}"
        self._reconcile_jobs: dict[int, dict] = {}
        #: Per physical switch: the reconciliation writing to it, if one is.
        self._streams: dict[int, _Stream] = {}
        #: Per physical switch: barrier-paced, bounded writing of FIB flow-mods.
        self._pipes: dict[int, FlowPipe] = {}
        self.link = ServerLink(
            self.settings.server,
            self._hello,
            self._on_server_message,
            secret=self.settings.secret,
            ssl_context=self.settings.ssl_context,
        )
        self.link.start()
        self._stats_parts: dict[int, list] = {}
        if self.settings.stats_interval > 0:
            self._stats_thread = hub.spawn(self._poll_stats)
        log.info(
            "rfproxy ct_id=%d replica %s, virtual switch dpid=%#x, rfserver %s",
            self.settings.ct_id,
            self.replica,
            self.settings.vs_dpid,
            self.settings.server,
        )

    def close(self):
        self.link.stop()

    # --- rfserver session ---------------------------------------------------

    def _hello(self) -> list[p.Message]:
        ct = self.settings.ct_id
        with self._lock:
            # The role is kept across rfserver sessions: an unreachable (or
            # restarting) rfserver changes nothing on the switches.
            msgs: list[p.Message] = [
                p.ControllerRegister(ct_id=ct, replica=self.replica, ct_role=self.role)
            ]
            self.synced = False
            for dp_id in self.datapaths:
                if dp_id == self.settings.vs_dpid:
                    continue
                msgs.extend(self.state.setdefault(dp_id, DatapathState()).ports.values())
        return msgs

    def _on_server_message(self, msg: p.Message) -> None:
        if isinstance(msg, p.FibMod):
            self._fib(msg)  # takes the lock per chunk; may wait for the switch without it
            return
        if isinstance(msg, p.NextHopMod):
            # Like a FibMod, it waits while a reconciliation streams to the switch
            # (the pipe's producer lock; taken before the proxy's lock, as there).
            with self._lock:
                pipe = self._pipes.get(msg.dp_id) if self.synced else None
            held = pipe.producer if pipe is not None else contextlib.nullcontext()
            with held, self._lock:
                self._nexthop(msg)
            return
        if isinstance(msg, p.ControllerRole):
            self._set_role(msg)
            return
        with self._lock:
            if isinstance(msg, p.DataPlaneMap):
                self.relay.map(msg.dp_id, msg.dp_port, msg.vs_id, msg.vs_port)
                st = self.state.setdefault(msg.dp_id, DatapathState())
                st.router_ports[msg.dp_port] = msg.hwaddress
                self._flows(msg.dp_id, of.router_port_flows(msg.dp_port, msg.hwaddress))
                log.info(
                    "router port dp %#x port %d <-> vs port %d (mac %s)",
                    msg.dp_id,
                    msg.dp_port,
                    msg.vs_port,
                    msg.hwaddress,
                )
            elif isinstance(msg, p.DataPlaneUnmap):
                self.relay.unmap(msg.dp_id, msg.dp_port)
                st = self.state.setdefault(msg.dp_id, DatapathState())
                mac = st.router_ports.pop(msg.dp_port, None)
                if mac is not None:
                    self._flows(msg.dp_id, of.router_port_flows(msg.dp_port, mac), delete=True)
            elif isinstance(msg, p.Resync):
                self._server_resync(msg)
            elif isinstance(msg, p.AuthChallenge):
                log.error("rfserver requires authentication: start rfproxy with --secret-file")
            elif isinstance(msg, p.Error):
                log.error("rfserver says %s: %s", msg.code, msg.detail)
            else:
                log.debug("ignoring %s from rfserver", type(msg).__name__)

    def _set_role(self, msg: p.ControllerRole) -> None:
        """rfserver made this replica master or slave: tell the switches, then act on it."""
        if msg.ct_id != self.settings.ct_id:
            log.error(
                "rfserver sent a role for controller %d; this is controller %d: ignored",
                msg.ct_id,
                self.settings.ct_id,
            )
            return
        reports: list[p.Message] = []
        with self._lock:
            before = self.role
            self.role = msg.role
            self.generation = msg.generation
            if msg.role != MASTER:
                # Never write again; a full state (Resync) comes with mastership.
                self.synced = False
                self._reconcile_jobs.clear()
            dps = [(i, dp) for i, dp in self.datapaths.items() if i != self.settings.vs_dpid]
            for _dp_id, dp in dps:
                self._send_role(dp)
            if msg.role == MASTER and before != MASTER:
                # rfserver ignored this replica's reports while it was not
                # master: tell it what the switches look like now.
                for dp_id, _dp in dps:
                    st = self.state.setdefault(dp_id, DatapathState())
                    reports.extend(st.ports.values())
                    reports.extend(
                        p.DatapathPortStatus(
                            ct_id=self.settings.ct_id, dp_id=dp_id, dp_port=port, up=up
                        )
                        for port, up in sorted(st.link_up.items())
                    )
        log_fn = log.warning if before and before != msg.role else log.info
        log_fn(
            "replica %s of controller %d: role %s (was %s), generation %d; %d switches told",
            self.replica,
            msg.ct_id,
            msg.role,
            before or "none",
            msg.generation,
            len(dps),
        )
        self.link.send_many(reports)

    def _send_role(self, dp) -> None:
        """OFPT_ROLE_REQUEST with this replica's role; OVS demotes the previous master."""
        ofp = dp.ofproto
        role = ofp.OFPCR_ROLE_MASTER if self.role == MASTER else ofp.OFPCR_ROLE_SLAVE
        try:
            dp.send_msg(dp.ofproto_parser.OFPRoleRequest(dp, role, self.generation))
        except Exception:  # a switch leaving mid-request is handled by its DEAD event
            log.warning("role request to switch %#x failed", dp.id or 0)

    @property
    def is_master(self) -> bool:
        return self.role == MASTER

    def _server_resync(self, msg: p.Resync) -> None:
        if msg.phase == "begin":
            self.synced = False
            for st in self.state.values():
                st.router_ports.clear()
                st.groups.clear()
                st.fib.clear()
            return
        if msg.phase != "end":
            return
        if not self.is_master:
            log.warning("full state from rfserver while not master (%r): ignored", self.role)
            return
        # Relay mappings the full state no longer mentions are stale.
        for dp_id, dp_port, _vs, _vp in self.relay.mappings():
            if dp_port not in self.state.get(dp_id, DatapathState()).router_ports:
                self.relay.unmap(dp_id, dp_port)
        self.synced = True
        log.info("in sync with rfserver; reconciling %d switches", len(self.datapaths))
        for dp_id, dp in self.datapaths.items():
            if dp_id != self.settings.vs_dpid:
                self._start_reconcile(dp)

    def _nexthop(self, msg: p.NextHopMod) -> None:
        log.debug(
            "NextHopMod %s dp %#x id %d: %s", msg.mod.name, msg.dp_id, msg.nexthop_id, msg.buckets
        )
        st = self.state.setdefault(msg.dp_id, DatapathState())
        existed = msg.nexthop_id in st.groups
        if msg.mod == p.Mod.DELETE:
            st.groups.pop(msg.nexthop_id, None)
            if existed:
                self._group(msg.dp_id, of.nexthop_group(msg), "delete")
            return
        st.groups[msg.nexthop_id] = msg
        self._group(msg.dp_id, of.nexthop_group(msg), "modify" if existed else "add")

    def _fib(self, msg: p.FibMod) -> None:
        """Apply a FibMod: the desired FIB follows it, the switch gets it through its pipe.

        Called without the lock: fibwriter takes it per chunk, and writing a
        chunk may wait for the switch (back-pressure) while relay goes on.
        """
        log.debug(
            "FibMod %s dp %#x: %s",
            msg.mod.name,
            msg.dp_id,
            ", ".join(e.prefix for e in msg.entries[:10]),
        )
        with self._lock:
            dp = self.datapaths.get(msg.dp_id)
            pipe = self._pipes.get(msg.dp_id) if self.synced else None

        def fib() -> dict[str, p.FibEntry]:
            return self.state.setdefault(msg.dp_id, DatapathState()).fib

        def slow(spec: of.FlowSpec, delete: bool) -> bytes | None:
            return None if pipe is None else _serialize(dp, _flow_mod(dp, spec, delete))

        chunks = fibwriter.fib_chunks(fib, msg, slow, lock=self._lock)
        if pipe is None:
            for _chunk in chunks:  # the desired state follows; nothing to write
                pass
            return
        while True:
            # A chunk is computed and written under the pipe's producer lock: a
            # reconciliation streaming to this switch (which holds it) must not
            # have its flows overtaken, or overtake ours (see _reconcile_worker).
            with pipe.producer:
                item = next(chunks, None)
                if item is None:
                    pipe.flush()
                    return
                pipe.put(*item)

    # --- switches -----------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_guarded
    def _switch_features(self, ev):
        dp = ev.msg.datapath
        # os-ken 4 runs each application's event loop on its own thread: its
        # own features handler (which sets dp.id) may not have run yet.
        if dp.id is None:
            dp.id = ev.msg.datapath_id
        with self._lock:
            self.datapaths[dp.id] = dp
            if dp.id == self.settings.vs_dpid:
                log.info("virtual switch %#x connected", dp.id)
                self._flows(dp.id, of.virtual_switch_flows())
            else:
                log.info("switch %#x connected", dp.id)
                if self.role:
                    self._send_role(dp)  # before anything else reaches the switch
                old_pipe = self._pipes.pop(dp.id, None)
                if old_pipe is not None:
                    old_pipe.close()
                self._pipes[dp.id] = FlowPipe(dp.send, name=f"switch {dp.id:#x}")
                self.state.setdefault(dp.id, DatapathState())
                if self.synced and self.is_master:
                    self._start_reconcile(dp)
        parser = dp.ofproto_parser
        dp.send_msg(parser.OFPPortDescStatsRequest(dp, 0))

    # --- reconciliation ---------------------------------------------------------

    def _start_reconcile(self, dp) -> None:
        """Read the switch's flows and groups; the replies drive _maybe_finish_reconcile.

        While an earlier reconciliation still writes to the switch, the switch's
        flows would be read half-written: that one is stopped, and this one
        starts when it has (_reconcile_worker).
        """
        stream = self._streams.get(dp.id)
        if stream is not None:
            stream.cancelled = True
            stream.again = dp
            return
        parser = dp.ofproto_parser
        flows = parser.OFPFlowStatsRequest(dp)
        groups = parser.OFPGroupDescStatsRequest(dp, 0)
        dp.set_xid(flows)
        dp.set_xid(groups)
        self._reconcile_jobs[dp.id] = {
            "flow_xid": flows.xid,
            "group_xid": groups.xid,
            "flows": None,
            "groups": None,
            # The switch's flows, folded in reply part by reply part.
            "actual": {},
            "parts_g": [],
        }
        dp.send_msg(flows)
        dp.send_msg(groups)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _group_desc(self, ev):
        msg = ev.msg
        dp = msg.datapath
        with self._lock:
            job = self._reconcile_jobs.get(dp.id)
            if job is None or msg.xid != job["group_xid"]:
                return
            job["parts_g"].extend(msg.body)
            if msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                return
            job["groups"] = job["parts_g"]
            self._maybe_finish_reconcile(dp, job)

    def _maybe_finish_reconcile(self, dp, job) -> None:
        """Both replies are in: the diff is computed and written by a thread of its own.

        Writing a full table waits for the switch (FlowPipe's barriers), and
        the barrier replies come through this event loop: it must not wait.
        """
        if job["flows"] is None or job["groups"] is None:
            return
        del self._reconcile_jobs[dp.id]
        pipe = self._pipes.get(dp.id)
        if pipe is None:
            return
        stream = self._streams[dp.id] = _Stream(pipe)
        threading.Thread(
            target=self._reconcile_worker,
            args=(dp, job, stream),
            name=f"reconcile {dp.id:#x}",
            daemon=True,  # a stopping rfproxy does not wait for a switch
        ).start()

    def _streaming(self, dp, stream: _Stream) -> bool:
        """Whether ``stream`` may still write to ``dp`` (under the lock)."""
        return (
            not stream.cancelled
            and not stream.pipe.closed
            and self.synced
            and self.is_master
            and self.datapaths.get(dp.id) is dp
        )

    def _reconcile_worker(self, dp, job, stream: _Stream) -> None:
        """Diff the switch with the desired state and write the difference.

        Holding the pipe's producer lock from the diff until the raw part is
        written keeps FibMods out meanwhile (rfproxy's rfserver link waits, as
        for a slow switch): the routes are written as the diff saw them and no
        FibMod's flows are overtaken. The rest is written under the proxy's
        lock, as before: groups first (flows may point at them), then stale
        flows, then stale groups (nothing points at them any more).
        """
        pipe = stream.pipe
        try:
            with pipe.producer:
                with self._lock:
                    if not self._streaming(dp, stream):
                        return
                    plan, counts, group_deletes = self._reconcile_now(dp, job)
                job = None  # the switch's flows: not needed any more
                # A chunk per window: at most ``depth`` windows are ever encoded.
                for data, count in reconcile.raw_chunks(plan, chunk=pipe.window):
                    with self._lock:
                        if not self._streaming(dp, stream):
                            log.info("switch %#x: reconciliation stopped", dp.id)
                            return
                    pipe.put(data, count)
                pipe.flush()
                # Still holding the producer lock: a NextHopMod waits for it too
                # (see _on_server_message), so none can re-add a group between
                # here and its deletion (an ADD of a group the switch still has
                # fails, and the stale buckets would stay).
                with self._lock:
                    if not self._streaming(dp, stream):
                        return
                    st = self.state.get(dp.id)
                    for gid in group_deletes:
                        if st is None or gid not in st.groups:
                            dp.send_msg(_group_mod(dp, of.GroupSpec(gid, select=False), "delete"))
                    dp.send_msg(dp.ofproto_parser.OFPBarrierRequest(dp))
            self._log_reconciled(dp, plan, counts)
        except Exception:
            log.exception("reconciliation of switch %#x failed", dp.id or 0)
        finally:
            with self._lock:
                if self._streams.get(dp.id) is stream:
                    del self._streams[dp.id]
                again = stream.again
                if (
                    again is not None
                    and self.synced
                    and self.is_master
                    and self.datapaths.get(again.id) is again
                ):
                    self._start_reconcile(again)

    def _reconcile_now(self, dp, job) -> tuple[reconcile.FlowPlan, dict[str, int], list[int]]:
        """Compute the diff; write groups and the os-ken part of the flows (under the lock).

        Returns the flow plan (its raw part still to write), the diff's counts
        for the log and the stale groups.
        """
        st = self.state.setdefault(dp.id, DatapathState())
        specs = list(of.base_flows())
        for dp_port, mac in st.router_ports.items():
            specs.extend(of.router_port_flows(dp_port, mac))
        desired_flows = reconcile.desired_flows(specs, st.fib.values())
        actual_flows: reconcile.ActualFlows = job["actual"]
        fdiff = reconcile.diff_flows(desired_flows, actual_flows, _is_ours)
        plan = reconcile.plan_flows(fdiff, desired_flows, actual_flows)
        desired_groups = {
            gid: (_format_group(_group_mod(dp, of.nexthop_group(mod), "add")), mod)
            for gid, mod in st.groups.items()
        }
        actual_groups = {g.group_id: _format_group(g) for g in job["groups"]}
        gdiff = reconcile.diff_groups({k: v[0] for k, v in desired_groups.items()}, actual_groups)
        for gid in gdiff.add:
            dp.send_msg(_group_mod(dp, of.nexthop_group(desired_groups[gid][1]), "add"))
        for gid in gdiff.modify:
            dp.send_msg(_group_mod(dp, of.nexthop_group(desired_groups[gid][1]), "modify"))
        for spec in plan.add_now:
            dp.send_msg(_flow_mod(dp, spec, False))
        for key in plan.delete_now:
            match = dp.ofproto_parser.OFPMatch.parser(actual_flows[key][2], 0)
            dp.send_msg(_delete_strict(dp, key[0], key[1], match))
        counts = {
            "flows_add": len(fdiff.add),
            "flows_delete": len(fdiff.delete),
            "flows_unchanged": fdiff.unchanged,
            "groups_add": len(gdiff.add),
            "groups_modify": len(gdiff.modify),
            "groups_delete": len(gdiff.delete),
            "groups_unchanged": gdiff.unchanged,
        }
        return plan, counts, gdiff.delete

    def _log_reconciled(self, dp, plan: reconcile.FlowPlan, c: dict[str, int]) -> None:
        log.info(
            "reconciled switch %#x: flows +%d -%d =%d, groups +%d ~%d -%d =%d",
            dp.id,
            c["flows_add"],
            c["flows_delete"],
            c["flows_unchanged"],
            c["groups_add"],
            c["groups_modify"],
            c["groups_delete"],
            c["groups_unchanged"],
        )
        added = [reconcile.spec_flow(s)[0] for s in plan.add_now[:5]]
        added += [reconcile.spec_flow(of.fib_flows(e)[0])[0] for e in plan.add_routes[:5]]
        deleted = plan.delete_now[:5] + [key for key, _m in plan.delete_fib[:5]]
        for what, keys, total in (
            ("re-added", added, c["flows_add"]),
            ("deleted", deleted, c["flows_delete"]),
        ):
            if total:
                log.info(
                    "switch %#x: flows %s: %s%s",
                    dp.id,
                    what,
                    "; ".join(f"table={t},priority={pr},{m}" for t, pr, m in keys[:5]),
                    f" and {total - 5} more" if total > 5 else "",
                )

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _port_desc(self, ev):
        dp = ev.msg.datapath
        if dp.id == self.settings.vs_dpid:
            return
        msgs = []
        with self._lock:
            st = self.state.setdefault(dp.id, DatapathState())
            for port in ev.msg.body:
                if port.port_no >= dp.ofproto.OFPP_MAX:
                    continue
                msgs.append(self._register_port(dp.id, st, port))
                msgs += self._link_state(
                    dp.id, st, port.port_no, _port_is_up(dp.ofproto, port), initial=True
                )
            report = self.is_master  # a new master reports them all (_set_role)
        log.info("switch %#x: %d ports registered", dp.id, len(msgs))
        if report:
            self.link.send_many(msgs)

    def _register_port(self, dp_id: int, st: DatapathState, port) -> p.DatapathPortRegister:
        reg = p.DatapathPortRegister(
            ct_id=self.settings.ct_id,
            dp_id=dp_id,
            dp_port=port.port_no,
            hwaddress=port.hw_addr,
            name=_port_name(port),
        )
        st.ports[port.port_no] = reg
        return reg

    def _link_state(
        self, dp_id: int, st: DatapathState, dp_port: int, up: bool, initial: bool = False
    ) -> list[p.Message]:
        """Record a port's link state; a message for rfserver if it should hear of it.

        ``initial`` (the port description at connect): rfserver takes ports to be
        up, so only a port that is down, or was known down, is reported.
        Otherwise (port status events): any change is reported.
        """
        before = st.link_up.get(dp_port)
        st.link_up[dp_port] = up
        report = (not up or before is False) if initial else before != up
        if not report:
            return []
        return [
            p.DatapathPortStatus(ct_id=self.settings.ct_id, dp_id=dp_id, dp_port=dp_port, up=up)
        ]

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_guarded
    def _port_status(self, ev):
        msg = ev.msg
        dp = msg.datapath
        if dp.id is None or dp.id == self.settings.vs_dpid:
            return
        ofp = dp.ofproto
        port = msg.desc
        if port.port_no >= ofp.OFPP_MAX:
            return
        out: list[p.Message] = []
        with self._lock:
            st = self.state.setdefault(dp.id, DatapathState())
            if msg.reason == ofp.OFPPR_ADD:
                out.append(self._register_port(dp.id, st, port))
            up = msg.reason != ofp.OFPPR_DELETE and _port_is_up(ofp, port)
            changed = self._link_state(dp.id, st, port.port_no, up)
            if changed:
                log.info("switch %#x port %d link %s", dp.id, port.port_no, "up" if up else "down")
            out += changed
            report = self.is_master
        if report:
            self.link.send_many(out)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_guarded
    def _state_change(self, ev):
        dp = ev.datapath
        if ev.state != DEAD_DISPATCHER or dp.id is None:
            return
        with self._lock:
            if self.datapaths.get(dp.id) is not dp:
                return
            del self.datapaths[dp.id]
            if dp.id == self.settings.vs_dpid:
                log.warning("virtual switch %#x left", dp.id)
                return
            log.warning("switch %#x left", dp.id)
            self.relay.unmap_datapath(dp.id)
            self._reconcile_jobs.pop(dp.id, None)
            stream = self._streams.get(dp.id)
            if stream is not None:
                stream.cancelled = True
            pipe = self._pipes.pop(dp.id, None)
            if pipe is not None:
                pipe.close()
            # Forget what the server told us about it: on return the server
            # re-associates and re-sends, as the association algorithm says.
            self.state.pop(dp.id, None)
            report = self.is_master
        if report:
            self.link.send(p.DatapathDown(ct_id=self.settings.ct_id, dp_id=dp.id))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_guarded
    def _barrier_reply(self, ev):
        pipe = self._pipes.get(ev.msg.datapath.id)
        if pipe is not None:
            pipe.barrier_reply(ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @_guarded
    def _role_reply(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        role = {
            ofp.OFPCR_ROLE_MASTER: "master",
            ofp.OFPCR_ROLE_SLAVE: "slave",
            ofp.OFPCR_ROLE_EQUAL: "equal",
            ofp.OFPCR_ROLE_NOCHANGE: "nochange",
        }.get(msg.role, str(msg.role))
        log.info(
            "switch %#x: replica %s is %s (generation %d)",
            msg.datapath.id or 0,
            self.replica,
            role,
            msg.generation_id,
        )

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_guarded
    def _error(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED:
            why = {
                ofp.OFPRRFC_STALE: "stale generation (a newer master exists)",
                ofp.OFPRRFC_UNSUP: "roles not supported",
                ofp.OFPRRFC_BAD_ROLE: "bad role",
            }.get(msg.code, f"code {msg.code}")
            log.error(
                "switch %#x refused role %s (generation %d) of replica %s: %s",
                msg.datapath.id or 0,
                self.role,
                self.generation,
                self.replica,
                why,
            )
            return
        if msg.type == ofp.OFPET_BAD_REQUEST and msg.code == ofp.OFPBRC_IS_SLAVE:
            log.warning(
                "switch %#x refused a write: replica %s is slave there (xid %s)",
                msg.datapath.id or 0,
                self.replica,
                msg.xid,
            )
            return
        log.warning(
            "switch %#x rejected a message: type=%d code=%d (xid %s)",
            msg.datapath.id or 0,
            msg.type,
            msg.code,
            msg.xid,
        )

    # --- statistics ------------------------------------------------------------

    def _poll_stats(self) -> None:
        """Ask every physical switch for its flows; replies become DatapathStats."""
        while not self.link._stop.is_set():
            hub.sleep(self.settings.stats_interval)
            with self._lock:
                if not self.is_master:
                    continue  # rfserver only hears the master
                dps = [dp for i, dp in self.datapaths.items() if i != self.settings.vs_dpid]
            for dp in dps:
                parser = dp.ofproto_parser
                # Per-flow statistics of a full table would be a million
                # objects every poll: past STATS_FIB_LIMIT routes, table 0 only.
                with self._lock:
                    big = len(self.state.get(dp.id, DatapathState()).fib) > STATS_FIB_LIMIT
                try:
                    dp.send_msg(parser.OFPFlowStatsRequest(dp, table_id=0 if big else 0xFF))
                except Exception:  # a switch leaving mid-request is not our problem
                    log.debug("flow stats request to %#x failed", dp.id)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _flow_stats(self, ev):
        msg = ev.msg
        dp = msg.datapath
        with self._lock:
            job = self._reconcile_jobs.get(dp.id)
            if job is not None and msg.xid == job["flow_xid"]:
                # Raw: os-ken's objects for a full table are what made a
                # restart slow (see reconcile.read_flow_stats).
                reconcile.read_flow_stats(
                    msg.buf,
                    dp.ofproto.OFP_MULTIPART_REPLY_SIZE,
                    msg.msg_len,
                    job["actual"],
                    _parse_flow_stats_entry,
                )
                if not msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                    job["flows"] = True
                    self._maybe_finish_reconcile(dp, job)
                return
        parts = self._stats_parts.setdefault(dp.id, [])
        parts.extend(msg.body)
        if msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
            return
        del self._stats_parts[dp.id]
        flows = [
            p.FlowStat(
                table=st.table_id,
                priority=st.priority,
                cookie=st.cookie,
                match=_format_match(st.match),
                actions=_format_instructions(st.instructions),
                packets=st.packet_count,
                bytes=st.byte_count,
            )
            for st in parts
        ]
        self.link.send(
            p.DatapathStats(
                ct_id=self.settings.ct_id,
                dp_id=dp.id,
                flows=flows,
                relayed_to_vm=self.relay.relayed_to_vm,
                relayed_to_dp=self.relay.relayed_to_dp,
                relay_dropped=self.relay.dropped,
            )
        )

    # --- relay ---------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_guarded
    def _packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        try:
            in_port = msg.match["in_port"]
            frame = bytes(msg.data)
        except (KeyError, TypeError):
            return
        with self._lock:
            if not self.is_master:
                # The virtual switch hands its frames to every replica: only
                # the master relays (and a slave's switches send it nothing).
                return
            decision = self.relay.decide(dp.id, in_port, frame)
            target = self.datapaths.get(decision.dp_id) if isinstance(decision, SendTo) else None
        if isinstance(decision, SendTo):
            if target is None:
                return
            parser = target.ofproto_parser
            ofp = target.ofproto
            target.send_msg(
                parser.OFPPacketOut(
                    datapath=target,
                    buffer_id=ofp.OFP_NO_BUFFER,
                    in_port=ofp.OFPP_CONTROLLER,
                    actions=[parser.OFPActionOutput(decision.port)],
                    data=frame,
                )
            )
        elif isinstance(decision, Mapped):
            log.info(
                "mapping packet: vm %#x port %d is vs port %d",
                decision.vm_id,
                decision.vm_port,
                decision.vs_port,
            )
            self.link.send(
                p.VirtualPlaneMap(
                    vm_id=decision.vm_id,
                    vm_port=decision.vm_port,
                    vs_id=decision.vs_id,
                    vs_port=decision.vs_port,
                )
            )
        elif isinstance(decision, Drop):
            log.debug("dropped packet-in from %#x port %d: %s", dp.id, in_port, decision.reason)

    # --- OpenFlow output -------------------------------------------------------

    def _flows(self, dp_id: int, flows: list[of.FlowSpec], delete: bool = False) -> None:
        dp = self.datapaths.get(dp_id)
        if dp is None or (not self.synced and dp_id != self.settings.vs_dpid):
            return
        for flow in flows:
            dp.send_msg(_flow_mod(dp, flow, delete))

    def _group(self, dp_id: int, group: of.GroupSpec, command: str) -> None:
        dp = self.datapaths.get(dp_id)
        if dp is None or not self.synced:
            return
        dp.send_msg(_group_mod(dp, group, command))


def _serialize(dp, msg) -> bytes:
    dp.set_xid(msg)
    msg.serialize()
    return bytes(msg.buf)


def _port_is_up(ofp, port) -> bool:
    return not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)


def _port_name(port) -> str:
    name = port.name
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _is_ours(cookie: int) -> bool:
    return cookie & 0xFFFF << 48 == of.COOKIE_RF


def _parse_flow_stats_entry(buf, offset: int) -> tuple[str, str]:
    """(match, actions) text of one ofp_flow_stats entry, by os-ken (the slow path)."""
    st = ofproto_v1_3_parser.OFPFlowStats.parser(buf, offset)
    return _format_match(st.match), _format_instructions(st.instructions)


class _LazyFlowStatsReply(ofproto_v1_3_parser.OFPFlowStatsReply):
    """An OFPMP_FLOW reply whose ``body`` os-ken parses only when first read.

    os-ken parses every multipart reply in its receive loop, before any
    handler runs: for a full table that is a million OFPFlowStats with their
    matches and instructions (seconds, and hundreds of MB). Reconciliation
    reads the raw bytes (``msg.buf``, see reconcile.read_flow_stats); the
    statistics poll reads ``body`` as before.
    """

    @property
    def body(self):
        body = self.__dict__.get("_body")
        if body is None:
            body = []
            offset = ofproto_v1_3.OFP_MULTIPART_REPLY_SIZE
            while offset < self.msg_len:
                entry = ofproto_v1_3_parser.OFPFlowStats.parser(self.buf, offset)
                body.append(entry)
                offset += entry.length
            self._body = body
        return body

    @body.setter
    def body(self, value):
        self._body = value


# os-ken finds a message's event class by the message class's name.
_LazyFlowStatsReply.__name__ = _LazyFlowStatsReply.__qualname__ = "OFPFlowStatsReply"
_MP_HEAD = struct.Struct(ofproto_v1_3.OFP_MULTIPART_REPLY_PACK_STR)
_os_ken_multipart_reply = ofproto_v1_3_parser._MSG_PARSERS[ofproto_v1_3.OFPT_MULTIPART_REPLY]


def _multipart_reply(datapath, version, msg_type, msg_len, xid, buf):
    """os-ken's multipart reply parser, except that flow statistics stay raw."""
    type_, flags = _MP_HEAD.unpack_from(buf, ofproto_v1_3.OFP_HEADER_SIZE)
    if type_ != ofproto_v1_3.OFPMP_FLOW:
        return _os_ken_multipart_reply(datapath, version, msg_type, msg_len, xid, buf)
    msg = _LazyFlowStatsReply(datapath)
    msg.set_headers(version, msg_type, msg_len, xid)
    msg.set_buf(buf)
    msg.type = type_
    msg.flags = flags
    return msg


ofproto_v1_3_parser._MSG_PARSERS[ofproto_v1_3.OFPT_MULTIPART_REPLY] = _multipart_reply


def _format_match(match) -> str:
    parts = []
    for key, value in match.items():
        if isinstance(value, tuple):
            value = "/".join(str(v) for v in value)
        parts.append(f"{key}={str(value).lower()}")
    return ",".join(sorted(parts))


def _format_instructions(instructions) -> str:
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


def _format_group(group) -> str:
    """A group (mod or desc stats entry) as comparable text: type and buckets."""
    kind = {0: "all", 1: "select", 2: "indirect", 3: "ff"}.get(group.type, str(group.type))
    buckets = ";".join(f"w={b.weight}:" + _format_instructions([b]) for b in group.buckets)
    return f"{kind}[{buckets}]"


def _flow_keys(entry: p.FibEntry) -> list[tuple]:
    return [f.key for f in of.fib_flows(entry)]


def _actions(dp, actions: tuple[of.Action, ...]) -> tuple[list, list]:
    """Returns (apply actions, goto instructions)."""
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    apply: list = []
    goto: list = []
    for a in actions:
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
        elif isinstance(a, of.Goto):
            goto.append(parser.OFPInstructionGotoTable(a.table))
    return apply, goto


def _flow_mod(dp, flow: of.FlowSpec, delete: bool):
    parser = dp.ofproto_parser
    ofp = dp.ofproto
    match = parser.OFPMatch(**dict(flow.match))
    if delete:
        return _delete_strict(dp, flow.table, flow.priority, match)
    apply, goto = _actions(dp, flow.actions)
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


def _delete_strict(dp, table: int, priority: int, match):
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


def _group_mod(dp, group: of.GroupSpec, command: str):
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
        for actions, weight in group.buckets:
            apply, _ = _actions(dp, actions)
            buckets.append(
                parser.OFPBucket(
                    weight=weight if group.select else 0,
                    watch_port=ofp.OFPP_ANY,
                    watch_group=ofp.OFPG_ANY,
                    actions=apply,
                )
            )
    return parser.OFPGroupMod(dp, cmd, gtype, group.group_id, buckets)

"""rfproxy: the os-ken application, a shell around the proxy core.

It only moves events and messages. os-ken events and rfserver messages are
decoded (ofmsg.py) into calls of core.ProxyCore, made under one lock, and the
actions that come back are carried out: OpenFlow messages built by ofmsg.py,
messages to rfserver through ServerLink. Writes to switches are sent under
the lock, in the order the core gave them; messages to rfserver,
packet-outs and statistics requests after it (they may wait on a socket).

Two paths carry a full table and are shaped by it:

* FibMods, nearly all of rfserver's messages, skip the action list:
  fibwriter.py applies them to the core's desired FIB a chunk at a time
  under the lock, and the encoded chunk goes to the switch's FlowPipe
  without it (a slow switch must not stop packet relay).
* A reconciliation is planned by the core and written by a thread of its own
  (``_reconcile_worker``): writing a full table waits for the switch, and
  the barrier replies come through os-ken's event loop, which must not wait.

Lock order: a switch's ``pipe.producer`` before ``self._lock``. A
reconciliation holds the producer from its diff until its last write, so
FibMods and NextHopMods for that switch, which take it first too, wait and
neither overtake it nor are overtaken.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from routeflow.proxy import actions as act
from routeflow.proxy import fibwriter, ofmsg, reconcile
from routeflow.proxy import openflow as of
from routeflow.proxy.flowpipe import FlowPipe
from routeflow.proxy.serverlink import ServerLink
from routeflow.proxy.settings import ProxySettings
from routeflow.rflib import logs
from routeflow.rflib import protocol as p

log = logging.getLogger("routeflow.proxy")


#: Carried out after the lock is released: they may wait on a socket.
_LATER = (act.PacketOut, act.RequestFlowStats)


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

    def __init__(self, *args, settings: ProxySettings, **kwargs):
        """``settings`` comes the way os-ken hands its contexts to apps (see main.py)."""
        super().__init__(*args, **kwargs)
        self.settings = settings
        ofmsg.install_flow_stats_parser()  # reconciliation reads flow statistics raw
        self._lock = threading.RLock()
        self.core = settings.make_core()
        #: Messages for rfserver, in the order the core produced them (appended under
        #: ``self._lock``), sent after it is released (see _flush_outbox).
        self._outbox: collections.deque[list[p.Message]] = collections.deque()
        self._outbox_lock = threading.Lock()
        #: Per physical switch: barrier-paced, bounded writing of flow-mods.
        self._pipes: dict[int, FlowPipe] = {}
        self._stats_parts: dict[int, list] = {}
        self._closing = threading.Event()
        self.link = ServerLink(
            settings.server,
            self.server_hello,
            self.server_message_handler,
            secret=settings.secret,
            ssl_context=settings.ssl_context,
        )
        self._now: dict[type, Callable] = {
            act.SendRole: self._send_role,
            act.WriteFlows: self._write_flows,
            act.WriteGroup: lambda a: self._send(a.dp_id, ofmsg.group_mod, a.group, a.command),
            act.DeleteFlow: lambda a: self._send(
                a.dp_id, ofmsg.delete_strict_raw, a.table, a.priority, a.match
            ),
            act.Barrier: lambda a: self._send(a.dp_id, ofmsg.barrier_request),
            act.OpenPipe: self._open_pipe,
            act.ClosePipe: self._close_pipe,
            act.ReadSwitch: self._read_switch,
            act.StartStream: self._start_stream,
            act.Notice: lambda a: log.log(a.level, a.text, *a.args, extra=dict(a.ids)),
        }

    def start(self):
        super().start()
        self.link.start()
        if self.settings.stats_interval > 0:
            self._stats_thread = hub.spawn(self._poll_stats)
        if self.settings.discovery_interval > 0:
            self._discovery_thread = hub.spawn(self._discover)
        log.info(
            "rfproxy ct_id=%d replica %s, virtual switch dpid=%#x, rfserver %s",
            self.settings.ct_id,
            self.core.replica,
            self.settings.vs_dpid,
            self.settings.server,
        )

    def close(self):
        self._closing.set()
        self.link.stop()

    # --- carrying out the core's actions ------------------------------------------------

    def _handle(self, call: Callable[..., list[act.Action]], *args) -> None:
        """Call the core under the lock; carry out what it returns."""
        with self._lock:
            later = self._do(call(*args))
        self._after(later)
        self._flush_outbox()

    def _do(self, actions: list[act.Action]) -> list[act.Action]:
        """Carry out the actions that may run under the lock; return the others.

        Messages for rfserver are queued in the order the core produced them, to be
        sent once the lock is released (a send may wait for rfserver)."""
        later = []
        msgs: list[p.Message] = []
        for a in actions:
            if isinstance(a, act.ToServer):
                msgs.extend(a.messages)
            elif isinstance(a, _LATER):
                later.append(a)
            else:
                self._now[type(a)](a)
        if msgs:
            self._outbox.append(msgs)
        return later

    def _flush_outbox(self) -> None:
        """Send what the core has produced for rfserver, oldest first, whichever thread
        produced it.

        Each thread used to send its own messages after releasing the lock, so two
        threads could send in the opposite order to the one the core produced them in:
        a switch's link table, computed by a discovery tick just before a probe's
        sighting brought a link up, then reached rfserver after that link's up report
        and took it down again, for good (rfproxy only renews a link it knows). Seen
        as 17 of 86 links missing for minutes on a 44-switch backbone.
        """
        with self._outbox_lock:
            while self._outbox:
                self.link.send_many(self._outbox.popleft())

    def _after(self, actions: list[act.Action]) -> None:
        for a in actions:
            if (dp := self.core.switches.get(a.dp_id)) is None:
                continue  # gone since the lock was released
            elif isinstance(a, act.PacketOut):
                dp.send_msg(ofmsg.packet_out(dp, a.port, a.frame))
            elif isinstance(a, act.RequestFlowStats):
                try:
                    dp.send_msg(dp.ofproto_parser.OFPFlowStatsRequest(dp, table_id=a.table))
                except Exception:  # a switch leaving mid-request is not our problem
                    log.debug("flow stats request to %#x failed", a.dp_id)

    def _send(self, dp_id: int, build: Callable, *args) -> None:
        dp = self.core.switches[dp_id]
        dp.send_msg(build(dp, *args))

    def _send_role(self, a: act.SendRole) -> None:
        """OFPT_ROLE_REQUEST with this replica's role; OVS demotes the previous master."""
        try:
            self._send(a.dp_id, ofmsg.role_request, a.master, a.generation)
        except Exception:  # a switch leaving mid-request is handled by its DEAD event
            log.warning("role request to switch %#x failed", a.dp_id)

    def _write_flows(self, a: act.WriteFlows) -> None:
        dp = self.core.switches[a.dp_id]
        for flow in a.flows:
            dp.send_msg(ofmsg.flow_mod(dp, flow, a.delete))

    def _open_pipe(self, a: act.OpenPipe) -> None:
        self._close_pipe(a)
        dp = self.core.switches[a.dp_id]
        self._pipes[a.dp_id] = FlowPipe(
            dp.send,
            window=self.settings.pipe_window,
            depth=self.settings.pipe_depth,
            name=f"switch {a.dp_id:#x}",
        )

    def _close_pipe(self, a: act.OpenPipe | act.ClosePipe) -> None:
        pipe = self._pipes.pop(a.dp_id, None)
        if pipe is not None:
            pipe.close()

    def _read_switch(self, a: act.ReadSwitch) -> None:
        dp = self.core.switches[a.dp_id]
        flows, groups = ofmsg.switch_state_requests(dp)
        self.core.read_started(a.dp_id, flows.xid, groups.xid)
        dp.send_msg(flows)
        dp.send_msg(groups)

    # --- rfserver session ---------------------------------------------------------------

    def server_hello(self) -> list[p.Message]:
        with self._lock:
            return self.core.hello()

    def server_message_handler(self, msg: p.Message) -> None:
        if isinstance(msg, p.FibMod):
            self._fib(msg)  # takes the lock per chunk; may wait for the switch without it
            return
        if isinstance(msg, p.NextHopMod):
            log.debug(
                "NextHopMod %s dp %#x id %d: %s",
                msg.mod.name,
                msg.dp_id,
                msg.nexthop_id,
                msg.buckets,
                extra=logs.ids(dp_id=msg.dp_id),
            )
            # Like a FibMod, it waits while a reconciliation streams to the switch
            # (the pipe's producer lock; taken before the proxy's lock, as there).
            with self._lock:
                pipe = self._pipes.get(msg.dp_id) if self.core.writes(msg.dp_id) else None
            with pipe.producer if pipe is not None else contextlib.nullcontext():
                self._handle(self.core.server_message, msg)
            return
        self._handle(self.core.server_message, msg)

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
            extra=logs.ids(dp_id=msg.dp_id),
        )
        with self._lock:
            pipe = self._pipes.get(msg.dp_id) if self.core.writes(msg.dp_id) else None
            dp = self.core.switches.get(msg.dp_id)

        def slow(spec: of.FlowSpec, delete: bool) -> bytes | None:
            return None if pipe is None else ofmsg.serialize(dp, ofmsg.flow_mod(dp, spec, delete))

        def group_add(spec: of.GroupSpec) -> bytes | None:
            return None if pipe is None else ofmsg.serialize(dp, ofmsg.group_mod(dp, spec, "add"))

        state = functools.partial(self.core.datapath, msg.dp_id)
        chunks = fibwriter.fib_chunks(state, msg, slow, group_add=group_add, lock=self._lock)
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

    # --- switches -----------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_guarded
    def switch_features_handler(self, ev):
        dp = ev.msg.datapath
        # os-ken 4 runs each application's event loop on its own thread: its
        # own features handler (which sets dp.id) may not have run yet.
        if dp.id is None:
            dp.id = ev.msg.datapath_id
        self._handle(self.core.switch_connected, dp.id, dp)
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    @_guarded
    def port_desc_handler(self, ev):
        dp = ev.msg.datapath
        ports = [ofmsg.port_desc(dp.ofproto, port) for port in ev.msg.body]
        self._handle(self.core.ports_described, dp.id, ports)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_guarded
    def port_status_handler(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        reason = ofmsg.port_reason(ofp, msg.reason)
        self._handle(self.core.port_status, msg.datapath.id, reason, ofmsg.port_desc(ofp, msg.desc))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_guarded
    def state_change_handler(self, ev):
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER and dp.id is not None:
            self._handle(self.core.switch_left, dp.id, dp)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_guarded
    def barrier_reply_handler(self, ev):
        pipe = self._pipes.get(ev.msg.datapath.id)
        if pipe is not None:
            pipe.barrier_reply(ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @_guarded
    def role_reply_handler(self, ev):
        self._do([ofmsg.role_reply_notice(ev.msg, self.core.replica)])

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_guarded
    def error_handler(self, ev):
        c = self.core
        self._do([ofmsg.error_notice(ev.msg, c.replica, c.role, c.generation)])

    # --- reconciliation -----------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    @_guarded
    def group_desc_handler(self, ev):
        msg = ev.msg
        dp = msg.datapath
        groups = {g.group_id: ofmsg.format_group(g) for g in msg.body}
        more = bool(msg.flags & dp.ofproto.OFPMPF_REPLY_MORE)
        self._handle(self.core.group_reply, dp.id, msg.xid, groups, more)

    def _start_stream(self, a: act.StartStream) -> None:
        threading.Thread(
            target=self._reconcile_worker,
            args=(a.stream, a.read, self._pipes.get(a.stream.dp_id)),
            name=f"reconcile {a.stream.dp_id:#x}",
            daemon=True,  # a stopping rfproxy does not wait for a switch
        ).start()

    def _reconcile_worker(self, stream: act.Stream, read: act.SwitchRead, pipe) -> None:
        """Write the core's plan for the switch: the os-ken part, the raw part, stale groups.

        Holding the pipe's producer lock from the diff until the last write
        keeps FibMods and NextHopMods out meanwhile (rfproxy's rfserver link
        waits, as for a slow switch): the routes are written as the diff saw
        them, and no stale group can be re-added before it is deleted (an ADD
        of a group the switch still has fails, and its stale buckets stay).
        """
        try:
            if pipe is None:
                return
            with pipe.producer:
                with self._lock:
                    if not self.core.streaming(stream):
                        return
                    plan = self.core.plan(stream, read)
                    self._do(plan.first)
                # A chunk per window: at most ``depth`` windows are ever encoded.
                for data, count in reconcile.raw_chunks(plan.flows, chunk=pipe.window):
                    with self._lock:
                        if not self.core.streaming(stream):
                            log.info(
                                "switch %#x: reconciliation stopped",
                                stream.dp_id,
                                extra=logs.ids(dp_id=stream.dp_id),
                            )
                            return
                    pipe.put(data, count)
                pipe.flush()
                with self._lock:
                    if not self.core.streaming(stream):
                        return
                    self._do(self.core.finish(plan))
            self._do(plan.notices())
        except Exception:
            log.exception(
                "reconciliation of switch %#x failed",
                stream.dp_id,
                extra=logs.ids(dp_id=stream.dp_id),
            )
        finally:
            self._handle(self.core.stream_ended, stream)

    # --- statistics ---------------------------------------------------------------------

    def _poll_stats(self) -> None:
        """Ask every physical switch for its flows; replies become DatapathStats."""
        while not self._closing.is_set():
            hub.sleep(self.settings.stats_interval)
            self._handle(self.core.poll_stats)

    def _discover(self) -> None:
        """Probe the links every discovery interval (the core ages them with this clock)."""
        while not self._closing.is_set():
            hub.sleep(self.settings.discovery_interval)
            try:
                self._handle(self.core.discovery_tick, time.monotonic())
            except Exception:  # a switch leaving mid-probe must not end discovery
                log.exception("link discovery tick failed; continuing")

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_guarded
    def flow_stats_handler(self, ev):
        msg = ev.msg
        dp = msg.datapath
        more = msg.flags & dp.ofproto.OFPMPF_REPLY_MORE
        with self._lock:
            read = self.core.flow_reply(dp.id, msg.xid)
            if read is not None:
                # Raw: os-ken's objects for a full table are what made a
                # restart slow (see reconcile.read_flow_stats).
                reconcile.read_flow_stats(
                    msg.buf,
                    dp.ofproto.OFP_MULTIPART_REPLY_SIZE,
                    msg.msg_len,
                    read.actual,
                    ofmsg.parse_flow_stats_entry,
                )
                if not more:
                    self._do(self.core.flows_read(dp.id))
                return
        parts = self._stats_parts.setdefault(dp.id, [])
        parts.extend(msg.body)
        if more:
            return
        del self._stats_parts[dp.id]
        self._handle(self.core.stats_report, dp.id, [ofmsg.flow_stat(st) for st in parts])

    # --- relay --------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_guarded
    def packet_in_handler(self, ev):
        msg = ev.msg
        try:
            in_port = msg.match["in_port"]
            frame = bytes(msg.data)
        except (KeyError, TypeError):
            return
        self._handle(self.core.packet_in, msg.datapath.id, in_port, frame, time.monotonic())

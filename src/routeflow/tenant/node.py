"""The tenant node agent: an os-ken application, a shell around ``nodecore.NodeCore``.

It only moves events and messages, as rfproxy's shell does: the server link
(rfproxy's threaded ``ServerLink``), the node's br-int (OpenFlow 1.3) and its
OVSDB (``ovs-vsctl``, re-read on every port-status event) become calls of the
core, made under one lock; the actions that come back are carried out in order.
How flows look on the wire is the flow codec's business (``FlowCodec``), so the
shell never builds a match or an action itself.

On every switch connect the agent first reads the switch's own flows (flow
stats filtered by the codec's cookie) and hands them to the core: a restart
writes only what differs, never a flush.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.ofproto import ofproto_v1_3

from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import protocol as p
from routeflow.tenant import announce
from routeflow.tenant import vifs as vifs_mod
from routeflow.tenant.nodecore import (
    Action,
    Announce,
    Compiler,
    DhcpReply,
    InstallFlows,
    NodeCore,
    SendToServer,
)

log = logging.getLogger("routeflow.tenant.node")


class FlowCodec(Protocol):
    """Flows <-> OpenFlow for one pipeline: the compiler's flows must round-trip."""

    cookie: int  # flow stats are read for (cookie & cookie_mask) == cookie
    cookie_mask: int

    def from_stats(self, stats: Iterable[Any]) -> frozenset[Hashable]: ...

    def flow_mods(
        self, datapath: Any, add: frozenset[Hashable], delete: frozenset[Hashable]
    ) -> list[Any]: ...


@dataclass
class NodeSettings:
    name: str
    tunnel_ip: str
    server: str
    compile: Compiler[Any]
    codec: FlowCodec
    ovsdb: str = ""  # ovs-vsctl --db=... (empty: the default database)
    secret: bytes | None = None
    gateway: bool = False
    external_ofport: int = 0  # a gateway node's external port on br-int
    #: bgp mode: the external port's uplink (tenant/nat.py) and the file the node's
    #: BGP speaker relay follows (tenant/announce.py).
    uplink: Any = None
    announce_file: str = ""
    #: How often the external next hops are looked at (extarp: an unanswered request is
    #: repeated after 0.1 s, then backs off; the core keeps the hops per model).
    arp_interval: float = 0.1
    #: Makes the compiler's incremental form (nodecore.Incremental), or None.
    incremental: Callable[[], Any] | None = None
    ovs_vsctl: tuple[str, ...] = ("ovs-vsctl",)
    counters: dict[str, int] = field(default_factory=dict)


class TenantNode(app_manager.OSKenApp):  # type: ignore[misc]
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, settings: NodeSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.core: NodeCore[Any] = NodeCore(
            name=settings.name,
            tunnel_ip=settings.tunnel_ip,
            gateway=settings.gateway,
            external_ofport=settings.external_ofport,
            uplink=settings.uplink,
            compile=settings.compile,
            incremental=settings.incremental() if settings.incremental else None,
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._dp: Any = None
        #: Barrier xid -> binding reports sent once the switch answers it.
        self._after_barrier: dict[int, list[p.Message]] = {}
        self._stats: list[Any] = []
        self.link = ServerLink(
            settings.server,
            self._server_hello,
            self._server_message,
            secret=settings.secret,
        )

    def start(self) -> Any:
        thread = super().start()
        self._read_vifs()
        self.link.start()
        if self.settings.gateway and self.settings.external_ofport:
            threading.Thread(target=self._arp_loop, name="tenant-arp", daemon=True).start()
        return thread

    def close(self) -> None:
        self._stop.set()
        self.link.stop()
        super().close()

    def _arp_loop(self) -> None:
        """Rule 5's clock: ask for the external next hops (the core says which, when)."""
        while not self._stop.wait(self.settings.arp_interval):
            try:
                self._handle(self.core.arp_tick, time.monotonic())
            except Exception:  # never let the timer die
                log.exception("external ARP tick failed")

    # --- plumbing -----------------------------------------------------------

    def _handle(self, call: Callable[..., list[Action[Any]]], *args: Any) -> None:
        with self._lock:
            actions = call(*args)
            dp = self._dp
            later: list[Action[Any]] = []
            barrier: int | None = None
            for action in actions:
                if isinstance(action, InstallFlows):
                    if dp is None:  # lost just now: the next connect reads and diffs again
                        log.info("no switch: +%d -%d unsent", len(action.add), len(action.delete))
                    else:
                        for msg in self.settings.codec.flow_mods(dp, action.add, action.delete):
                            dp.send_msg(msg)
                        request = dp.ofproto_parser.OFPBarrierRequest(dp)
                        dp.set_xid(request)
                        dp.send_msg(request)
                        barrier = request.xid
                        log.info("flows: +%d -%d", len(action.add), len(action.delete))
                else:
                    later.append(action)
            if barrier is not None:
                # A port is reported plugged (ACTIVE) once the switch has its flows, not
                # when they are merely queued: else a VM's first DHCP request, sent on
                # ACTIVE, could meet a switch without them and wait for the client's retry.
                def plugged(a: Action[Any]) -> bool:
                    return (
                        isinstance(a, SendToServer)
                        and isinstance(a.msg, p.NodeBinding)
                        and a.msg.plugged
                    )

                held = [a.msg for a in later if isinstance(a, SendToServer) and plugged(a)]
                if held:
                    self._after_barrier.setdefault(barrier, []).extend(held)
                    later = [a for a in later if not plugged(a)]
        for action in later:
            if isinstance(action, SendToServer):
                self.link.send(action.msg)
            elif isinstance(action, Announce):
                if self.settings.announce_file:
                    try:
                        announce.write_state(
                            self.settings.announce_file, action.prefixes, action.next_hop
                        )
                    except OSError as exc:
                        log.warning("cannot write %s: %s", self.settings.announce_file, exc)
                log.info("announce: %s", " ".join(sorted(action.prefixes)) or "nothing")
            elif isinstance(action, DhcpReply) and dp is not None:
                parser = dp.ofproto_parser
                ofp = dp.ofproto
                dp.send_msg(
                    parser.OFPPacketOut(
                        datapath=dp,
                        buffer_id=ofp.OFP_NO_BUFFER,
                        in_port=ofp.OFPP_CONTROLLER,
                        actions=[parser.OFPActionOutput(action.ofport)],
                        data=action.frame,
                    )
                )

    def _read_vifs(self) -> None:
        cmd = [*self.settings.ovs_vsctl]
        if self.settings.ovsdb:
            cmd.append(f"--db={self.settings.ovsdb}")
        cmd += vifs_mod.COMMAND
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("cannot read VIFs from OVSDB: %s", exc)
            return
        vifs = vifs_mod.parse(out.stdout)
        self._handle(self.core.vifs_read, vifs.ports, vifs.tunnel_ofport)

    # --- server -------------------------------------------------------------

    def _server_hello(self) -> list[p.Message]:
        with self._lock:
            hello = self.core.hello()
            bindings = [a.msg for a in self.core.server_connected() if isinstance(a, SendToServer)]
        return [hello, *bindings]

    def _server_message(self, msg: p.Message) -> None:
        if isinstance(msg, p.TenantChanges):
            log.log(
                logging.INFO if msg.full else logging.DEBUG,
                "model %s at revision %d",
                "full state" if msg.full else "delta",
                msg.revision,
            )
            self._handle(self.core.changes, msg, time.monotonic())
        elif isinstance(msg, p.Error):
            log.warning("server says %s: %s", msg.code, msg.detail)

    # --- switch -------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)  # type: ignore[misc]
    def switch_features_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        parser = dp.ofproto_parser
        ofp = dp.ofproto
        with self._lock:
            if self._dp is not None and self._dp.id != dp.id:
                log.warning("ignoring a second switch %#x (serving %#x)", dp.id, self._dp.id)
                return
            self._dp = dp
            self._stats = []
        log.info("switch %s connected; reading its VIFs and flows", dp.address)
        # Port-status events only tell of changes after this connect: VIFs plugged while
        # the switch had no controller are read now, or they would never be bound.
        self._read_vifs()
        codec = self.settings.codec
        read_flows = getattr(codec, "read_flows", None)
        if read_flows is not None:  # the codec reads the switch itself (ovs-ofctl)
            try:
                flows = read_flows()
            except Exception as exc:
                log.error("cannot read the switch's flows, writing nothing: %s", exc)
                return
            log.info("switch holds %d of our flows", len(flows))
            self._handle(self.core.switch_connected, flows)
            return
        dp.send_msg(
            parser.OFPFlowStatsRequest(
                dp,
                0,
                ofp.OFPTT_ALL,
                ofp.OFPP_ANY,
                ofp.OFPG_ANY,
                codec.cookie,
                codec.cookie_mask,
                parser.OFPMatch(),
            )
        )

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)  # type: ignore[misc]
    def flow_stats_handler(self, ev: Any) -> None:
        msg = ev.msg
        with self._lock:
            if msg.datapath is not self._dp:
                return
            self._stats.extend(msg.body)
            if msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
                return
            stats, self._stats = self._stats, []
        flows = self.settings.codec.from_stats(stats)
        log.info("switch holds %d of our flows", len(flows))
        self._handle(self.core.switch_connected, flows)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)  # type: ignore[misc]
    def port_status_handler(self, ev: Any) -> None:
        self._read_vifs()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])  # type: ignore[misc]
    def barrier_reply_handler(self, ev: Any) -> None:
        with self._lock:
            held = self._after_barrier.pop(ev.msg.xid, [])
        if held:
            self.link.send_many(held)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])  # type: ignore[misc]
    def state_change_handler(self, ev: Any) -> None:
        if ev.state == DEAD_DISPATCHER and ev.datapath is self._dp:
            with self._lock:
                self._dp = None
                held = [m for msgs in self._after_barrier.values() for m in msgs]
                self._after_barrier.clear()
            if held:  # no barrier reply will come: report them (the flows follow on connect)
                self.link.send_many(held)
            self._handle(self.core.switch_lost)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)  # type: ignore[misc]
    def packet_in_handler(self, ev: Any) -> None:
        msg = ev.msg
        in_port = msg.match.get("in_port")
        if in_port is None or msg.datapath is not self._dp:
            return
        frame = bytes(msg.data)
        if frame[12:14] == b"\x08\x06":  # ARP: a reply from an external next hop
            self._handle(self.core.arp_reply, frame)
            return
        self._handle(self.core.dhcp_request, in_port, frame, time.monotonic())

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])  # type: ignore[misc]
    def error_handler(self, ev: Any) -> None:
        msg = ev.msg
        log.warning("switch error type=%s code=%s", msg.type, msg.code)

"""The I/O shell around KernelView: netlink in, raw frames and ARP/ND pokes out.

Why raw netlink sockets (parsed by pyroute2's marshal) rather than an IPRoute
object: with pyroute2 0.9.7 the synchronous IPRoute runs an asyncio loop per
call, reports a receive-buffer overflow only as an error queued behind the
data, cannot be woken up to stop, never flags an interrupted dump
(NLM_F_DUMP_INTR) and knows no nexthop objects (RTM_*NEXTHOP, RTA_NH_ID).
All of those matter here: an overflow must trigger a full resync, and FRR 8
installs routes through nexthop objects. So one socket is subscribed to the
multicast groups and read by a dedicated thread, and a second one performs
dumps. Route messages are decoded by fastnl.py (a full table is a million of
them); pyroute2 decodes everything else. A reload streams the dump into a
fresh KernelView rather than holding every decoded message at once.

Order on start and after an overflow: subscribe first, then dump links,
nexthops, routes and neighbours (IPv4, then IPv6), so nothing can slip between dump and
subscription. Notifications queued during the dump are older than some of
what it returned, and are replayed after it; that is harmless because each
carries the full state of its object (and KernelView drops routes on links
that the dump shows down). After an overflow the queue is emptied before the
dump, because the kernel reports ENOBUFS again only once the queue was empty.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pyroute2.netlink import (
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    nla_base_string,
    nlmsg,
)
from pyroute2.netlink.rtnl import (
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
)
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from routeflow.client import fastnl
from routeflow.client.kernel import KernelView
from routeflow.client.mmsg import MultiReader
from routeflow.rflib.mapping import encode_mapping_frame
from routeflow.rflib.protocol import Message

__all__ = [
    "NetlinkWatcher",
    "RtnlMarshal",
    "enter_netns",
    "get_hwaddr",
    "nhmsg",
    "poke",
    "rtmsg_nh",
    "send_mapping_packet",
]

log = logging.getLogger("routeflow.client")

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33
NLM_F_DUMP_INTR = 0x10
RTNLGRP_NEXTHOP = 32
RTM_NEWNEXTHOP = 104
RTM_DELNEXTHOP = 105
RTM_GETNEXTHOP = 106
SIOCGIFHWADDR = 0x8927
CLONE_NEWNET = 0x40000000

#: Room for a big BGP burst while the thread is busy folding the previous one.
#: A route notification costs the kernel about 830 bytes of this budget (it
#: doubles the number given), so this holds about 600k of them: a full table
#: installed at kernel speed (about 300k routes/s) while this side folds
#: about 200k/s. It is a limit, not an allocation; an overflow still only
#: costs a reload (see below).
DEFAULT_RCVBUF = 256 * 1024 * 1024
_RECV_SIZE = 1 << 20
_NLHDR = struct.Struct("=IHHII")
#: Datagrams read before the view is updated and the daemon woken up (at most:
#: recvmmsg calls of MultiReader.slots each).
_READ_BATCH = 512


# --- message classes pyroute2 0.9.7 lacks ---------------------------------------


class rtmsg_nh(rtmsg):
    """rtmsg that also decodes the attributes after RTA_EXPIRES, RTA_NH_ID among them."""

    __slots__ = ()
    nla_map = (
        *rtmsg.nla_map,
        ("RTA_PAD", "hex"),
        ("RTA_UID", "uint32"),
        ("RTA_TTL_PROPAGATE", "uint8"),
        ("RTA_IP_PROTO", "uint8"),
        ("RTA_SPORT", "be16"),
        ("RTA_DPORT", "be16"),
        ("RTA_NH_ID", "uint32"),
    )


class nhmsg(nlmsg):
    """Nexthop object messages (linux/nexthop.h); NHA_GROUP decodes to [{id, weight}]."""

    __slots__ = ()
    prefix = "NHA_"
    fields = (
        ("family", "B"),
        ("scope", "B"),
        ("protocol", "B"),
        ("resvd", "B"),
        ("flags", "I"),
    )
    nla_map = (
        (0, "NHA_UNSPEC", "none"),
        (1, "NHA_ID", "uint32"),
        (2, "NHA_GROUP", "nh_group"),
        (3, "NHA_GROUP_TYPE", "uint16"),
        (4, "NHA_BLACKHOLE", "flag"),
        (5, "NHA_OIF", "uint32"),
        (6, "NHA_GATEWAY", "target"),  # IPv4 or IPv6 after the message family
        (7, "NHA_ENCAP_TYPE", "uint16"),
        (8, "NHA_ENCAP", "hex"),
        (9, "NHA_GROUPS", "flag"),
        (10, "NHA_MASTER", "uint32"),
        (11, "NHA_FDB", "flag"),
    )

    class nh_group(nla_base_string):
        """struct nexthop_grp[]: id u32, weight-1 as u8 + (newer kernels) high byte u16."""

        __slots__ = ()
        _entry = struct.Struct("=IBBH")

        def encode(self) -> None:
            data = b""
            for member in self.value:
                raw = int(member.get("weight", 1)) - 1
                data += self._entry.pack(int(member["id"]), raw & 0xFF, 0, raw >> 8)
            self["value"] = data
            nla_base_string.encode(self)

        def decode(self) -> None:
            nla_base_string.decode(self)
            data = self["value"]
            size = self._entry.size
            members = []
            for off in range(0, len(data) - len(data) % size, size):
                nhid, low, _resvd, high = self._entry.unpack_from(data, off)
                members.append({"id": nhid, "weight": ((high << 8) | low) + 1})
            self.value = members


class RtnlMarshal(MarshalRtnl):
    """pyroute2's rtnetlink marshal plus nexthop objects and RTA_NH_ID."""

    msg_map = {
        **MarshalRtnl.msg_map,
        24: rtmsg_nh,  # RTM_NEWROUTE
        25: rtmsg_nh,  # RTM_DELROUTE
        RTM_NEWNEXTHOP: nhmsg,
        RTM_DELNEXTHOP: nhmsg,
    }

    def fix_message(self, msg: Any) -> None:
        kind = msg["header"]["type"]
        if kind == RTM_NEWNEXTHOP:
            msg["event"] = "RTM_NEWNEXTHOP"
        elif kind == RTM_DELNEXTHOP:
            msg["event"] = "RTM_DELNEXTHOP"
        else:
            super().fix_message(msg)


# --- sockets ------------------------------------------------------------------------


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the network namespace ``name``."""
    path = name if "/" in name else f"/run/netns/{name}"
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)


def open_event_socket(rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
    """A netlink socket subscribed to links, IPv4 and IPv6 routes, neighbours and nexthops.

    Not to addresses: the view learns the router's own addresses from their
    local-table routes, which come and go with them (notified, for IPv6 with
    the address's own device), so address events would only cost wake-ups.
    RTMGRP_NEIGH carries both ARP and ND.
    """
    sock = _netlink_socket()
    try:
        try:  # root may exceed net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # Overflow must be reported (ENOBUFS), never silently swallowed.
        sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 0)
        sock.bind((0, RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_NEXTHOP)
        except OSError as err:
            log.warning("kernel has no nexthop objects notifications: %s", err)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class DumpInterrupted(Exception):
    pass


class Dumper:
    """Netlink dumps on their own socket, retried while the kernel flags them inconsistent."""

    #: (message type, request body) per dump, in the order the view wants them.
    REQUESTS = (
        ("links", RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0)),
        ("nexthops", RTM_GETNEXTHOP, struct.pack("=BBBBI", 0, 0, 0, 0, 0)),
        ("routes", RTM_GETROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)),
        (
            "routes6",
            RTM_GETROUTE,
            struct.pack("=BBBBBBBBI", socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0),
        ),
        ("neighbours", RTM_GETNEIGH, struct.pack("=BxxxiHBB", socket.AF_INET, 0, 0, 0, 0)),
        ("neighbours6", RTM_GETNEIGH, struct.pack("=BxxxiHBB", socket.AF_INET6, 0, 0, 0, 0)),
    )

    def __init__(self, marshal: RtnlMarshal):
        self.marshal = marshal
        self.seq = int(time.monotonic()) & 0xFFFF
        self._buf = bytearray(_RECV_SIZE)

    def load_view(self, vm_id: int, attempts: int = 5) -> KernelView:
        """A fresh KernelView of the whole kernel state, fed as the dumps arrive.

        Nothing is buffered, so a full table costs its KernelView and not
        also a million decoded messages. Any interrupted dump restarts the
        whole load, so the view is always one consistent picture.
        """
        for attempt in range(1, attempts + 1):
            view = KernelView(vm_id)
            try:
                self.load(view.feed_many, 1)
                return view
            except DumpInterrupted:
                log.debug("kernel state changed during the dump (attempt %d), again", attempt)
        raise OSError(errno.EAGAIN, "dumps kept being interrupted")

    def load(self, sink: Callable[[list[Any]], None], attempts: int = 5) -> None:
        with _netlink_socket() as sock:
            sock.settimeout(10.0)  # a dump never pauses that long; do not hang forever
            sock.bind((0, 0))
            for name, kind, body in self.REQUESTS:
                self._dump(sock, name, kind, body, attempts, sink)

    def _dump(
        self,
        sock: socket.socket,
        name: str,
        kind: int,
        body: bytes,
        attempts: int,
        sink: Callable[[list[Any]], None],
    ) -> None:
        for attempt in range(1, attempts + 1):
            try:
                self._dump_once(sock, kind, body, sink)
                return
            except DumpInterrupted:
                if attempt == attempts:
                    raise
                log.debug("%s dump interrupted (attempt %d), retrying", name, attempt)
            except OSError as err:
                if kind == RTM_GETNEXTHOP and err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                    return  # kernel older than 5.3: no nexthop objects
                raise

    def _dump_once(
        self, sock: socket.socket, kind: int, body: bytes, sink: Callable[[list[Any]], None]
    ) -> None:
        """One dump; messages go to ``sink`` per received buffer (fastnl-decoded)."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        seq = self.seq
        header = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        sock.send(header + body)
        interrupted = False
        buf = self._buf
        while True:
            n = sock.recv_into(buf)
            off = 0
            batch: list[Any] = []
            while off + 16 <= n:
                length, mtype, flags, mseq, _pid = _NLHDR.unpack_from(buf, off)
                if length < 16 or off + length > n:
                    raise OSError(errno.EIO, "truncated netlink message in a dump")
                if mseq == seq:
                    if flags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if mtype == NLMSG_DONE:
                        sink(batch)
                        if interrupted:
                            raise DumpInterrupted()
                        return
                    if mtype == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", buf, off + 16)[0]
                        if code:
                            raise OSError(code, f"netlink dump failed: {os.strerror(code)}")
                    else:
                        batch += fastnl.parse(memoryview(buf)[off : off + length], self._parse_slow)
                off += (length + 3) & ~3
            sink(batch)

    def _parse_slow(self, data: bytes) -> list[Any]:
        return list(self.marshal.parse(data))


# --- the watcher ----------------------------------------------------------------------


class NetlinkWatcher:
    """Keeps a KernelView in step with the kernel from a dedicated thread.

    The asyncio side never touches netlink: it is woken through ``on_change``
    (called from the watcher thread; use ``loop.call_soon_threadsafe``) and
    then takes ``drain()`` (or ``snapshot()`` on connect), all under one lock.
    ``netns`` moves the watcher thread into that namespace (for tests; the
    daemon runs inside its VM's namespace already).
    """

    def __init__(
        self,
        vm_id: int,
        *,
        on_change: Callable[[], None] | None = None,
        rcvbuf: int = DEFAULT_RCVBUF,
        reconcile_delay: float = 1.0,
        netns: str | None = None,
    ):
        self.view = KernelView(vm_id)
        self.on_change = on_change
        self.rcvbuf = rcvbuf
        self.reconcile_delay = reconcile_delay
        self.netns = netns
        self.overflows = 0
        self.resyncs = 0
        #: Set if the watcher thread died: the view no longer follows the kernel.
        self.failed = False
        self._lock = threading.Lock()
        self._marshal = RtnlMarshal()
        self._dumper = Dumper(self._marshal)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # --- API for the daemon (any thread) ------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Subscribe, load the current state, and follow changes; raises if that fails."""
        if self._thread is not None:
            raise RuntimeError("watcher already started")
        self._thread = threading.Thread(target=self._run, name="rfclient-netlink", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("netlink watcher did not load the kernel state in time")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def drain(self) -> list[Message]:
        with self._lock:
            return self.view.drain()

    def snapshot(self) -> tuple[list[Message], dict[str, int]]:
        """Full state (pending deltas dropped) and its counts, taken atomically."""
        with self._lock:
            return self.view.snapshot(), self.view.counts()

    def unresolved_gateways(self) -> set[tuple[int, str]]:
        with self._lock:
            return self.view.unresolved_gateways()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return self.view.counts()

    # --- the thread -----------------------------------------------------------

    def _run(self) -> None:
        sock = None
        try:
            if self.netns:
                enter_netns(self.netns)
            sock = open_event_socket(self.rcvbuf)
            self._resync("start")
        except BaseException as err:
            self._error = err
            self._ready.set()
            if sock is not None:
                sock.close()
            return
        self._ready.set()
        try:
            self._loop(sock)
        except BaseException:
            self.failed = True
            log.exception("netlink watcher failed; the kernel is no longer followed")
            self._notify()
        finally:
            sock.close()

    def _loop(self, sock: socket.socket) -> None:
        buf = bytearray(_RECV_SIZE)
        reader = MultiReader(sock) if MultiReader.available() else None
        parse, parse_slow = fastnl.parse, self._parse_slow
        resync_at: float | None = None  # a full dump is due at that time
        reason = ""
        while not self._stopping:
            timeout = None
            if resync_at is not None:
                timeout = max(0.0, resync_at - time.monotonic())
            readable, _, _ = select.select([sock, self._wake_r], [], [], timeout)
            if self._stopping:
                return
            if sock in readable:
                msgs: list[Any] = []
                try:
                    if reader is None:
                        for _ in range(_READ_BATCH):
                            n = sock.recv_into(buf)
                            parse(buf, parse_slow, n, 0, msgs)
                    else:
                        slot, data = reader.slot, reader.buf
                        for _ in range(_READ_BATCH // reader.slots or 1):
                            start = 0
                            for size in reader.read():
                                parse(data, parse_slow, start + size, start, msgs)
                                start += slot
                except BlockingIOError:
                    pass
                except OSError as err:
                    # ENOBUFS: notifications were lost. Anything else (a datagram cut
                    # short, mmsg.Truncated, or the unexpected) loses one too; either
                    # way only a full reload can tell what the kernel holds.
                    if err.errno == errno.ENOBUFS:
                        self.overflows += 1
                        log.warning(
                            "netlink receive buffer overflowed (%d so far): "
                            "reloading the whole kernel state",
                            self.overflows,
                        )
                    else:
                        log.warning("netlink receive failed (%s): reloading the kernel state", err)
                    # The kernel reports an overflow only once until the queue has been
                    # emptied: discard what is queued (the dump supersedes it) so the
                    # next overflow, during or after the dump, is reported too.
                    _discard_queued(sock, buf)
                    resync_at = time.monotonic()
                    reason = "overflow" if err.errno == errno.ENOBUFS else "receive error"
                    msgs = []
                if msgs:
                    with self._lock:
                        self.view.feed_many(msgs)
                        changed = self.view.has_changes()
                        hint = self.view.take_reconcile_hint()
                        refusals = self.view.take_refusals()
                    for prefix, why in refusals.items():
                        log.warning("route %s refused: %s", prefix, why)
                    if hint and resync_at is None:
                        resync_at, reason = time.monotonic() + self.reconcile_delay, "reconcile"
                    if changed:
                        self._notify()
            if resync_at is not None and time.monotonic() >= resync_at:
                try:
                    self._resync(reason)
                    resync_at = None
                except OSError as err:
                    log.warning("reloading the kernel state failed (%s); retrying in 1 s", err)
                    resync_at = time.monotonic() + 1.0

    def _parse_slow(self, data: bytes) -> list[Any]:
        return list(self._marshal.parse(data))

    def _resync(self, reason: str) -> None:
        fresh = self._dumper.load_view(self.view.vm_id)
        with self._lock:
            self.view.adopt(fresh)
            changed = self.view.has_changes()
            counts = self.view.counts()
        self.resyncs += 1
        level = logging.DEBUG if reason == "reconcile" else logging.INFO
        log.log(
            level,
            "kernel state loaded (%s): %d ports, %d routes (%d pending), %d neighbours",
            reason,
            counts["ports"],
            counts["routes"],
            counts["pending"],
            counts["neighbours"],
        )
        if changed:
            self._notify()

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # e.g. the event loop is already closed during shutdown
            log.debug("on_change callback failed", exc_info=True)


def _discard_queued(sock: socket.socket, buf: bytearray, limit: int = 1_000_000) -> None:
    for _ in range(limit):
        try:
            sock.recv_into(buf)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno != errno.ENOBUFS:
                raise


# --- frames out --------------------------------------------------------------------


def get_hwaddr(ifname: str) -> str:
    """MAC of ``ifname`` in the current network namespace (OSError ENODEV if none)."""
    if not ifname or len(ifname) > 15 or "/" in ifname:
        raise OSError(errno.ENODEV, f"no such interface: {ifname!r}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        info = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()))
    return ":".join(f"{b:02x}" for b in info[18:24])


def send_mapping_packet(ifname: str, vm_id: int, vm_port: int) -> None:
    """Broadcast the mapping frame (see rflib.mapping) out of ``ifname``."""
    frame = encode_mapping_frame(get_hwaddr(ifname), vm_id, vm_port)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        s.send(frame)


def poke(gateway: str, ifname: str | None = None, port: int = 9) -> bool:
    """Send one UDP datagram (discard port) to ``gateway`` so the kernel resolves it.

    OSPF on point-to-point links only multicasts, so a next hop can stay
    unresolved forever unless some unicast traffic makes the kernel ask (ARP,
    or for IPv6 a neighbour solicitation). An IPv6 link-local gateway means
    nothing without its link, so ``ifname`` is also its scope. Returns False
    if the kernel refused (no route, link down...).
    """
    v6 = ":" in gateway
    with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        try:
            if ifname:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            if v6:
                scope = socket.if_nametoindex(ifname) if ifname else 0
                s.sendto(b"", (gateway, port, 0, scope))
            else:
                s.sendto(b"", (gateway, port))
        except OSError as err:
            log.debug("poke %s via %s failed: %s", gateway, ifname or "any", err)
            return False
    return True


def set_link_state(ifname: str, up: bool) -> None:
    """Set a VM interface administratively up or down (current namespace)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)
        if not index:
            raise ValueError(f"no interface {ifname}")
        ipr.link("set", index=index[0], state="up" if up else "down")

"""Barrier-paced pipelining of OpenFlow messages to one switch, with a bounded window.

Sending a million flow-mods one at a time and waiting for each (what
``ovs-ofctl add-flows`` does) runs at about 30k flows/s; writing them all at
once and hoping leaves the controller holding whatever the switch has not
read yet. The middle way: messages are written in windows of ``window``
messages, each closed by a barrier request, and at most ``depth`` windows may
be unacknowledged. The producer (rfproxy's rfserver link thread) blocks while
the switch is behind, so it stops reading from rfserver, whose writes then
wait on the socket: back-pressure all the way to rfclient, whose kernel view
coalesces whatever changes meanwhile. Memory stays bounded at about
``depth * window`` messages.

A barrier reply acknowledges its window (OpenFlow: everything before it has
been processed). Errors for messages of a window carry the window's xid, so
the log can say which window a rejected message belonged to.

Thread-safety: ``put`` and ``flush`` hold ``producer``, so two threads may
write (rfproxy's rfserver link and a reconciliation); a producer whose
messages must not interleave with another's (it computes them from state the
other changes) holds ``producer`` itself around computing and writing them.
``barrier_reply`` and ``close`` from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from routeflow.proxy.fastof import barrier_request

__all__ = ["DEFAULT_DEPTH", "DEFAULT_WINDOW", "FlowPipe"]

log = logging.getLogger("routeflow.proxy.flowpipe")

DEFAULT_WINDOW = 4096
DEFAULT_DEPTH = 3
#: Our barrier xids live in their own range, apart from os-ken's counter.
XID_BASE = 0xF0000000


class FlowPipe:
    def __init__(
        self,
        send: Callable[[bytes], object],
        *,
        window: int = DEFAULT_WINDOW,
        depth: int = DEFAULT_DEPTH,
        ack_timeout: float = 30.0,
        name: str = "",
    ) -> None:
        if window < 1 or depth < 1:
            raise ValueError("window and depth must be at least 1")
        self._send = send
        self.window = window
        self.depth = depth
        self.ack_timeout = ack_timeout
        self.name = name
        self._cond = threading.Condition()
        #: Held while a producer computes and writes a batch (see the module doc).
        self.producer = threading.RLock()
        self._pending = bytearray()
        self._pending_count = 0
        self._in_flight: dict[int, tuple[int, float]] = {}  # xid -> (messages, sent at)
        self._next = 0
        self.closed = False
        # statistics
        self.messages = 0
        self.windows = 0
        self.acked = 0
        self.stalls = 0  # times the producer had to wait for the switch
        self.timeouts = 0

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._in_flight)

    def put(self, data: bytes | bytearray | memoryview, count: int) -> None:
        """Queue ``count`` encoded messages; writes a window once one is full.

        May block until the switch acknowledges an earlier window.
        """
        if self.closed:
            return
        with self.producer:
            self._pending += data
            self._pending_count += count
            if self._pending_count >= self.window:
                self._emit()

    def flush(self) -> None:
        """Write whatever is queued, closed by a barrier (may block like put)."""
        with self.producer:
            if self._pending_count and not self.closed:
                self._emit()

    def barrier_reply(self, xid: int) -> bool:
        """The switch answered a barrier; True if it was one of ours."""
        with self._cond:
            entry = self._in_flight.pop(xid, None)
            if entry is None:
                return False
            self.acked += entry[0]
            self._cond.notify_all()
        return True

    def close(self) -> None:
        """The switch is gone: drop everything and release a waiting producer."""
        with self._cond:
            self.closed = True
            self._in_flight.clear()
            self._pending = bytearray()
            self._pending_count = 0
            self._cond.notify_all()

    def _emit(self) -> None:
        with self._cond:
            if len(self._in_flight) >= self.depth:
                self.stalls += 1
            while len(self._in_flight) >= self.depth and not self.closed:
                oldest = min(sent for _n, sent in self._in_flight.values())
                left = oldest + self.ack_timeout - time.monotonic()
                if left <= 0:
                    self.timeouts += 1
                    log.warning(
                        "%s: no barrier reply for %.0f s; not waiting for %d windows any more",
                        self.name or "switch",
                        self.ack_timeout,
                        len(self._in_flight),
                    )
                    self._in_flight.clear()
                    break
                self._cond.wait(left)
            if self.closed:
                return
            xid = XID_BASE + self._next
            self._next = (self._next + 1) % 0x0FFFFFFF
            count = self._pending_count
            self._in_flight[xid] = (count, time.monotonic())
        data = self._pending
        data += barrier_request(xid)
        self._pending = bytearray()
        self._pending_count = 0
        self.messages += count
        self.windows += 1
        self._send(bytes(data))

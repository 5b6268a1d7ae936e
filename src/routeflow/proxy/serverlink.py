"""rfproxy's connection to rfserver, on threads.

os-ken 4 runs its applications on native threads, not asyncio, so the proxy
cannot use rflib.ipc; it drives the same sans-IO codec from a blocking socket
on its own thread instead. That is the point of keeping the codec sans-IO, and
the session setup (``auth.ClientHandshake``) and the reconnect policy
(``reconnect.ReconnectPolicy``) too: rfclient's ReconnectingClient uses both.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from routeflow.rflib import codec
from routeflow.rflib.auth import AuthError, ClientHandshake
from routeflow.rflib.ipc import Address, UnixAddress, parse_addresses
from routeflow.rflib.protocol import Message
from routeflow.rflib.reconnect import ReconnectPolicy

log = logging.getLogger("routeflow.proxy.link")


class ServerLink:
    """Keeps one RFProtocol session to rfserver alive, reconnecting as ReconnectPolicy says.

    ``on_connect()`` returns the messages that describe the proxy's current
    state (controller register, ports of connected switches); they are sent
    first on every (re)connect, so a restarted rfserver rebuilds its view.
    ``on_message(msg)`` is called on the link thread for each received message.
    """

    def __init__(
        self,
        address: str,
        on_connect: Callable[[], Sequence[Message]],
        on_message: Callable[[Message], None],
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 3.0,
        secret: bytes | None = None,
        ssl_context=None,
    ) -> None:
        self.secret = secret
        self.ssl_context = ssl_context
        #: Tried in turn (a leader rfserver and its standby).
        self.addresses = parse_addresses(address)
        self.policy = ReconnectPolicy(
            len(self.addresses), min_backoff=min_backoff, max_backoff=max_backoff
        )
        self._on_connect = on_connect
        self._on_message = on_message
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="rf-server-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def send(self, msg: Message) -> bool:
        return self.send_many([msg])

    def send_many(self, msgs: Sequence[Message]) -> bool:
        """Send now if connected; otherwise drop (the next connect resends full state)."""
        if not msgs:
            return True
        data = codec.encode_many(msgs)
        with self._send_lock:
            sock = self._sock
            if sock is None:
                return False
            try:
                sock.sendall(data)
                return True
            except OSError as exc:
                log.warning("send to rfserver failed: %s", exc)
                return False

    @property
    def address(self) -> Address:
        return self.addresses[self.policy.current]

    def _connect_any(self) -> socket.socket:
        """One round over the addresses; raises the last error if none answers."""
        error: OSError | None = None
        for index in self.policy.order():
            try:
                sock = self._connect(self.addresses[index])
            except OSError as exc:
                log.debug("rfserver not reachable at %s: %s", self.addresses[index], exc)
                error = exc
                continue
            self.policy.answered(index)
            return sock
        assert error is not None
        raise error

    def _connect(self, a: Address) -> socket.socket:
        if isinstance(a, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(a.path)
        else:
            sock = socket.create_connection((a.host, a.port), timeout=5)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            try:
                sock = self.ssl_context.wrap_socket(sock, server_hostname="rfserver")
            except OSError:
                sock.close()
                raise
        return sock

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = self._connect_any()
            except OSError:
                self._stop.wait(self.policy.delay())
                continue
            log.info("connected to rfserver at %s", self.address)
            decoder = codec.FrameDecoder()
            try:
                early = self._set_up(sock, decoder)
            except (OSError, codec.ProtocolError, AuthError) as exc:  # ConnectionError too
                log.warning("rfserver session setup failed: %s", exc)
                sock.close()
                self.policy.ended(time.monotonic())
                self._stop.wait(self.policy.delay())
                continue
            self.connected.set()
            try:
                self._deliver(early)
                self._read_loop(sock, decoder)
            finally:
                self.connected.clear()
                with self._send_lock:
                    self._sock = None
                sock.close()
                self.policy.ended(time.monotonic())
            if not self._stop.is_set():
                self.reconnects += 1
                log.warning("lost rfserver connection; reconnecting")
                self._stop.wait(self.policy.delay())

    #: How long rfserver may take to challenge our hello.
    HANDSHAKE_TIMEOUT = 10.0

    def _set_up(self, sock: socket.socket, decoder: codec.FrameDecoder) -> list[Message]:
        """Hello (and the answer to the challenge), then the rest of ``on_connect()``.

        Returns what rfserver sent after its challenge, for ``on_message``.
        """
        hello, *rest = self._on_connect()
        handshake = ClientHandshake(hello, self.secret)
        first = handshake.start()
        early: list[Message] = []
        if not handshake.done:
            sock.sendall(codec.encode_many(first))
            first = []
            sock.settimeout(self.HANDSHAKE_TIMEOUT)
            try:
                while not handshake.done:
                    while not early:
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError(
                                "rfserver closed the connection during authentication"
                            )
                        early = decoder.feed(data)
                    sock.sendall(codec.encode_many(handshake.receive(early.pop(0))))
            finally:
                sock.settimeout(None)
        with self._send_lock:
            sock.sendall(codec.encode_many([*first, *rest]))
            self._sock = sock
        self.policy.set_up(time.monotonic())
        return early

    def _deliver(self, msgs: Sequence[Message]) -> None:
        for msg in msgs:
            try:
                self._on_message(msg)
            except Exception:
                log.exception("handling %s failed", type(msg).__name__)

    def _read_loop(self, sock: socket.socket, decoder) -> None:
        while not self._stop.is_set():
            try:
                data = sock.recv(262144)
            except OSError:
                return
            if not data:
                return
            try:
                msgs = decoder.feed(data)
            except codec.ProtocolError as exc:
                log.error("bad frame from rfserver (%s); closing", exc)
                return
            self._deliver(msgs)

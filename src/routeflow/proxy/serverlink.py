"""rfproxy's connection to rfserver, on threads.

os-ken 4 runs its applications on native threads, not asyncio, so the proxy
cannot use rflib.ipc; it drives the same sans-IO codec from a blocking socket
on its own thread instead. That is the point of keeping the codec sans-IO.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence

from routeflow.rflib import auth, codec
from routeflow.rflib.ipc import Address, UnixAddress, parse_addresses
from routeflow.rflib.protocol import AuthChallenge, AuthResponse, Message

log = logging.getLogger("routeflow.proxy.link")


class ServerLink:
    """Keeps one RFProtocol session to rfserver alive, reconnecting with backoff.

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
        #: Tried in turn (a leader rfserver and its standby); the one that
        #: answered last is tried first after a disconnect.
        self.addresses = parse_addresses(address)
        self._current = 0
        self._on_connect = on_connect
        self._on_message = on_message
        self._min_backoff = min_backoff
        # With a standby to find, retry often: a takeover should not wait on our backoff.
        self._max_backoff = max_backoff if len(self.addresses) == 1 else min(max_backoff, 1.0)
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="rf-server-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

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
        return self.addresses[self._current]

    def _connect_any(self) -> socket.socket:
        """One round over the addresses; raises the last error if none answers."""
        n = len(self.addresses)
        error: OSError | None = None
        for step in range(n):
            index = (self._current + step) % n
            try:
                sock = self._connect(self.addresses[index])
            except OSError as exc:
                log.debug("rfserver not reachable at %s: %s", self.addresses[index], exc)
                error = exc
                continue
            self._current = index
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
        backoff = self._min_backoff
        while not self._stop.is_set():
            try:
                sock = self._connect_any()
            except OSError:
                time.sleep(backoff * (0.5 + random.random()))
                backoff = min(self._max_backoff, backoff * 2)
                continue
            backoff = self._min_backoff
            log.info("connected to rfserver at %s", self.address)
            decoder = codec.FrameDecoder()
            try:
                hello = self._on_connect()
                if self.secret is not None:
                    self._authenticate(sock, decoder, hello[0])
                    hello = hello[1:]
                with self._send_lock:
                    self._sock = sock
                    sock.sendall(codec.encode_many(hello))
            except (OSError, codec.ProtocolError, ConnectionError) as exc:
                log.warning("rfserver session setup failed: %s", exc)
                sock.close()
                time.sleep(backoff)
                backoff = min(self._max_backoff, backoff * 2)
                continue
            self.connected.set()
            try:
                self._read_loop(sock, decoder)
            finally:
                self.connected.clear()
                with self._send_lock:
                    self._sock = None
                sock.close()
                if not self._stop.is_set():
                    self.reconnects += 1
                    log.warning("lost rfserver connection; reconnecting")

    def _authenticate(self, sock: socket.socket, decoder, hello: Message) -> None:
        """Send the hello, answer the server's challenge (see rflib.auth)."""
        sock.sendall(codec.encode(hello))
        sock.settimeout(10)
        try:
            msgs: list = []
            while not msgs:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("rfserver closed the connection during authentication")
                msgs = decoder.feed(data)
        finally:
            sock.settimeout(None)
        challenge = msgs[0]
        if not isinstance(challenge, AuthChallenge):
            raise ConnectionError(f"expected an authentication challenge, got {challenge!r}")
        mac = auth.answer(self.secret, challenge.nonce, auth.identity(hello))
        sock.sendall(codec.encode(AuthResponse(mac=mac)))
        for msg in msgs[1:]:
            self._on_message(msg)

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
            for msg in msgs:
                try:
                    self._on_message(msg)
                except Exception:
                    log.exception("handling %s failed", type(msg).__name__)

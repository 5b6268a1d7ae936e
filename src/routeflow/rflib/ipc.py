"""asyncio transport for RFProtocol: stream sockets carrying codec frames.

The daemons talk over plain unix or TCP stream sockets instead of a message
broker (the original used MongoDB collections as queues), so there is nothing
to run besides the daemons themselves. The policies live here once:

* a server must outlive any one bad peer: handler crashes and protocol errors
  close that connection only, with one log line;
* a client must outlive the server: ``ReconnectingClient`` sets up each
  session (hello, authentication: ``auth.ClientHandshake``) and reconnects
  as ``reconnect.ReconnectPolicy`` says (address rotation, jittered
  backoff), like rfproxy's ServerLink; the session callback re-announces its
  state on every new connection (see ``protocol.Resync``);
* writes are followed by ``drain()``, so a slow reader slows the writer down
  instead of growing buffers without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl as ssl_module
import stat
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from routeflow.rflib.auth import ClientHandshake
from routeflow.rflib.codec import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    ProtocolError,
    encode,
    encode_many,
)
from routeflow.rflib.protocol import AnyMessage, Message
from routeflow.rflib.reconnect import ReconnectPolicy

__all__ = [
    "Address",
    "Connection",
    "ReconnectingClient",
    "TcpAddress",
    "UnixAddress",
    "open_connection",
    "parse_address",
    "parse_addresses",
    "serve",
    "server_address",
]

log = logging.getLogger("routeflow.ipc")

READ_SIZE = 65536
#: Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
_UNIX_PATH_MAX = 107


@dataclass(frozen=True, slots=True)
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True, slots=True)
class TcpAddress:
    host: str  # without brackets, also for IPv6
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


Address = UnixAddress | TcpAddress


def parse_address(text: str | Address) -> Address:
    """Parse ``unix:/path/to.sock`` or ``tcp:HOST:PORT`` (``tcp:[::1]:6633`` for IPv6)."""
    if isinstance(text, UnixAddress | TcpAddress):
        return text
    if not isinstance(text, str):
        raise TypeError(f"address must be a string, not {type(text).__name__}")
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in ("unix", "tcp"):
        raise ValueError(f"bad address {text!r}: expected 'unix:/path/to.sock' or 'tcp:HOST:PORT'")
    if scheme == "unix":
        if not rest:
            raise ValueError(f"bad address {text!r}: empty unix socket path")
        if "\0" in rest:
            raise ValueError(f"bad address {text!r}: NUL byte in unix socket path")
        if len(os.fsencode(rest)) > _UNIX_PATH_MAX:
            raise ValueError(
                f"bad address {text!r}: unix socket path longer than {_UNIX_PATH_MAX} bytes"
            )
        return UnixAddress(rest)
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        raise ValueError(f"bad address {text!r}: expected 'tcp:HOST:PORT'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ValueError(f"bad address {text!r}: empty IPv6 host in brackets")
    elif "[" in host or "]" in host:
        raise ValueError(f"bad address {text!r}: unbalanced brackets around host")
    elif ":" in host:
        raise ValueError(f"bad address {text!r}: write IPv6 hosts in brackets, e.g. tcp:[::1]:6633")
    if not host:
        raise ValueError(f"bad address {text!r}: empty host (use 0.0.0.0 or [::] for any)")
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"bad address {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"bad address {text!r}: port {port} out of range 0-65535")
    return TcpAddress(host, port)


def parse_addresses(text: str | Address | Sequence[str | Address]) -> list[Address]:
    """One address or several, comma-separated (a standby rfserver's address after the
    leader's): peers try them in order and stay with the first that answers."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.split(",")]
        if any(not part for part in parts):
            raise ValueError(f"bad address list {text!r}: empty entry")
    elif isinstance(text, UnixAddress | TcpAddress):
        parts = [text]
    else:
        parts = list(text)
        if not parts:
            raise ValueError("empty address list")
    addresses = [parse_address(part) for part in parts]
    if len(set(addresses)) != len(addresses):
        raise ValueError(f"address list {text!r} names an address twice")
    return addresses


def _format_sockaddr(sockaddr: object) -> str | None:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(TcpAddress(str(sockaddr[0]), int(sockaddr[1])))
    if isinstance(sockaddr, str | bytes) and sockaddr:
        return f"unix:{os.fsdecode(sockaddr)}"
    return None


class Connection:
    """One peer: whole messages in and out over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ):
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(max_frame)
        self._max_frame = max_frame
        self._inbox: deque[AnyMessage] = deque()
        self._error: ProtocolError | None = None
        self._eof = False
        self._closed = False
        self.peer = peer or _format_sockaddr(writer.get_extra_info("peername")) or "?"

    def __repr__(self) -> str:
        return f"<Connection {self.peer}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, msg: AnyMessage) -> None:
        self._write(encode(msg, max_frame=self._max_frame))
        await self._writer.drain()

    async def send_many(self, msgs: Iterable[AnyMessage]) -> None:
        """Send a batch with one write and one drain."""
        if self.write_many(msgs):
            await self._writer.drain()

    def write_many(self, msgs: Iterable[AnyMessage]) -> bool:
        """Queue a batch with one write, now, without waiting for the peer to take it
        (``drain`` does): messages written without an ``await`` in between keep the
        order of the changes they describe. Returns whether there was anything."""
        data = encode_many(msgs, max_frame=self._max_frame)
        if data:
            self._write(data)
        return bool(data)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark again."""
        await self._writer.drain()

    def _write(self, data: bytes) -> None:
        if self._closed or self._writer.is_closing():
            raise ConnectionResetError(f"{self.peer}: connection is closed")
        self._writer.write(data)

    async def recv(self) -> AnyMessage | None:
        """The next message; None once the peer has closed cleanly.

        Raises ProtocolError on a bad frame (after the good messages that
        preceded it), and for EOF in the middle of a frame.
        """
        while not self._inbox:
            if self._error is not None:
                raise self._error.copy()
            if self._eof:
                return None
            data = await self._reader.read(READ_SIZE)
            if not data:
                self._eof = True
                if self._decoder.buffered:
                    self._error = ProtocolError(
                        "truncated",
                        f"connection closed inside a frame "
                        f"({self._decoder.buffered} bytes pending)",
                    )
                continue
            try:
                self._inbox.extend(self._decoder.feed(data))
            except ProtocolError as err:
                self._inbox.extend(err.messages)
                self._error = err
        return self._inbox.popleft()

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> AnyMessage:
        msg = await self.recv()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def refuse(self, msg: AnyMessage, linger: float = 1.0) -> None:
        """Send ``msg`` (an Error) and close so that the peer does read it.

        Closing right after the send could lose it: a peer still writing (its hello
        pipelined with what follows) leaves unread data at our close, its kernel then
        reports a reset, and an asyncio peer drops what it had received but not yet
        read. So: send, close our writing half, discard whatever the peer still sends
        until it closes too or ``linger`` seconds pass (a lingering close, as HTTP
        servers do), then close.
        """
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await self.send(msg)
            if self._writer.can_write_eof():
                self._writer.write_eof()
            self._writer.transport.resume_reading()  # whoever paused it: the rest is discarded
            async with asyncio.timeout(linger):
                while await self._reader.read(READ_SIZE):
                    pass
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


Handler = Callable[[Connection], Awaitable[None]]


async def _run_handler(conn: Connection, handler: Handler) -> None:
    try:
        await handler(conn)
    except ProtocolError as err:
        log.warning("%s: protocol error (%s), closing: %s", conn.peer, err.reason, err)
    except OSError as err:  # includes ConnectionError: the peer went away
        log.info("%s: connection lost: %s", conn.peer, err)
    except Exception:
        log.exception("%s: handler failed, closing the connection", conn.peer)
    finally:
        await conn.close()


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to remove it")
    os.unlink(path)


async def serve(
    address: str | Address,
    handler: Handler,
    *,
    ready: asyncio.Event | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    ssl: ssl_module.SSLContext | None = None,
) -> asyncio.AbstractServer:
    """Listen on ``address`` and run ``await handler(conn)`` for each connection.

    The connection is closed when the handler returns or fails; whatever
    happens in one handler, the server keeps accepting.
    """
    addr = parse_address(address)
    counter = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        counter += 1
        peer = _format_sockaddr(writer.get_extra_info("peername"))
        if peer is None:  # unix clients are usually unnamed
            peer = f"{addr}#{counter}"
        await _run_handler(Connection(reader, writer, peer=peer, max_frame=max_frame), handler)

    if isinstance(addr, UnixAddress):
        _remove_stale_socket(addr.path)
        server = await asyncio.start_unix_server(on_connect, path=addr.path, ssl=ssl)
    else:
        server = await asyncio.start_server(
            on_connect, host=addr.host, port=addr.port, reuse_address=True, ssl=ssl
        )
    log.info("listening on %s", server_address(server))
    if ready is not None:
        ready.set()
    return server


def server_address(server: asyncio.AbstractServer) -> str:
    """The address a started server is bound to (resolves ``tcp:...:0``)."""
    sockets = getattr(server, "sockets", ())
    if not sockets:
        raise ValueError("server has no listening socket")
    name = _format_sockaddr(sockets[0].getsockname())
    if name is None:
        raise ValueError("cannot tell the server's address")
    return name


async def open_connection(
    address: str | Address,
    *,
    timeout: float | None = 10.0,
    max_frame: int = DEFAULT_MAX_FRAME,
    ssl: ssl_module.SSLContext | None = None,
) -> Connection:
    addr = parse_address(address)
    name = "rfserver" if ssl is not None else None  # SNI only; see rflib.tls
    if isinstance(addr, UnixAddress):
        opening = asyncio.open_unix_connection(addr.path, ssl=ssl, server_hostname=name)
    else:
        opening = asyncio.open_connection(addr.host, addr.port, ssl=ssl, server_hostname=name)
    reader, writer = await asyncio.wait_for(opening, timeout)
    return Connection(reader, writer, peer=str(addr), max_frame=max_frame)


Session = Callable[[Connection], Awaitable[None]]


class ReconnectingClient:
    """Keeps a session running against ``address`` until ``stop()``.

    ``address`` may name several servers (a leader and its standbys): each
    connect round tries them in turn, starting with the one that answered last.

    With a ``hello`` (a callable giving the peer's hello), each connection
    is set up first: the hello is sent and, with a ``secret``, the server's
    challenge answered (``auth.ClientHandshake``). Then it gets a fresh call
    of ``session(conn)``; when that returns or fails (EOF, network error,
    ProtocolError, or a bug in the session, which is logged with its
    traceback), the client waits as ``ReconnectPolicy`` says and connects
    again. ``reconnects`` counts successful connects after the first one.
    """

    def __init__(
        self,
        address: str | Address | Sequence[str | Address],
        session: Session,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        connect_timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        ssl: ssl_module.SSLContext | None = None,
        hello: Callable[[], Message] | None = None,
        secret: bytes | None = None,
    ):
        self.ssl = ssl
        #: Tried in turn until one answers (a leader and its standby).
        self.addresses = parse_addresses(address)
        self.policy = ReconnectPolicy(
            len(self.addresses), min_backoff=min_backoff, max_backoff=max_backoff
        )
        self.session = session
        self.hello = hello
        self.secret = secret
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.reconnects = 0
        self.connects = 0
        self._failures = 0
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Make ``run()`` return: the current session is cancelled, no reconnect."""
        self._stop.set()

    @property
    def address(self) -> Address:
        """The address in use (or tried next)."""
        return self.addresses[self.policy.current]

    async def _connect_any(self) -> Connection | None:
        """One round over the addresses, starting with the last that answered."""
        for index in self.policy.order():
            address = self.addresses[index]
            try:
                conn = await open_connection(
                    address,
                    timeout=self.connect_timeout,
                    max_frame=self.max_frame,
                    ssl=self.ssl,
                )
            except OSError as err:  # refused, missing socket, timeout, TLS failures (SSLError)
                self._failures += 1
                level = logging.INFO if self._failures == 1 else logging.DEBUG
                log.log(level, "%s: cannot connect (will retry): %s", address, err)
                if self._stop.is_set():
                    return None
                continue
            if self.policy.answered(index):
                log.info("%s answers; following it", address)
            return conn
        return None

    async def run(self) -> None:
        self._failures = 0  # in a row: only the first one of a streak is worth an INFO line
        while not self._stop.is_set():
            conn = await self._connect_any()
            if conn is not None:
                self._failures = 0
                self.connects += 1
                if self.connects > 1:
                    self.reconnects += 1
                log.info("%s: connected", self.address)
                await self._run_session(conn)
                self.policy.ended(asyncio.get_running_loop().time())
                if self._stop.is_set():
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.policy.delay())

    #: How long a server may take to challenge our hello.
    HANDSHAKE_TIMEOUT = 10.0

    async def _set_up(self, conn: Connection) -> None:
        """Send the hello and answer the challenge; ``session`` takes over from there."""
        if self.hello is not None:
            handshake = ClientHandshake(self.hello(), self.secret)
            await conn.send_many(handshake.start())
            while not handshake.done:
                msg = await asyncio.wait_for(conn.recv(), self.HANDSHAKE_TIMEOUT)
                if msg is None:
                    raise ConnectionError("the server closed the connection during authentication")
                await conn.send_many(handshake.receive(msg))
        self.policy.set_up(asyncio.get_running_loop().time())
        await self.session(conn)

    async def _run_session(self, conn: Connection) -> None:
        task = asyncio.ensure_future(self._set_up(conn))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
            await conn.close()
        if task.cancelled():
            return
        err = task.exception()
        if err is None:
            log.info("%s: session ended", conn.peer)
        elif isinstance(err, ProtocolError):
            log.warning("%s: protocol error (%s): %s", conn.peer, err.reason, err)
        elif isinstance(err, OSError):
            log.info("%s: connection lost: %s", conn.peer, err)
        else:
            log.error("%s: session failed", conn.peer, exc_info=err)

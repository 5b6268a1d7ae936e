"""Framing for RFProtocol, kept free of sockets, asyncio and clocks.

Keeping the codec sans-IO means the exact bytes-in/messages-out behaviour can be
tested (and fuzzed) without a network, and every transport (asyncio streams
today, something else tomorrow) shares one implementation of the rules.

A frame is a fixed 8-byte header followed by a msgpack body::

    b"RF" | version (1) | flags (1, must be 0) | body length (4, big-endian)

The header is checked as soon as its bytes arrive, so a peer speaking another
protocol, another version, or announcing an absurd length is rejected before
we buffer anything on its behalf. Any violation is fatal for the stream: after
a frame boundary is lost there is no safe way to resynchronise, so the decoder
stays failed and the connection must be closed.
"""

from __future__ import annotations

import struct
import typing
from collections.abc import Iterable

import msgspec

from routeflow.rflib.protocol import PROTOCOL_VERSION, AnyMessage

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER_SIZE",
    "MAGIC",
    "FrameDecoder",
    "ProtocolError",
    "encode",
    "encode_many",
]

MAGIC = b"RF"
HEADER_SIZE = 8
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_HEADER = struct.Struct("!2sBBI")
assert _HEADER.size == HEADER_SIZE
_PREFIX = MAGIC + bytes((PROTOCOL_VERSION, 0))
_MESSAGE_TYPES: tuple[type, ...] = typing.get_args(AnyMessage)

# Reused for every frame: building an Encoder/Decoder is the costly part.
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)


class ProtocolError(Exception):
    """The peer broke the framing or sent a message that does not validate.

    ``reason`` is a short stable code for logs and metrics (``bad-magic``,
    ``bad-version``, ``bad-flags``, ``oversized``, ``undecodable``,
    ``truncated``); ``str(err)`` is the human explanation. ``messages`` holds
    the complete messages that preceded the bad frame in the same ``feed``, so
    a caller can still act on them before closing the connection.
    """

    def __init__(self, reason: str, message: str = "", messages: list[AnyMessage] | None = None):
        super().__init__(message or reason)
        self.reason = reason
        self.messages: list[AnyMessage] = messages if messages is not None else []

    def copy(self) -> ProtocolError:
        """A fresh error with the same reason and text (and no messages)."""
        return ProtocolError(self.reason, str(self))


def _check_max_frame(max_frame: int) -> None:
    if max_frame <= HEADER_SIZE:
        raise ValueError(f"max_frame must be larger than the {HEADER_SIZE}-byte header")


def _oversized(size: int, max_frame: int) -> ProtocolError:
    return ProtocolError("oversized", f"frame of {size} bytes exceeds the limit of {max_frame}")


def _append_frame(buf: bytearray, msg: AnyMessage, max_frame: int) -> None:
    if not isinstance(msg, _MESSAGE_TYPES):
        raise TypeError(f"not an RFProtocol message: {type(msg).__name__}")
    start = len(buf)
    body = start + HEADER_SIZE
    _encoder.encode_into(msg, buf, body)
    size = len(buf) - start
    if size > max_frame:
        del buf[start:]
        raise _oversized(size, max_frame)
    _HEADER.pack_into(buf, start, MAGIC, PROTOCOL_VERSION, 0, size - HEADER_SIZE)


def encode(msg: AnyMessage, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One message as one frame."""
    buf = bytearray()
    _append_frame(buf, msg, max_frame)
    return bytes(buf)


def encode_many(msgs: Iterable[AnyMessage], *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Several messages as consecutive frames, ready for a single write."""
    buf = bytearray()
    for msg in msgs:
        _append_frame(buf, msg, max_frame)
    return bytes(buf)


def _header_error(header: bytes | bytearray) -> ProtocolError | None:
    """Check the (possibly incomplete) fixed part of a header: magic, version, flags."""
    n = len(header)
    if header[:2] != MAGIC[:n]:
        return ProtocolError(
            "bad-magic", f"frame does not start with {MAGIC!r}: {bytes(header[:2])!r}"
        )
    if n >= 3 and header[2] != PROTOCOL_VERSION:
        return ProtocolError(
            "bad-version",
            f"unsupported protocol version {header[2]} (this side speaks {PROTOCOL_VERSION})",
        )
    if n >= 4 and header[3] != 0:
        return ProtocolError("bad-flags", f"unknown frame flags {header[3]:#04x}")
    return None


class FrameDecoder:
    """Turns a byte stream, split anywhere, into messages.

    ``max_frame`` bounds header plus body, so one peer cannot make us buffer
    more than that before a frame is complete.
    """

    __slots__ = ("_buf", "_error", "_max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME):
        _check_max_frame(max_frame)
        self._max_frame = max_frame
        self._buf = bytearray()  # starts at a frame boundary between feeds
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def error(self) -> ProtocolError | None:
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> list[AnyMessage]:
        """Add received bytes; return every message they complete, in order."""
        if self._error is not None:
            raise self._error.copy()
        buf = self._buf
        if data:
            buf += data
        out: list[AnyMessage] = []
        pos = 0
        end = len(buf)
        max_body = self._max_frame - HEADER_SIZE
        err: ProtocolError | None = None
        with memoryview(buf) as view:
            while True:
                avail = end - pos
                if avail < HEADER_SIZE:
                    if avail:
                        err = _header_error(buf[pos : pos + min(avail, 4)])
                    break
                magic, version, flags, length = _HEADER.unpack_from(buf, pos)
                if magic != MAGIC or version != PROTOCOL_VERSION or flags:
                    err = _header_error(buf[pos : pos + 4])
                    break
                if length > max_body:
                    err = _oversized(HEADER_SIZE + length, self._max_frame)
                    break
                stop = pos + HEADER_SIZE + length
                if stop > end:
                    break
                try:
                    out.append(_decoder.decode(view[pos + HEADER_SIZE : stop]))
                except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
                    # msgspec reports invalid UTF-8 in a str field as a plain
                    # UnicodeDecodeError (found by the atheris fuzzer).
                    err = ProtocolError("undecodable", f"undecodable message: {exc}")
                    break
                pos = stop
        if err is not None:
            self._fail(err)
            err.messages = out
            raise err
        # Consume with an offset and compact once per feed, not once per frame,
        # so a large batch in one read stays linear.
        if pos == end:
            buf.clear()
        elif pos:
            del buf[:pos]
        return out

    def _fail(self, err: ProtocolError) -> None:
        self._error = err.copy()
        self._buf = bytearray()

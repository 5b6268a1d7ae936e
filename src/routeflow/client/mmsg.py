"""Many datagrams per system call: recvmmsg(2) for the netlink notification socket.

Why by hand: Python's socket module has no recvmmsg, and neither pyroute2 nor
any maintained library offers one. The kernel sends every route notification
as a datagram of its own, so reading a full table one ``recv_into`` at a time
is a million system calls, a quarter of rfclient's CPU while a table loads
(py-spy, ``routeflow bench fib --profile``). One recvmmsg fills up to
``slots`` buffers per call.

A datagram longer than its slot comes back cut (MSG_TRUNC); the reader raises
Truncated, an OSError (EMSGSIZE), and doubles its slots, so the caller's
recovery from a failed receive (reload the kernel state) covers it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
#: The largest slot the reader grows to (a link notification with many VFs is
#: a few tens of kilobytes; nothing the kernel multicasts comes near this).
MAX_SLOT = 1 << 20


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


def _libc_recvmmsg():
    try:
        func = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_int
    func.argtypes = (
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    )
    return func


_recvmmsg = _libc_recvmmsg()
#: What the kernel wrote back in each mmsghdr (msg_flags, msg_len), read from
#: the array's memory in one call rather than through ctypes objects per datagram.
_RESULT = struct.Struct(
    f"={_Msghdr.msg_flags.offset}xi"
    f"{_Mmsghdr.msg_len.offset - _Msghdr.msg_flags.offset - 4}xI"
    f"{ctypes.sizeof(_Mmsghdr) - _Mmsghdr.msg_len.offset - 4}x"
)
assert _RESULT.size == ctypes.sizeof(_Mmsghdr)


class Truncated(OSError):
    """A datagram was longer than a slot: what it said is lost."""

    def __init__(self, slot: int) -> None:
        super().__init__(errno.EMSGSIZE, f"a netlink datagram was longer than {slot} bytes")


class MultiReader:
    """Reads up to ``slots`` datagrams of one socket per call into one buffer.

    ``read()`` returns the sizes of the datagrams that arrived; datagram ``i``
    is ``buf[i * slot : i * slot + sizes[i]]``. Raises BlockingIOError when
    nothing is queued, OSError for a socket error (ENOBUFS: notifications were
    lost), Truncated (an OSError too) after growing its slots.
    """

    def __init__(self, sock: socket.socket, slots: int = 128, slot: int = 16 * 1024) -> None:
        self.sock = sock
        self.slots = slots
        self._alloc(slot)

    @staticmethod
    def available() -> bool:
        return _recvmmsg is not None

    def _alloc(self, slot: int) -> None:
        self.slot = slot
        self.buf = bytearray(self.slots * slot)
        base = ctypes.addressof((ctypes.c_char * len(self.buf)).from_buffer(self.buf))
        self._iov = (_Iovec * self.slots)()
        self._hdrs = (_Mmsghdr * self.slots)()
        for i in range(self.slots):
            self._iov[i].iov_base = base + i * slot
            self._iov[i].iov_len = slot
            self._hdrs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._hdrs[i].msg_hdr.msg_iovlen = 1
        self._hdrs_addr = ctypes.addressof(self._hdrs)
        self._results = memoryview(self._hdrs).cast("B")

    def read(self) -> list[int]:
        if _recvmmsg is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available")
        count = _recvmmsg(self.sock.fileno(), self._hdrs_addr, self.slots, MSG_DONTWAIT, None)
        if count < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise BlockingIOError(err, os.strerror(err))
            raise OSError(err, os.strerror(err))
        results = _RESULT.iter_unpack(self._results[: count * _RESULT.size])
        sizes = [size for flags, size in results if not flags & MSG_TRUNC]
        if len(sizes) < count:
            cut = self.slot
            if self.slot < MAX_SLOT:
                self._alloc(self.slot * 2)
            raise Truncated(cut)
        return sizes

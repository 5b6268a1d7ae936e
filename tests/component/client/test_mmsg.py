"""MultiReader against real sockets: a datagram socket pair and a netlink socket."""

from __future__ import annotations

import select
import socket
import struct

import pytest

from routeflow.client.mmsg import MultiReader, Truncated

pytestmark = pytest.mark.skipif(not MultiReader.available(), reason="no recvmmsg in libc")


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield a, b
    a.close()
    b.close()


def datagrams(reader: MultiReader, sizes: list[int]) -> list[bytes]:
    return [bytes(reader.buf[i * reader.slot : i * reader.slot + n]) for i, n in enumerate(sizes)]


def test_reads_many_datagrams_per_call_in_order(pair):
    a, b = pair
    reader = MultiReader(b, slots=4, slot=16)
    sent = [bytes([i]) * i for i in range(1, 11)]
    for d in sent:
        a.send(d)
    got: list[bytes] = []
    calls = 0
    while True:
        try:
            sizes = reader.read()
        except BlockingIOError:
            break
        calls += 1
        assert len(sizes) <= 4
        got += datagrams(reader, sizes)
    assert got == sent
    assert calls == 3  # 4 + 4 + 2


def test_empty_socket_raises_blocking(pair):
    with pytest.raises(BlockingIOError):
        MultiReader(pair[1]).read()


def test_a_datagram_longer_than_a_slot_is_reported_and_slots_grow(pair):
    a, b = pair
    reader = MultiReader(b, slots=2, slot=8)
    a.send(b"x" * 9)
    with pytest.raises(Truncated, match="longer than 8 bytes") as cut:
        reader.read()
    assert isinstance(cut.value, OSError)  # the watcher's receive-error recovery takes it
    assert reader.slot == 16
    a.send(b"y" * 9)
    assert datagrams(reader, reader.read()) == [b"y" * 9]


def test_reads_a_netlink_dump():
    """A real netlink socket (this namespace's links, multi-part dump datagrams)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        # RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP: nlmsghdr + ifinfomsg
        sock.send(struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + b"\0" * 16)
        select.select([sock], [], [], 2.0)
        reader = MultiReader(sock, slots=8, slot=64 * 1024)
        sizes = reader.read()
        assert sizes
        first = reader.buf[: sizes[0]]
        length, kind = struct.unpack_from("=IH", first)
        assert kind == 16 and 16 <= length <= sizes[0]  # RTM_NEWLINK
    finally:
        sock.close()

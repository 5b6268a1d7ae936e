"""The flow pipe writes barrier-closed windows and never has more than `depth` unanswered."""

from __future__ import annotations

import struct
import threading
import time

from routeflow.proxy.flowpipe import FlowPipe

MSG = b"\x04\x0e\x00\x08\x00\x00\x00\x01"  # any 8-byte OpenFlow message


def barriers(data: bytes) -> list[int]:
    out, off = [], 0
    while off < len(data):
        _v, kind, length, xid = struct.unpack_from("!BBHI", data, off)
        if kind == 20:
            out.append(xid)
        off += length
    return out


def test_windows_are_closed_by_barriers_and_flush_sends_the_rest():
    sent: list[bytes] = []
    pipe = FlowPipe(sent.append, window=3, depth=10)
    for _ in range(7):
        pipe.put(MSG, 1)
    assert len(sent) == 2  # two full windows, one message still queued
    pipe.flush()
    assert len(sent) == 3
    assert [len(barriers(s)) for s in sent] == [1, 1, 1]
    assert [len(s) for s in sent] == [4 * 8, 4 * 8, 2 * 8]
    assert pipe.in_flight == 3
    for s in sent:
        assert pipe.barrier_reply(barriers(s)[0])
    assert pipe.in_flight == 0 and pipe.acked == 7
    assert not pipe.barrier_reply(12345)  # not ours


def test_producer_blocks_until_the_switch_answers():
    sent: list[bytes] = []
    pipe = FlowPipe(sent.append, window=1, depth=2)
    pipe.put(MSG, 1)
    pipe.put(MSG, 1)
    done = threading.Event()

    def third():
        pipe.put(MSG, 1)
        done.set()

    t = threading.Thread(target=third)
    t.start()
    assert not done.wait(0.2)  # window full: the producer waits
    assert len(sent) == 2
    pipe.barrier_reply(barriers(sent[0])[0])
    assert done.wait(2)
    t.join()
    assert len(sent) == 3 and pipe.stalls == 1


def test_close_releases_a_waiting_producer_and_drops_data():
    sent: list[bytes] = []
    pipe = FlowPipe(sent.append, window=1, depth=1)
    pipe.put(MSG, 1)
    t = threading.Thread(target=pipe.put, args=(MSG, 1))
    t.start()
    time.sleep(0.1)
    pipe.close()
    t.join(2)
    assert not t.is_alive() and len(sent) == 1
    pipe.put(MSG, 1)
    pipe.flush()
    assert len(sent) == 1


def test_a_switch_that_never_answers_does_not_wedge_the_producer():
    sent: list[bytes] = []
    pipe = FlowPipe(sent.append, window=1, depth=1, ack_timeout=0.1)
    pipe.put(MSG, 1)
    t0 = time.monotonic()
    pipe.put(MSG, 1)
    assert time.monotonic() - t0 < 2 and pipe.timeouts == 1 and len(sent) == 2

"""rfproxy sends rfserver its messages in the order its core produced them, whichever
thread produced them and whichever thread gets to send first.

The race it closes: the discovery thread's tick computed a switch's link table (a
link not yet in it), released the lock; a packet-in thread then brought that link up
and sent its report before the tick thread sent the table, which rfserver applied
last and so removed the link, for good: rfproxy only renews a link it knows. A
44-switch backbone showed 17 of 86 links missing for minutes.
"""

from __future__ import annotations

import threading

from routeflow.proxy import actions as act
from routeflow.rflib import protocol as p

from .test_reconcile_write import FakeDatapath, make_proxy

LINK = p.LinkEnds(src_dp_id=5, src_port=2, dst_dp_id=0x25, dst_port=4)
TABLE = p.DatapathLinks(ct_id=1, links=[], dp_ids=[0x25])  # computed before the sighting
UP = p.DatapathLink(ct_id=1, link=LINK, up=True)


class Recorder:
    """In place of the rfserver link: what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[p.Message] = []

    def send_many(self, msgs) -> bool:
        self.sent.extend(msgs)
        return True


def test_messages_reach_rfserver_in_the_order_the_core_produced_them():
    proxy = make_proxy(FakeDatapath())
    recorder = proxy.link = Recorder()
    computed = threading.Event()  # the tick has produced its table and left the lock
    go_on = threading.Event()
    real_after = proxy._after

    def after(actions):
        if threading.current_thread().name == "tick":
            computed.set()
            go_on.wait(5)  # the tick thread is slow to send: the packet-in overtakes it
        real_after(actions)

    proxy._after = after
    tick = threading.Thread(
        target=proxy._handle, args=(lambda: [act.ToServer((TABLE,))],), name="tick"
    )
    tick.start()
    assert computed.wait(5)
    proxy._handle(lambda: [act.ToServer((UP,))])  # the sighting, on another thread
    go_on.set()
    tick.join(5)
    assert recorder.sent == [TABLE, UP]  # the link stays up at rfserver

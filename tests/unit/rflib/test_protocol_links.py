"""Topology discovery messages (DatapathLink, DatapathLinks): round trips and validation."""

from __future__ import annotations

import msgspec
import pytest

from routeflow.rflib import codec
from routeflow.rflib import protocol as p

ENDS = p.LinkEnds(src_dp_id=5, src_port=2, dst_dp_id=2**64 - 1, dst_port=0xFFFFFF00)


def test_link_messages_round_trip():
    msgs = [
        p.DatapathLink(ct_id=1, link=ENDS, up=True),
        p.DatapathLink(ct_id=1, link=ENDS, up=False, reason="aged"),
        p.DatapathLinks(ct_id=2, links=[ENDS, ENDS], dp_ids=[2**64 - 1]),
        p.DatapathLinks(ct_id=2),
    ]
    assert codec.FrameDecoder().feed(codec.encode_many(msgs)) == msgs


def test_a_link_with_a_bad_field_is_undecodable_and_the_error_names_it():
    body = msgspec.msgpack.encode(
        {"type": "DatapathLink", "ct_id": 1, "up": True, "link": {"type": "LinkEnds",
         "src_dp_id": 5, "src_port": "two", "dst_dp_id": 6, "dst_port": 1}}
    )  # fmt: skip
    frame = codec.encode(p.ClientHello(vm_id=1))[:4] + len(body).to_bytes(4, "big") + body
    with pytest.raises(codec.ProtocolError, match=r"\$\.link\.src_port") as err:
        codec.FrameDecoder().feed(frame)
    assert err.value.reason == "undecodable"

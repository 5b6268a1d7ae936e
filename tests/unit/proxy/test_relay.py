"""The relay decides from raw bytes; malformed input must only ever be dropped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routeflow.proxy.relay import Drop, Mapped, RelayTable, SendTo
from routeflow.rflib.mapping import encode_mapping_frame

VS = 0x7266767372667673


def frame(ethertype: int = 0x0800) -> bytes:
    return b"\xff" * 6 + b"\x02" * 6 + ethertype.to_bytes(2, "big") + b"\x00" * 46


def test_both_directions():
    r = RelayTable(VS)
    r.map(0x99, 1, VS, 7)
    assert r.decide(0x99, 1, frame()) == SendTo(VS, 7)
    assert r.decide(VS, 7, frame()) == SendTo(0x99, 1)
    assert isinstance(r.decide(0x99, 2, frame()), Drop)
    assert (r.relayed_to_vm, r.relayed_to_dp, r.dropped) == (1, 1, 1)


def test_remap_replaces_both_directions():
    r = RelayTable(VS)
    r.map(0x99, 1, VS, 7)
    r.map(0x99, 1, VS, 8)
    assert isinstance(r.decide(VS, 7, frame()), Drop)
    assert r.decide(VS, 8, frame()) == SendTo(0x99, 1)
    r.unmap_datapath(0x99)
    assert r.mappings() == []


def test_mapping_packet():
    r = RelayTable(VS)
    data = encode_mapping_frame("02:00:00:00:00:01", 0x5, 3)
    assert r.decide(VS, 4, data) == Mapped(0x5, 3, VS, 4)


@given(st.integers(0, 2**64 - 1), st.integers(0, 70000), st.binary(max_size=100))
def test_garbage_never_raises(dp_id, port, data):
    r = RelayTable(VS)
    r.map(1, 1, VS, 1)
    decision = r.decide(dp_id, port, data)
    assert isinstance(decision, Drop | SendTo | Mapped)

"""The server's node sessions: full state first, then only newer deltas; bindings."""

from __future__ import annotations

import pytest

from routeflow.rflib import protocol as p
from routeflow.tenant import wire
from routeflow.tenant.model import Change, Kind
from routeflow.tenant.sessions import BindPort, NodeSession, Refused, RegisterNode, Send

from .cloudfix import VM1, cloud


def hello(**kw: object) -> p.NodeHello:
    args: dict[str, object] = {"name": "c1", "tunnel_ip": "198.51.100.1", "revision": 0}
    args.update(kw)
    return p.NodeHello(**args)  # type: ignore[arg-type]


def test_start_registers_the_node_and_sends_the_whole_snapshot() -> None:
    session = NodeSession(hello(revision=99))
    snap = cloud()
    register, send = session.start(snap)
    assert isinstance(register, RegisterNode) and register.node.tunnel_ip == "198.51.100.1"
    assert isinstance(send, Send) and isinstance(send.msg, p.TenantChanges) and send.msg.full
    got = wire.full_cloud(send.msg.revision, wire.decode(send.msg.changes))
    assert got == snap


def test_deltas_older_than_the_snapshot_are_dropped() -> None:
    session = NodeSession(hello())
    early = Change(kind=Kind.PORT, id=VM1.id, revision=9, obj=VM1)
    assert session.change(early) == []  # not started: the shell buffers until start
    session.start(cloud(revision=5))
    assert session.change(Change(kind=Kind.PORT, id=VM1.id, revision=5, obj=VM1)) == []
    (send,) = session.change(Change(kind=Kind.PORT, id=VM1.id, revision=6, obj=None))
    assert isinstance(send, Send) and isinstance(send.msg, p.TenantChanges)
    assert not send.msg.full and wire.decode(send.msg.changes)[0].obj is None


def test_bindings_are_for_the_nodes_own_host_and_other_messages_refused() -> None:
    session = NodeSession(hello())
    assert session.receive(p.NodeBinding(port_id="port-1")) == [BindPort("port-1", "c1", True)]
    assert session.receive(p.NodeBinding(port_id="port-1", plugged=False)) == [
        BindPort("port-1", "c1", False)
    ]
    (refused,) = session.receive(p.NodeBinding(port_id=""))
    assert isinstance(refused, Refused)
    (refused,) = session.receive(p.Resync(phase="begin"))
    assert isinstance(refused, Refused) and "Resync" in refused.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", ""), ("name", "a b"), ("tunnel_ip", "nope"), ("revision", -1)],
)
def test_bad_hellos_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        NodeSession(hello(**{field: value}))


def test_wire_rejects_garbage_and_mismatched_objects() -> None:
    with pytest.raises(wire.WireError):
        wire.decode(b"\xc1")
    bad = wire.encode([Change(kind=Kind.NETWORK, id=VM1.id, revision=1, obj=VM1)])
    with pytest.raises(wire.WireError, match="mismatched"):
        wire.decode(bad)

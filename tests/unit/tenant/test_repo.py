"""Repository: durable commits, reload, subscribers, the node-side calls."""

from __future__ import annotations

import pytest

from routeflow.rflib.store import SQLiteStore
from routeflow.tenant.model import Change, Kind, Network, Node, Port
from routeflow.tenant.repo import NotFound, Repository


def test_commit_is_durable_and_reloads(tmp_path) -> None:
    store = SQLiteStore(str(tmp_path / "t.db"))
    repo = Repository(store, clock=lambda: "2026-01-01T00:00:00Z")
    seen: list[Change] = []
    unsubscribe = repo.subscribe(seen.append)
    net = Network(id="n1", name="a", segmentation_id=1)
    port = Port(id="p1", network_id="n1", mac_address="fa:16:3e:00:00:01")
    repo.commit([net, port])
    assert [c.revision for c in seen] == [1, 2]
    assert repo.snapshot().networks["n1"].revision_number == 1
    repo.bind_port("p1", "c1", True)
    assert repo.snapshot().ports["p1"].status == "ACTIVE"
    assert repo.snapshot().ports["p1"].binding_host_id == "c1"
    repo.register_node(Node(id="c1", tunnel_ip="198.51.100.1"))
    unsubscribe()
    repo.commit(deletes=[(Kind.NETWORK, "n1")])
    assert len(seen) == 4
    store.close()
    again = Repository(SQLiteStore(str(tmp_path / "t.db")))
    cloud = again.snapshot()
    assert cloud.revision == 5 and "n1" not in cloud.networks
    assert cloud.ports["p1"].status == "ACTIVE" and cloud.ports["p1"].revision_number == 2
    assert cloud.nodes["c1"].tunnel_ip == "198.51.100.1"
    assert cloud == repo.snapshot()


def test_bind_unknown_port_is_a_clear_error(tmp_path) -> None:
    repo = Repository(SQLiteStore(str(tmp_path / "t.db")))
    with pytest.raises(KeyError) as err:
        repo.bind_port("nope", "c1", True)
    assert isinstance(err.value, NotFound) and str(err.value) == "port nope not found"


def test_failing_subscriber_does_not_undo_commit(tmp_path) -> None:
    repo = Repository(SQLiteStore(str(tmp_path / "t.db")))

    def boom(change: Change) -> None:
        raise RuntimeError("subscriber bug")

    repo.subscribe(boom)
    repo.register_node(Node(id="c1", tunnel_ip="198.51.100.1"))
    assert "c1" in repo.snapshot().nodes


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_kv_put_many_is_one_write(tmp_path, kind) -> None:
    from routeflow.rflib.store import open_store

    store = open_store(f"sqlite:{tmp_path / 'k.db'}" if kind == "sqlite" else "memory:")
    store.kv_put("a", b"1")
    store.kv_put_many({"a": None, "b": b"2", "c": b"3"})
    assert store.kv_items() == [("b", b"2"), ("c", b"3")]
    with pytest.raises(TypeError):
        store.kv_put_many({"d": b"4", "e": "not bytes"})  # type: ignore[dict-item]
    assert store.kv_get("d") is None

"""The node core with the real flow compiler: the first install is the compiler's output,
a restart on the same flows writes nothing, and a port delete is a diff."""

from __future__ import annotations

from routeflow.rflib.ofsim import Flow
from routeflow.tenant import compiler, sample, wire
from routeflow.tenant.model import Change, Kind
from routeflow.tenant.nodecore import InstallFlows, NodeCore, NodeView


def compile_view(cloud, view: NodeView) -> frozenset[Flow]:
    return compiler.compile_node(
        cloud, compiler.NodeContext(view.name, dict(view.bindings), view.tunnel_ofport)
    )


def core(node: str) -> NodeCore[Flow]:
    c: NodeCore[Flow] = NodeCore(name=node, tunnel_ip=sample.NODES[node], compile=compile_view)
    c.vifs_read(sample.bindings(node), compiler.NodeContext(node).tunnel_ofport)
    return c


def test_install_restart_and_delete_with_the_real_compiler() -> None:
    model = sample.cloud()
    first = core("n1")
    first.switch_connected(frozenset())
    (install,) = first.changes(wire.full_state(model))
    assert isinstance(install, InstallFlows) and not install.delete
    want = compiler.compile_node(model, compiler.NodeContext("n1", sample.bindings("n1")))
    assert install.add == want and want

    again = core("n1")
    assert again.switch_connected(want) == []
    assert again.changes(wire.full_state(model)) == []

    port = next(p for p in model.ports.values() if p.name == "a4")
    gone = Change(kind=Kind.PORT, id=port.id, revision=model.revision + 1)
    (diff,) = again.changes(wire.delta(gone))
    assert isinstance(diff, InstallFlows) and diff.delete and diff.delete <= want
    assert want - diff.delete | diff.add == compile_view(again.cloud, again.view())

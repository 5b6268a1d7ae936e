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


def test_the_incremental_compiler_installs_what_the_full_one_does() -> None:
    """The same events through a core with and one without the incremental compiler:
    the same flows on the switch after each, and a reconnect diffs against the switch."""
    from routeflow.tenant.incremental import NodeCompiler

    model = sample.cloud()
    full, inc = core("n1"), core("n1")
    inc.incremental = NodeCompiler()
    events = [
        lambda c: c.switch_connected(frozenset({next(iter(compile_view(model, c.view())))})),
        lambda c: c.changes(wire.full_state(model)),
        lambda c: c.changes(wire.delta(Change(kind=Kind.PORT, id="a4", revision=99))),
        lambda c: c.vifs_read({"a1": 1, "b1": 3}, c.tunnel_ofport),
        lambda c: c.switch_lost(),
        lambda c: c.changes(wire.delta(Change(kind=Kind.PORT, id="b1", revision=100))),
        lambda c: c.switch_connected(frozenset()),
    ]
    for event in events:
        event(full)
        event(inc)
        assert full.installed == inc.installed
        if inc.cloud is not None:
            assert inc.incremental.flows == compile_view(inc.cloud, inc.view())
    assert inc.installed == compile_view(inc.cloud, inc.view()) and inc.installed
    assert full.counters.installs == inc.counters.installs

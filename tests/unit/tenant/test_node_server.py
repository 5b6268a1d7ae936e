"""The node core against the real Repository over the real link: the node's VIF report
binds the port (ACTIVE, binding:host_id), and a change committed on the server reaches
the node's compiled flows as a diff. The agent's os-ken shell does exactly these calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec

from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import protocol as p
from routeflow.rflib.ofsim import Flow
from routeflow.rflib.store import MemoryStore
from routeflow.tenant import compiler, sample
from routeflow.tenant.model import Cloud, Kind, Port
from routeflow.tenant.nodecore import InstallFlows, NodeCore, NodeView, SendToServer
from routeflow.tenant.nodelink import serve_nodes
from routeflow.tenant.repo import Repository


def compile_view(cloud: Cloud, view: NodeView) -> frozenset[Flow]:
    ctx = compiler.NodeContext(view.name, dict(view.bindings), view.tunnel_ofport)
    return compiler.compile_node(cloud, ctx)


class Agent:
    """The node agent without os-ken: the core, the link, a lock, installs recorded."""

    def __init__(self, node: str, address: str, vifs: dict[str, int]) -> None:
        self.core: NodeCore[Flow] = NodeCore(
            name=node, tunnel_ip=sample.NODES[node], compile=compile_view
        )
        self.lock = threading.Lock()
        self.installs: list[InstallFlows[Flow]] = []
        self.core.vifs_read(vifs, compiler.NodeContext(node).tunnel_ofport)
        self.core.switch_connected(frozenset())
        self.link = ServerLink(address, self.hello, self.on_message)

    def hello(self) -> list[p.Message]:
        with self.lock:
            out = [a.msg for a in self.core.server_connected() if isinstance(a, SendToServer)]
            return [self.core.hello(), *out]

    def on_message(self, msg: p.Message) -> None:
        if not isinstance(msg, p.TenantChanges):
            return
        with self.lock:
            actions = self.core.changes(msg)
            self.installs += [a for a in actions if isinstance(a, InstallFlows)]
        for a in actions:
            if isinstance(a, SendToServer):
                self.link.send(a.msg)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_binding_and_a_server_change_reach_the_nodes_flows(tmp_path: Path) -> None:
    async def main() -> None:
        repo = Repository(MemoryStore())
        unbound = [
            msgspec.structs.replace(o, binding_host_id="", status="DOWN")
            if isinstance(o, Port)
            else o
            for o in sample.objects()
        ]
        repo.commit(unbound)
        link = await serve_nodes(repo, f"unix:{tmp_path}/n.sock")
        vifs = sample.bindings("n1")
        agent = Agent("n1", f"unix:{tmp_path}/n.sock", vifs)
        agent.link.start()
        try:
            await until(
                lambda: all(
                    repo.snapshot().ports[pid].status == "ACTIVE"
                    and repo.snapshot().ports[pid].binding_host_id == "n1"
                    for pid in vifs
                )
            )
            assert "n1" in repo.snapshot().nodes
            want = compile_view(repo.snapshot(), agent.core.view())
            await until(lambda: agent.core.installed == want)
            # a port of n1 is deleted through the Repository: its flows go, as a diff
            pid = sorted(vifs)[0]
            installs = len(agent.installs)
            repo.commit(deletes=[(Kind.PORT, pid)])
            after = compile_view(repo.snapshot(), agent.core.view())
            assert after != want
            await until(lambda: agent.core.installed == after)
            last = agent.installs[-1]
            assert len(agent.installs) == installs + 1 and last.delete == want - after
        finally:
            agent.link.stop()
            link.close()
            await link.wait_closed()

    asyncio.run(main())

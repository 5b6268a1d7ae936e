"""The server's node link over a real unix socket, with rfproxy's threaded ServerLink as the node.

The Repository here is a minimal stand-in holding a Cloud (the real one is the
tenant server's, tested with it); what is under test is the link: handshake,
full state, deltas in order, bindings, a wrong secret refused.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import protocol as p
from routeflow.tenant import wire
from routeflow.tenant.model import Change, Kind
from routeflow.tenant.nodelink import serve_nodes

from .cloudfix import VM1, MemoryRepo, cloud

SECRET = b"0123456789abcdef0123456789abcdef"


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_full_state_then_deltas_then_bindings(tmp_path: Path) -> None:
    async def main() -> None:
        repo = MemoryRepo(cloud())
        link = await serve_nodes(repo, f"unix:{tmp_path}/nodes.sock", SECRET)
        got: list[p.Message] = []
        lock = threading.Lock()

        def on_message(msg: p.Message) -> None:
            with lock:
                got.append(msg)

        hello = p.NodeHello(name="c1", tunnel_ip="198.51.100.1")
        client = ServerLink(
            f"unix:{tmp_path}/nodes.sock",
            lambda: [hello, p.NodeBinding(port_id="port-1"), p.NodeBinding(port_id="unknown")],
            on_message,
            secret=SECRET,
        )
        client.start()
        try:
            await until(lambda: len(got) >= 1 and len(repo.binds) == 1)
            full = got[0]
            assert isinstance(full, p.TenantChanges) and full.full
            assert wire.full_cloud(full.revision, wire.decode(full.changes)) == repo.cloud
            assert repo.nodes[0].id == "c1" and repo.binds == [("port-1", "c1", True)]
            assert link.counters["bind_errors"] == 1 and "c1" in link.nodes
            repo.emit(Change(kind=Kind.PORT, id=VM1.id, revision=10))
            await until(lambda: len(got) == 2)
            delta = got[1]
            assert isinstance(delta, p.TenantChanges) and not delta.full
            assert delta.revision == 10
            client.send(p.NodeBinding(port_id="port-2", plugged=False))
            await until(lambda: len(repo.binds) == 2)
            assert repo.binds[-1] == ("port-2", "c1", False)
        finally:
            client.stop()
            link.close()
            await link.wait_closed()
        await until(lambda: not repo.subs)

    asyncio.run(main())


def test_a_wrong_secret_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        repo = MemoryRepo(cloud())
        link = await serve_nodes(repo, f"unix:{tmp_path}/nodes.sock", SECRET)
        hello = p.NodeHello(name="c1", tunnel_ip="198.51.100.1")
        client = ServerLink(
            f"unix:{tmp_path}/nodes.sock", lambda: [hello], lambda m: None, secret=b"x" * 32
        )
        client.start()
        try:
            await until(lambda: link.counters["auth_failures"] >= 1)
            assert repo.nodes == [] and not link.nodes
        finally:
            client.stop()
            link.close()
            await link.wait_closed()

    asyncio.run(main())


def test_a_lost_gateway_node_is_marked_down_after_its_grace_and_up_again_on_hello(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        repo = MemoryRepo(cloud())
        link = await serve_nodes(repo, f"unix:{tmp_path}/nodes.sock", SECRET, gateway_grace=0.3)

        def node_link(name: str, gateway: bool) -> ServerLink:
            hello = p.NodeHello(name=name, tunnel_ip="198.51.100.9", gateway=gateway)
            return ServerLink(
                f"unix:{tmp_path}/nodes.sock", lambda: [hello], lambda m: None, secret=SECRET
            )

        gw, c1 = node_link("g1", True), node_link("c1", False)
        gw.start()
        c1.start()
        try:
            await until(lambda: {n.id for n in repo.nodes} == {"g1", "c1"})
            assert all(n.up for n in repo.nodes)
            gw.stop()
            c1.stop()
            lost = asyncio.get_running_loop().time()
            await until(lambda: [n.id for n in repo.nodes if not n.up] == ["g1"])
            assert asyncio.get_running_loop().time() - lost >= 0.25  # not before its grace
            await asyncio.sleep(0.5)
            assert [n.id for n in repo.nodes if not n.up] == ["g1"]  # c1 never goes down
            back = node_link("g1", True)
            back.start()
            try:
                await until(lambda: repo.nodes[-1].id == "g1" and repo.nodes[-1].up)
            finally:
                back.stop()
        finally:
            link.close()
            await link.wait_closed()

    asyncio.run(main())


def test_a_gateway_node_back_within_its_grace_is_never_marked_down(tmp_path: Path) -> None:
    """A grace long enough for a reconnect under any load (the short one above is for
    the expiry; here the reconnect must win, whatever the machine's load)."""

    async def main() -> None:
        repo = MemoryRepo(cloud())
        link = await serve_nodes(repo, f"unix:{tmp_path}/nodes.sock", SECRET, gateway_grace=5.0)

        def node_link() -> ServerLink:
            hello = p.NodeHello(name="g1", tunnel_ip="198.51.100.9", gateway=True)
            return ServerLink(
                f"unix:{tmp_path}/nodes.sock", lambda: [hello], lambda m: None, secret=SECRET
            )

        try:
            first = node_link()
            first.start()
            await until(lambda: "g1" in link.nodes)
            first.stop()
            await until(lambda: "g1" not in link.nodes)
            again = node_link()
            again.start()
            await until(lambda: "g1" in link.nodes)
            await asyncio.sleep(0.3)
            assert link.counters.get("gateways_down", 0) == 0
            assert all(n.up for n in repo.nodes if n.id == "g1")
            again.stop()
        finally:
            link.close()
            await link.wait_closed()

    asyncio.run(main())

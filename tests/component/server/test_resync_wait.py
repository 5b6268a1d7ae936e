"""A restarted rfserver sends a controller its full state once the VMs behind it resynced.

Real RFServer, real IPC: the dump waits for the VM's Resync (or it would
carry no routes and the proxy would remove the VM's flows), and goes as soon
as the Resync arrives, not after ``resync_wait``.
"""

from __future__ import annotations

import asyncio
import time

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.rflib.types import ConfigEntry, EntryState
from routeflow.server.service import RFServer

from .test_roles_service import until

CONFIG = [ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1)]
ROUTE = p.Route(prefix="10.9.0.0/16", nexthops=[p.NextHop(vm_port=1, gateway="172.31.1.2")])
GW = p.Neighbour(vm_port=1, address="172.31.1.2", hwaddress="02:00:00:00:99:99")


async def serving(srv: RFServer, address: str) -> asyncio.Future:
    task = asyncio.ensure_future(srv.serve(address, ready := asyncio.Event()))
    await ready.wait()
    return task


async def stop(task: asyncio.Future, *conns: ipc.Connection) -> None:
    for c in conns:
        await c.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_the_dump_waits_for_the_vms_resync_and_not_longer(tmp_path):
    store = MemoryStore()
    address = f"unix:{tmp_path}/rfserver.sock"

    async def first_life():
        srv = RFServer(CONFIG, store, resync_wait=0.0)
        task = await serving(srv, address)
        ct = await ipc.open_connection(address)
        await ct.send(p.ControllerRegister(ct_id=1))
        await until(ct, p.Resync)
        await ct.send(p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1))
        vm = await ipc.open_connection(address)
        await vm.send(p.ClientHello(vm_id=5))
        await vm.send(p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:05:00:01"))
        await until(vm, p.PortConfig)
        await ct.send(p.VirtualPlaneMap(vm_id=5, vm_port=1, vs_id=9, vs_port=1))
        for _ in range(100):
            if srv.table.by_vm_port(5, 1).state == EntryState.ACTIVE:
                break
            await asyncio.sleep(0.02)
        await stop(task, ct, vm)

    async def restarted():
        srv = RFServer(CONFIG, store, resync_wait=20.0)
        assert srv.table.by_vm_port(5, 1).state == EntryState.ACTIVE  # from the store
        task = await serving(srv, address)
        ct = await ipc.open_connection(address)
        await ct.send(p.ControllerRegister(ct_id=1))
        await until(ct, p.ControllerRole)
        # No dump while the VM has not resent its routes.
        early = asyncio.ensure_future(until(ct, p.Resync, timeout=10))
        await asyncio.sleep(0.5)
        assert not early.done()
        vm = await ipc.open_connection(address)
        sent = time.monotonic()
        await vm.send_many(
            [
                p.ClientHello(vm_id=5),
                p.Resync(phase="begin", scope=5),
                p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:05:00:01"),
                p.RouteMod(mod=p.Mod.ADD, vm_id=5, routes=[ROUTE]),
                p.NeighbourMod(mod=p.Mod.ADD, vm_id=5, neighbours=[GW]),
                p.Resync(phase="end", scope=5),
            ]
        )
        begin, _ = await early
        assert begin.phase == "begin"
        end, dump = await until(ct, p.Resync)
        took = time.monotonic() - sent
        assert end.phase == "end"
        assert took < 2.0, f"the dump went {took:.1f} s after the resync"
        assert any(isinstance(m, p.DataPlaneMap) for m in dump)
        fibs = [e.prefix for m in dump if isinstance(m, p.FibMod) for e in m.entries]
        assert "10.9.0.0/16" in fibs
        await stop(task, ct, vm)

    async def scenario():
        await first_life()
        await restarted()

    asyncio.run(asyncio.wait_for(scenario(), 40))

"""A lost mapping packet is asked for again: real RFServer, real IPC.

Found by `routeflow lab chaos` bring-ups of rftest2-ha: switch 0x5 joined rfproxy
0.45 s before the virtual switch did, so all three mapping packets rfclient sent
for vm 0x5 port 1 (over 0.4 s) were dropped, and that association stayed
"client-datapath association" for good (lab convergence timed out).
"""

from __future__ import annotations

import asyncio

from routeflow.rflib import ipc
from routeflow.rflib import protocol as p
from routeflow.rflib.store import MemoryStore
from routeflow.rflib.types import ConfigEntry, EntryState
from routeflow.server.service import RFServer

CONFIG = [ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1)]
SEND = p.PortOperation.SEND_MAPPING_PACKET


async def next_port_config(conn: ipc.Connection, timeout: float) -> p.PortConfig:
    while True:
        msg = await asyncio.wait_for(conn.recv(), timeout)
        assert msg is not None, "connection closed"
        if isinstance(msg, p.PortConfig):
            return msg


def test_unmapped_association_asks_for_the_mapping_again(tmp_path):
    srv = RFServer(CONFIG, MemoryStore(), resync_wait=0.0)
    srv.MAPPING_RETRY_S = 0.2
    address = f"unix:{tmp_path}/rfserver.sock"

    async def scenario():
        task = asyncio.ensure_future(srv.serve(address, ready := asyncio.Event()))
        await ready.wait()
        try:
            proxy = await ipc.open_connection(address)
            await proxy.send(p.ControllerRegister(ct_id=1, replica="ct1"))
            await asyncio.sleep(0.1)
            await proxy.send(p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1))
            client = await ipc.open_connection(address)
            await client.send(p.ClientHello(vm_id=5))
            await client.send(p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:05:00:01"))
            first = await next_port_config(client, 5)
            assert (first.vm_port, first.operation_id) == (1, SEND)
            # That mapping packet is lost: rfserver asks again, and again.
            for _ in range(2):
                again = await next_port_config(client, 2)
                assert (again.vm_id, again.vm_port, again.operation_id) == (5, 1, SEND)
            assert srv.counters["mapping_retries"] >= 2
            # It arrives (rfproxy reports it): the association is active, no more asking.
            await proxy.send(p.VirtualPlaneMap(vm_id=5, vm_port=1, vs_id=9, vs_port=3))
            await asyncio.sleep(0.2)
            assert srv.table.by_vm_port(5, 1).state == EntryState.ACTIVE
            retries = srv.counters["mapping_retries"]
            await asyncio.sleep(0.7)
            assert srv.counters["mapping_retries"] == retries
            await client.close()
            await proxy.close()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 30))

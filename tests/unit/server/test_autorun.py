"""rfserver --auto's shell (server/autorun.py) against an in-memory VM backend.

The backend here is a dictionary, not a mock of the netns one: what is tested is the
runner's promise to any backend (one step at a time per VM, the mapping only for plugged
ports, failures retried from what the backend then runs).
"""

from __future__ import annotations

import asyncio

from routeflow.server import autoconf as ac
from routeflow.server.autorun import AutoRunner
from routeflow.server.vmbackend import BackendError

EDGES = [ac.EdgePort(dp_id=5, port=1, address="172.31.1.1/24")]


class DictBackend:
    def __init__(self, fail_starts: int = 0) -> None:
        self.vms: dict[int, ac.VmSpec] = {}
        self.calls: list[str] = []
        self.fail_starts = fail_starts

    def running(self) -> dict[int, ac.VmSpec]:
        return dict(self.vms)

    def start(self, spec: ac.VmSpec) -> None:
        self.calls.append(f"start {spec.name} {len(spec.interfaces)}")
        if self.fail_starts:
            self.fail_starts -= 1
            raise BackendError(f"{spec.name}: zebra did not come up")
        self.vms[spec.vm_id] = spec

    def add_interfaces(self, spec: ac.VmSpec, ifaces) -> None:
        self.calls.append(f"add {spec.name} {[i.port for i in ifaces]}")
        self.vms[spec.vm_id] = spec

    def remove_interfaces(self, spec: ac.VmSpec, ifaces) -> None:
        self.calls.append(f"remove {spec.name}")
        self.vms[spec.vm_id] = spec

    def stop(self, vm_id: int) -> None:
        self.calls.append(f"stop {vm_id:#x}")
        self.vms.pop(vm_id, None)


def _runner(backend, grace: float = 60.0):
    mappings: list[tuple] = []
    events: list[str] = []
    writes: dict = {}
    runner = AutoRunner(
        ac.AutoConf(ac.AutoSettings(grace=grace), EDGES),
        backend,
        apply_mapping=mappings.append,
        store_writes=writes.update,
        event=lambda kind, text, *a, **k: events.append(text),
    )
    return runner, mappings, events, writes


async def _settle(runner: AutoRunner) -> None:
    """Until every worker is done and the mapping they scheduled (call_soon) is applied.

    A worker's last step and this loop's wake-up can fall in one event-loop turn; the
    mapping flush then runs a turn later, so "workers done" alone is not settled.
    """
    for _ in range(200):
        await asyncio.sleep(0.01)
        if all(t.done() for t in runner._workers.values()) and not runner._mapping_due:
            return
    raise AssertionError("the runner did not settle in 2 s")


def test_links_found_while_a_vm_starts_become_one_change_and_ports_map_once_plugged():
    async def main():
        backend = DictBackend()
        runner, mappings, _events, writes = _runner(backend)
        await runner.start()
        runner.switch_up(1, 5)
        runner.links([((5, 2), (6, 2))])
        runner.links([((5, 3), (7, 1))])
        await _settle(runner)
        # the worker started the VM with what was wanted when it got to it
        assert backend.calls == ["start vm-5 3"]
        assert [e.vm_port for e in mappings[-1]] == [1, 2, 3]
        assert all(e.vm_id == 5 for m in mappings for e in m)
        assert "autoconf/loopback/5" in writes
        runner.links([((5, 4), (8, 1))])
        await _settle(runner)
        assert backend.calls[-1] == "add vm-5 [4]"
        assert [e.vm_port for e in mappings[-1]] == [1, 2, 3, 4]
        runner.stop()

    asyncio.run(main())


def test_a_failed_start_is_retried_and_the_mapping_waits_for_it():
    async def main():
        backend = DictBackend(fail_starts=1)
        runner, mappings, events, _w = _runner(backend)
        runner.RETRY_S = 0.05
        await runner.start()
        runner.switch_up(1, 5)
        await asyncio.sleep(0.02)
        assert not mappings or not mappings[-1]  # nothing plugged yet
        await _settle(runner)
        await asyncio.sleep(0.1)
        await _settle(runner)
        assert backend.calls == ["start vm-5 1", "start vm-5 1"]
        assert any("zebra did not come up" in e for e in events)
        assert [e.vm_port for e in mappings[-1]] == [1]
        assert runner.view()["vms"][0]["running"]
        runner.stop()

    asyncio.run(main())


def test_a_gone_switch_loses_its_vm_after_the_grace_and_a_restart_adopts_the_rest():
    async def main():
        backend = DictBackend()
        runner, _m, _e, _w = _runner(backend, grace=0.05)
        await runner.start()
        runner.switch_up(1, 5)
        runner.switch_up(1, 6)
        await _settle(runner)
        runner.switch_down(6)
        await asyncio.sleep(0.15)
        await _settle(runner)
        assert backend.calls[-1] == "stop 0x6" and set(backend.vms) == {5}
        runner.stop()
        # a new runner (rfserver restarted, with no store): adopts vm-5, starts nothing;
        # its switch comes back after a while, well within the grace (a loop stalled
        # past the grace would run its expiry in the same turn as the wake-up below)
        again, _m, events, _w = _runner(backend, grace=2.0)
        await again.start()
        await asyncio.sleep(0.1)
        again.switch_up(1, 5)
        await asyncio.sleep(0.2)
        await _settle(again)
        assert backend.calls[-1] == "stop 0x6" and "adopted 1 running VMs" in events
        again.stop()
        # ... and one whose switch never comes back is stopped after it
        third, _m, events, _w = _runner(backend, grace=0.05)
        await third.start()
        await asyncio.sleep(0.1)
        await _settle(third)
        assert backend.calls[-1] == "stop 0x5" and not backend.vms
        third.stop()

    asyncio.run(main())

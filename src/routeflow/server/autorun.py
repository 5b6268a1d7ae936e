"""rfserver --auto's shell: discovery facts into the planner, its VMs into the backend.

The planner (server/autoconf.py) decides; this module only feeds it what rfserver hears
(switches connecting and leaving, the discovered links) and carries out what it says:
store writes and the mapping go through the server, VM work goes to the backend in worker
threads. Each VM is reconciled on its own: the worker compares the VM the backend runs
with the one wanted *now* (autoconf.vm_ops), so a burst of link discoveries while a VM is
still starting becomes one AddInterfaces, not one per link. A failed step is reported and
retried after ``RETRY_S`` from whatever the backend then runs.

The association table gets a VM port's mapping only once the backend has plugged it:
rfclient sends its mapping packet as soon as the port is associated, and one sent from an
interface still down, or not yet on the virtual switch, is lost (rfserver asks again only
seconds later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from routeflow.server import autoconf as ac
from routeflow.server.vmbackend import BackendError, VmBackend

log = logging.getLogger("routeflow.server.auto")

__all__ = ["AutoRunner"]


class AutoRunner:
    RETRY_S = 5.0

    def __init__(
        self,
        conf: ac.AutoConf,
        backend: VmBackend,
        *,
        apply_mapping: Callable[[tuple], None],
        store_writes: Callable[[dict], object],
        event: Callable[..., None],
        concurrency: int = 4,
    ) -> None:
        self.conf = conf
        self.backend = backend
        self.apply_mapping = apply_mapping
        self.store_writes = store_writes
        self.event = event
        self.concurrency = concurrency
        self.actual: dict[int, ac.VmSpec] = {}
        self.wanted: dict[int, ac.VmSpec | None] = {}
        self._workers: dict[int, asyncio.Future] = {}
        self._sem: asyncio.Semaphore | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._mapping: tuple | None = None
        self._mapping_due = False
        self._applied: tuple | None = None
        #: vm_id -> when it was first wanted and when it started (for the operator and tests).
        self.started_at: dict[int, float] = {}
        self.counters = {"vm_starts": 0, "vm_stops": 0, "interfaces_added": 0, "failures": 0}

    async def start(self) -> None:
        """Adopt what the backend runs, then act on what the store restored."""
        self._sem = asyncio.Semaphore(self.concurrency)
        self.actual = await asyncio.to_thread(self.backend.running)
        if self.actual:
            self.event("auto", f"adopted {len(self.actual)} running VMs")
        for problem in self.conf.restore_problems:
            self.event("auto", f"ignoring unusable autoconf record {problem}", logging.WARNING)
        self._carry_out(self.conf.start())
        # A running VM the store knows nothing of (a lost store, say) gets the grace
        # period, like a switch that left, for its switch to connect again.
        strays = set(self.actual) - set(self.conf.wanted())
        if strays:
            asyncio.get_running_loop().call_later(
                self.conf.settings.grace, self._stop_strays, strays
            )

    def _stop_strays(self, strays: set[int]) -> None:
        for vm_id in strays - set(self.conf.wanted()):
            self.event("auto", f"VM {vm_id:#x}: no switch of it came back; stopping it")
            self._want(vm_id, None)

    def stop(self) -> None:
        for task in self._workers.values():
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()

    # --- facts in ------------------------------------------------------------------------

    def switch_up(self, ct_id: int, dp_id: int) -> None:
        self._carry_out(self.conf.switch_up(ct_id, dp_id))

    def switch_down(self, dp_id: int) -> None:
        self._carry_out(self.conf.switch_down(dp_id, time.time()))

    def links(self, directed: Iterable[tuple[tuple[int, int], tuple[int, int]]]) -> None:
        self._carry_out(self.conf.set_links(directed))

    def _tick(self) -> None:
        self._timer = None
        self._carry_out(self.conf.tick(time.time()))

    # --- actions out ---------------------------------------------------------------------

    def _carry_out(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, ac.StoreWrites):
                self.store_writes(a.writes)
            elif isinstance(a, ac.MappingChanged):
                self._mapping = a.entries
                self._schedule_mapping()
            elif isinstance(a, ac.Problem):
                self.event("auto", a.text, logging.WARNING)
            elif isinstance(a, ac.VmWanted):
                self._want(a.dp_id, a.spec)
        self._arm_timer()

    def _schedule_mapping(self) -> None:
        if not self._mapping_due:  # one table update per burst of changes
            self._mapping_due = True
            asyncio.get_running_loop().call_soon(self._flush_mapping)

    def _flush_mapping(self) -> None:
        self._mapping_due = False
        if self._mapping is None:
            return
        plugged = {(s.vm_id, i.port) for s in self.actual.values() for i in s.interfaces}
        manual = set(self.conf.manual)
        ready = tuple(e for e in self._mapping if e in manual or e.vm_key in plugged)
        if ready != self._applied:
            self._applied = ready
            self.apply_mapping(ready)

    def _arm_timer(self) -> None:
        deadline = self.conf.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay + 0.01, self._tick)

    def _want(self, vm_id: int, spec: ac.VmSpec | None) -> None:
        self.wanted[vm_id] = spec
        if spec is not None:
            self.started_at.setdefault(vm_id, time.time())
        task = self._workers.get(vm_id)
        if task is None or task.done():
            self._workers[vm_id] = asyncio.ensure_future(self._reconcile(vm_id))

    async def _reconcile(self, vm_id: int) -> None:
        assert self._sem is not None
        while True:
            async with self._sem:
                ops = ac.vm_ops(self.wanted.get(vm_id), self.actual.get(vm_id))
                if not ops:
                    return
                try:
                    for op in ops:
                        await self._do(op)
                        self._schedule_mapping()
                except BackendError as exc:
                    self.counters["failures"] += 1
                    self.event(
                        "auto", f"VM {vm_id:#x}: {exc}; retrying", logging.ERROR, vm_id=vm_id
                    )
                    await self._refresh(vm_id)
                    failed = True
                else:
                    failed = False
            if failed:
                await asyncio.sleep(self.RETRY_S)

    async def _refresh(self, vm_id: int) -> None:
        """After a failure: the VM as the backend runs it now (or none)."""
        running = await asyncio.to_thread(self.backend.running)
        if vm_id in running:
            self.actual[vm_id] = running[vm_id]
        else:
            self.actual.pop(vm_id, None)

    async def _do(self, op: ac.VmOp) -> None:
        t = time.monotonic()
        if isinstance(op, ac.StartVm):
            await asyncio.to_thread(self.backend.start, op.spec)
            self.actual[op.spec.vm_id] = op.spec
            self.counters["vm_starts"] += 1
            self.event(
                "auto",
                f"started {op.spec.name} for switch {op.spec.dp_id:#x} with "
                f"{len(op.spec.interfaces)} interfaces ({time.monotonic() - t:.1f} s)",
                vm_id=op.spec.vm_id,
                dp_id=op.spec.dp_id,
            )
        elif isinstance(op, ac.AddInterfaces):
            await asyncio.to_thread(self.backend.add_interfaces, op.spec, op.ifaces)
            self.actual[op.spec.vm_id] = op.spec
            self.counters["interfaces_added"] += len(op.ifaces)
            self.event(
                "auto",
                f"{op.spec.name}: added " + ", ".join(f"{i.ifname} {i.address}" for i in op.ifaces),
                vm_id=op.spec.vm_id,
            )
        elif isinstance(op, ac.RemoveInterfaces):
            await asyncio.to_thread(self.backend.remove_interfaces, op.spec, op.ifaces)
            self.actual[op.spec.vm_id] = op.spec
            self.event(
                "auto",
                f"{op.spec.name}: removed " + ", ".join(i.ifname for i in op.ifaces),
                vm_id=op.spec.vm_id,
            )
        else:
            await asyncio.to_thread(self.backend.stop, op.vm_id)
            self.actual.pop(op.vm_id, None)
            self.counters["vm_stops"] += 1
            self.event("auto", f"stopped {op.name}", logging.WARNING, vm_id=op.vm_id)

    def view(self) -> dict:
        out = ac.view(self.conf)
        for vm in out["vms"]:
            have = self.actual.get(vm["vm_id"])
            vm["running"] = have is not None
            vm["running_interfaces"] = 0 if have is None else len(have.interfaces)
        out["counters"] = dict(self.counters)
        timings = getattr(self.backend, "timings", None)
        if timings:
            out["backend_seconds"] = {k: [int(n), round(t, 2)] for k, (n, t) in timings.items()}
        return out


def directed_links(topology_links) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """server.discovered KnownLinks as the planner takes them."""
    return [
        ((k.ends.src_dp_id, k.ends.src_port), (k.ends.dst_dp_id, k.ends.dst_port))
        for k in topology_links
    ]

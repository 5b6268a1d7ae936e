"""The packet relay between physical router ports and VM ports (pure).

Only control traffic takes this path (the classifier decides that): a frame
punted by a physical switch goes out of the virtual-switch port of the VM
interface mapped to it, and a frame the VM sends goes out of the physical
port. Decisions are made here without I/O so malformed packet-ins can be
fuzzed without a controller; the os-ken shell only executes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from routeflow.rflib.mapping import MAPPING_ETHERTYPE, decode_mapping_payload

ETH_HEADER = 14


@dataclass(frozen=True)
class SendTo:
    """Emit the frame unchanged out of (dp_id, port)."""

    dp_id: int
    port: int


@dataclass(frozen=True)
class Mapped:
    """A mapping packet: VM port (vm_id, vm_port) sits on (vs_id, vs_port)."""

    vm_id: int
    vm_port: int
    vs_id: int
    vs_port: int


@dataclass(frozen=True)
class Drop:
    reason: str


Decision = SendTo | Mapped | Drop


class RelayTable:
    """(dp_id, dp_port) <-> (vs_id, vs_port), fed by DataPlaneMap/Unmap."""

    def __init__(self, vs_id: int) -> None:
        self.vs_id = vs_id
        self._to_vs: dict[tuple[int, int], tuple[int, int]] = {}
        self._to_dp: dict[tuple[int, int], tuple[int, int]] = {}
        self.relayed_to_vm = 0
        self.relayed_to_dp = 0
        self.dropped = 0

    def map(self, dp_id: int, dp_port: int, vs_id: int, vs_port: int) -> None:
        self.unmap(dp_id, dp_port)
        old = self._to_dp.pop((vs_id, vs_port), None)
        if old is not None:
            self._to_vs.pop(old, None)
        self._to_vs[(dp_id, dp_port)] = (vs_id, vs_port)
        self._to_dp[(vs_id, vs_port)] = (dp_id, dp_port)

    def unmap(self, dp_id: int, dp_port: int) -> None:
        vs = self._to_vs.pop((dp_id, dp_port), None)
        if vs is not None:
            self._to_dp.pop(vs, None)

    def unmap_datapath(self, dp_id: int) -> None:
        for key in [k for k in self._to_vs if k[0] == dp_id]:
            self.unmap(*key)

    def mappings(self) -> list[tuple[int, int, int, int]]:
        return [(d, p, v, vp) for (d, p), (v, vp) in sorted(self._to_vs.items())]

    def decide(self, dp_id: int, in_port: int, frame: bytes) -> Decision:
        """Where a packet-in from (dp_id, in_port) must go."""
        if len(frame) < ETH_HEADER:
            return self._drop("runt frame")
        if dp_id == self.vs_id:
            ethertype = int.from_bytes(frame[12:14], "big")
            if ethertype == MAPPING_ETHERTYPE:
                try:
                    vm_id, vm_port = decode_mapping_payload(frame[ETH_HEADER:])
                except ValueError:
                    return self._drop("bad mapping packet")
                return Mapped(vm_id, vm_port, dp_id, in_port)
            target = self._to_dp.get((dp_id, in_port))
            if target is None:
                return self._drop("VM port not mapped")
            self.relayed_to_dp += 1
            return SendTo(*target)
        target = self._to_vs.get((dp_id, in_port))
        if target is None:
            return self._drop("switch port not mapped")
        self.relayed_to_vm += 1
        return SendTo(*target)

    def _drop(self, reason: str) -> Drop:
        self.dropped += 1
        return Drop(reason)

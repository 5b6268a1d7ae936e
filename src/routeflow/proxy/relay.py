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

#: OpenFlow port numbers a relay link may use (below the reserved ports).
_MAX_PORT = 0xFFFFFEFF


@dataclass(frozen=True)
class RelayLink:
    """A physical switch's link to the virtual switch, for the datapath relay.

    Control frames of the switch's router ports cross it tagged with the
    router port's number as VLAN id (openflow.relay_flows, vs_relay_flows),
    so they never reach the controller.
    """

    dp_port: int  # its port on the physical switch
    vs_port: int  # its port on the virtual switch


def parse_relay_links(text: str) -> dict[int, RelayLink]:
    """``DPID:DP_PORT:VS_PORT,...`` (integers in any base Python reads) -> dp_id -> link.

    Raises ValueError naming the bad item.
    """
    links: dict[int, RelayLink] = {}
    vs_ports: set[int] = set()
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            dp_id, dp_port, vs_port = (int(x, 0) for x in parts)
        except ValueError:
            raise ValueError(f"relay link {item!r}: expected DPID:DP_PORT:VS_PORT") from None
        if not (0 < dp_port <= _MAX_PORT and 0 < vs_port <= _MAX_PORT):
            raise ValueError(f"relay link {item!r}: ports are 1..{_MAX_PORT}")
        if dp_id in links:
            raise ValueError(f"relay link {item!r}: datapath {dp_id:#x} has two relay links")
        if vs_port in vs_ports:
            raise ValueError(f"relay link {item!r}: virtual switch port {vs_port} used twice")
        vs_ports.add(vs_port)
        links[dp_id] = RelayLink(dp_port, vs_port)
    return links


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

    def vs_port_of(self, dp_id: int, dp_port: int) -> tuple[int, int] | None:
        """The (vs_id, vs_port) a switch port is mapped to, if it is."""
        return self._to_vs.get((dp_id, dp_port))

    def dp_port_of(self, vs_id: int, vs_port: int) -> tuple[int, int] | None:
        """The (dp_id, dp_port) a VM port is mapped to, if it is."""
        return self._to_dp.get((vs_id, vs_port))

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

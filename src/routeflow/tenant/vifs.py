"""VIF bindings as OVSDB holds them (pure): ``ovs-vsctl -f json list Interface`` parsed.

A VM's interface names its Neutron port in ``external_ids:iface-id`` (what Nova
and OVN's ovn-controller use); its OpenFlow port number is the ``ofport``
column, -1 or empty while OVS cannot open it. The tunnel port is the one
VXLAN interface. Anything malformed is skipped, never fatal: the agent re-reads
on every port-status event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["COMMAND", "Vifs", "parse"]

#: The ovs-vsctl arguments (after ``--db=...``) whose output ``parse`` reads.
COMMAND = ("-f", "json", "--columns=name,ofport,type,external_ids", "list", "Interface")


@dataclass(frozen=True)
class Vifs:
    ports: dict[str, int] = field(default_factory=dict)  # iface-id -> ofport
    tunnel_ofport: int = 0
    names: dict[str, str] = field(default_factory=dict)  # iface-id -> interface name


def _ofport(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _map(value: object) -> dict[str, str]:
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        pairs = value[1]
        if isinstance(pairs, list):
            return {
                str(pair[0]): str(pair[1])
                for pair in pairs
                if isinstance(pair, list) and len(pair) == 2
            }
    return {}


def parse(text: str) -> Vifs:
    """The VIFs in ``ovs-vsctl -f json ... list Interface`` output (see ``COMMAND``)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return Vifs()
    if not isinstance(doc, dict):
        return Vifs()
    headings = doc.get("headings")
    rows = doc.get("data")
    if not isinstance(headings, list) or not isinstance(rows, list):
        return Vifs()
    ports: dict[str, int] = {}
    names: dict[str, str] = {}
    tunnel = 0
    for row in rows:
        if not isinstance(row, list) or len(row) != len(headings):
            continue
        cols = dict(zip(headings, row, strict=True))
        ofport = _ofport(cols.get("ofport"))
        if cols.get("type") == "vxlan" and ofport > 0:
            tunnel = ofport
            continue
        iface_id = _map(cols.get("external_ids")).get("iface-id")
        if iface_id and ofport > 0:
            ports[iface_id] = ofport
            names[iface_id] = str(cols.get("name", ""))
    return Vifs(ports=ports, tunnel_ofport=tunnel, names=names)

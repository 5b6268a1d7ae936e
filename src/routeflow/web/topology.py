"""The topology file: how the network is drawn, for rfserver's web view.

rfserver knows switches, VMs and which ports are associated, but not how the
switches are cabled or where the hosts are. Whoever built the network (the lab
runner, an operator) can describe that in a small JSON file given to rfserver
with ``--topology FILE``::

    {"name": "rftest2",
     "nodes": [{"id": "sw-0x5", "kind": "switch", "label": "A", "dp_id": "0x5"},
               {"id": "vm-0x...", "kind": "vm", "label": "vm-A", "vm_id": "0x..."},
               {"id": "host-h1", "kind": "host", "label": "h1", "ip": "172.31.1.100/24"}],
     "edges": [{"source": "host-h1", "target": "sw-0x5", "kind": "host", "target_port": 1},
               {"source": "sw-0x5", "target": "sw-0x6", "kind": "link",
                "source_port": 2, "target_port": 2, "subnet": "10.0.0.0/30"}]}

Node ids follow ``views``: ``sw-<dp_id hex>``, ``vm-<vm_id hex>``, ``host-<name>``,
so the drawing and the live state meet on the same nodes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from routeflow.web.views import host_node_id, switch_node_id, vm_node_id


class _Node(msgspec.Struct, kw_only=True):
    id: str
    kind: Literal["switch", "vm", "host"]
    label: str = ""


class _Edge(msgspec.Struct, kw_only=True):
    source: str
    target: str
    kind: Literal["link", "host"]
    source_port: int | None = None
    target_port: int | None = None


class _File(msgspec.Struct, kw_only=True):
    name: str | None = None
    nodes: list[_Node] = []
    edges: list[_Edge] = []


class TopologyError(ValueError):
    pass


def load_topology(path: str) -> dict[str, Any]:
    """Read and check a topology file; the dict keeps any extra keys for the page."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise TopologyError(f"cannot read topology file {path}: {exc.strerror}") from exc
    return parse_topology(raw, path)


def parse_topology(raw: bytes | str, source: str = "<topology>") -> dict[str, Any]:
    try:
        msgspec.json.decode(raw, type=_File)  # shape check with field paths in errors
        data = json.loads(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise TopologyError(f"{source}: bad topology file: {exc}") from exc
    ids = [n["id"] for n in data.get("nodes", [])]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise TopologyError(f"{source}: duplicate node ids {dupes}")
    known = set(ids)
    for i, e in enumerate(data.get("edges", [])):
        for end in ("source", "target"):
            if e[end] not in known:
                raise TopologyError(f"{source}: edges[{i}].{end}: unknown node {e[end]!r}")
    return data


def topology_from_plan(plan) -> dict[str, Any]:
    """The drawing of a lab plan (routeflow.lab.model.LabPlan)."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    by_switch = {vm.switch: vm for vm in plan.vms}
    for vm in plan.vms:
        nodes.append(
            {
                "id": switch_node_id(vm.dp_id),
                "kind": "switch",
                "label": vm.switch,
                "dp_id": f"{vm.dp_id:#x}",
                "ct_id": vm.ct_id,
            }
        )
        nodes.append(
            {
                "id": vm_node_id(vm.vm_id),
                "kind": "vm",
                "label": vm.name,
                "vm_id": f"{vm.vm_id:#x}",
                "routing": vm.routing,
                "router_id": vm.router_id,
            }
        )
    for h in plan.hosts:
        nodes.append({"id": host_node_id(h.name), "kind": "host", "label": h.name, "ip": h.ip})
        edges.append(
            {
                "id": f"hostlink-{h.name}",
                "source": host_node_id(h.name),
                "target": switch_node_id(by_switch[h.switch].dp_id),
                "kind": "host",
                "target_port": h.dp_port,
            }
        )
    for link in plan.links:
        edges.append(
            {
                "id": f"link-{link.index}",
                "source": switch_node_id(by_switch[link.a.switch].dp_id),
                "target": switch_node_id(by_switch[link.b.switch].dp_id),
                "kind": "link",
                "source_port": link.a.port,
                "target_port": link.b.port,
                "subnet": link.subnet,
            }
        )
    return {"name": plan.name, "nodes": nodes, "edges": edges}


def write_topology(plan, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(topology_from_plan(plan), fh, indent=1)

"""The topology file: from a lab plan, checked on load, merged with live state."""

from __future__ import annotations

import json
import os

import pytest

from routeflow.lab.model import load_lab, plan
from routeflow.rflib.store import MemoryStore
from routeflow.server.service import RFServer
from routeflow.server.view import operator_view
from routeflow.web import views
from routeflow.web.topology import TopologyError, parse_topology, topology_from_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def rftest2():
    return plan(load_lab(os.path.join(ROOT, "labs", "rftest2.yaml")))


def test_plan_drawing(rftest2):
    t = parse_topology(json.dumps(topology_from_plan(rftest2)))
    kinds = [n["kind"] for n in t["nodes"]]
    assert kinds.count("switch") == 4 and kinds.count("vm") == 4 and kinds.count("host") == 4
    links = [e for e in t["edges"] if e["kind"] == "link"]
    assert len(links) == 5
    ab = links[0]
    assert (ab["source"], ab["target"], ab["subnet"]) == ("sw-0x5", "sw-0x6", "10.0.0.0/24")
    assert {n["label"] for n in t["nodes"] if n["kind"] == "switch"} == {"A", "B", "C", "D"}


def test_graph_ids_are_unique_and_everything_is_down_before_anyone_connects(rftest2):
    server = RFServer(rftest2.config_entries(), MemoryStore())
    g = views.topology(operator_view(server), topology_from_plan(rftest2))
    ids = [n["id"] for n in g["nodes"]] + [e["id"] for e in g["edges"]]
    assert len(ids) == len(set(ids))
    assert {n["state"] for n in g["nodes"]} == {"down"}
    assert {e["state"] for e in g["edges"]} == {"down"}
    assert sum(1 for e in g["edges"] if e["kind"] == "association") == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "bad topology file"),
        ('{"nodes": [{"id": "a", "kind": "router"}]}', "kind"),
        ('{"nodes": [{"id": "a", "kind": "vm"}, {"id": "a", "kind": "vm"}]}', "duplicate"),
        ('{"nodes": [], "edges": [{"source": "a", "target": "b", "kind": "link"}]}', "unknown"),
        ('{"edges": [{"source": "a", "kind": "link"}]}', "target"),
    ],
)
def test_bad_topology_files(text, message):
    with pytest.raises(TopologyError, match=message):
        parse_topology(text)

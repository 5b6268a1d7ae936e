"""VIFs from OVSDB's JSON: iface-id -> ofport, the VXLAN port, junk skipped."""

from __future__ import annotations

import json

from routeflow.tenant.vifs import parse

HEAD = ["name", "ofport", "type", "external_ids"]


def doc(*rows: list[object]) -> str:
    return json.dumps({"headings": HEAD, "data": list(rows)})


def test_vifs_and_the_tunnel_port() -> None:
    text = doc(
        ["vm1", 1, "", ["map", [["iface-id", "port-1"], ["attached-mac", "x"]]]],
        ["vm2", -1, "", ["map", [["iface-id", "port-2"]]]],  # OVS cannot open it
        ["vm3", ["set", []], "", ["map", [["iface-id", "port-3"]]]],  # no ofport yet
        ["vxlan0", 100, "vxlan", ["map", []]],
        ["br-int", 65534, "internal", ["map", []]],
    )
    vifs = parse(text)
    assert vifs.ports == {"port-1": 1} and vifs.tunnel_ofport == 100
    assert vifs.names == {"port-1": "vm1"}


def test_garbage_gives_nothing() -> None:
    for text in ("", "[]", "{", json.dumps({"headings": HEAD, "data": [[1, 2]]})):
        assert parse(text).ports == {}

"""Real-topology lab files: names, interface naming, bounded commands, import (pure parts)."""

from __future__ import annotations

import random

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.lab import commands, importer
from routeflow.lab.model import IFNAMSIZ, LabError, parse_lab, plan, switch_ifprefixes


def backbone_yaml(
    n: int, links: list[tuple[int, int]], names: list[str] | None = None, hosts: bool = True
) -> str:
    names = names or [f"s{i + 1}" for i in range(n)]
    imp = importer.Imported(
        name="backbone", switches=names, links=[(names[a], names[b]) for a, b in links]
    )
    return importer.to_yaml(imp, ["test backbone"], hosts=hosts)


def random_backbone(n: int, extra: int, seed: int) -> list[tuple[int, int]]:
    """A connected multigraph: a random tree, a hub, then extra random links (repeats kept)."""
    rng = random.Random(seed)
    links = [(rng.randrange(i), i) for i in range(1, n)]
    links += [(0, i) for i in range(2, min(n, 22)) if (0, i) not in links]  # hub: degree >= 20
    while len(links) < n - 1 + extra:
        a, b = rng.sample(range(n), 2)
        links.append((a, b))
    return links


def test_a_200_link_lab_builds_with_short_bounded_command_lines() -> None:
    names = [f"City{i:02d}WithALongName"[:20] for i in range(80)]
    p = plan(parse_lab(backbone_yaml(80, random_backbone(80, 125, seed=1), names)))
    assert len(p.links) == 204
    pairs = [
        (p.vm(ln.a.switch).port_ifname(ln.a.port), p.vm(ln.b.switch).port_ifname(ln.b.port))
        for ln in p.links
    ]
    hosts = [p.vm(h.switch).port_ifname(h.dp_port) for h in p.hosts]
    names_in_ovs = [n for pair in pairs for n in pair] + hosts
    assert len(set(names_in_ovs)) == len(names_in_ovs)
    assert all(len(name) <= IFNAMSIZ for name in names_in_ovs)
    bridges = [vm.bridge for vm in p.vms]
    assert len(set(bridges)) == len(bridges) and all(len(b) <= IFNAMSIZ for b in bridges)
    lines = commands.veth_pairs(pairs) + commands.tx_offload_off(names_in_ovs)
    for vm in p.vms:
        lines += commands.vm_addresses(vm, ipv6=True) + commands.vm_sysctls(ipv6=True)
    assert max(len(line) for line in lines) < 100 < commands.PTY_LINE_MAX
    assert len(commands.veth_pairs(pairs)) == 3 * len(pairs)  # add, and both ends up
    assert max(len(vm.interfaces) for vm in p.vms) >= 21  # the hub, beyond degree 16


def test_interface_names_follow_switch_names_while_they_fit() -> None:
    assert switch_ifprefixes([("A", 4), ("Amsterdam", 11)]) == {"A": "A", "Amsterdam": "Amsterdam"}
    # One name too long for "<name>-eth<port>" switches the whole lab to index names.
    long = "Frankfurt"  # Frankfurt-eth100 is 16 characters
    assert switch_ifprefixes([("A", 4), (long, 100)]) == {"A": "s1", long: "s2"}
    assert switch_ifprefixes([("A", 4), ("StPetersburg", 2)]) == {"A": "s1", "StPetersburg": "s2"}
    # A switch called vs would collide with the virtual switch's ports (vs-eth<N>).
    assert switch_ifprefixes([("vs", 1), ("B", 1)]) == {"vs": "s1", "B": "s2"}


def test_names_as_real_topologies_have_them() -> None:
    text = """
name: names
switches:
  - {name: NO, dpid: 1}
  - {name: ON, dpid: 2}
  - {name: Y, dpid: 3}
  - {name: off, dpid: 4}
  - {name: FrankfurtAmMain, dpid: 5}
links: [[NO, ON], [ON, Y], [Y, off], [off, FrankfurtAmMain], [NO, ON]]
hosts: [{name: yes, switch: NO, ip: 172.16.1.100/24}]
"""
    p = plan(parse_lab(text))
    assert [vm.switch for vm in p.vms] == ["NO", "ON", "Y", "off", "FrankfurtAmMain"]
    assert p.hosts[0].name == "yes"
    assert [vm.ifprefix for vm in p.vms] == ["s1", "s2", "s3", "s4", "s5"]
    # parallel NO-ON links: two ports each side, two subnets
    assert [i.peer for i in p.vm("NO").link_ports] == ["ON", "ON"]
    assert p.links[0].subnet != p.links[4].subnet


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ipv6: yes", "$.ipv6: Expected bool, got str (write true or false; yes/no/on/off"),
        ("switches: [{name: null, dpid: 1}]", "$.switches[0].name: Expected str, got null (quote"),
        ("switches: [{name: true, dpid: 1}]", "$.switches[0].name: Expected str, got bool (quote"),
    ],
)
def test_words_yaml_would_not_take_as_names_get_a_hint(text: str, message: str) -> None:
    base = "name: t\nswitches: [{name: A, dpid: 1}]\n"
    doc = base + text + "\n" if text.startswith("ipv6") else "name: t\n" + text + "\n"
    with pytest.raises(LabError) as info:
        parse_lab(doc)
    assert info.value.problems[0].startswith(message), info.value.problems


def test_link_cost_is_validated() -> None:
    text = "name: t\nswitches: [{name: A, dpid: 1}, {name: B, dpid: 2}]\n"
    with pytest.raises(LabError) as info:
        parse_lab(text + "links: [{ends: [A, B], cost: 0}]\n")
    assert info.value.problems == ("links[0].cost: 0 is out of range 1-65535",)
    assert plan(parse_lab(text + "links: [{ends: [A, B], cost: 10}]\n")).links[0].cost == 10


# --- import -------------------------------------------------------------------------------


def test_switch_names_from_labels() -> None:
    labels = ["Frankfurt am Main", "St. Petersburg", "Paris", "paris", "", "3 Rivers", "Ærø"]
    names = importer.switch_names(labels)
    assert names[:4] == ["FrankfurtAmMain", "StPetersburg", "Paris", "Paris2"]
    assert names[4] == "n5" and names[5] == "n3Rivers" and names[6] == "R"
    assert importer.switch_names(["Zürich", "São Paulo", "Kraków"]) == [
        "Zurich",
        "SaoPaulo",
        "Krakow",
    ]
    assert len({n.lower() for n in names}) == len(names)
    assert all(len(n) <= importer.IMPORT_NAME_MAX for n in importer.switch_names(["x" * 40] * 3))


def test_import_drops_self_loops_and_strays_and_keeps_parallel_links() -> None:
    nodes = [("0", "A"), ("1", "B"), ("2", "C"), ("3", "Lonely")]
    edges = [("0", "1"), ("1", "0"), ("1", "2"), ("2", "2")]
    imp = importer.from_graph("Test Net", nodes, edges)
    assert imp.name == "test-net"
    assert imp.switches == ["A", "B", "C"]
    assert imp.links == [("A", "B"), ("B", "A"), ("B", "C")]
    assert imp.dropped == [
        "self-loop on 'C'",
        "node 'Lonely' (not connected to the largest component)",
    ]
    text = importer.to_yaml(imp, ["header"])
    assert "# Left out of the source graph:" in text and "3 links (1 parallel)" in text
    assert len(plan(parse_lab(text)).links) == 3


def test_read_graph_reads_graphml_and_gml(tmp_path) -> None:
    g = nx.MultiGraph(Network="Tiny", GeoLocation="Nowhere")
    g.add_node("a", label="North Pole")
    g.add_node("b", label="NO")
    g.add_edges_from([("a", "b"), ("a", "b")])
    # GML as the Topology Zoo writes it: numeric ids, the city in "label".
    gml = """graph [
  multigraph 1
  Network "Tiny"
  GeoLocation "Nowhere"
  node [ id 0 label "North Pole" ]
  node [ id 1 label "NO" ]
  edge [ source 0 target 1 ]
  edge [ source 0 target 1 ]
]
"""
    (tmp_path / "t.gml").write_text(gml)
    nx.write_graphml(g, str(tmp_path / "t.graphml"))
    for name in ("t.graphml", "t.gml"):
        path = str(tmp_path / name)
        net, nodes, edges, attributes = importer.read_graph(path)
        assert net == "Tiny" and attributes["GeoLocation"] == "Nowhere"
        assert [label for _id, label in nodes] == ["North Pole", "NO"]
        assert len(edges) == 2
        imp = importer.from_graph(net, nodes, edges)
        p = plan(parse_lab(importer.to_yaml(imp, importer.provenance(path, attributes))))
        assert [vm.switch for vm in p.vms] == ["NorthPole", "NO"] and len(p.links) == 2


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_gml_as_found_in_the_wild(tmp_path, encoding) -> None:
    """Not 7-bit ASCII (networkx refuses such a file) and a repeated edge without
    "multigraph 1" (networkx refuses that too): read anyway, the repeat a parallel link."""
    gml = """graph [
  label "Wild"
  node [ id 0 label "Zürich" ]
  node [ id 1 label "Genève" ]
  node [ id 2 label "Bern" ]
  edge [ source 0 target 1 ]
  edge [ source 1 target 2 ]
  edge [ source 0 target 1 ]
]
"""
    (tmp_path / "w.gml").write_bytes(gml.encode(encoding))
    net, nodes, edges, _attributes = importer.read_graph(str(tmp_path / "w.gml"))
    assert net == "Wild" and [label for _id, label in nodes] == ["Zürich", "Genève", "Bern"]
    assert len(edges) == 3
    imp = importer.from_graph(net, nodes, edges)
    p = plan(parse_lab(importer.to_yaml(imp, ["header"])))
    assert [vm.switch for vm in p.vms] == ["Zurich", "Geneve", "Bern"] and len(p.links) == 3


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
            st.lists(st.text(min_size=0, max_size=25), min_size=n, max_size=n),
        )
    )
)
def test_any_graph_imports_to_a_valid_lab(graph) -> None:
    n, edges, labels = graph
    nodes = [(str(i), labels[i]) for i in range(n)]
    imp = importer.from_graph("any", nodes, [(str(a), str(b)) for a, b in edges])
    p = plan(parse_lab(importer.to_yaml(imp, ["property"])))
    assert len(p.vms) == len(imp.switches) >= 1
    assert len(p.links) == len(imp.links)
    assert len(p.hosts) == len(p.vms)
    # every derived Linux name fits and none repeats
    names = [vm.port_ifname(i.port) for vm in p.vms for i in vm.interfaces]
    assert len(set(names)) == len(names) and all(len(x) <= IFNAMSIZ for x in names)


def test_an_imported_lab_with_bfd_keeps_hellos_off_the_relay() -> None:
    """BFD through the packet-in relay does not hold at backbone size on 2 cores: an
    imported lab with BFD gets the virtual-domain control plane unless told otherwise."""
    imp = importer.from_graph("t", [("0", "A"), ("1", "B")], [("0", "1")])
    with_bfd = plan(parse_lab(importer.to_yaml(imp, ["h"], bfd=True)))
    assert with_bfd.ospf.bfd and with_bfd.control_plane == "virtual"
    told = plan(parse_lab(importer.to_yaml(imp, ["h"], bfd=True, control_plane="classic")))
    assert told.ospf.bfd and told.control_plane == "classic"
    plain = importer.to_yaml(imp, ["h"])
    assert "control_plane" not in plain and plan(parse_lab(plain)).control_plane == "classic"

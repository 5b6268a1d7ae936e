"""SNDlib (native, XML) and REPETITA topology files become lab files (no lab needed).

The texts follow the formats' own specifications (sndlib.zib.de's format pages, REPETITA's
README): sections, comments and columns a real file has, written here by hand.
"""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.cli import main
from routeflow.lab import importer, topofiles
from routeflow.lab.model import parse_lab, plan
from routeflow.lab.topofiles import TopologyFileError

NATIVE = """?SNDlib native format; type: network; version: 1.0
# network tinygermany

# META SECTION

META (
  granularity = 1day
  time = ?
  unit = MBITPERSEC
  origin = ?
)

# NODE SECTION
#
# <node_id> [(<longitude>, <latitude>)]

NODES (
  Aachen ( 6.04 50.76 )
  Berlin ( 13.48 52.52 )
  Koeln ( 6.57 50.95 )
  Muenchen ( 11.55 48.15 )
)

# LINK SECTION
#
# <link_id> ( <source> <target> ) <pre_installed_capacity> <pre_installed_capacity_cost> \
<routing_cost> <setup_cost> ( {<module_capacity> <module_cost>}* )

LINKS (
  L1 ( Aachen Koeln ) 0.00 0.00 0.00 0.00 ( 40.00 3290.00 160.00 5922.00 )
  L2 ( Koeln Berlin ) 0.00 0.00 0.00 0.00 ( 40.00 3290.00 )
  L3 ( Berlin Muenchen ) 0.00 0.00 0.00 0.00 ( )
  L4 ( Koeln Muenchen ) 0.00 0.00 0.00 0.00 ( 40.00 3290.00 )
  L5 ( Koeln Muenchen ) 0.00 0.00 0.00 0.00 ( 40.00 3290.00 )
)

# DEMAND SECTION

DEMANDS (
  D1 ( Aachen Berlin ) 1 6.00 UNLIMITED
)

# ADMISSIBLE PATHS SECTION

ADMISSIBLE_PATHS (
  D1 (
    P_0 ( L1 L2 )
  )
)
"""

XML = """<?xml version="1.0" encoding="ISO-8859-1"?>
<network xmlns="http://sndlib.zib.de/network" version="1.0">
 <meta>
  <granularity>1day</granularity>
  <unit>MBITPERSEC</unit>
 </meta>
 <networkStructure>
  <nodes coordinatesType="geographical">
   <node id="Aachen"><coordinates><x>6.04</x><y>50.76</y></coordinates></node>
   <node id="Berlin"><coordinates><x>13.48</x><y>52.52</y></coordinates></node>
   <node id="Koeln"><coordinates><x>6.57</x><y>50.95</y></coordinates></node>
  </nodes>
  <links>
   <link id="L1"><source>Aachen</source><target>Koeln</target>
    <additionalModules><addModule><capacity>40.0</capacity><cost>3290.0</cost></addModule>
    </additionalModules></link>
   <link id="L2"><source>Koeln</source><target>Berlin</target></link>
  </links>
 </networkStructure>
 <demands>
  <demand id="D1"><source>Aachen</source><target>Berlin</target><demandValue>6.0</demandValue>
  </demand>
 </demands>
</network>
"""

# REPETITA: one line per direction; weights may differ each way.
REPETITA = """NODES 4
label x y
Amsterdam 4.9 52.37
Brussels 4.35 50.85
Paris 2.35 48.86
London -0.13 51.5

EDGES 8
label src dest weight bw delay
edge_0 0 1 10 10000000 2
edge_1 1 0 10 10000000 2
edge_2 1 2 25 10000000 3
edge_3 2 1 30 10000000 3
edge_4 2 3 7 10000000 4
edge_5 3 2 7 10000000 4
edge_6 3 0 1 10000000 4
edge_7 0 3 1 10000000 4
"""


def _lab(src: topofiles.SourceGraph):
    imp = importer.from_graph(src.name, src.nodes, src.edges, src.costs)
    header = importer.provenance("f", src.attributes, src.kind, src.notes)
    return plan(parse_lab(importer.to_yaml(imp, header))), imp


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (NATIVE, "sndlib-native"),
        (XML, "sndlib-xml"),
        (REPETITA, "repetita"),
        (
            '<?xml version="1.0"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
            "graphml",
        ),
        ("graph [\n  node [ id 0 ]\n]\n", "gml"),
        ('Creator "yFiles"\ngraph [\n', "gml"),
        ("hello", "unknown"),
    ],
)
def test_a_file_is_known_by_its_content(text: str, kind: str) -> None:
    assert topofiles.sniff(text, "/somewhere/topology.txt") == kind


def test_sndlib_native_gives_nodes_and_links_and_skips_the_rest() -> None:
    g = topofiles.parse_sndlib_native(NATIVE, "tiny.txt")
    assert g.name == "tinygermany"
    assert [n for n, _ in g.nodes] == ["Aachen", "Berlin", "Koeln", "Muenchen"]
    assert g.edges == [
        ("Aachen", "Koeln"),
        ("Koeln", "Berlin"),
        ("Berlin", "Muenchen"),
        ("Koeln", "Muenchen"),
        ("Koeln", "Muenchen"),
    ]
    p, _ = _lab(g)
    assert [vm.switch for vm in p.vms] == ["Aachen", "Berlin", "Koeln", "Muenchen"]
    assert len(p.links) == 5 and {ln.cost for ln in p.links} == {1}


def test_sndlib_xml_reads_as_the_native_form_does() -> None:
    g = topofiles.parse_sndlib_xml(XML, "/data/tiny.xml")
    assert g.name == "tiny" and g.attributes["unit"] == "MBITPERSEC"
    assert [n for n, _ in g.nodes] == ["Aachen", "Berlin", "Koeln"]
    assert g.edges == [("Aachen", "Koeln"), ("Koeln", "Berlin")]
    p, _ = _lab(g)
    assert len(p.vms) == 3 and len(p.links) == 2


def test_repetita_directions_become_one_link_with_the_weight_as_ospf_cost() -> None:
    g = topofiles.parse_repetita(REPETITA, "/data/Bnl.graph")
    assert [label for _, label in g.nodes] == ["Amsterdam", "Brussels", "Paris", "London"]
    assert g.edges == [("0", "1"), ("1", "2"), ("2", "3"), ("3", "0")]
    assert g.costs == [10, 30, 7, 1]  # 25 one way, 30 the other: the larger
    assert g.notes == ["1 links weigh differently each way: each got the larger weight"]
    p, imp = _lab(g)
    assert {(ln.a.switch, ln.b.switch): ln.cost for ln in p.links} == {
        ("Amsterdam", "Brussels"): 10,
        ("Brussels", "Paris"): 30,
        ("Paris", "London"): 7,
        ("London", "Amsterdam"): 1,
    }
    text = importer.to_yaml(imp, importer.provenance("Bnl.graph", g.attributes, g.kind, g.notes))
    assert '{ends: ["Brussels", "Paris"], cost: 30}' in text
    assert "OSPF cost = the file's IGP weight." in text and "# Note: 1 links weigh" in text


def test_repetita_weights_beyond_ospf_are_scaled_and_said() -> None:
    text = REPETITA.replace(" 25 10000000", " 200000 10000000").replace(
        " 30 10000000", " 200000 10000000"
    )
    g = topofiles.parse_repetita(text, "big.graph")
    assert max(g.costs or []) <= 65535 and min(g.costs or []) >= 1
    assert g.costs == [3, 50000, 2, 1]
    assert g.notes == ["weights up to 200000 divided by 4 to fit OSPF's 1-65535"]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(1, 9999)),
                max_size=30,
            ),
        )
    ),
    st.randoms(use_true_random=False),
)
def test_repetita_any_link_list_written_both_ways_reads_back(graph, rnd) -> None:
    """Links written as REPETITA does (each direction its own line, in any order) read back
    as the same links with the same weights, parallel ones included."""
    n, links = graph
    links = [(a, b, w) for a, b, w in links if a != b]
    rows = [(a, b, w) for a, b, w in links] + [(b, a, w) for a, b, w in links]
    rnd.shuffle(rows)
    text = f"NODES {n}\nlabel x y\n" + "".join(f"n{i} 0 0\n" for i in range(n))
    text += f"\nEDGES {len(rows)}\nlabel src dest weight bw delay\n"
    text += "".join(f"e{i} {a} {b} {w} 100 1\n" for i, (a, b, w) in enumerate(rows))
    g = topofiles.parse_repetita(text, "p.graph")
    got = Counter(
        (frozenset((int(a), int(b))), w) for (a, b), w in zip(g.edges, g.costs or [], strict=True)
    )
    want = Counter((frozenset((a, b)), w) for a, b, w in links)
    assert got == want and g.notes == []


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        (
            "sndlib-native",
            NATIVE.replace("( Koeln Berlin )", "( Koeln Bonn )"),
            "tiny:30: link L2: unknown node 'Bonn'",
        ),
        (
            "sndlib-native",
            NATIVE.replace("type: network", "type: solution"),
            "tiny:1: an SNDlib file, but not a network",
        ),
        (
            "sndlib-native",
            NATIVE.split("# LINK SECTION")[0].replace("\n)\n", "\n", 2)[:-1],
            "is not closed by ')'",
        ),
        (
            "sndlib-native",
            NATIVE.replace("  Koeln ( 6.57", "  Aachen ( 6.57"),
            "tiny:20: node 'Aachen' named twice",
        ),
        (
            "sndlib-xml",
            XML.replace("<target>Berlin", "<target>Bonn"),
            "tiny: link 'L2': unknown node 'Bonn'",
        ),
        ("sndlib-xml", XML[:200], "tiny: not well-formed XML"),
        (
            "repetita",
            REPETITA.replace("edge_4 2 3", "edge_4 2 9"),
            "tiny:14: node index 9 out of 0-3",
        ),
        ("repetita", REPETITA.replace("EDGES 8", "EDGES 9"), "tiny: edges: 9 announced, 8 found"),
        (
            "repetita",
            REPETITA.replace("edge_2 1 2 25", "edge_2 1 2 heavy"),
            "tiny:12: src, dest and weight",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_file_and_line(kind: str, text: str, message: str) -> None:
    with pytest.raises(TopologyFileError) as err:
        topofiles.parse(kind, text, "tiny")
    assert message in str(err.value)


def test_lab_import_takes_each_format(tmp_path) -> None:
    runner = CliRunner()
    for fname, text, cost in (
        ("g.txt", NATIVE, None),
        ("g.xml", XML, None),
        ("g.graph", REPETITA, 30),
    ):
        path = tmp_path / fname
        path.write_text(text)
        out = tmp_path / f"{fname}.yaml"
        result = runner.invoke(main, ["lab", "import", str(path), "-o", str(out)])
        assert result.exit_code == 0, result.output
        p = plan(parse_lab(out.read_text()))
        assert len(p.hosts) == len(p.vms) >= 3
        if cost is not None:
            assert cost in {ln.cost for ln in p.links}
    (tmp_path / "bad.txt").write_text("hello\n")
    result = runner.invoke(main, ["lab", "import", str(tmp_path / "bad.txt")])
    assert result.exit_code == 2
    assert "not a topology file I know" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.graph"
    bad.write_text(REPETITA.replace("edge_4 2 3", "edge_4 2 9"))
    result = runner.invoke(main, ["lab", "import", str(bad)])
    assert result.exit_code == 2 and "bad.graph:14: node index 9" in result.output

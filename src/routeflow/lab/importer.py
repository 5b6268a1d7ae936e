"""Lab files from public topology files: GraphML or GML (the Internet Topology Zoo's),
SNDlib (native text or XML) and REPETITA (with IGP weights, made OSPF costs).

A RouteFlow user brings their own network; research backbones are published as graphs whose
nodes carry city names ("Frankfurt am Main", "St. Petersburg") and whose edges may repeat
(two circuits between the same two cities). This module turns such a graph into a lab file:
one switch per node (name made from its label), one link per edge (parallel edges kept),
one host per switch. Reading GraphML/GML is networkx's job (:func:`read_graph`), the other
formats lab.topofiles'; everything else is pure, so the same graph always gives the same
lab text.

What is dropped is said in the file's header, never silently: self-loops (a link needs two
switches), and nodes outside the largest connected component (a lab must be connected; many
Topology Zoo graphs have a stray node without position or links).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from routeflow.lab import topofiles
from routeflow.lab.model import LAB_NAME_RE
from routeflow.lab.topofiles import SourceGraph, TopologyFileError

#: Imported names are cut to this length: long enough for "StPetersburg" or "FrankfurtAmMain",
#: short enough for tables (the lab file itself accepts up to model.IMPORT_NAME_MAX).
IMPORT_NAME_MAX = 15

__all__ = [
    "Imported",
    "SourceGraph",
    "TopologyFileError",
    "from_graph",
    "read_graph",
    "read_topology",
    "switch_names",
]

#: The control plane an imported lab with BFD gets unless told otherwise: BFD at 100 ms x 3
#: through rfproxy's packet-in relay saturates it on 2 cores past about 40 switches (the
#: Zoo's Bellsouth, 51 switches: 1475/5967 routes after 120 s, classic; 100 % pingall after
#: 18.4 s, virtual), while the virtual-domain control plane keeps hellos off the relay.
BFD_CONTROL_PLANE = "virtual"

#: Hosts sit on 172.16.0.0/12, one /24 per switch, so 4096 switches fit and no host subnet
#: overlaps the default link pool (10.0.0.0/16).
HOST_POOL = ipaddress.IPv4Network("172.16.0.0/12")


@dataclass
class Imported:
    """A graph reduced to what a lab file says, plus what was left out and why."""

    name: str
    switches: list[str]
    links: list[tuple[str, str]]
    dropped: list[str] = field(default_factory=list)
    #: OSPF cost per link (aligned with ``links``); empty: cost 1 everywhere.
    costs: list[int] = field(default_factory=list)


def switch_names(labels: Iterable[str]) -> list[str]:
    """Lab-file names for node labels: letters and digits of each word, capitalised, joined.

    "Frankfurt am Main" -> "FrankfurtAmMain", "St. Petersburg" -> "StPetersburg", "Zürich" ->
    "Zurich". Names are cut
    to :data:`IMPORT_NAME_MAX` characters, start with a letter, and are made unique with a
    numeric suffix (two nodes labelled "Paris" give "Paris" and "Paris2").
    """
    out: list[str] = []
    taken: set[str] = set()
    for i, label in enumerate(labels):
        # Accents off first ("Zürich" -> "Zurich", "São Paulo" -> "SaoPaulo"), so a
        # letter outside ASCII neither vanishes nor splits a word.
        plain = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
        words = re.findall(r"[A-Za-z0-9]+", plain)
        base = "".join(w[:1].upper() + w[1:] for w in words) or f"n{i + 1}"
        if not base[0].isalpha():
            base = "n" + base
        base = base[:IMPORT_NAME_MAX]
        name, k = base, 2
        while name.lower() in taken:
            suffix = str(k)
            name = base[: IMPORT_NAME_MAX - len(suffix)] + suffix
            k += 1
        taken.add(name.lower())  # case-insensitive: file systems and humans
        out.append(name)
    return out


def lab_name(text: str) -> str:
    """A valid lab name (see model.LAB_NAME_RE) from a file or network name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")[:24] or "imported"
    assert LAB_NAME_RE.match(name), name
    return name


def from_graph(
    name: str,
    nodes: list[tuple[str, str]],
    edges: list[tuple[str, str]],
    costs: list[int] | None = None,
) -> Imported:
    """Reduce a graph (node id, label) + edges (node ids, repeats allowed) to a lab's topology.

    Keeps the largest connected component (ties: the one holding the first node), drops
    self-loops, keeps parallel edges, and keeps the graph's node and edge order so a diff of
    two imports reads like a diff of the two source files.
    """
    dropped: list[str] = []
    ids = [n for n, _ in nodes]
    label = dict(nodes)
    adj: dict[str, set[str]] = {n: set() for n in ids}
    kept_edges: list[tuple[str, str, int]] = []
    for (a, b), cost in zip(edges, costs or [1] * len(edges), strict=True):
        if a == b:
            dropped.append(f"self-loop on {label.get(a, a)!r}")
            continue
        adj[a].add(b)
        adj[b].add(a)
        kept_edges.append((a, b, cost))
    # Connected components by BFS, in node order.
    component_of: dict[str, int] = {}
    components: list[list[str]] = []
    for start in ids:
        if start in component_of:
            continue
        comp, queue = [start], [start]
        component_of[start] = len(components)
        while queue:
            for nxt in sorted(adj[queue.pop()], key=ids.index):
                if nxt not in component_of:
                    component_of[nxt] = len(components)
                    comp.append(nxt)
                    queue.append(nxt)
        components.append(comp)
    best = max(range(len(components)), key=lambda c: (len(components[c]), -c)) if ids else 0
    keep = {n for n in ids if component_of.get(n) == best}
    for n in ids:
        if n not in keep:
            dropped.append(f"node {label[n]!r} (not connected to the largest component)")
    kept_ids = [n for n in ids if n in keep]
    names = dict(zip(kept_ids, switch_names(label[n] for n in kept_ids), strict=True))
    kept = [(a, b, c) for a, b, c in kept_edges if a in keep and b in keep]
    return Imported(
        name=lab_name(name),
        switches=[names[n] for n in kept_ids],
        links=[(names[a], names[b]) for a, b, _c in kept],
        dropped=dropped,
        costs=[c for _a, _b, c in kept] if costs is not None else [],
    )


def host_subnet(index: int) -> ipaddress.IPv4Network:
    """The /24 of the host on switch ``index`` (0-based)."""
    return ipaddress.IPv4Network((int(HOST_POOL.network_address) + ((index + 1) << 8), 24))


def to_yaml(
    imp: Imported,
    header: list[str],
    *,
    routing: str = "ospf",
    hosts: bool = True,
    ipv6: bool = False,
    bfd: bool = False,
    control_plane: str | None = None,
) -> str:
    """The lab file's text: header comments, then switches, links and hosts in flow style.

    Names are always quoted, so a switch called NO or ON stays a string whatever YAML
    reader an operator later points at the file. ``control_plane`` None: ``virtual`` with
    BFD (see BFD_CONTROL_PLANE), the lab default otherwise.
    """
    if control_plane is None and bfd:
        control_plane = BFD_CONTROL_PLANE
    lines = [f"# {h}".rstrip() for h in header]
    if imp.dropped:
        lines.append("# Left out of the source graph:")
        lines += [f"#   {d}" for d in imp.dropped]
    degree: dict[str, int] = dict.fromkeys(imp.switches, 0)
    for a, b in imp.links:
        degree[a] += 1
        degree[b] += 1
    busiest = max(imp.switches, key=lambda s: degree[s])
    pairs = [frozenset(link) for link in imp.links]
    parallel = sum(1 for i, p in enumerate(pairs) if p in pairs[:i])
    lines.append(
        f"# {len(imp.switches)} switches, {len(imp.links)} links ({parallel} parallel), "
        f"busiest switch {busiest} with {degree[busiest]} links"
    )
    lines.append(f"name: {imp.name}")
    lines.append(f"routing: {routing}")
    if control_plane is not None:
        if control_plane == "virtual" and bfd:
            lines.append("# BFD hellos (100 ms) go VM to VM over mirrored links: through the")
            lines.append("# controller's relay they do not hold past about 40 switches.")
        lines.append(f"control_plane: {control_plane}")
    lines.append("ospf: {hello: 1, dead: 4" + (", bfd: true" if bfd else "") + "}")
    if ipv6:
        lines.append("ipv6: true")
    lines.append("switches:")
    for i, s in enumerate(imp.switches):
        lines.append(f'  - {{name: "{s}", dpid: {i + 1:#x}}}')
    lines.append("links:" if imp.links else "links: []")
    for i, (a, b) in enumerate(imp.links):
        cost = imp.costs[i] if imp.costs else 1
        if cost == 1:
            lines.append(f'  - ["{a}", "{b}"]')
        else:
            lines.append(f'  - {{ends: ["{a}", "{b}"], cost: {cost}}}')
    if hosts:
        lines.append("hosts:")
        for i, s in enumerate(imp.switches):
            net = host_subnet(i)
            lines.append(
                f'  - {{name: "h{i + 1}", switch: "{s}", ip: {net.network_address + 100}/24}}'
            )
    return "\n".join(lines) + "\n"


def read_graph(
    path: str, kind: str | None = None, text: str | None = None
) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]], dict[str, str]]:
    """Network name, nodes (id, label), edges and graph attributes of a GraphML or GML file
    (networkx reads it; Topology Zoo files say where their map came from and when).
    ``text``: a GML file's content, already read and decoded (read_topology)."""
    import networkx as nx

    if kind == "gml" or (kind is None and path.endswith(".gml")):
        if text is None:
            with open(path, "rb") as fh:
                text = topofiles.decode(fh.read())
        g = _parse_gml(text)
    else:
        g = nx.read_graphml(path)
    net = g.graph.get("Network") or g.graph.get("label") or topofiles.file_stem(path)
    nodes = [(str(n), str(d.get("label") or n)) for n, d in g.nodes(data=True)]
    edges = [(str(a), str(b)) for a, b in g.edges()]
    return str(net), nodes, edges, {str(k): str(v) for k, v in g.graph.items()}


def read_topology(path: str) -> SourceGraph:
    """Any topology file this importer knows, by its content (see topofiles.sniff).

    Raises TopologyFileError naming the file (and line, where there is one)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise TopologyFileError(f"{path}: {exc.strerror}") from None
    text = topofiles.decode(raw)
    kind = topofiles.sniff(text, path)
    if kind in ("graphml", "gml"):
        try:
            net, nodes, edges, attributes = read_graph(path, kind, text)
        except Exception as exc:  # networkx raises many kinds; all mean "not a graph I read"
            raise TopologyFileError(f"{path}: cannot read as {kind.upper()}: {exc}") from None
        return SourceGraph(kind, net, nodes, edges, attributes=attributes)
    if kind == "unknown":
        raise TopologyFileError(
            f"{path}: not a topology file I know (GraphML, GML, SNDlib native or XML, REPETITA)"
        )
    return topofiles.parse(kind, text, path)


def _parse_gml(text: str) -> Any:
    """GML is 7-bit ASCII with other characters as HTML entities, and networkx insists;
    files in the wild (Topology Zoo's among them) hold UTF-8 or Latin-1 labels such as
    "Zürich": those are escaped the way GML says, then parsed."""
    import networkx as nx

    if not text.isascii():
        text = "".join(c if ord(c) < 128 else f"&#{ord(c)};" for c in text)
    if "multigraph" not in text:
        # A repeated edge in a file that did not declare itself a multigraph is a
        # parallel link (networkx would refuse the file), as GraphML's are.
        text = re.sub(r"\bgraph\s*\[", "graph [\n  multigraph 1", text, count=1)
    return nx.parse_gml(text.splitlines(), label="id")


def provenance(
    path: str, attributes: dict[str, str], kind: str = "graphml", notes: Iterable[str] = ()
) -> list[str]:
    """Header lines naming where a graph came from, from what the file itself records
    (``kind`` as topofiles.sniff says; ``notes``: what reading the file changed)."""
    net = attributes.get("Network") or path.rsplit("/", 1)[-1]
    if kind in ("sndlib-native", "sndlib-xml", "repetita"):
        lines = [f"{net}: from {path.rsplit('/', 1)[-1]}."]
        if kind != "repetita":
            lines.append("Data: SNDlib (S. Orlowski et al., Networks 55(3), 2010), sndlib.zib.de.")
        else:
            lines.append("Data: REPETITA (S. Gay, P. Schaus, S. Vissicchio, 2017).")
        lines.append(
            "Made with `routeflow lab import`: one switch per node, one link per edge"
            " (parallel edges kept),"
        )
        lines.append(
            "one host per switch, "
            + ("OSPF cost = the file's IGP weight." if kind == "repetita" else "OSPF cost 1.")
        )
        return lines + [f"Note: {n}." for n in notes]
    where = ", ".join(v for k in ("GeoLocation", "NetworkDate") if (v := attributes.get(k)))
    lines = [f"{net}" + (f" ({where})" if where else "") + f": from {path.rsplit('/', 1)[-1]}."]
    if "DateObtained" in attributes or "LastAccess" in attributes:
        lines.append(
            "Data: The Internet Topology Zoo (S. Knight et al., IEEE JSAC 29(9), 2011),"
            f" obtained {attributes.get('DateObtained', '?')}."
        )
    if attributes.get("Source"):
        lines.append(f"The network's own map, as the file records it: {attributes['Source']}")
    lines.append("Made with `routeflow lab import`: one switch per node (names from the labels),")
    lines.append("one link per edge (parallel edges kept), one host per switch, OSPF cost 1.")
    return lines

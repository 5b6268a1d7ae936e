"""Topology files of the collections networkx does not read: SNDlib and REPETITA.

SNDlib (sndlib.zib.de: germany50, nobel-eu, janos-us, ...) publishes networks in a native
text format and in XML; REPETITA (the traffic-engineering dataset of Gay, Schaus and
Vissicchio, which also carries Topology Zoo and Rocketfuel networks with their IGP weights)
in a text format of its own. No maintained Python package reads either, and both are a few
sections of one item per line, so they are parsed here by hand, purely (text in, graph out),
with every error naming the file and line.

What a lab needs is kept: node names, links (parallel ones too), and REPETITA's weights as
OSPF costs. Coordinates, capacities, demands and delays are not a lab's business.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from routeflow.lab.model import MAX_OSPF_COST

__all__ = ["SourceGraph", "TopologyFileError", "parse", "sniff"]

SNDLIB_NATIVE_HEADER = "?SNDlib native format"
SNDLIB_XMLNS = "http://sndlib.zib.de/network"


class TopologyFileError(ValueError):
    """A topology file that cannot be read; the message names the file and line."""


@dataclass
class SourceGraph:
    """A topology as its file has it: node (id, label), edges by node id, OSPF costs.

    ``costs`` is aligned with ``edges``, or None when the file has no link weights (cost 1).
    ``notes`` say what the reading changed (weights merged or scaled), for the lab's header.
    """

    kind: str
    name: str
    nodes: list[tuple[str, str]]
    edges: list[tuple[str, str]]
    costs: list[int] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def sniff(text: str, path: str) -> str:
    """The format of a topology file: graphml, gml, sndlib-native, sndlib-xml or repetita."""
    head = text.lstrip("\ufeff \t\r\n")[:4096]
    if head.startswith(SNDLIB_NATIVE_HEADER):
        return "sndlib-native"
    if head.startswith("<") or head.startswith("<?xml"):
        if SNDLIB_XMLNS in head or re.search(r"<network[\s>]", head):
            return "sndlib-xml"
        return "graphml"
    if re.match(r"NODES\s+\d+\s*$", head.split("\n", 1)[0].strip()):
        return "repetita"
    if path.endswith(".gml") or re.match(r"(Creator\s+\"[^\"]*\"\s*)?graph\s*\[", head):
        return "gml"
    if path.endswith((".graphml", ".xml")):
        return "graphml"
    return "unknown"


def parse(kind: str, text: str, origin: str) -> SourceGraph:
    """``text`` of a file of ``kind`` (see :func:`sniff`, not graphml/gml) as a graph."""
    if kind == "sndlib-native":
        return parse_sndlib_native(text, origin)
    if kind == "sndlib-xml":
        return parse_sndlib_xml(text, origin)
    if kind == "repetita":
        return parse_repetita(text, origin)
    raise TopologyFileError(f"{origin}: not a format read here ({kind})")


def file_stem(path: str) -> str:
    """A file's name without directory and extension: a network's name when the file has none."""
    return path.rsplit("/", 1)[-1].split(".")[0] or "imported"


def decode(raw: bytes) -> str:
    """Topology files in the wild are UTF-8 or Latin-1 (the Topology Zoo's GML has both)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# SNDlib native: sections "NAME (" ... ")" of one item per line; only NODES and LINKS
# matter. A node is "id ( lon lat )", a link "id ( source target ) numbers ( modules )".
_SECTION = re.compile(r"^([A-Z_]+)\s*\($")
_NATIVE_NODE = re.compile(r"^(\S+)(\s*\(.*\))?$")
_NATIVE_LINK = re.compile(r"^(\S+)\s*\(\s*(\S+)\s+(\S+)\s*\)")


def parse_sndlib_native(text: str, origin: str) -> SourceGraph:
    name = file_stem(origin)
    nodes: list[tuple[str, str]] = []
    edges: list[tuple[str, str]] = []
    section: str | None = None
    depth = 0
    known: set[str] = set()
    saw_header = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not saw_header and line:
            if not line.startswith(SNDLIB_NATIVE_HEADER):
                raise TopologyFileError(f"{origin}:{lineno}: not an SNDlib native file")
            if "type: network" not in line.replace("type:network", "type: network"):
                raise TopologyFileError(f"{origin}:{lineno}: an SNDlib file, but not a network")
            saw_header = True
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*network\s+(\S+)", line)
            if m and section is None:
                name = m[1]
            continue
        if not line:
            continue
        if section is None:
            m = _SECTION.match(line)
            if not m:
                raise TopologyFileError(f"{origin}:{lineno}: expected a section, got {line!r}")
            section, depth = m[1], 1
            continue
        if line == ")":
            depth -= 1
            if depth == 0:
                section = None
            continue
        if line.endswith("("):  # an item of its own items (ADMISSIBLE_PATHS' demands)
            depth += 1
            continue
        if section == "NODES":
            m = _NATIVE_NODE.match(line)
            if not m:
                raise TopologyFileError(f"{origin}:{lineno}: not a node: {line!r}")
            if m[1] in known:
                raise TopologyFileError(f"{origin}:{lineno}: node {m[1]!r} named twice")
            known.add(m[1])
            nodes.append((m[1], m[1]))
        elif section == "LINKS":
            m = _NATIVE_LINK.match(line)
            if not m:
                raise TopologyFileError(
                    f"{origin}:{lineno}: not a link (id ( source target ) ...): {line!r}"
                )
            for end in (m[2], m[3]):
                if end not in known:
                    raise TopologyFileError(f"{origin}:{lineno}: link {m[1]}: unknown node {end!r}")
            edges.append((m[2], m[3]))
    if not saw_header:
        raise TopologyFileError(f"{origin}: empty file")
    if section is not None:
        raise TopologyFileError(f"{origin}: section {section} is not closed by ')'")
    if not nodes:
        raise TopologyFileError(f"{origin}: no NODES section")
    return SourceGraph("sndlib-native", name, nodes, edges, attributes={"Network": name})


def parse_sndlib_xml(text: str, origin: str) -> SourceGraph:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TopologyFileError(f"{origin}: not well-formed XML: {exc}") from None
    ns = {"s": SNDLIB_XMLNS} if root.tag.startswith("{") else {}

    def q(tag: str) -> str:
        return f"s:{tag}" if ns else tag

    if root.tag.rsplit("}", 1)[-1] != "network":
        raise TopologyFileError(f"{origin}: XML, but its root is not an SNDlib <network>")
    structure = root.find(q("networkStructure"), ns)
    if structure is None:
        raise TopologyFileError(f"{origin}: no <networkStructure>")
    nodes: list[tuple[str, str]] = []
    known: set[str] = set()
    for node in structure.iterfind(f"{q('nodes')}/{q('node')}", ns):
        nid = node.get("id")
        if not nid:
            raise TopologyFileError(f"{origin}: a <node> without an id")
        if nid in known:
            raise TopologyFileError(f"{origin}: node {nid!r} named twice")
        known.add(nid)
        nodes.append((nid, nid))
    edges: list[tuple[str, str]] = []
    for link in structure.iterfind(f"{q('links')}/{q('link')}", ns):
        ends = [(link.findtext(q(t), None, ns) or "").strip() for t in ("source", "target")]
        for end in ends:
            if end not in known:
                raise TopologyFileError(
                    f"{origin}: link {link.get('id')!r}: unknown node {end or '(none)'!r}"
                )
        edges.append((ends[0], ends[1]))
    if not nodes:
        raise TopologyFileError(f"{origin}: no <node> in <networkStructure>")
    meta_el = root.find(q("meta"), ns)
    meta = {
        child.tag.rsplit("}", 1)[-1]: (child.text or "").strip()
        for child in (meta_el if meta_el is not None else [])
    }
    name = file_stem(origin)
    return SourceGraph("sndlib-xml", name, nodes, edges, attributes={**meta, "Network": name})


def parse_repetita(text: str, origin: str) -> SourceGraph:
    """REPETITA: "NODES n", a header line, n "label x y" lines; "EDGES m", a header line,
    m "label src dest weight bw delay" lines, src/dest node indices, one line per direction.

    The two directions of a link become one lab link whose OSPF cost is the larger weight
    (a lab link has one cost for both ends; said in the notes when they differ)."""
    lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    pos = 0

    def count(word: str) -> int:
        nonlocal pos
        if pos >= len(lines):
            raise TopologyFileError(f"{origin}: ends before its {word} section")
        lineno, line = lines[pos]
        m = re.fullmatch(rf"{word}\s+(\d+)", line)
        if not m:
            raise TopologyFileError(f"{origin}:{lineno}: expected '{word} <count>', got {line!r}")
        pos += 2  # the count line and the column header after it
        if pos > len(lines):
            raise TopologyFileError(f"{origin}: ends inside its {word} section")
        return int(m[1])

    def take(n: int, what: str) -> list[tuple[int, list[str]]]:
        nonlocal pos
        rows = lines[pos : pos + n]
        if len(rows) < n:
            raise TopologyFileError(f"{origin}: {what}: {n} announced, {len(rows)} found")
        pos += n
        return [(i, ln.split()) for i, ln in rows]

    nodes: list[tuple[str, str]] = []
    for _lineno, cols in take(count("NODES"), "nodes"):
        nodes.append((str(len(nodes)), cols[0] if cols else f"n{len(nodes)}"))
    directed: list[tuple[int, int, int]] = []  # (src, dst, weight)
    for lineno, cols in take(count("EDGES"), "edges"):
        if len(cols) < 4:
            raise TopologyFileError(f"{origin}:{lineno}: expected 'label src dest weight ...'")
        try:
            src, dst, weight = int(cols[1]), int(cols[2]), int(float(cols[3]))
        except ValueError:
            raise TopologyFileError(
                f"{origin}:{lineno}: src, dest and weight must be numbers"
            ) from None
        for end in (src, dst):
            if not 0 <= end < len(nodes):
                last = len(nodes) - 1
                raise TopologyFileError(f"{origin}:{lineno}: node index {end} out of 0-{last}")
        directed.append((src, dst, weight))
    # Pair the two directions of each link: per pair of nodes, a row with a reverse row of
    # the same weight first (parallel links may weigh differently), what is left in file
    # order; a link is placed where its first row is.
    by_pair: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for k, (src, dst, _w) in enumerate(directed):
        fw, bw = by_pair.setdefault((min(src, dst), max(src, dst)), ([], []))
        (fw if src <= dst else bw).append(k)
    placed: list[tuple[int, int]] = []  # (first row, weight)
    differing = 0
    for fw, bw in by_pair.values():
        for k in list(fw):
            same = next((j for j in bw if directed[j][2] == directed[k][2]), None)
            if same is not None:
                fw.remove(k)
                bw.remove(same)
                placed.append((min(k, same), directed[k][2]))
        for k, j in zip(fw, bw, strict=False):
            differing += 1
            placed.append((min(k, j), max(directed[k][2], directed[j][2])))
        n = min(len(fw), len(bw))
        placed += [(k, directed[k][2]) for k in fw[n:] + bw[n:]]
    placed.sort()
    edges = [(str(directed[k][0]), str(directed[k][1])) for k, _w in placed]
    weights = [w for _k, w in placed]
    notes: list[str] = []
    if differing:
        notes.append(f"{differing} links weigh differently each way: each got the larger weight")
    top = max(weights, default=1)
    if top > MAX_OSPF_COST:
        scale = math.ceil(top / MAX_OSPF_COST)
        weights = [max(1, int(w / scale + 0.5)) for w in weights]
        notes.append(f"weights up to {top} divided by {scale} to fit OSPF's 1-{MAX_OSPF_COST}")
    if any(w < 1 for w in weights):
        notes.append("weights below 1 made 1 (OSPF's least cost)")
        weights = [max(1, w) for w in weights]
    return SourceGraph(
        "repetita",
        file_stem(origin),
        nodes,
        edges,
        costs=weights,
        attributes={"Network": file_stem(origin)},
        notes=notes,
    )

"""The shortest-path oracle (lab/paths.py) against hand-checked answers and brute force."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.lab import checks, importer
from routeflow.lab.model import LabPlan, parse_lab, plan
from routeflow.lab.paths import Hop, oracle

LABS = Path(__file__).resolve().parents[3] / "labs"


def rftest2(edit: tuple[str, str] | None = None) -> LabPlan:
    text = (LABS / "rftest2.yaml").read_text()
    if edit:
        text = text.replace(*edit)
    return plan(parse_lab(text))


def ports(p: LabPlan, switch: str, subnet: str) -> set[tuple[int, str]]:
    return {(h.port, h.gateway) for h in oracle(p).hops[switch][subnet]}


def test_rftest2_by_hand() -> None:
    p = rftest2()
    # A reaches h4 over the A-D diagonal (port 4), B reaches h3 over A and D (ECMP).
    assert ports(p, "A", "172.31.4.0/24") == {(4, "50.0.0.4")}
    assert ports(p, "B", "172.31.3.0/24") == {(2, "10.0.0.1"), (3, "40.0.0.4")}
    assert ports(p, "A", "172.31.1.0/24") == set()  # its own host
    hop = next(iter(oracle(p).hops["A"]["172.31.4.0/24"]))
    assert hop.mac == p.vm("D").interface(4).mac  # the switch rewrites to D's port MAC


def test_cost_moves_traffic_off_a_link() -> None:
    p = rftest2(("{ends: [A, D],", "{ends: [A, D], cost: 3,"))
    assert ports(p, "A", "172.31.4.0/24") == {(2, "10.0.0.2"), (3, "30.0.0.3")}


def test_parallel_links_are_two_next_hops() -> None:
    imp = importer.Imported(name="par", switches=["A", "B"], links=[("A", "B"), ("A", "B")])
    p = plan(parse_lab(importer.to_yaml(imp, ["parallel"])))
    assert {h.port for h in oracle(p).hops["A"]["172.16.2.0/24"]} == {2, 3}


def test_exact_for_ospf_and_a_subset_elsewhere() -> None:
    o = oracle(rftest2())
    want = o.hops["B"]["172.31.3.0/24"]
    one = frozenset(sorted(want)[:1])
    assert o.problems("B", "172.31.3.0/24", want) is None
    assert "want" in o.problems("B", "172.31.3.0/24", one)
    assert "no route" in o.problems("B", "172.31.3.0/24", None)
    bgp = oracle(rftest2(("routing: ospf", "routing: bgp")))
    assert bgp.problems("B", "172.31.3.0/24", one) is None
    assert bgp.problems("B", "172.31.3.0/24", frozenset()) is not None
    assert bgp.problems("B", "172.31.3.0/24", one | {Hop(1, "", "")}) is not None
    # a switch's own subnet is connected, whatever the routing
    assert bgp.problems("B", "172.31.2.0/24", frozenset()) is None
    assert bgp.problems("B", "172.31.2.0/24", one) is not None


def floyd(n: int, edges: list[tuple[int, int, int]]) -> list[list[float]]:
    d = [[0.0 if i == j else float("inf") for j in range(n)] for i in range(n)]
    for a, b, c in edges:
        d[a][b] = d[b][a] = min(d[a][b], c)
    for k in range(n):
        for i in range(n):
            for j in range(n):
                d[i][j] = min(d[i][j], d[i][k] + d[k][j])
    return d


def lab_text(n: int, edges: list[tuple[int, int, int]]) -> str:
    """A lab of switches s1..sn with the given (a, b, cost) links and one host each."""
    lines = ["name: prop", "switches:"]
    lines += [f"  - {{name: s{i + 1}, dpid: {i + 1}}}" for i in range(n)]
    lines += ["links:"] + [f"  - {{ends: [s{a + 1}, s{b + 1}], cost: {c}}}" for a, b, c in edges]
    lines += ["hosts:"]
    lines += [
        f"  - {{name: h{i + 1}, switch: s{i + 1}, ip: 172.16.{i + 1}.100/24}}" for i in range(n)
    ]
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.integers(1, 5), min_size=n - 1, max_size=n - 1),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(1, 5)),
                max_size=2 * n,
            ),
        )
    )
)
def test_first_hops_are_exactly_the_links_on_a_shortest_path(graph) -> None:
    n, tree_costs, extra = graph
    edges = [(i // 2, i + 1, tree_costs[i]) for i in range(n - 1)]  # a tree: connected
    edges += [(a, b, c) for a, b, c in extra if a != b]  # parallel links allowed
    p = plan(parse_lab(lab_text(n, edges)))
    d = floyd(n, edges)
    o = oracle(p)
    for x in range(n):
        vm = p.vm(f"s{x + 1}")
        for y in range(n):
            hops = o.hops[vm.switch][f"172.16.{y + 1}.0/24"]
            if x == y:
                assert hops == frozenset()
                continue
            want = set()
            for iface in vm.link_ports:
                link = p.links[iface.link]
                mine = (link.a.switch, link.a.port) == (vm.switch, iface.port)
                peer = int((link.b if mine else link.a).switch[1:]) - 1
                if link.cost + d[peer][y] == d[x][y]:
                    want.add(iface.port)
            assert want and {h.port for h in hops} == want


def test_ipv6_ospf_may_use_fewer_equal_cost_paths_but_only_shortest_ones() -> None:
    """FRR's ospf6d before 9.0 leaves equal-cost next hops out (checks.ospf6d_ecmp_whole):
    relaxed, a route on some of its shortest paths passes and is counted; a route on a
    longer path, or on none, still fails. Strict (ospfd, or ospf6d 9.0+): all of them."""
    o = oracle(rftest2())
    want = o.hops["B"]["172.31.3.0/24"]
    assert len(want) == 2
    one = frozenset(sorted(want)[:1])
    seen = {sw: dict(table) for sw, table in o.hops.items()}
    full = checks.compare_paths(o, seen, 4, skip_connected=False, relaxed=True)
    assert full.ok and full.fewer == 0
    seen["B"]["172.31.3.0/24"] = one
    strict = checks.compare_paths(o, seen, 4, skip_connected=False)
    assert not strict.ok and strict.good == strict.total - 1
    relaxed = checks.compare_paths(o, seen, 4, skip_connected=False, relaxed=True)
    assert relaxed.ok and relaxed.fewer == 1 and "1 on fewer" in relaxed.detail()
    seen["B"]["172.31.3.0/24"] = one | {Hop(1, "", "")}  # port 1 is B's host: not a path
    assert not checks.compare_paths(o, seen, 4, skip_connected=False, relaxed=True).ok
    del seen["B"]["172.31.3.0/24"]
    assert not checks.compare_paths(o, seen, 4, skip_connected=False, relaxed=True).ok

"""nlroutes' routes files: what it reads, and that its requests are route messages fastnl reads."""

from __future__ import annotations

import pytest

from routeflow.bench import nlroutes
from routeflow.client import fastnl


def test_routes_file_to_requests(tmp_path):
    path = tmp_path / "routes.txt"
    path.write_text("# best routes\n100.1.0.0/16 172.31.2.100\n\n2001:db9::/32 2001:db8:f::101\n")
    routes = nlroutes.read_routes(str(path))
    (datagram,) = nlroutes.pack_route_list("add", routes, oif=3)
    notes = fastnl.parse(datagram, lambda _d: pytest.fail("not a route message"))
    assert [(n[0], n[1][0], n[1][6], n[1][7]) for n in notes] == [
        ("100.1.0.0/16", 2, 3, "172.31.2.100"),
        ("2001:db9::/32", 10, 3, "2001:db8:f::101"),
    ]
    (deletes,) = nlroutes.pack_route_list("del", routes, oif=0)
    assert [n[0] for n in fastnl.parse(deletes, lambda _d: [])] == ["100.1.0.0/16", "2001:db9::/32"]


def test_requests_come_in_datagrams_of_4096():
    routes = [(2, 32, bytes([100, 0, i >> 8, i & 255]), bytes([1, 2, 3, 4])) for i in range(5000)]
    datagrams = nlroutes.pack_route_list("add", routes, oif=1)
    assert [nlroutes._count_messages(d) for d in datagrams] == [4096, 904]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("100.1.0.0/16", "want 'prefix gateway'"),
        ("100.1.0.0/33 1.2.3.4", "out of range"),
        ("100.1.0.0/16 2001:db8::1", "illegal IP address"),
        ("nope/16 1.2.3.4", "illegal IP address"),
    ],
)
def test_bad_routes_lines_name_file_and_line(tmp_path, line, says):
    path = tmp_path / "routes.txt"
    path.write_text(f"100.2.0.0/16 1.2.3.4\n{line}\n")
    with pytest.raises(nlroutes.RoutesFileError, match=f"routes.txt:2: .*{says}"):
        nlroutes.read_routes(str(path))

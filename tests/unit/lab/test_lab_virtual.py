"""``control_plane: virtual`` in a lab file, and the links its rfproxy mirrors."""

from __future__ import annotations

import pytest

from routeflow.lab.model import LabError, parse_lab, plan
from routeflow.lab.runner import virtual_links_text
from routeflow.proxy.vlinks import VirtualLink, parse_virtual_links

RFTEST2_2CT = """\
name: rftest2
control_plane: virtual
controllers: [{ct_id: 1}, {ct_id: 2}]
switches:
  - {name: A, dpid: 5}
  - {name: B, dpid: 6}
  - {name: C, dpid: 7, ct_id: 2}
  - {name: D, dpid: 8, ct_id: 2}
links: [[A, B], [B, D], [D, C], [C, A], [A, D]]
hosts:
  - {name: h1, switch: A, ip: 172.31.1.100/24}
  - {name: h4, switch: D, ip: 172.31.4.100/24}
"""


def test_default_is_classic_and_virtual_is_planned():
    classic = plan(parse_lab(RFTEST2_2CT.replace("control_plane: virtual\n", ""), "lab.yaml"))
    assert classic.control_plane == "classic"
    assert plan(parse_lab(RFTEST2_2CT, "lab.yaml")).control_plane == "virtual"


def test_an_unknown_mode_is_refused_naming_the_field():
    with pytest.raises(LabError, match="control_plane"):
        parse_lab(RFTEST2_2CT.replace("virtual", "virtal"), "lab.yaml")


def test_each_controller_mirrors_the_links_between_its_own_switches():
    p = plan(parse_lab(RFTEST2_2CT, "lab.yaml"))
    one = parse_virtual_links(virtual_links_text(p, 1))
    two = parse_virtual_links(virtual_links_text(p, 2))
    ends = {(lk.a.switch, lk.b.switch): lk for lk in p.links}
    ab, dc = ends[("A", "B")], ends[("D", "C")]
    assert one == [VirtualLink((5, ab.a.port), (6, ab.b.port))]
    assert two == [VirtualLink((8, dc.a.port), (7, dc.b.port))]

"""External BGP speakers in lab files: validation, plan, FRR and ExaBGP configuration."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routeflow.lab import exabgp, frr
from routeflow.lab.model import Announce, LabError, parse_lab, plan

LAB = """
name: bgpx
routing: bgp
switches:
  - {name: A, dpid: 0xb1, asn: 65001}
  - {name: B, dpid: 0xb2, asn: 65002}
links: [[A, B]]
hosts:
  - {name: h1, switch: A, ip: 172.31.1.100/24}
speakers:
  - name: x1
    switch: A
    ip: 192.0.2.2/30
    asn: 65100
    announce: {count: 1000, start: 100.64.0.0, prefixlen: 24}
"""


def test_a_speaker_is_a_host_and_a_bgp_neighbor_of_its_switch_vm():
    p = plan(parse_lab(LAB))
    (sp,) = p.speakers
    assert (sp.name, sp.switch, sp.asn, sp.vm_asn) == ("x1", "A", 65100, 65001)
    assert sp.gateway == "192.0.2.1" and sp.address == "192.0.2.2"
    host = p.host("x1")
    assert host.dp_port == sp.dp_port == 2  # after h1, before the link to B
    a = p.vm("A")
    assert a.interface(2).peer == "x1" and a.interface(3).peer == "B"
    speaker_neighbors = [n for n in a.bgp_neighbors if n.peer == "speaker"]
    assert [(n.address, n.remote_as, n.port) for n in speaker_neighbors] == [
        ("192.0.2.2", 65100, 2)
    ]
    assert all(n.peer == "vm" for n in p.vm("B").bgp_neighbors)
    conf = frr.frr_config(p, "A")
    assert "neighbor 192.0.2.2 remote-as 65100" in conf
    assert "neighbor 192.0.2.2 description speaker-x1" in conf
    assert f"neighbor 192.0.2.2 route-map {frr.SPEAKER_OUT} out" in conf
    assert f"route-map {frr.SPEAKER_OUT} deny 10" in conf
    assert frr.SPEAKER_OUT not in frr.frr_config(p, "B")
    # the mapping covers the speaker's port like any other
    assert any(c.dp_id == 0xB1 and c.dp_port == 2 for c in p.config_entries())


def test_labs_without_speakers_are_unchanged():
    p = plan(parse_lab(LAB.split("speakers:")[0]))
    assert p.speakers == () and p.vm("A").interface(2).peer == "B"


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("    switch: A\n", "    switch: C\n", "unknown switch"),
        ("asn: 65100", "asn: 65001", "eBGP"),
        ("start: 100.64.0.0", "start: 172.31.0.0", "overlap"),
        ("count: 1000", "count: 9000000", "out of range"),
        ("start: 100.64.0.0", "start: 223.255.0.0", "224.0.0.0"),
        ("start: 100.64.0.0", "start: 100.64.0.1", "does not start"),
        ("prefixlen: 24", "prefixlen: 4", "out of range 8-32"),
        ("ip: 192.0.2.2/30", "ip: 172.31.1.6/30", "overlaps"),
        ("name: x1", "name: h1", "duplicate name"),
    ],
)
def test_bad_speakers_are_reported(old, new, match):
    text = LAB.replace(old, new, 1)
    assert text != LAB
    with pytest.raises(LabError, match=match):
        parse_lab(text)


def test_a_speaker_needs_a_bgp_switch():
    text = LAB.replace("routing: bgp", "routing: ospf")
    with pytest.raises(LabError, match="needs routing: bgp"):
        parse_lab(text)


@given(
    st.integers(0, 2**8),
    st.integers(0, 2000),
    st.integers(16, 32),
)
def test_blocks_cover_exactly_the_announced_prefixes(start_index, count, prefixlen):
    step = 1 << (32 - prefixlen)
    start = ipaddress.IPv4Address(0x64000000 + start_index * step)
    a = Announce(count=count, start=str(start), prefixlen=prefixlen)
    covered = []
    for block, n in exabgp.blocks(a):
        net = ipaddress.IPv4Network(block)  # strict: aligned
        assert net.num_addresses == n * step
        covered += [str(s) for s in net.subnets(new_prefix=prefixlen)]
    assert covered == a.prefixes()


def test_config_and_samples():
    p = plan(parse_lab(LAB))
    (sp,) = p.speakers
    conf = exabgp.config(sp)
    assert "neighbor 192.0.2.1 {" in conf and "peer-as 65001;" in conf
    assert "route 100.64.0.0/23 next-hop 192.0.2.2 split /24;" not in conf
    assert "split /24;" in conf
    samples = exabgp.sample_addresses(sp.announce)
    prefixes = [ipaddress.IPv4Network(x) for x in sp.announce.prefixes()]
    assert len(samples) == 5 and samples[0] == "100.64.0.1"
    assert all(any(ipaddress.IPv4Address(s) in net for net in prefixes) for s in samples)
    assert sp.announce.prefix(999) == sp.announce.prefixes()[-1]


def _file_lab(tmp_path, table: str, announce: str = "{file: t.txt}") -> str:
    (tmp_path / "t.txt").write_text(table)
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.replace("{count: 1000, start: 100.64.0.0, prefixlen: 24}", announce))
    return str(path)


def test_a_speaker_announces_a_table_file_with_its_as_paths(tmp_path):
    from routeflow.lab.model import load_lab

    lab = _file_lab(tmp_path, "# t\n1.0.0.0/8 3356 15169\n1.2.0.0/16 3356\n1.2.3.0/24\n")
    (sp,) = plan(load_lab(lab)).speakers
    a = sp.announce
    assert a.file == str(tmp_path / "t.txt") and a.count == 3
    assert a.prefixes() == ["1.0.0.0/8", "1.2.0.0/16", "1.2.3.0/24"]
    conf = exabgp.config(sp)
    assert "route 1.0.0.0/8 next-hop 192.0.2.2 as-path [ 65100 3356 15169 ];" in conf
    assert "route 1.2.3.0/24 next-hop 192.0.2.2 as-path [ 65100 ];" in conf
    assert "announcing 3 prefixes of" in conf
    samples = exabgp.sample_addresses(a)
    assert samples and samples[0] == "1.0.0.1"
    nets = [ipaddress.ip_network(p) for p in a.prefixes()]
    assert all(any(ipaddress.ip_address(s) in n for n in nets) for s in samples)


@pytest.mark.parametrize(
    ("table", "announce", "match"),
    [
        ("1.0.0.0/8\n1.0.0.1/16\n", "{file: t.txt}", r"t\.txt:2: 1\.0\.0\.1/16 has host bits"),
        ("1.0.0.0/8\n", "{file: nope.txt}", r"nope\.txt"),
        ("1.0.0.0/8\n2001:db8::/32\n", "{file: t.txt}", "IPv6 prefixes need ipv6: true"),
        ("172.31.0.0/16\n", "{file: t.txt}", "overlaps .* subnet 172.31.1.0/24"),
        ("1.0.0.0/8\n", "{file: t.txt, count: 5}", "not both"),
        ("1.0.0.0/8 x\n", "{file: t.txt}", "AS number 'x'"),
    ],
)
def test_bad_table_files_are_reported(tmp_path, table, announce, match):
    from routeflow.lab.model import load_lab

    with pytest.raises(LabError, match=match):
        load_lab(_file_lab(tmp_path, table, announce))


def test_the_shipped_table_lab_plans():
    import pathlib

    from routeflow.lab.model import load_lab

    path = pathlib.Path(__file__).parents[3] / "labs" / "bgp-table-file.yaml"
    lab = plan(load_lab(path))
    (sp,) = lab.speakers
    assert sp.announce.count == 2500 and sp.address6 is not None
    samples = exabgp.sample_addresses(sp.announce)
    assert len(samples) == 10 and sum(":" in a for a in samples) == 5
    conf = exabgp.config(sp, "/run/announce6.sh")
    assert "ipv6 unicast;" in conf and "run /run/announce6.sh;" in conf
    assert "::" not in conf  # ExaBGP 5.0 refuses a static IPv6 /32 next to its peer's /32
    lines = exabgp.announce6_lines(sp)
    assert len(lines) == 500 and all(
        f" next-hop {sp.address6} as-path [ 65100 " in x for x in lines
    )
    assert "address-family ipv6 unicast" in frr.frr_config(lab, "A")

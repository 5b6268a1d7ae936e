"""The --auto planner (server/autoconf.py): VMs, interfaces, stable addressing, vm_ops."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib.types import ConfigEntry
from routeflow.server.autoconf import (
    AddInterfaces,
    AutoConf,
    AutoSettings,
    EdgePort,
    EdgePortError,
    MappingChanged,
    Problem,
    RemoveInterfaces,
    StartVm,
    StopVm,
    StoreWrites,
    VmWanted,
    parse_edge_ports,
    records,
    vm_ops,
)

EDGES = [
    EdgePort(dp_id=5, port=1, address="172.31.1.1/24"),
    EdgePort(dp_id=6, port=1, address="172.31.2.1/24"),
]


def writes_of(actions) -> dict:
    out: dict = {}
    for a in actions:
        if isinstance(a, StoreWrites):
            out.update(a.writes)
    return out


def wanted_of(actions) -> dict:
    return {a.dp_id: a.spec for a in actions if isinstance(a, VmWanted)}


def test_a_switch_gets_its_vm_with_edge_ports_and_a_loopback():
    conf = AutoConf(AutoSettings(), EDGES)
    actions = conf.switch_up(1, 5)
    spec = wanted_of(actions)[5]
    assert (spec.vm_id, spec.ct_id, spec.name, spec.router_id) == (5, 1, "vm-5", "10.255.0.0")
    (eth1,) = spec.interfaces
    assert (eth1.ifname, eth1.address, eth1.kind, eth1.mac) == (
        "eth1",
        "172.31.1.1/24",
        "edge",
        "02:00:00:05:00:01",
    )
    assert "ip ospf passive" in eth1.frr and eth1.frr in spec.frr_config
    assert "ospf router-id 10.255.0.0" in spec.frr_config
    mapping = next(a for a in actions if isinstance(a, MappingChanged)).entries
    assert mapping == (ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1),)
    assert writes_of(actions) == {"autoconf/switch/5": b"1", "autoconf/loopback/5": b"10.255.0.0"}
    assert conf.switch_up(1, 5) == []


def test_a_link_gives_both_ends_a_31_the_lower_end_the_lower_address():
    conf = AutoConf(AutoSettings(), EDGES)
    conf.switch_up(1, 6)
    conf.switch_up(1, 5)
    actions = conf.set_links([((6, 2), (5, 3))])
    specs = wanted_of(actions)
    a, b = specs[5].interface(3), specs[6].interface(2)
    assert (a.address, a.peer) == ("10.0.0.0/31", (6, 2))
    assert (b.address, b.peer) == ("10.0.0.1/31", (5, 3))
    assert "ip ospf network point-to-point" in a.frr
    assert writes_of(actions) == {"autoconf/link/5:3-6:2": b"10.0.0.0/31"}
    assert conf.set_links([((5, 3), (6, 2))]) == []  # the other direction: the same link


def test_30_links_use_the_two_usable_addresses():
    conf = AutoConf(AutoSettings(link_prefix=30))
    conf.switch_up(1, 5)
    conf.switch_up(1, 6)
    spec = wanted_of(conf.set_links([((5, 3), (6, 2))]))
    assert spec[5].interface(3).address == "10.0.0.1/30"
    assert spec[6].interface(2).address == "10.0.0.2/30"


def test_a_link_before_its_far_switch_connects_configures_the_near_end():
    conf = AutoConf(AutoSettings())
    conf.switch_up(1, 5)
    specs = wanted_of(conf.set_links([((5, 3), (9, 1))]))
    assert specs == {5: specs[5]} and specs[5].interface(3).address == "10.0.0.0/31"
    later = wanted_of(conf.switch_up(1, 9))
    assert later[9].interface(1).address == "10.0.0.1/31"


def test_a_gone_switch_keeps_its_vm_for_the_grace_period_then_loses_it():
    conf = AutoConf(AutoSettings(grace=30))
    conf.switch_up(1, 5)
    assert conf.switch_down(5, 100.0) == []
    assert conf.next_deadline() == 130.0
    assert conf.tick(129.0) == []
    assert conf.switch_up(1, 5) == []  # back in time: nothing to do
    conf.switch_down(5, 200.0)
    actions = conf.tick(230.0)
    assert wanted_of(actions) == {5: None}
    assert writes_of(actions) == {"autoconf/switch/5": None}
    assert conf.next_deadline() is None


def test_the_operators_csv_wins_its_switches_get_no_automatic_vm():
    manual = [ConfigEntry(vm_id=0x99, vm_port=1, ct_id=1, dp_id=6, dp_port=1)]
    conf = AutoConf(AutoSettings(), EDGES, manual)
    assert wanted_of(conf.switch_up(1, 6)) == {}
    actions = conf.switch_up(1, 5)
    (mapping,) = [a.entries for a in actions if isinstance(a, MappingChanged)]
    assert mapping[-1] == manual[0] and len(mapping) == 2
    # a switch whose dp_id is a VM of the CSV cannot have that VM id
    conf2 = AutoConf(
        AutoSettings(), (), [ConfigEntry(vm_id=7, vm_port=1, ct_id=1, dp_id=6, dp_port=1)]
    )
    assert any(isinstance(a, Problem) for a in conf2.switch_up(1, 7))


def test_links_on_edge_ports_and_to_the_same_switch_are_refused_once():
    conf = AutoConf(AutoSettings(), EDGES)
    conf.switch_up(1, 5)
    problems = [
        a for a in conf.set_links([((5, 1), (6, 3)), ((5, 2), (5, 4))]) if isinstance(a, Problem)
    ]
    assert len(problems) == 2
    assert "edge-port declaration wins" in problems[0].text
    assert "loops back" in problems[1].text
    assert not [a for a in conf.set_links([((5, 1), (6, 3))]) if isinstance(a, Problem)]


def test_a_full_pool_is_a_problem_not_a_crash():
    conf = AutoConf(AutoSettings(link_pool="10.0.0.0/31"))
    conf.switch_up(1, 5)
    actions = conf.set_links([((5, 1), (6, 1)), ((5, 2), (7, 1))])
    assert [a.text for a in actions if isinstance(a, Problem)] == [
        "link 5:2-7:1: no subnet: 10.0.0.0/31 has no free /31 left for 5:2-7:1"
    ]
    assert [i.port for i in wanted_of(actions)[5].interfaces] == [1]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"link_pool": "10.0.0.0/33"}, "link_pool"),
        ({"link_prefix": 29}, "link_prefix"),
        ({"loopback_pool": "10.0.0.0/24"}, "overlaps link_pool"),
        ({"hello": 4, "dead": 4}, "hello/dead"),
        ({"template": "${nope}"}, "template"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        AutoConf(AutoSettings(**kwargs))


def test_an_edge_port_inside_a_pool_is_refused():
    with pytest.raises(ValueError, match="edge port"):
        AutoConf(AutoSettings(), [EdgePort(dp_id=1, port=1, address="10.0.3.1/24")])


def test_edge_port_file():
    text = "# hosts\ndp_id,dp_port,address\n0x5,1,172.31.1.1/24\n6, 1, 192.0.2.1/31  # peer\n"
    assert parse_edge_ports(text) == [
        EdgePort(dp_id=5, port=1, address="172.31.1.1/24"),
        EdgePort(dp_id=6, port=1, address="192.0.2.1/31"),
    ]
    bad = (
        "dp_id,dp_port,address\nzz,1,1.2.3.4/24\n5,0,1.2.3.4/24\n"
        "5,1,1.2.3.0/24\n5,1,1.2.3.4\n5,2,x\n"
    )
    with pytest.raises(EdgePortError) as err:
        parse_edge_ports(bad, "e.csv")
    assert [e.split(": ", 2)[1] for e in err.value.errors] == [
        "dp_id",
        "dp_port",
        "address",
        "address",
        "address",
    ]
    assert err.value.errors[0].startswith("e.csv:2:")
    with pytest.raises(EdgePortError, match="header"):
        parse_edge_ports("5,1,1.2.3.4/24\n")
    with pytest.raises(EdgePortError, match="already on line 2"):
        parse_edge_ports("dp_id,dp_port,address\n5,1,1.2.3.4/24\n5,1,1.2.4.4/24\n")


# --- stability: restarts, additions, no overlap (hypothesis) -----------------------------------

ends = st.tuples(st.integers(1, 12), st.integers(1, 6))
links_st = st.lists(st.tuples(ends, ends), max_size=40)


def _run(conf: AutoConf, switches, links, store: dict) -> None:
    for dp in switches:
        for a in conf.switch_up(1, dp):
            if isinstance(a, StoreWrites):
                _apply(store, a)
    for a in conf.set_links(links):
        if isinstance(a, StoreWrites):
            _apply(store, a)


def _apply(store: dict, w: StoreWrites) -> None:
    for k, v in w.writes.items():
        if v is None:
            store.pop(k, None)
        else:
            store[k] = v


def _addresses(conf: AutoConf) -> dict[tuple[int, int], str]:
    return {(s.dp_id, i.port): i.address for s in conf.wanted().values() for i in s.interfaces}


@settings(max_examples=150, deadline=None)
@given(links_st, links_st)
def test_no_overlap_and_additions_never_renumber(first, more):
    switches = range(1, 13)
    store: dict = {}
    conf = AutoConf(AutoSettings())
    _run(conf, switches, first, store)
    before = _addresses(conf)
    loops = {s.dp_id: s.router_id for s in conf.wanted().values()}
    conf.set_links(first + more)
    after = _addresses(conf)
    assert {k: after[k] for k in before} == before
    assert {s.dp_id: s.router_id for s in conf.wanted().values()} == loops
    # no two links share a subnet, no two ports an address, loopbacks all distinct
    subnets = [n for o, n in conf.links_pool.allocations().items()]
    assert len(set(subnets)) == len(subnets)
    assert len(set(after.values())) == len(after)
    assert len(set(loops.values())) == len(loops)
    # the two ends of every link are the two addresses of one /31
    for spec in conf.wanted().values():
        for i in spec.interfaces:
            if i.peer is not None and i.peer[0] in conf.wanted():
                peer = conf.wanted()[i.peer[0]].interface(i.peer[1])
                assert peer is not None and peer.peer == (spec.dp_id, i.port)
                mine = ipaddress.IPv4Interface(i.address)
                theirs = ipaddress.IPv4Interface(peer.address)
                assert mine.network == theirs.network and mine.ip != theirs.ip


@settings(max_examples=100, deadline=None)
@given(links_st, links_st, st.permutations(list(range(1, 13))))
def test_a_restart_from_the_store_reproduces_every_number(first, more, order):
    store: dict = {}
    conf = AutoConf(AutoSettings())
    _run(conf, range(1, 13), first, store)
    before = _addresses(conf)
    again = AutoConf(AutoSettings(), stored=records(store), now=50.0)
    assert again.restore_problems == []
    start = again.start()
    assert wanted_of(start) == conf.wanted()  # restored switches are wanted at once
    _run(again, order, more + first, store)  # they come back in any order, with new links
    after = _addresses(again)
    assert {k: after[k] for k in before} == before


def test_unreadable_or_foreign_records_are_reported_not_used():
    stored = [
        ("autoconf/link/5:1-6:1", b"192.168.0.0/31"),  # outside the pool now
        ("autoconf/link/5:2-6:2", b"10.0.0.0/31"),
        ("autoconf/link/5:3-6:3", b"10.0.0.0/31"),  # taken twice
        ("autoconf/loopback/zz", b"10.255.0.1"),
        ("autoconf/switch/5", b"one"),
    ]
    conf = AutoConf(AutoSettings(), stored=stored)
    assert len(conf.restore_problems) == 4


# --- vm_ops --------------------------------------------------------------------------------------


def test_vm_ops_start_add_remove_stop():
    conf = AutoConf(AutoSettings(), EDGES)
    one = wanted_of(conf.switch_up(1, 5))[5]
    two = wanted_of(conf.set_links([((5, 2), (6, 2))]))[5]
    assert vm_ops(one, None) == [StartVm(one)]
    assert vm_ops(one, one) == []
    (add,) = vm_ops(two, one)
    assert isinstance(add, AddInterfaces) and [i.port for i in add.ifaces] == [2]
    (remove,) = vm_ops(one, two)
    assert isinstance(remove, RemoveInterfaces) and [i.port for i in remove.ifaces] == [2]
    assert vm_ops(None, two) == [StopVm(5, "vm-5")]
    assert vm_ops(None, None) == []
    other = conf.switch_up(1, 6)
    six = wanted_of(other)[6]
    assert vm_ops(six, one) == [StopVm(5, "vm-5"), StartVm(six)]

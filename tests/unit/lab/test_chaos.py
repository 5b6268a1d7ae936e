"""The chaos scheduler: pure, seeded, covers every fault kind the lab has first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from routeflow.lab.chaos import (
    KINDS,
    Fault,
    Victims,
    changed_prefixes,
    classify_flows,
    plan_rounds,
    schedule,
)


@st.composite
def victims(draw: st.DrawFn) -> Victims:
    servers = tuple(f"rfserver-{c}" for c in "abc"[: draw(st.integers(1, 3))])
    cts = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3, unique=True))
    replicas = tuple(
        (ct, tuple(f"ct{ct}{c}" for c in "abc"[: draw(st.integers(1, 3))])) for ct in cts
    )
    clients = tuple(f"rfclient@{s}" for s in "ABCDEFGH"[: draw(st.integers(0, 8))])
    members = tuple(range(draw(st.sampled_from([0, 1, 3, 5]))))
    return Victims(servers=servers, replicas=replicas, clients=clients, etcd_members=members)


HA = Victims(
    servers=("rfserver-a", "rfserver-b"),
    replicas=((1, ("ct1a", "ct1b")),),
    clients=("rfclient@A", "rfclient@B", "rfclient@C", "rfclient@D"),
    etcd_members=(0, 1, 2),
)


def test_ha_lab_has_every_kind():
    assert HA.kinds() == KINDS


def test_single_machine_lab_has_no_standby_slave_or_etcd():
    v = Victims(servers=("rfserver",), replicas=((1, ("ct1",)),), clients=("rfclient@A",))
    assert v.kinds() == ("rfserver-leader", "rfproxy-master", "rfclient")


def test_first_rounds_of_the_ha_lab():
    rounds = plan_rounds(HA, 7, seed=1)
    assert sorted(f.kind for f in rounds) == sorted(KINDS)


@given(victims(), st.integers(0, 2**32), st.integers(0, 40))
def test_deterministic_for_a_seed(v, seed, n):
    assert plan_rounds(v, n, seed) == plan_rounds(v, n, seed)


@given(victims(), st.integers(0, 2**32))
def test_covers_every_kind_before_repeating(v, seed):
    kinds = v.kinds()
    first = [f.kind for f in plan_rounds(v, len(kinds), seed)]
    assert sorted(first) == sorted(kinds)


@given(victims(), st.integers(0, 2**32), st.integers(0, 60))
def test_never_names_a_victim_the_lab_lacks(v, seed, n):
    kinds = set(v.kinds())
    multi = {ct for ct, names in v.replicas if len(names) >= 2}
    for fault in plan_rounds(v, n, seed):
        assert isinstance(fault, Fault)
        assert fault.kind in kinds
        if fault.kind == "rfclient":
            assert fault.target in v.clients
        elif fault.kind == "rfproxy-master":
            assert fault.target in {ct for ct, names in v.replicas if names}
        elif fault.kind == "rfproxy-slave":
            assert fault.target in multi
        elif fault.kind == "etcd-member":
            assert fault.target in v.etcd_members
        else:
            assert fault.target is None


def test_nothing_to_kill_is_an_empty_schedule():
    assert list(schedule(Victims(), seed=3)) == []


def test_seeds_differ():
    orders = {tuple(f.kind for f in plan_rounds(HA, 7, seed)) for seed in range(20)}
    assert len(orders) > 1


def test_changed_prefixes_from_ip_monitor():
    out = "\n".join(
        [
            "[ROUTE]10.8.0.0/16 via 10.9.0.2 dev va proto ospf metric 20",
            "[ROUTE]Deleted 10.8.0.0/16 via 10.9.0.2 dev va proto ospf metric 20",
            "[ROUTE]10.7.0.1 via 10.9.0.2 dev va",
            "[ROUTE]local 10.9.0.1 dev va table local proto kernel scope host src 10.9.0.1",
            "[NEIGH]10.9.0.2 dev va lladdr 02:00:00:00:00:01 REACHABLE",
            "[NEIGH]10.9.0.3 dev va lladdr 02:00:00:00:00:01 STALE",
            "[NEIGH]10.9.0.4 dev va FAILED",
            "[NEIGH]Deleted 10.9.0.5 dev va lladdr 02:00:00:00:00:05 STALE",
            "[ROUTE]default via 10.9.0.2 dev va",
        ]
    )
    assert changed_prefixes(out) == {
        "10.8.0.0/16",
        "10.7.0.1/32",
        "10.9.0.4/32",
        "10.9.0.5/32",
        "0.0.0.0/0",
    }


def test_classify_flows():
    before = {"10.0.0.0/24": 50.0, "10.1.0.0/24": 50.0, "10.2.0.0/24": 50.0, "10.3.0.0/24": 9.0}
    now = {"10.0.0.0/24": 58.0, "10.1.0.0/24": 2.0, "10.2.0.0/24": 1.0, "10.4.0.0/24": 1.0}
    kernel = {p: f"{p} via 10.9.0.2 dev eth1" for p in before}
    kernel_now = {**kernel, "10.2.0.0/24": "10.2.0.0/24 via 10.9.0.6 dev eth2"}
    # 10.0: untouched; 10.1: re-installed, route unchanged (flushed); 10.2: route
    # changed; 10.3: gone, but ip monitor saw it change; 10.4: new (not judged).
    assert classify_flows(before, now, 8.0, kernel, kernel_now, {"10.3.0.0/24"}) == (
        ["10.1.0.0/24"],
        ["10.2.0.0/24", "10.3.0.0/24"],
    )


def test_changed_prefixes_ipv6():
    out = "\n".join(
        [
            "[ROUTE]fd00:0:0:8001::/64 via fe80::200:ff:fe00:2 dev eth2 proto ospf metric 20",
            "[ROUTE]Deleted default via fe80::200:ff:fe00:3 dev eth3 proto ospf metric 20",
            "[NEIGH]fd00:0:0:1::100 dev eth1 lladdr 02:00:00:00:00:09 REACHABLE",
            "[NEIGH]Deleted fd00:0:0:1::101 dev eth1 lladdr 02:00:00:00:00:0a STALE",
            "[ROUTE]multicast ff00::/8 dev eth1 table local proto kernel metric 256 pref medium",
            "[ROUTE]nexthop via fe80::1 dev eth2 weight 1",
        ]
    )
    assert changed_prefixes(out) == {"fd00:0:0:8001::/64", "::/0", "fd00:0:0:1::101/128"}

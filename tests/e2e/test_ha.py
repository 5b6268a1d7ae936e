"""No single point of failure in the control plane: rftest2-ha (2 rfservers on a
3-member etcd cluster).

One lab serves the module; the last test (ex test_chaos.py) runs one `routeflow lab
chaos` round of every fault kind on it: each round SIGKILLs one daemon (rfserver leader
or standby, the master or the slave rfproxy replica, an rfclient, an etcd follower or the
raft leader), restarts it after a supervisor's delay and waits until the lab is whole
again, with a ping h1 -> h4 running throughout (see routeflow.lab.chaos).

Evidence comes from outside the daemons where it can: ping sequence numbers,
ovs-ofctl flow ages, the VMs' kernels, the etcd processes we started.
"""

from __future__ import annotations

import time

import pytest
from faultkit import all_ages, converged_lab, healthy, not_reinstalled, record

from routeflow.lab import chaos, checks
from routeflow.lab.faults import ContinuousPing
from routeflow.lab.runner import LabRun


@pytest.fixture(scope="module")
def lab():
    yield from converged_lab("rftest2-ha", "ha")


def control_plane_whole(run: LabRun) -> bool:
    """The leader sees every VM and controller, and every association is active."""
    st = checks.server_status(run)
    active, want = checks.associations_active(run)
    return (
        active == want
        and len(st.get("clients", [])) == len(run.plan.vms)
        and len(st.get("controllers", [])) == len(run.plan.controllers)
    )


def of_roles_settled(run: LabRun) -> bool:
    """On every switch, as OVS shows it: every replica connected, one master, the rest slaves."""
    names = set(run.plan.controllers[0].replica_names)
    slaves = ["slave"] * (len(names) - 1)
    return all(
        set(r) == names and sorted(r.values()) == ["master", *slaves]
        for r in checks.controller_roles(run).values()
    )


def route_reaches_switch(run: LabRun, prefix: str, timeout: float = 20) -> bool:
    gw = run.plan.vm("B").interface(2).ip
    run.vm_node("A").cmd(f"ip route replace {prefix} via {gw}")
    return checks.wait_until(lambda: prefix in checks.fib_flows(run, "A"), timeout, 0.2)


def route_leaves_switch(run: LabRun, prefix: str, timeout: float = 20) -> bool:
    run.vm_node("A").cmd(f"ip route del {prefix}")
    return checks.wait_until(lambda: prefix not in checks.fib_flows(run, "A"), timeout, 0.2)


def test_one_leader_one_standby(lab):
    run = lab
    healthy(run)
    leader = run.leader()
    assert leader is not None
    (standby,) = [n for n in run.server_names if n != leader]
    st = run.server_status(standby)
    assert st.get("role") == "standby", st
    assert st.get("leader") == leader, st
    # The standby watches the store: it has every association row the leader wrote.
    assert checks.wait_until(
        lambda: (
            run.server_status(standby).get("mirrored_associations")
            == len(checks.server_status(run)["associations"])
        ),
        10,
    ), (run.server_status(standby), len(checks.server_status(run)["associations"]))


def test_leader_sigkill_standby_takes_over(lab):
    run = lab
    healthy(run)
    old = run.leader()
    (new,) = [n for n in run.server_names if n != old]
    rows_before = checks.association_rows(checks.server_status(run))
    roles_before = checks.server_status(run)["controller_roles"]
    # OVS refreshes its Controller table lazily (up to its 5 s statistics interval): a
    # loaded run read ct1b as not yet connected here, then as the slave it always was.
    assert checks.wait_until(lambda: of_roles_settled(run), 15), checks.controller_roles(run)
    of_roles_before = checks.controller_roles(run)
    before = all_ages(run)
    ping = ContinuousPing(run.host("h1"), run.plan.host("h4").address)
    time.sleep(1)
    t_kill = time.monotonic()
    run.kill(old)
    assert checks.wait_until(lambda: run.leader() == new, 20, 0.05), run.server_status(new)
    takeover_s = time.monotonic() - t_kill
    assert checks.wait_until(lambda: control_plane_whole(run), 30, 0.1), checks.server_status(run)
    whole_s = time.monotonic() - t_kill
    # The new leader programs the network: a route added now reaches the switch.
    t_route = time.monotonic()
    assert route_reaches_switch(run, "198.51.100.0/24"), "new leader did not program a route"
    route_s = time.monotonic() - t_route
    time.sleep(1)
    result = ping.stop()
    flushed = not_reinstalled(run, before, since=time.monotonic() - t_kill)
    rows_after = checks.association_rows(checks.server_status(run))
    record(
        "rfserver leader SIGKILL, standby takes over (etcd)",
        lease_ttl_s=run.plan.control.lease_ttl,
        takeover_s=round(takeover_s, 2),
        control_plane_whole_s=round(whole_s, 2),
        new_route_after_takeover_s=round(route_s, 2),
        sent=result.sent,
        lost=result.lost,
        outage_s=result.outage_s,
        flows_reinstalled=len(flushed),
        associations_lost=len(rows_before - rows_after),
    )
    assert rows_after == rows_before, rows_before ^ rows_after
    # The controller replicas keep their OpenFlow roles and generation: no churn.
    assert checks.wait_until(
        lambda: checks.server_status(run).get("controller_roles") == roles_before, 10
    ), (checks.server_status(run).get("controller_roles"), roles_before)
    assert checks.controller_roles(run) == of_roles_before
    assert flushed == [], flushed
    assert result.lost <= 2, result  # the data plane never depended on rfserver
    assert takeover_s < run.plan.control.lease_ttl + 4, takeover_s
    assert route_leaves_switch(run, "198.51.100.0/24")
    # A supervisor restarts the killed one: it comes back as the standby.
    run.start_server(old)
    assert checks.wait_until(
        lambda: (
            run.server_status(old).get("role") == "standby"
            and run.server_status(old).get("leader") == new
        ),
        20,
    ), run.server_status(old)
    assert run.leader() == new
    healthy(run)


def test_master_controller_dies_under_the_new_leader(lab):
    """After an rfserver takeover, the leader still fails controllers over by roles."""
    run = lab
    healthy(run)
    roles = checks.server_status(run)["controller_roles"]["1"]
    master = roles["master"]
    (slave,) = [r for r in run.plan.controllers[0].replica_names if r != master]
    before = all_ages(run)
    ping = ContinuousPing(run.host("h1"), run.plan.host("h4").address)
    time.sleep(1)
    t_kill = time.monotonic()
    run.kill(run.proxy_name(1, master))
    assert checks.wait_until(
        lambda: all(r.get(slave) == "master" for r in checks.controller_roles(run).values()),
        15,
        0.1,
    ), checks.controller_roles(run)
    promoted_s = time.monotonic() - t_kill
    assert route_reaches_switch(run, "198.51.100.0/24"), "the promoted replica does not program"
    assert route_leaves_switch(run, "198.51.100.0/24")
    result = ping.stop()
    flushed = not_reinstalled(run, before, since=time.monotonic() - t_kill)
    record(
        "rfproxy master replica SIGKILL under the new rfserver leader",
        ovs_shows_promotion_s=round(promoted_s, 2),
        sent=result.sent,
        lost=result.lost,
        flows_reinstalled=len(flushed),
    )
    assert flushed == [], flushed
    assert result.lost <= 2, result
    run.start_proxy_process(1, master)  # back, as a slave now
    assert checks.wait_until(
        lambda: all(r.get(master) == "slave" for r in checks.controller_roles(run).values()),
        20,
    ), checks.controller_roles(run)


def test_etcd_member_loss_keeps_the_control_plane(lab):
    run = lab
    healthy(run)
    leader = run.leader()
    victim = run.etcd.leader()  # the hardest member to lose: raft must elect anew
    assert victim is not None, "no etcd member says it leads"
    before = all_ages(run)
    t_kill = time.monotonic()
    run.etcd.kill_member(victim)
    try:
        # Writes go through: a new route is programmed (a next-hop id is stored
        # in etcd on the way), and the rfserver keeps its lease.
        t_route = time.monotonic()
        assert route_reaches_switch(run, "198.51.100.0/24", 30), "no route with 2 of 3 members"
        route_s = time.monotonic() - t_route
        time.sleep(2 * run.plan.control.lease_ttl + 1)  # longer than a lease would last
        assert run.leader() == leader, "leadership changed after losing one etcd member"
        assert control_plane_whole(run)
        assert route_leaves_switch(run, "198.51.100.0/24", 30)
        flushed = not_reinstalled(run, before, since=time.monotonic() - t_kill)
        record(
            "etcd raft leader SIGKILL (1 of 3 members)",
            route_programmed_s=round(route_s, 2),
            leader_kept=True,
            flows_reinstalled=len(flushed),
        )
        assert flushed == [], flushed
        pings = checks.pingall(run)
        assert pings[0] == pings[1], pings
    finally:
        run.etcd.restart_member(victim)
    assert checks.wait_until(lambda: run.etcd.alive(victim), 10)


# Last: every kind of fault once, on the lab the tests above left whole.
@pytest.mark.timeout(240)
def test_one_round_of_every_kind(lab):
    run = lab
    assert chaos.settle(run), chaos.whole(run)
    kinds = chaos.victims_of(run).kinds()
    assert kinds == chaos.KINDS
    rounds = []
    result = chaos.run_chaos(run, len(kinds), seed=7, on_round=rounds.append, restart_delay=1.0)
    for r in result.rounds:
        print(
            f"round {r.round} {r.kind} {r.target}: whole after {r.healthy_s} s, "
            f"ping lost {r.ping_lost}/{r.ping_sent}, re-installed {r.reinstalled}, "
            f"rerouted {r.rerouted} {'ok' if r.ok else 'FAIL: ' + r.detail}"
        )
        record(
            f"chaos round: {r.kind}",
            target=r.target,
            healthy_s=r.healthy_s,
            sent=r.ping_sent,
            lost=r.ping_lost,
            flows_reinstalled=len(r.reinstalled),
            flows_rerouted=len(r.rerouted),
            associations_equal=r.associations_equal,
        )
    assert rounds == result.rounds
    assert sorted(r.kind for r in result.rounds) == sorted(kinds)
    assert result.ok, [(r.kind, r.target, r.detail) for r in result.rounds if not r.ok]
    assert all(r.associations_equal and not r.reinstalled for r in result.rounds)

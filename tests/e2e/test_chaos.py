"""`routeflow lab chaos` on rftest2-ha: one round of every fault kind, all pass.

Each round SIGKILLs one daemon (rfserver leader or standby, the master or the
slave rfproxy replica, an rfclient, an etcd follower or the raft leader),
restarts it after a supervisor's delay and waits until the lab is whole again,
with a ping h1 -> h4 running throughout (see routeflow.lab.chaos).
"""

from __future__ import annotations

import pytest
from faultkit import converged_lab, record

from routeflow.lab import chaos


@pytest.fixture(scope="module")
def lab():
    yield from converged_lab("rftest2-ha", "chaos")


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

"""Which rfproxy replica is the OpenFlow master of each controller (pure).

A controller (ct_id) may be served by several rfproxy processes, its
replicas; every switch of the controller connects to all of them. rfserver
is the arbiter: exactly one connected replica per ct_id is master (it
programs the switches and relays packets), the others are slaves (they keep
their switch connections and wait). The rules:

* A replica that connects while the controller has a master becomes slave.
* With no master, a replica that says it holds the master role already
  (rfserver restarted; the data plane kept running) keeps it, without a new
  generation: the switches see nothing change.
* With no master, a fresh replica (no role yet) becomes master at once.
* With no master, a replica that says it is slave waits ``hold`` seconds for
  the old master to come back (rfserver restarted: its replicas reconnect in
  any order); when the time is up, the lowest-named connected replica is promoted.
* When the master's session ends, the lowest-named other connected replica
  is promoted at once.

Every promotion increments the controller's generation (the OpenFlow 1.3
role request generation_id), which the shell persists so that a restarted or
standby rfserver continues the sequence. No I/O here: the shell executes the
returned actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MASTER = "master"
SLAVE = "slave"


@dataclass(frozen=True)
class Assign:
    """Tell ``replica`` of ``ct_id`` its role; a master also needs the full state."""

    ct_id: int
    replica: str
    role: str
    generation: int
    promoted: bool = False  # a new master, with a new generation


@dataclass(frozen=True)
class Generation:
    """The controller's generation changed: persist it."""

    ct_id: int
    generation: int


@dataclass(frozen=True)
class Hold:
    """Call ``expire(ct_id, token)`` after ``seconds`` (waiting for the old master)."""

    ct_id: int
    seconds: float
    token: int


Action = Assign | Generation | Hold


@dataclass
class _Controller:
    generation: int = 0
    master: str | None = None
    #: connected replica -> role assigned to it ("" = none yet, held)
    replicas: dict[str, str] = field(default_factory=dict)
    holding: bool = False
    hold_token: int = 0


class RoleArbiter:
    def __init__(self, generations: dict[int, int] | None = None, hold: float = 5.0) -> None:
        self.hold = hold
        self._cts: dict[int, _Controller] = {}
        for ct_id, gen in (generations or {}).items():
            self._cts[ct_id] = _Controller(generation=gen)

    # --- queries -------------------------------------------------------------

    def master(self, ct_id: int) -> str | None:
        ct = self._cts.get(ct_id)
        return ct.master if ct else None

    def generation(self, ct_id: int) -> int:
        ct = self._cts.get(ct_id)
        return ct.generation if ct else 0

    def role(self, ct_id: int, replica: str) -> str:
        """The role assigned to a connected replica ("" if none yet or not connected)."""
        ct = self._cts.get(ct_id)
        return ct.replicas.get(replica, "") if ct else ""

    def replicas(self, ct_id: int) -> dict[str, str]:
        ct = self._cts.get(ct_id)
        return dict(sorted(ct.replicas.items())) if ct else {}

    def controllers(self) -> list[int]:
        return sorted(self._cts)

    # --- events --------------------------------------------------------------

    def connect(self, ct_id: int, replica: str, holds: str = "") -> list[Action]:
        """A replica's session started; ``holds`` is the role it says it has."""
        ct = self._cts.setdefault(ct_id, _Controller())
        if replica in ct.replicas:
            # The same replica again (its previous session is being dropped):
            # it keeps what it had; a master needs its full state again.
            role = ct.replicas[replica]
            if not role:
                return []
            return [Assign(ct_id, replica, role, ct.generation)]
        ct.replicas[replica] = ""
        if ct.master is not None:
            return self._set(ct_id, replica, SLAVE)
        if holds == MASTER:
            out: list[Action] = []
            if ct.generation == 0:
                ct.generation = 1
                out.append(Generation(ct_id, 1))
            ct.holding = False
            ct.master = replica
            out += self._set(ct_id, replica, MASTER)
            return out + self._demote_held(ct_id)
        if holds == SLAVE or ct.holding:
            if ct.holding:
                return []
            ct.holding = True
            ct.hold_token += 1
            return [Hold(ct_id, self.hold, ct.hold_token)]
        return self._promote(ct_id, replica)

    def disconnect(self, ct_id: int, replica: str) -> list[Action]:
        ct = self._cts.get(ct_id)
        if ct is None or replica not in ct.replicas:
            return []
        del ct.replicas[replica]
        if ct.master != replica:
            return []
        ct.master = None
        if not ct.replicas:
            return []
        return self._promote(ct_id, min(ct.replicas))

    def expire(self, ct_id: int, token: int) -> list[Action]:
        """The hold is over: promote if the old master did not come back."""
        ct = self._cts.get(ct_id)
        if ct is None or not ct.holding or token != ct.hold_token:
            return []
        ct.holding = False
        if ct.master is not None or not ct.replicas:
            return []
        return self._promote(ct_id, min(ct.replicas))

    # --- internals -----------------------------------------------------------

    def _set(self, ct_id: int, replica: str, role: str, promoted: bool = False) -> list[Action]:
        ct = self._cts[ct_id]
        ct.replicas[replica] = role
        return [Assign(ct_id, replica, role, ct.generation, promoted)]

    def _promote(self, ct_id: int, replica: str) -> list[Action]:
        ct = self._cts[ct_id]
        ct.holding = False
        ct.generation += 1
        ct.master = replica
        out: list[Action] = [Generation(ct_id, ct.generation)]
        out += self._set(ct_id, replica, MASTER, promoted=True)
        # Slaves learn the new generation too (their next role request uses it).
        for other in sorted(ct.replicas):
            if other != replica:
                out += self._set(ct_id, other, SLAVE)
        return out

    def _demote_held(self, ct_id: int) -> list[Action]:
        """Replicas that waited without a role become slaves of the new master."""
        ct = self._cts[ct_id]
        out: list[Action] = []
        for other in sorted(ct.replicas):
            if not ct.replicas[other]:
                out += self._set(ct_id, other, SLAVE)
        return out

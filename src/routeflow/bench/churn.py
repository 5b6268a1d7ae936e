"""BGP update streams for `routeflow bench churn`: the format, a generator, the scoring.

A stream is text, BGP4MP-like, one update per line, times in seconds from its start::

    # routeflow churn stream v1
    0.000 A 1.0.0.0/8 3356 15169
    0.004 A 2001:db8::/32 6939
    1.250 W 1.0.0.0/8

``A`` announces (or re-announces with another AS path) a prefix with its AS path,
``W`` withdraws it; ``#`` starts a comment; times never go backwards. Both families
may be mixed. generate() makes one from a table: the table announced at once, then
a steady stream of path changes, withdrawals and re-announcements, and a session
reset (a share of the table withdrawn within half a second, then announced again).
latencies() matches each update that changes the switch (a new prefix, a withdrawn
one) with the first sample of the switch that shows it. Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from routeflow.bench.table import TableEntry

__all__ = [
    "ChurnError",
    "Update",
    "final_state",
    "format_stream",
    "generate",
    "latencies",
    "parse_stream",
    "percentiles",
]

HEADER = "# routeflow churn stream v1"


class ChurnError(ValueError):
    """A line of a stream that is not an update; names the file and line."""


class Update(NamedTuple):
    t: float
    op: str  # "A" or "W"
    prefix: str  # canonical text
    as_path: tuple[int, ...] = ()


def parse_stream(lines: Iterable[str], source: str = "<stream>") -> list[Update]:
    out: list[Update] = []
    last = 0.0
    for lineno, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{source}:{lineno}"
        if len(fields) < 3:
            raise ChurnError(f"{where}: want 'time A|W prefix [as_path...]', got {line.strip()!r}")
        try:
            t = float(fields[0])
        except ValueError:
            raise ChurnError(f"{where}: time {fields[0]!r} is not a number") from None
        if not t >= last:  # also refuses NaN
            raise ChurnError(f"{where}: time {fields[0]} goes back (previous {last:g})")
        op = fields[1]
        if op not in ("A", "W"):
            raise ChurnError(f"{where}: operation {op!r} is neither A nor W")
        try:
            prefix = str(ipaddress.ip_network(fields[2]))
        except ValueError as err:
            raise ChurnError(f"{where}: {err}") from None
        if op == "W" and len(fields) > 3:
            raise ChurnError(f"{where}: a withdrawal has no AS path")
        path = []
        for asn in fields[3:]:
            if not asn.isdigit() or not 0 < int(asn) < 2**32:
                raise ChurnError(f"{where}: AS number {asn!r} is not in 1..2**32-1")
            path.append(int(asn))
        out.append(Update(t, op, prefix, tuple(path)))
        last = t
    return out


def format_stream(updates: Iterable[Update], comment: str = "") -> Iterator[str]:
    yield HEADER + "\n"
    if comment:
        yield f"# {comment}\n"
    for u in updates:
        path = "".join(f" {a}" for a in u.as_path)
        yield f"{u.t:.3f} {u.op} {u.prefix}{path}\n"


def final_state(updates: Iterable[Update]) -> dict[str, tuple[int, ...]]:
    """prefix -> AS path of what is announced once the whole stream has been applied."""
    state: dict[str, tuple[int, ...]] = {}
    for u in updates:
        if u.op == "A":
            state[u.prefix] = u.as_path
        else:
            state.pop(u.prefix, None)
    return state


def generate(
    table: list[TableEntry],
    *,
    seconds: float = 30.0,
    rate: float = 50.0,
    reset_at: float | None = None,
    reset_share: float = 0.4,
    seed: int = 1,
) -> list[Update]:
    """The table at t=0, then ``rate`` updates/s for ``seconds`` with a session reset.

    The steady updates: 60 % a present prefix re-announced with a changed path
    (prepended, or another upstream), 20 % a present prefix withdrawn, 20 % a
    withdrawn one announced again. At ``reset_at`` (default: the middle) a peer's
    session resets: ``reset_share`` of the table is withdrawn within 0.5 s and
    announced again over the next 2 s, as a router re-learning a full feed.
    """
    rng = random.Random(seed)
    out = [Update(0.0, "A", e.prefix, e.as_path or (64512,)) for e in table]
    paths = {e.prefix: out[i].as_path for i, e in enumerate(table)}
    present = list(paths)
    where = {p: i for i, p in enumerate(present)}
    gone: list[str] = []

    def drop(prefix: str) -> None:
        i = where.pop(prefix)
        last = present.pop()
        if last != prefix:
            present[i] = last
            where[last] = i

    def add(prefix: str) -> None:
        where[prefix] = len(present)
        present.append(prefix)

    reset: float | None = seconds / 2 if reset_at is None else reset_at
    steady = [round(1.0 + i / rate, 3) for i in range(int(seconds * rate))]
    burst: list[Update] = []
    for t in steady:
        if burst and burst[0].t <= t:
            out.extend(burst)
            burst = []
        if reset is not None and t >= 1.0 + reset and not burst:
            victims = rng.sample(present, int(len(present) * reset_share))
            n = max(1, len(victims))
            for i, p in enumerate(victims):
                out.append(Update(round(t + 0.5 * i / n, 3), "W", p))
                drop(p)
            back = round(t + 0.5, 3)
            burst = [
                Update(round(back + 2.0 * i / n, 3), "A", p, paths[p])
                for i, p in enumerate(victims)
            ]
            for p in victims:
                add(p)  # present again once the burst is out
            reset = None
            continue
        roll = rng.random()
        kind = "change" if roll < 0.6 else "withdraw" if roll < 0.8 else "return"
        if kind == "return" and not gone:
            kind = "change"
        if kind != "return" and not present:
            kind = "return" if gone else "none"
        if kind == "change":
            p = rng.choice(present)
            path = paths[p]
            if rng.random() < 0.5:
                path = (path[0], *path)  # prepended
            else:
                path = (rng.choice((174, 1299, 2914, 3257, 3356, 6453, 6939)), *path[-2:])
            paths[p] = path
            out.append(Update(t, "A", p, path))
        elif kind == "withdraw":
            p = rng.choice(present)
            drop(p)
            gone.append(p)
            out.append(Update(t, "W", p))
        elif kind == "return":
            p = gone.pop(rng.randrange(len(gone)))
            add(p)
            out.append(Update(t, "A", p, paths[p]))
    out.extend(burst)
    out.sort(key=lambda u: u.t)  # the burst's tail interleaves with the steady updates
    return _valid(out)


def _valid(updates: list[Update]) -> list[Update]:
    """Drops updates that change nothing a stream's reader could see: a withdrawal
    of a prefix not announced (the burst and the steady stream may both pick one)."""
    state: set[str] = set()
    out = []
    for u in updates:
        if u.op == "W":
            if u.prefix not in state:
                continue
            state.discard(u.prefix)
        else:
            state.add(u.prefix)
        out.append(u)
    return out


def latencies(
    updates: list[Update], emitted: list[float], samples: list[tuple[float, set[str]]]
) -> tuple[list[float], int]:
    """Seconds from each switch-changing update to the first sample showing it.

    ``emitted[i]`` is when ``updates[i]`` was handed to the speaker; ``samples``
    are (time, prefixes on the switch) in time order. An update counts when it
    adds a prefix or withdraws one (a path change leaves the switch as it is);
    one overtaken by a later update of its prefix before any sample showed it is
    not counted. Returns (latencies, updates never seen).
    """
    present: set[str] = set()
    pending: dict[str, tuple[int, bool]] = {}  # prefix -> (update index, want present)
    order = sorted(range(len(emitted)), key=lambda i: emitted[i])
    out: list[float] = []
    k = 0
    for when, have in samples:
        while k < len(order) and emitted[order[k]] <= when:
            i = order[k]
            u = updates[i]
            want = u.op == "A"
            earlier = pending.get(u.prefix)
            if earlier is not None:
                if earlier[1] != want:
                    del pending[u.prefix]  # overtaken: back to what the switch had
            elif want != (u.prefix in present):
                pending[u.prefix] = (i, want)
            if want:
                present.add(u.prefix)
            else:
                present.discard(u.prefix)
            k += 1
        for prefix, (i, want) in list(pending.items()):
            if (prefix in have) == want:
                out.append(when - emitted[i])
                del pending[prefix]
    return out, len(pending)


def percentiles(values: list[float], points: Iterable[int] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    out = {
        f"p{p}": round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 4)
        for p in points
    }
    out["max"] = round(ordered[-1], 4)
    return out

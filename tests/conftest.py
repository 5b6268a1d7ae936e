"""Suite-wide rules: every test's level comes from its folder, and one policy for skips.

Levels (one per test, so ``-m unit`` / ``-m "not e2e"`` mean what they say):

- ``unit``: needs nothing but this checkout; runs as any user (tests/unit, tests/fuzz and
  most of tests/web);
- ``component``: real daemons, root, OVS, FRR, namespaces or etcd (tests/component);
- ``e2e``: builds a lab (tests/e2e).

A file may name its own level with ``pytestmark`` (tests/web holds all three); the folder's
level is the default. tests/web is also marked ``web``, tests/fuzz ``fuzz``.

Skips: a test whose tool or privilege is missing skips on a developer's machine, but with
``CI=true`` every skip is a failure: CI has every tool (scripts/setup.sh) and runs as root,
so a skip there means a broken set-up, never a pass.

Hypothesis: each property keeps its own ``max_examples`` and stays random (a new sample of
the space every run); no deadline, since unit tests run side by side (``-n``) on a shared
2-core machine, where a slow example says nothing about the code. In CI a failure prints
the blob that replays it (``@reproduce_failure``), and nothing is saved (a fresh clone).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TESTS = Path(__file__).resolve().parent
LEVELS = ("unit", "component", "e2e")
# folder under tests/ -> (default level, extra markers)
FOLDERS = {
    "unit": ("unit", ()),
    "component": ("component", ()),
    "e2e": ("e2e", ()),
    "web": ("unit", ("web",)),
    "fuzz": ("unit", ("fuzz",)),
}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOT_IN_CI = "skipped in CI, where nothing may be missing"

settings.register_profile(
    "routeflow",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=IN_CI,
    **({"database": None} if IN_CI else {}),
)
settings.load_profile("routeflow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        if folder not in FOLDERS:
            raise pytest.UsageError(f"{item.nodeid}: tests/{folder} has no level in FOLDERS")
        level, extra = FOLDERS[folder]
        if not any(item.get_closest_marker(name) for name in LEVELS):
            item.add_marker(level)
        for name in extra:
            item.add_marker(name)
    _labs_first(items)


def _labs_first(items: list[pytest.Item]) -> None:
    """Files with labs first, then component files, then unit ones; each file stays whole.

    ``-n N --dist loadfile`` hands out whole files in this order: a long lab file handed
    out last would run alone at the end, while many short component files even out the
    tail. A file stays contiguous, or its module fixture (a lab) would be set up twice.
    """
    rank: dict[Path, int] = {}
    first: dict[Path, int] = {}
    for i, item in enumerate(items):
        level = next(name for name in LEVELS if item.get_closest_marker(name))
        path = Path(str(item.path))
        rank[path] = min(rank.get(path, 3), ("e2e", "component", "unit").index(level))
        first.setdefault(path, i)
    items.sort(key=lambda item: (rank[Path(str(item.path))], first[Path(str(item.path))]))


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{NOT_IN_CI}: {_skip_reason(report.longrepr)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    report = yield
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{NOT_IN_CI}: {_skip_reason(report.longrepr)}"
    return report


# A pytest-xdist worker that dies of a signal shows only as "worker 'gw0' crashed" (in CI:
# once a lab signalling a reused pid, then SIGPIPE, see below). A worker sent SIGTERM or
# SIGHUP now says so, and in which test, before it dies of it as it would have: one line
# appended to $ROUTEFLOW_TEST_SIGNALS (pytest holds the test's stderr in a file that dies
# with the worker), which scripts/test.sh repeats at the end of its output. SIGKILL cannot
# be caught; a crash of the interpreter itself is pytest's faulthandler's to report.
_running: list[str] = []


def _say_and_die(signum: int, frame: object) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    test = _running[-1] if _running else "no test"
    line = f"{worker} (pid {os.getpid()}) got {signal.Signals(signum).name} in {test}\n"
    path = os.environ.get("ROUTEFLOW_TEST_SIGNALS")
    try:
        if path:
            with open(path, "a") as fh:
                fh.write(line)
        else:
            sys.__stderr__.write(line)  # type: ignore[union-attr]
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                signal.signal(signum, _say_and_die)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    _running.append(item.nodeid)
    try:
        return (yield)
    finally:
        _running.pop()


@pytest.fixture(autouse=True)
def _sigpipe_stays_ignored() -> object:
    """Python ignores SIGPIPE, so a write to a closed socket raises BrokenPipeError. A
    library that restores the default on import (mrtparse did) turns every later such
    write in this worker into a silent death ("worker crashed", in another test): the
    test that let that happen fails here instead."""
    yield
    if signal.getsignal(signal.SIGPIPE) != signal.SIG_IGN:
        previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        pytest.fail(f"SIGPIPE was left at {previous!r} (a module imported here reset it)")

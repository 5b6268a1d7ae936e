#!/usr/bin/env bash
# `make test` once set up: lint and every level of tests, overlapped to fit in 6 minutes
# on 2 cores (issue 12). After ruff (a second), two parts run at once:
#
#   labs  component, web and e2e tests, three files side by side (-n 3 --dist loadfile,
#         files with labs first: tests/conftest.py). They mostly wait on daemons, OSPF
#         timers and pings: the e2e files used 200 CPU-seconds in 5 minutes at -n 3.
#         -n 3 is a minute faster than -n 2 and passed at load 8 (helpers' labs beside
#         it); once, at -n 3 next to other load, test_faults' rfproxy restart outlasted
#         the OSPF dead interval (4 s): LAB_JOBS=2 if your machine is busier than that.
#   cpu   mypy, then the unit tests on every core, at nice 10: pure computation that takes
#         the CPU the labs leave, while the labs' daemons always come first (their timing
#         assertions never compete with a hypothesis run on equal terms).
#
# The labs' output comes as it runs, the cpu part's after it; the run fails if either
# part failed. `scripts/test.sh cpu` runs the cpu part alone.
set -uo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/.."
PY=.venv/bin/python
PYTEST=("$PY" -m pytest -q -p no:cacheprovider)
JOBS=${JOBS:-auto}
LAB_JOBS=${LAB_JOBS:-3}

now() { date +%s; }

if [ "${1:-}" = cpu ]; then
    t=$(now)
    nice -n 10 "$PY" -m mypy || exit 1
    echo "test: mypy $(($(now) - t)) s"
    t=$(now)
    # Its own --basetemp: pytest's numbered tmp dirs are shared with the labs' session.
    # tests/fuzz first: its one long atheris run then overlaps the many short tests.
    nice -n 10 "${PYTEST[@]}" --basetemp "${2:?basetemp}" -n "$JOBS" \
        -m unit tests/fuzz tests/unit tests/web
    rc=$?
    echo "test: unit $(($(now) - t)) s"
    exit $rc
fi

t0=$(now)
"$PY" -m ruff check src tests || exit 1

cpu_log=$(mktemp /tmp/routeflow-test-cpu.XXXXXX)
cpu_tmp=$(mktemp -d /tmp/routeflow-test-unit.XXXXXX)
# Where a test worker killed by SIGTERM/SIGHUP says so (tests/conftest.py).
ROUTEFLOW_TEST_SIGNALS=$(mktemp /tmp/routeflow-test-signals.XXXXXX)
export ROUTEFLOW_TEST_SIGNALS
# A session (and process group) of its own, so that an interrupted run stops it whole.
setsid -w bash "$self" cpu "$cpu_tmp" >"$cpu_log" 2>&1 &
cpu_pid=$!
cleanup() {
    kill -- "-$cpu_pid" 2>/dev/null
    rm -rf "$cpu_log" "$cpu_tmp" "$ROUTEFLOW_TEST_SIGNALS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t=$(now)
"${PYTEST[@]}" -n "$LAB_JOBS" --dist loadfile --no-loadscope-reorder -m "not unit" \
    tests/e2e tests/component tests/web
labs_rc=$?
labs_s=$(($(now) - t))
echo "test: labs (component, web, e2e) $labs_s s; waiting for mypy and the unit tests"
wait "$cpu_pid"
cpu_rc=$?
echo "--- mypy and unit tests (ran next to the labs, at nice 10) ---"
cat "$cpu_log"
if [ -s "$ROUTEFLOW_TEST_SIGNALS" ]; then
    echo "test: test workers killed by a signal:"
    sed 's/^/  /' "$ROUTEFLOW_TEST_SIGNALS"
fi
echo "test: labs exit $labs_rc ($labs_s s), mypy+unit exit $cpu_rc; $(($(now) - t0)) s in all"
[ "$labs_rc" -eq 0 ] && [ "$cpu_rc" -eq 0 ]

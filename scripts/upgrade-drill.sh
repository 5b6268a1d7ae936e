#!/usr/bin/env bash
# Upgrade drill: run the manual's rftest1 (docs/examples/rftest1-by-hand.sh) on routeflow
# OLD_REF, then replace rfserver, rfproxy and rfclient one at a time by this checkout's
# code in the order of docs/operations.md (ORDER="client-vm1 proxy server" by default),
# with h1 pinging h2 every 20 ms.
# It reports packets lost, flows the switch had to re-install (a flow whose duration
# restarted), and the associations before and after.
#   scripts/upgrade-drill.sh OLD_REF        (as root, from a git checkout with history)
# Everything runs in a network and mount namespace of its own (unshare) with a private
# Open vSwitch, so the walkthrough's fixed names meet nothing else on the machine. The old
# code runs from `git archive OLD_REF` with this checkout's virtualenv (same pinned deps).
set -euo pipefail
OLD_REF=${1:?usage: $0 OLD_REF}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d /tmp/rf-upgrade.XXXXXX)
OLD_SHA=$(git -C "$ROOT" rev-parse --short "$OLD_REF")
NEW_SHA=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD || echo +dirty)
mkdir -p "$WORK/old" "$WORK/ovs"
git -C "$ROOT" archive "$OLD_REF" | tar -x -C "$WORK/old"
printf '#!/bin/sh\nPYTHONPATH=%s exec %s -m routeflow.cli "$@"\n' "$WORK/old/src" "$PY" > "$WORK/rf-old"
printf '#!/bin/sh\nPYTHONPATH=%s exec %s -m routeflow.cli "$@"\n' "$ROOT/src" "$PY" > "$WORK/rf-new"
chmod +x "$WORK/rf-old" "$WORK/rf-new"
echo "upgrade drill: $OLD_SHA -> $NEW_SHA in $WORK"

export WORK OLD_SHA NEW_SHA ORDER
export SCRIPT="$WORK/old/docs/examples/rftest1-by-hand.sh"
export ETC="$WORK/etc" RUN="$WORK/run" STATE="$WORK/state" ROUTEFLOW="$WORK/rf-old"
export OVS_RUNDIR="$WORK/ovs" OVS_DBDIR="$WORK/ovs" OVS_LOGDIR="$WORK/ovs" OVS_SYSCONFDIR="$WORK/ovs"
export SCHEMA=/usr/share/openvswitch/vswitch.ovsschema

# shellcheck disable=SC2016  # expanded inside the namespaces
exec unshare --net --mount --propagation private bash -euo pipefail -c '
mount -t tmpfs tmpfs /run/netns 2>/dev/null || { mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns; }
ip link set lo up
ovsdb-tool create "$OVS_RUNDIR/conf.db" "$SCHEMA"
ovsdb-server "$OVS_RUNDIR/conf.db" --remote="punix:$OVS_RUNDIR/db.sock" \
    --pidfile="$OVS_RUNDIR/ovsdb-server.pid" --log-file="$OVS_RUNDIR/ovsdb-server.log" \
    -vconsole:off --detach
ovs-vsctl --no-wait init
ovs-vswitchd "unix:$OVS_RUNDIR/db.sock" --pidfile="$OVS_RUNDIR/ovs-vswitchd.pid" \
    --log-file="$OVS_RUNDIR/ovs-vswitchd.log" -vconsole:off --detach
cleanup() {
    [ -n "${PING:-}" ] && kill "$PING" 2>/dev/null || true
    bash "$SCRIPT" down >/dev/null 2>&1 || true
    for p in ovs-vswitchd ovsdb-server; do
        kill "$(cat "$OVS_RUNDIR/$p.pid" 2>/dev/null)" 2>/dev/null || true
    done
}
trap cleanup EXIT

flows() {  # "duration match/actions" per flow of the switch, durations in seconds
    ovs-ofctl -O OpenFlow13 dump-flows br-s1 | sed -n "s/.* duration=\([0-9.]*\)s, .*table=\([0-9]*\), [^ ]* [^ ]* \(.*\)/\1 table=\2 \3/p" \
        | sed -E "s/n_packets=[0-9]+, n_bytes=[0-9]+, //; s/idle_age=[0-9]+, //; s/hard_age=[0-9]+, //"
}
associations() {  # the table as rfweb serves it (read with the new CLI: an HTTP client)
    "$WORK/rf-new" show associations --url http://127.0.0.1:6680 --json --timeout 2 2>/dev/null \
        | "$PY_BIN" -c "import json,sys; print(sorted((a[\"vm_id\"], a[\"vm_port\"], a[\"dp_id\"], a[\"dp_port\"], a.get(\"state_code\", a.get(\"state\"))) for a in json.load(sys.stdin)))" 2>/dev/null
}
wait_active() {  # both of the VM ports associated and active again
    for _ in $(seq 100); do
        [ "$(associations | grep -o active | wc -l)" = 2 ] && return 0; sleep 0.2
    done
    echo "associations not active 20 s after the restart: $(associations)"; return 1
}
PY_BIN=$(sed -n "s/.*exec \([^ ]*\) -m.*/\1/p" "$WORK/rf-new")

bash "$SCRIPT" up > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
echo "rftest1 up on $OLD_SHA: $(grep -c "bytes from" "$WORK/up.log") of 3 pings answered"
ip netns exec h1 ping -i 0.02 172.31.2.100 > "$WORK/ping.log" 2>&1 &
PING=$!
sleep 2
wait_active
before=$(associations)
flows > "$WORK/flows-before"
t0=$(date +%s.%N)

start() {  # the new code, with the same config file and pid file as the old one
    local name=$1; shift
    if [ "$name" = client-vm1 ]; then
        ip netns exec vm1 "$WORK/rf-new" "$@" > "$RUN/$name.new.log" 2>&1 &
    else
        "$WORK/rf-new" "$@" > "$RUN/$name.new.log" 2>&1 &
    fi
    echo $! > "$RUN/$name.pid"
}
wait_log() {  # wait_log FILE REGEX: the new process has said it is back
    for _ in $(seq 100); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
    echo "not in $1 after 20 s: /$2/"; tail -5 "$1"; return 1
}
for step in ${ORDER:-client-vm1 proxy server}; do
    ts=$(date +%s.%N)
    pid=$(cat "$RUN/$step.pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    case $step in
        server) start server server --config-file "$ETC/server.yaml" ;;
        proxy) start proxy proxy --config-file "$ETC/proxy.yaml"
               wait_log "$RUN/proxy.new.log" "switch 0x99 connected" ;;
        client-vm1) start client-vm1 client --config-file "$ETC/client-vm1.yaml"
                    wait_log "$RUN/client-vm1.new.log" "resync sent" ;;
    esac
    wait_active
    echo "$step replaced by $NEW_SHA: associations active again after $(echo "$(date +%s.%N) - $ts" | bc | cut -c1-4) s"
    sleep 2
done
sleep 2
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
flows > "$WORK/flows-after"
after=$(associations)
kill -INT "$PING"; wait "$PING" || true; PING=
# A flow kept across the upgrade is older now by at least the drill time; a re-installed
# one is younger. Flows are matched by table, match and actions.
"$PY_BIN" - "$WORK/flows-before" "$WORK/flows-after" "$elapsed" <<EOF
import sys
def load(p):
    out = {}
    for line in open(p):
        d, _, key = line.strip().partition(" ")
        out[key] = float(d)
    return out
before, after, elapsed = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
kept = [k for k in before if k in after and after[k] >= before[k] + elapsed - 1]
redone = [k for k in before if k in after and k not in kept]
gone = [k for k in before if k not in after]
new = [k for k in after if k not in before]
print(f"flows: {len(before)} before, {len(kept)} kept, {len(redone)} re-installed, "
      f"{len(gone)} removed, {len(new)} added (drill {elapsed:.1f} s)")
for k in redone + gone + new:
    print("  ", k)
EOF
echo "ping h1 -> h2 every 20 ms: $(grep -E "packets transmitted" "$WORK/ping.log")"
echo "associations before: $before"
echo "associations after:  $after"
[ "$before" = "$after" ] && echo "associations equal" || echo "ASSOCIATIONS DIFFER"
'

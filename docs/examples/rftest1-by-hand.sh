#!/usr/bin/env bash
# rftest1 by hand: one OpenFlow switch (br-s1, dpid 0x99), one VM (namespace vm1) and two
# hosts (namespaces h1, h2), with rfserver, rfproxy and rfclient started from config files.
# As root, on a machine where Open vSwitch runs and `routeflow` is installed:
#   rftest1-by-hand.sh up      build it, start the daemons, ping h1 -> h2 through the switch
#   rftest1-by-hand.sh down    stop the daemons, remove the namespaces and the bridges
# The paths are the packaged ones; set ETC, RUN, STATE or ROUTEFLOW to try it elsewhere.
set -euo pipefail
ETC=${ETC:-/etc/routeflow} RUN=${RUN:-/run/routeflow} STATE=${STATE:-/var/lib/routeflow}
ROUTEFLOW=${ROUTEFLOW:-routeflow}
VS_DPID=7266767372667673   # the virtual switch: ASCII "rfvsrfvs", rfproxy's default --vs-dpid

up() {
    # 1. Config files: the mapping (VM 0x99's eth1/eth2 are switch 0x99's ports 1/2), a
    #    shared secret, one YAML file per daemon; checked before anything starts.
    mkdir -p "$ETC" "$RUN" "$STATE"
    [ -s "$ETC/secret" ] || (umask 077; head -c 32 /dev/urandom | base64 > "$ETC/secret")
    printf 'vm_id,vm_port,ct_id,dp_id,dp_port\n99,1,1,99,1\n99,2,1,99,2\n' > "$ETC/mapping.csv"
    cat > "$ETC/server.yaml" <<EOF
mapping: $ETC/mapping.csv
store: sqlite:$STATE/state.db
listen: unix:$RUN/rfserver.sock
secret-file: $ETC/secret
status-file: $RUN/status.json
web: 127.0.0.1:6680
EOF
    cat > "$ETC/proxy.yaml" <<EOF
server: unix:$RUN/rfserver.sock
ct-id: 1
ofp-port: 6653
secret-file: $ETC/secret
EOF
    cat > "$ETC/client-vm1.yaml" <<EOF
vm-id: 0x99
server: unix:$RUN/rfserver.sock
secret-file: $ETC/secret
EOF
    "$ROUTEFLOW" config check server "$ETC/server.yaml"
    "$ROUTEFLOW" config check proxy "$ETC/proxy.yaml"
    "$ROUTEFLOW" config check client "$ETC/client-vm1.yaml"

    # 2. The switch and the virtual switch: OpenFlow 1.3, fail-mode secure (they keep their
    #    flows while no controller is connected), both connected to rfproxy. netdev is Open
    #    vSwitch's userspace datapath; leave datapath_type out to use the kernel's.
    local br dpid
    for br in br-s1:0000000000000099 br-rfvs:$VS_DPID; do
        dpid=${br#*:} br=${br%%:*}
        ovs-vsctl --may-exist add-br "$br" -- set bridge "$br" datapath_type=netdev \
            fail-mode=secure protocols=OpenFlow13 other-config:datapath-id="$dpid" \
            other-config:disable-in-band=true -- set-controller "$br" tcp:127.0.0.1:6653
    done

    # 3. The hosts: h<i>'s eth0 is the switch's port i; the VM's port is its gateway.
    # 4. The VM: its eth<i> is a port of the virtual switch; its addresses are the hosts'
    #    gateways. (A real network runs FRR here; with no neighbours, rftest1 routes with
    #    the connected routes alone, which the kernel has from the addresses.)
    ip netns add vm1
    ip netns exec vm1 sysctl -qw net.ipv4.ip_forward=1
    ip -n vm1 link set lo up
    local i
    for i in 1 2; do
        ip netns add "h$i"
        ip link add "s1-eth$i" type veth peer name eth0 netns "h$i"
        ip link add "vs-eth$i" type veth peer name "eth$i" netns vm1
        ovs-vsctl add-port br-s1 "s1-eth$i" -- set interface "s1-eth$i" ofport_request="$i" \
            -- add-port br-rfvs "vs-eth$i" -- set interface "vs-eth$i" ofport_request="$i"
        ip link set "s1-eth$i" up
        ip link set "vs-eth$i" up
        ip -n "h$i" addr add "172.31.$i.100/24" dev eth0
        ip -n "h$i" link set eth0 up
        ip -n "h$i" link set lo up
        ip -n "h$i" route add default via "172.31.$i.1"
        ip -n vm1 addr add "172.31.$i.1/24" dev "eth$i"
        ip -n vm1 link set "eth$i" up
        # the userspace datapath hands veths' packets on without checksums: compute them
        ip netns exec "h$i" ethtool -K eth0 tx off >/dev/null
        ip netns exec vm1 ethtool -K "eth$i" tx off >/dev/null
    done

    # 5. The daemons (under systemd: the units in etc/systemd/ run the same commands).
    "$ROUTEFLOW" server --config-file "$ETC/server.yaml" > "$RUN/server.log" 2>&1 &
    echo $! > "$RUN/server.pid"
    "$ROUTEFLOW" proxy --config-file "$ETC/proxy.yaml" > "$RUN/proxy.log" 2>&1 &
    echo $! > "$RUN/proxy.pid"
    ip netns exec vm1 "$ROUTEFLOW" client --config-file "$ETC/client-vm1.yaml" \
        > "$RUN/client-vm1.log" 2>&1 &
    echo $! > "$RUN/client-vm1.pid"

    # 6. h1 reaches h2 once both associations are active and the FIB is on the switch.
    for i in $(seq 60); do
        ip netns exec h1 ping -c 1 -W 1 172.31.2.100 >/dev/null 2>&1 && break
        sleep 0.5
    done
    ip netns exec h1 ping -c 3 -i 0.2 172.31.2.100
    ovs-ofctl -O OpenFlow13 dump-flows br-s1 table=1
    "$ROUTEFLOW" status --url http://127.0.0.1:6680
}

down() {
    local name pid
    for name in client-vm1 proxy server; do
        pid=$(cat "$RUN/$name.pid" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || true
        rm -f "$RUN/$name.pid"
    done
    for name in h1 h2 vm1; do ip netns del "$name" 2>/dev/null || true; done
    ovs-vsctl --if-exists del-br br-s1 -- --if-exists del-br br-rfvs
}

case "${1:-}" in
    up | down) "$1" ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

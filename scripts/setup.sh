#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine, in four steps:
#   system  Debian packages (needs root)
#   venv    .venv with the pinned Python dependencies (any user; all that
#           `make lint` and `make test-unit` need)
#   tempest .venv-tempest with requirements-tempest.txt (the tenant API's tempest run)
#   web     rfweb's vendored cytoscape (any user; npm when its lock changes)
# `scripts/setup.sh` alone runs all four, as root; `scripts/setup.sh venv` one.
set -euo pipefail
cd "$(dirname "$0")/.."

system() {
    local packages=(openvswitch-switch frr mininet iproute2 iputils-ping fping ethtool
                    python3-venv python3-dev traceroute tcpdump procps openssl util-linux)
    # rfweb: chromium for the page test, tshark for the RFProtocol dissector test,
    # node/npm to vendor cytoscape (Debian's, unless this machine has its own npm).
    packages+=(chromium fonts-dejavu-core tshark)
    command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
    # The etcd state store backend and its tests (src/routeflow/lab/etcd.py starts
    # private members on free loopback ports; a system etcd on 2379, which the
    # Debian package may start, is neither used nor touched).
    packages+=(etcd-server etcd-client)
    # systemd-analyze checks the unit files in etc/systemd (tests/component/ops).
    packages+=(systemd)
    # The cloud lab's VMs get their address by DHCP with busybox's udhcpc.
    packages+=(udhcpc)
    # `routeflow bench tenant` measures OVN as the peer (tests/component/bench): its daemons
    # run privately per run; the Debian services, if systemd starts them, are neither used
    # nor touched.
    packages+=(ovn-central ovn-host)
    # `routeflow bench tput`: one TCP flow through the tenant data plane (Debian 12's
    # iperf3 3.12; its daemon is not started: iperf3/start_daemon is false by default).
    packages+=(iperf3)

    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: run as root (apt-get, network namespaces, Open vSwitch);" \
             "without root, \`make lint\` and \`make test-unit\` need only the venv step" >&2
        exit 1
    fi

    local missing=() p
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # tshark asks whether non-root users may capture: no (tests capture as root).
        echo "wireshark-common wireshark-common/install-setuid boolean false" \
            | debconf-set-selections
        echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # The lab runs its own private ovsdb-server/ovs-vswitchd per run (see
    # src/routeflow/lab/ovs.py), so the system OVS service need not run.
}

venv() {
    # Debian's mininet installs its Python API for /usr/bin/python3 only; a venv
    # made from that interpreter with --system-site-packages sees it.
    local py=/usr/bin/python3 stamp=.venv/.routeflow-setup want
    want="$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
    if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "setup: creating .venv with pinned dependencies"
        "$py" -m venv --system-site-packages .venv
        .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
        .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
        echo "$want" > "$stamp"
    fi
    .venv/bin/python -c "import os_ken, pyroute2, msgspec, xdist, mypy" \
        || { echo "setup: the virtualenv is broken; remove .venv and retry" >&2; exit 1; }
}

tempest() {
    # Tempest (tests/component/tenant/test_tempest.py) pins its own dependency versions,
    # which clash with ours: it gets a venv of its own.
    local stamp=.venv-tempest/.routeflow-setup want
    want="$(sha256sum requirements-tempest.txt | cut -d' ' -f1)"
    if [ ! -x .venv-tempest/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "setup: creating .venv-tempest"
        /usr/bin/python3 -m venv .venv-tempest
        .venv-tempest/bin/pip install -q --disable-pip-version-check -r requirements-tempest.txt
        echo "$want" > "$stamp"
    fi
}

web() {
    # rfweb's page draws with cytoscape from the npm registry, vendored into the
    # package (gitignored): no CDN at run time, no build step beyond this copy.
    local frontend=src/routeflow/web/frontend vendor=src/routeflow/web/static/vendor lock_sum
    lock_sum="$(sha256sum "$frontend/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$frontend/node_modules/.routeflow-setup" 2>/dev/null)" != "$lock_sum" ]; then
        echo "setup: npm ci in $frontend"
        (cd "$frontend" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
        echo "$lock_sum" > "$frontend/node_modules/.routeflow-setup"
    fi
    mkdir -p "$vendor"
    cmp -s "$frontend/node_modules/cytoscape/dist/cytoscape.min.js" "$vendor/cytoscape.min.js" \
        || cp "$frontend/node_modules/cytoscape/dist/cytoscape.min.js" "$vendor/cytoscape.min.js"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(system tempest venv web)
tempest_pid=""
for step in "${steps[@]}"; do
    case "$step" in
        system | venv | web) "$step" ;;
        # Its venv is independent of .venv and pip uses one core: on a fresh clone it is
        # built while the next steps run (15-20 s less on two cores).
        tempest) tempest & tempest_pid=$! ;;
        *) echo "setup: unknown step $step (system, venv, tempest, web)" >&2; exit 2 ;;
    esac
done
if [ -n "$tempest_pid" ]; then
    wait "$tempest_pid" || { echo "setup: building .venv-tempest failed" >&2; exit 1; }
fi
if [[ " ${steps[*]} " == *" system "* && " ${steps[*]} " == *" venv "* ]]; then
    .venv/bin/python -c "import mininet.net" \
        || { echo "setup: the venv does not see Debian's mininet; remove .venv and retry" >&2; exit 1; }
fi
echo "setup: ok (${steps[*]})"

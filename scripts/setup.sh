#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root):
# system packages, then a virtualenv with the pinned Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openvswitch-switch frr mininet iproute2 iputils-ping fping ethtool
              python3-venv python3-dev traceroute tcpdump procps openssl util-linux)
# rfweb: chromium for the page test, tshark for the RFProtocol dissector test,
# node/npm to vendor cytoscape (Debian's, unless this machine has its own npm).
APT_PACKAGES+=(chromium fonts-dejavu-core tshark)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
# The etcd state store backend and its tests (src/routeflow/lab/etcd.py starts
# private members on free loopback ports; a system etcd on 2379, which the
# Debian package may start, is neither used nor touched).
APT_PACKAGES+=(etcd-server etcd-client)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (apt-get, network namespaces, Open vSwitch)" >&2
    exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture: no (tests capture as root).
    echo "wireshark-common wireshark-common/install-setuid boolean false" \
        | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The lab runs its own private ovsdb-server/ovs-vswitchd per run (see
# src/routeflow/lab/ovs.py), so the system OVS service need not run.

# Debian's mininet installs its Python API for /usr/bin/python3 only; a venv
# made from that interpreter with --system-site-packages sees it.
PY=/usr/bin/python3
stamp=.venv/.routeflow-setup
want="$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv with pinned dependencies"
    "$PY" -m venv --system-site-packages .venv
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
    echo "$want" > "$stamp"
fi
# rfweb's page draws with cytoscape from the npm registry, vendored into the
# package (gitignored): no CDN at run time, no build step beyond this copy.
FRONTEND=src/routeflow/web/frontend
VENDOR=src/routeflow/web/static/vendor
lock_sum="$(sha256sum "$FRONTEND/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$FRONTEND/node_modules/.routeflow-setup" 2>/dev/null)" != "$lock_sum" ]; then
    echo "setup: npm ci in $FRONTEND"
    (cd "$FRONTEND" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    echo "$lock_sum" > "$FRONTEND/node_modules/.routeflow-setup"
fi
mkdir -p "$VENDOR"
cmp -s "$FRONTEND/node_modules/cytoscape/dist/cytoscape.min.js" "$VENDOR/cytoscape.min.js" \
    || cp "$FRONTEND/node_modules/cytoscape/dist/cytoscape.min.js" "$VENDOR/cytoscape.min.js"

.venv/bin/python -c "import mininet.net, os_ken, pyroute2, msgspec" \
    || { echo "setup: the virtualenv is broken; remove .venv and retry" >&2; exit 1; }
echo "setup: ok"

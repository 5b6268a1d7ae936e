#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root):
# system packages, then a virtualenv with the pinned Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openvswitch-switch frr mininet iproute2 iputils-ping ethtool
              python3-venv python3-dev traceroute tcpdump procps)

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
.venv/bin/python -c "import mininet.net, os_ken, pyroute2, msgspec" \
    || { echo "setup: the virtualenv is broken; remove .venv and retry" >&2; exit 1; }
echo "setup: ok"

"""The benchmark's "VMs": namespaces plugged into a node's br-int by iface-id (thin I/O).

Both systems the tenant benchmark compares get exactly the same VMs: a namespace whose
``eth0`` is a veth into the node's ``br-int`` (``external_ids:iface-id`` = the port),
an address by DHCP (busybox ``udhcpc`` with a script that only sets the address, the
default route and the MTU: the host's resolv.conf is never touched), then a ping with
10 ms between probes until the first reply. The namespace and its veth are made before
the clock starts (the VM boots while its port is created); plugging it (its MAC, then
``add-port`` with the iface-id) is timed, as Nova's VIF plug is part of a port coming up.
"""

from __future__ import annotations

import os
import re
import subprocess

from routeflow.lab.ovsnode import OvsNode, netns_add, netns_delete, run, veth

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc's hook for a benchmark VM: address, default route and MTU; nothing else.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""

_LEASE = re.compile(r"lease of (\S+) obtained")


def write_udhcpc_script(run_dir: str) -> str:
    path = os.path.join(run_dir, "udhcpc.sh")
    with open(path, "w") as fh:
        fh.write(UDHCPC_SCRIPT)
    os.chmod(path, 0o755)
    return path


def dev_of(vm_ns: str) -> str:
    """The node-side veth name of a VM (what OvsNode.plug_vm names it)."""
    return f"t{vm_ns}"[:15]


def prepare(node: OvsNode, vm_ns: str, mtu: int) -> None:
    """The VM before its port exists: namespace, veth into the node, down, MTU set."""
    netns_add(vm_ns)
    node.vms.append(vm_ns)
    veth("eth0", vm_ns, dev_of(vm_ns), node.ns)
    run(["ip", "-n", vm_ns, "link", "set", "eth0", "down"])
    run(["ip", "-n", vm_ns, "link", "set", "eth0", "mtu", str(mtu)])


def plug(node: OvsNode, vm_ns: str, iface_id: str, mac: str, bridge: str = "br-int") -> None:
    """The VIF plug: the port's MAC on eth0, then ``add-port`` with the iface-id."""
    run(["ip", "-n", vm_ns, "link", "set", "eth0", "address", mac, "up"])
    dev = dev_of(vm_ns)
    node.vsctl(
        "add-port", bridge, dev, "--", "set", "interface", dev, f"external_ids:iface-id={iface_id}"
    )


def static_address(vm_ns: str, cidr: str, gateway: str) -> None:
    run(["ip", "-n", vm_ns, "addr", "add", cidr, "dev", "eth0"])
    run(["ip", "-n", vm_ns, "route", "replace", "default", "via", gateway])


def dhcp(vm_ns: str, script: str, timeout: float = 20.0) -> tuple[str, int]:
    """Run udhcpc once in the VM (a DISCOVER every second, up to 10): (the leased
    address, DISCOVERs sent), or raise RuntimeError with its output. More than one
    DISCOVER means the first went unanswered and cost a second."""
    argv = [
        "ip", "netns", "exec", vm_ns, "udhcpc", "-i", "eth0", "-n", "-q", "-f",
        "-t", "10", "-T", "1", "-s", script,
    ]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    m = _LEASE.search(r.stdout + r.stderr)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"no DHCP lease in {vm_ns}: {(r.stdout + r.stderr).strip()[-300:]}")
    return m.group(1), (r.stdout + r.stderr).count("discover")


def ping_until_reply(vm_ns: str, target: str, deadline_s: float = 10.0) -> bool:
    """Ping every 10 ms until the first reply or the deadline; True if one came back."""
    argv = ["ip", "netns", "exec", vm_ns, "ping", "-n", "-q", "-c", "1", "-i", "0.01",
            "-w", str(int(deadline_s)), target]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=deadline_s + 10)
    return r.returncode == 0


def delete(node: OvsNode, vm_ns: str) -> None:
    node.vsctl("--if-exists", "del-port", "br-int", dev_of(vm_ns))
    if vm_ns in node.vms:
        node.vms.remove(vm_ns)
    netns_delete(vm_ns)

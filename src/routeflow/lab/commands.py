"""The commands that wire a lab's namespaces, as bounded lines of script files (pure).

Mininet talks to each node's shell through a pseudo-terminal, whose line discipline cuts an
input line at 4095 bytes without a word; a lab that joined all its links into one line lost
the tail of them on any backbone bigger than about 14 links. So nothing of variable length
goes through a node's shell line: the lab writes these lines to a file and hands the file
to ``ip -batch`` or ``sh -e`` (see LabRun._run_script), which stop at the first failure and
report it through a pipe. Every line here is short and independent of the lab's size.
"""

from __future__ import annotations

from routeflow.lab.model import VmPlan

#: Longest input line a pseudo-terminal in canonical mode accepts (N_TTY_BUF_SIZE - 1).
PTY_LINE_MAX = 4095


def veth_pairs(pairs: list[tuple[str, str]]) -> list[str]:
    """``ip -batch`` lines creating switch-to-switch veth pairs and bringing both ends up."""
    lines = [f"link add {a} type veth peer name {b}" for a, b in pairs]
    return lines + [f"link set {name} up" for pair in pairs for name in pair]


def tx_offload_off(names: list[str]) -> list[str]:
    """``sh -e`` lines turning checksum offload off: with the userspace datapath, veths with
    it on deliver TCP (BGP) with bad checksums."""
    return [f"ethtool -K {name} tx off >/dev/null" for name in names]


def vm_sysctls(ipv6: bool) -> list[str]:
    """``sysctl -p`` lines of a VM: it forwards, and asymmetric paths are normal in a backbone.

    ospfd joins AllSPFRouters (224.0.0.5) on every OSPF interface through one socket, and
    Linux allows a socket 20 multicast memberships by default: a VM with more than 20 links
    silently missed its neighbours' hellos on the rest (seen: the adjacency stuck in Init,
    the path around it longer than the shortest one).
    """
    lines = [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.igmp_max_memberships=1024",
    ]
    return lines + (["net.ipv6.conf.all.forwarding=1"] if ipv6 else [])


def vm_addresses(vm: VmPlan, ipv6: bool, unnumbered: bool = False) -> list[str]:
    """``ip -batch`` lines giving a VM's interfaces their addresses, then bringing them up.

    ``unnumbered`` (BGP unnumbered): links between VMs get no IPv4 address; their
    sessions and next hops are the interfaces' IPv6 link-local addresses."""
    lines = [f"addr replace {i.address} dev {i.ifname}" for i in vm.ipv4_interfaces(unnumbered)]
    if ipv6:  # ip infers the family from the address; no DAD (see runner's docstring)
        lines += [f"addr replace {i.address6} dev {i.ifname} nodad" for i in vm.interfaces]
    return [*lines, *(f"link set {i.ifname} up" for i in vm.interfaces), "link set lo up"]

"""Compute nodes for tenant networks: a namespace with its own Open vSwitch each (thin I/O).

A node is what notes/tenant-networks.md §3.1 verified: a network namespace holding a
private ovs-vswitchd (its ovsdb-server runs outside, on a unix socket in the node's run
directory), a ``br-int`` on the userspace datapath with one flow-based VXLAN port
(``remote_ip=flow, key=flow``) at a fixed ofport, and the tunnel endpoint address on
the internal port of an OVS bridge ``br-ul`` (native tunnelling on the netdev datapath
needs the underlay IP on an OVS internal port, not on the veth). An ``Underlay`` is a
Linux bridge in its own namespace that every node's ``br-ul`` plugs into, so any number
of nodes share one L2 segment. ``plug_vm`` makes a "VM": a namespace whose ``eth0`` is a
veth into ``br-int`` with ``external_ids:iface-id`` = the Neutron port id.

Everything is named with a caller-chosen suffix (interface names stay under 16 bytes)
and stopped by recorded pid: ``stop()`` kills the daemons this object started and
deletes the namespaces it created, nothing else.

Usage::

    procs = ProcessSet()
    ul = Underlay(f"ul-{tag}")
    ul.start()
    n1 = OvsNode(f"n1-{tag}", rundir1, procs)
    n1.start()
    n1.add_underlay(ul, "198.51.100.1/24")
    n1.add_br_int(local_ip="198.51.100.1")
    n1.resolve_underlay(["198.51.100.2"])  # once every node is up
    n1.plug_vm(f"vm1-{tag}", port_id, "fa:16:3e:00:00:01", "10.0.0.11/24")
    n1.ofctl("dump-flows", "br-int")
    ...
    n1.stop(); ul.stop()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from routeflow.lab.ovs import OvsError, OvsInstance
from routeflow.lab.procs import ProcessSet, Tracked

TUNNEL_OFPORT = 100  # the flow-based VXLAN port of br-int (tenant/pipeline.py uses the same)
EXTERNAL_OFPORT = 101  # a gateway node's external port on br-int (tenant/pipeline.py too)
BR_INT = "br-int"
BR_UL = "br-ul"
OF13 = ("-O", "OpenFlow13")


def run(argv: Sequence[str], timeout: float = 20, check: bool = True) -> str:
    """Run a command; a failure raises OvsError with its stderr (the command is named)."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise OvsError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def netns_add(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def netns_delete(ns: str) -> None:
    run(["ip", "netns", "delete", ns], check=False)


def tx_off(ns: str, dev: str) -> None:
    """Checksum offload off: the userspace datapath would send veth frames with bad sums."""
    run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"], check=False)


def veth(a: str, a_ns: str, b: str, b_ns: str, mtu: int | None = None) -> None:
    """A veth pair with one end in each namespace, both up, offload off."""
    run(["ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns])
    for dev, ns in ((a, a_ns), (b, b_ns)):
        if mtu is not None:
            run(["ip", "-n", ns, "link", "set", dev, "mtu", str(mtu)])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        tx_off(ns, dev)


class Underlay:
    """One L2 segment for the tunnel endpoints: a Linux bridge in its own namespace."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.created = False

    def start(self) -> None:
        netns_add(self.ns)
        self.created = True
        run(["ip", "-n", self.ns, "link", "add", "ul", "type", "bridge"])
        run(["ip", "-n", self.ns, "link", "set", "ul", "up"])

    def attach(self, dev: str) -> None:
        run(["ip", "-n", self.ns, "link", "set", dev, "master", "ul"])

    def stop(self) -> None:
        if self.created:
            netns_delete(self.ns)
            self.created = False


class OvsNode:
    """A compute node: namespace ``ns`` with a private ovsdb-server and ovs-vswitchd.

    ``procs`` records the daemons (pass the lab's ProcessSet to stop them with the rest;
    by default the node has its own). Tools run with the node's OVS_RUNDIR.
    """

    def __init__(self, ns: str, rundir: str | None = None, procs: ProcessSet | None = None) -> None:
        self.ns = ns
        self.own_rundir = rundir is None  # made here: removed by stop()
        self.rundir = rundir or tempfile.mkdtemp(prefix=f"ovsnode-{ns}-")
        self.procs = procs if procs is not None else ProcessSet()
        self.ovs = OvsInstance(self.rundir, self.procs)
        self.created = False
        self.vms: list[str] = []
        self._mine: list[Tracked] = []

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        netns_add(self.ns)
        self.created = True
        before = len(self.procs.procs)
        self.ovs.start(
            popen=lambda argv, **kw: subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv], start_new_session=True, **kw
            )
        )
        self._mine = list(self.procs.procs[before:])

    def stop(self) -> None:
        """Stop this node's daemons by pid and delete its namespaces (VMs included)."""
        for t in reversed(self._mine):
            if t in self.procs.procs:
                self.procs.stop_one(t)
        self._mine = []
        for vm in self.vms:
            netns_delete(vm)
        self.vms = []
        if self.created:
            netns_delete(self.ns)
            self.created = False
        if self.own_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)

    # --- tools -------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return self.ovs.env

    def vsctl(self, *args: str, timeout: int = 10) -> str:
        return self.ovs.vsctl(*args, timeout=timeout)

    def ofctl(self, *args: str) -> str:
        """``ovs-ofctl -O OpenFlow13 ARGS`` against this node's switch."""
        return self.ovs.ofctl(*OF13, *args)

    def appctl(self, *args: str) -> str:
        ctl = os.path.join(self.rundir, "ovs-vswitchd.ctl")
        return self.ovs._run("ovs-appctl", "-t", ctl, *args)

    def ip(self, *args: str) -> str:
        return run(["ip", "-n", self.ns, *args])

    def exec(self, *argv: str, timeout: float = 20, check: bool = True) -> str:
        return run(["ip", "netns", "exec", self.ns, *argv], timeout=timeout, check=check)

    # --- bridges -----------------------------------------------------------------------

    def add_br_int(
        self,
        local_ip: str,
        bridge: str = BR_INT,
        tunnel_ofport: int = TUNNEL_OFPORT,
        controller: str | None = None,
    ) -> None:
        """``br-int`` (netdev, fail-mode secure, OpenFlow 1.3) with the flow-based VXLAN port.

        A controller is set in the same transaction that creates the bridge: OVS flushes
        every flow when a bridge gets its first controller (notes §3.4).
        """
        args = [
            "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
            "fail-mode=secure", "protocols=OpenFlow13", "other-config:disable-in-band=true",
            "--", "add-port", bridge, "vxlan0", "--", "set", "interface", "vxlan0",
            "type=vxlan", f"ofport_request={tunnel_ofport}", "options:remote_ip=flow",
            "options:key=flow", f"options:local_ip={local_ip}",
        ]  # fmt: skip
        if controller is not None:
            args += ["--", "set-controller", bridge, controller]
        self.vsctl(*args)
        self.ip("link", "set", bridge, "up")

    def add_underlay(self, underlay: Underlay, address: str, bridge: str = BR_UL) -> None:
        """The tunnel endpoint: ``address`` (CIDR) on ``br-ul``'s internal port, a veth
        from ``br-ul`` to the underlay's Linux bridge."""
        inner, outer = f"u{self.ns}"[:15], f"u{self.ns}"[:14] + "o"
        veth(inner, self.ns, outer, underlay.ns)
        underlay.attach(outer)
        self.vsctl(
            "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
            "--", "add-port", bridge, inner,
        )  # fmt: skip
        self.ip("addr", "add", address, "dev", bridge)
        self.ip("link", "set", bridge, "up")

    def resolve_underlay(self, peers: Iterable[str]) -> None:
        """Ping every peer tunnel endpoint once from the node.

        OVS drops a tunnelled packet while it resolves the underlay neighbour (it learns
        by snooping ARP on br-ul), and with ARP answered locally a VM's first packet to
        a new node is often that packet: resolve the peers before traffic starts.
        """
        for peer in peers:
            self.exec("ping", "-c", "1", "-W", "2", peer, check=False)

    def plug_vm(
        self,
        vm_ns: str,
        iface_id: str,
        mac: str,
        address: str | None = None,
        mtu: int = 1450,
        gateway: str | None = None,
        ofport: int | None = None,
        bridge: str = BR_INT,
    ) -> int:
        """A VM namespace whose ``eth0`` (MAC ``mac``) is plugged into ``br-int`` with
        ``external_ids:iface-id=iface_id``; static ``address``/``gateway`` if given (else
        the caller runs DHCP). Returns the OpenFlow port number."""
        netns_add(vm_ns)
        self.vms.append(vm_ns)
        dev = f"t{vm_ns}"[:15]
        veth("eth0", vm_ns, dev, self.ns)
        vm = ["ip", "-n", vm_ns]
        run([*vm, "link", "set", "eth0", "down"])
        run([*vm, "link", "set", "eth0", "address", mac, "mtu", str(mtu)])
        run([*vm, "link", "set", "eth0", "up"])
        if address is not None:
            run([*vm, "addr", "add", address, "dev", "eth0"])
        if gateway is not None:
            run([*vm, "route", "add", "default", "via", gateway])
        args = ["add-port", bridge, dev, "--", "set", "interface", dev,
                f"external_ids:iface-id={iface_id}"]  # fmt: skip
        if ofport is not None:
            args.append(f"ofport_request={ofport}")
        self.vsctl(*args)
        return self.ofport(dev)

    def unplug_vm(self, vm_ns: str, bridge: str = BR_INT) -> None:
        self.vsctl("--if-exists", "del-port", bridge, f"t{vm_ns}"[:15])
        if vm_ns in self.vms:
            self.vms.remove(vm_ns)
        netns_delete(vm_ns)

    def add_external(
        self, peer: str, peer_ns: str, ofport: int = EXTERNAL_OFPORT, bridge: str = BR_INT
    ) -> str:
        """A gateway node's external port: a veth from ``br-int`` (at ``ofport``) to
        ``peer`` in namespace ``peer_ns`` (an "outside" host, a fabric switch's port).
        Returns the node end's name. The caller removes ``peer_ns``'s end with it."""
        dev = f"x{self.ns}"[:15]
        veth(dev, self.ns, peer, peer_ns)
        self.vsctl("add-port", bridge, dev, "--", "set", "interface", dev,
                   f"ofport_request={ofport}")  # fmt: skip
        return dev

    def ofport(self, dev: str) -> int:
        return int(self.vsctl("get", "interface", dev, "ofport").strip())

    def bindings(self, bridge: str = BR_INT) -> dict[str, int]:
        """``external_ids:iface-id`` -> ofport of every interface on ``bridge`` that has one
        (what a node agent reads to know its local ports)."""
        out: dict[str, int] = {}
        names = self.vsctl("list-ifaces", bridge).split()
        for name in names:
            iface = self.vsctl(
                "--if-exists", "get", "interface", name, "external_ids:iface-id"
            ).strip()
            if iface:
                out[iface.strip('"')] = self.ofport(name)
        return out

    # --- flows -------------------------------------------------------------------------

    def add_flows(self, lines: Iterable[str], bridge: str = BR_INT, bundle: bool = True) -> None:
        """Install ``ovs-ofctl`` flow lines in one transaction (``--bundle``)."""
        with tempfile.NamedTemporaryFile("w", suffix=".flows", dir=self.rundir) as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            self.ofctl(*(["--bundle"] if bundle else []), "add-flows", bridge, fh.name)

    def dump_flows(self, bridge: str = BR_INT) -> str:
        return self.ofctl("--no-stats", "dump-flows", bridge)

    def vm_exec(self, vm_ns: str, *argv: str, timeout: float = 20, check: bool = True) -> str:
        return run(["ip", "netns", "exec", vm_ns, *argv], timeout=timeout, check=check)


@contextlib.contextmanager
def stopping(*things: OvsNode | Underlay) -> Iterator[tuple[OvsNode | Underlay, ...]]:
    """Stop nodes and underlays on exit, whatever happens (fixtures' finalizer)."""
    try:
        yield things
    finally:
        for thing in things:
            with contextlib.suppress(Exception):
                thing.stop()

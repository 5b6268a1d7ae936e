"""The VM backend interface: how rfserver --auto runs the VMs it plans (server/autoconf.py).

A backend turns the planner's operations (autoconf.vm_ops) into running VMs. Its calls
block (they start processes, wait for sockets) and are made from a worker thread, one at
a time per VM; different VMs may be worked on side by side. A call that fails raises
BackendError with a message naming the VM and the step; the caller reports it and tries
again later from what ``running()`` says exists.

What a VM must be, whatever runs it:

* a network stack of its own with interface ``eth<N>`` (``IfaceSpec.ifname``) for every
  interface of the spec, with the spec's MAC and address, its other end a port of the
  virtual switch (``vs_bridge``), so that rfclient's mapping packet reaches rfproxy;
* the loopback address (``VmSpec.router_id``/32) on ``lo``, IPv4 forwarding on;
* FRR started with ``VmSpec.frr_config``; on AddInterfaces the new interfaces' stanzas
  applied to the running daemons (and the file rewritten);
* rfclient with ``--vm-id VmSpec.vm_id`` connected to rfserver.

Backends in this tree: ``netns`` (server/vmnetns.py): a network and mount namespace per
VM on the rfserver host, FRR and rfclient as its processes, veth pairs to an Open vSwitch
bridge; what the lab did by hand before --auto.

To plug in another (libvirt, containers), implement this Protocol and register it in
``BACKENDS``. For libvirt: ``start`` defines and boots a domain from a base image with a
cloud-init seed carrying frr.conf, the addresses and rfclient's settings; each interface a
``<interface type='bridge'>`` with ``<virtualport type='openvswitch'/>`` on ``vs_bridge``,
``<mac address=.../>`` and a target dev name; ``add_interfaces`` is ``virDomainAttachDevice``
plus the stanzas through the guest agent or vtysh over ssh; ``running`` reads the domains'
metadata (the spec, as JSON, in ``<metadata>``). For containers: one container per VM with
``--network none``, veths moved into its namespace exactly as netns does, FRR and rfclient
its processes; ``running`` lists containers by label.
"""

from __future__ import annotations

from typing import Protocol

from routeflow.server.autoconf import IfaceSpec, VmSpec

__all__ = ["BackendError", "VmBackend"]


class BackendError(RuntimeError):
    """A backend step failed; the message names the VM and the step."""


class VmBackend(Protocol):
    def running(self) -> dict[int, VmSpec]:
        """vm_id -> spec of every VM this backend runs now (adopted after a restart)."""
        ...

    def start(self, spec: VmSpec) -> None:
        """Create and start the VM with all of the spec's interfaces."""
        ...

    def add_interfaces(self, spec: VmSpec, ifaces: tuple[IfaceSpec, ...]) -> None:
        """Add ``ifaces`` to the running VM; ``spec`` is the VM with them."""
        ...

    def remove_interfaces(self, spec: VmSpec, ifaces: tuple[IfaceSpec, ...]) -> None:
        """Remove ``ifaces``; ``spec`` is the VM without them."""
        ...

    def stop(self, vm_id: int) -> None:
        """Stop the VM and free what it held (no error if it is not running)."""
        ...

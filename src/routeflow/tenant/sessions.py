"""The tenant server's node sessions (pure): what each node message means.

The shell (``nodelink.py``) owns the socket and the Repository; it feeds the
session the node's messages and the Repository's changes, and carries out
the actions that come back, in order. Rules:

1. A hello must name the node (``[A-Za-z0-9_.-]``, 1-63 chars) and give a valid
   IPv4/IPv6 tunnel address; otherwise the session is refused.
2. ``start(cloud)``: the node is registered (``RegisterNode``) and gets the full
   state of ``cloud``: always the whole snapshot, whatever revision it claims
   to hold, because the node replaces its state with it (no flush: the node
   diffs). The shell subscribes to changes *before* taking ``cloud``, so none
   is lost; rule 3 drops the ones the snapshot already holds.
3. A change with a revision the node already has (<= the last sent) is dropped;
   a newer one is sent as a delta.
4. ``NodeBinding`` from the node becomes ``BindPort(port, host=node, active)``:
   a node speaks for its own host only, so the host is never taken from the
   message.
5. Anything else from a node is refused with a reason (the shell logs it and
   keeps the session: one bad message does not drop a node).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from routeflow.rflib import protocol as p
from routeflow.tenant import wire
from routeflow.tenant.model import Change, Cloud, Node

__all__ = ["BindPort", "NodeSession", "Refused", "RegisterNode", "Send", "validate_hello"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


@dataclass(frozen=True, slots=True)
class RegisterNode:
    node: Node


@dataclass(frozen=True, slots=True)
class Send:
    msg: p.Message


@dataclass(frozen=True, slots=True)
class BindPort:
    port_id: str
    host: str
    active: bool


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


Action = RegisterNode | Send | BindPort | Refused


def validate_hello(hello: p.NodeHello) -> Node:
    """The Node a hello describes; ValueError naming the field if it is bad (rule 1)."""
    if not _NAME.match(hello.name):
        raise ValueError(f"name {hello.name!r}: 1-63 characters of [A-Za-z0-9_.-]")
    try:
        ipaddress.ip_address(hello.tunnel_ip)
    except ValueError:
        raise ValueError(f"tunnel_ip {hello.tunnel_ip!r} is not an IP address") from None
    if hello.revision < 0:
        raise ValueError(f"revision {hello.revision} is negative")
    return Node(id=hello.name, name=hello.name, tunnel_ip=hello.tunnel_ip, gateway=hello.gateway)


class NodeSession:
    def __init__(self, hello: p.NodeHello) -> None:
        self.node = validate_hello(hello)
        self.claimed_revision = hello.revision
        #: The newest revision the node has been sent (-1: nothing yet).
        self.sent = -1

    @property
    def name(self) -> str:
        return self.node.id

    def start(self, cloud: Cloud) -> list[Action]:
        """Rule 2."""
        self.sent = cloud.revision
        return [RegisterNode(self.node), Send(wire.full_state(cloud))]

    def change(self, change: Change) -> list[Action]:
        """Rule 3."""
        if self.sent < 0 or change.revision <= self.sent:
            return []
        self.sent = change.revision
        return [Send(wire.delta(change))]

    def receive(self, msg: p.Message) -> list[Action]:
        """Rules 4-5."""
        if isinstance(msg, p.NodeBinding):
            if not msg.port_id or len(msg.port_id) > 255:
                return [Refused(f"port_id {msg.port_id!r} is not a port id")]
            return [BindPort(msg.port_id, self.name, msg.plugged)]
        return [Refused(f"{type(msg).__name__} is not a node message")]

"""Which gateway node NATs for which router (pure): sticky scheduling.

A router with an external gateway is *recorded* on one gateway node
(``Router.gateway_node``, written by the tenant server in the same commit as the
change that calls for it, so every node agent reads the same answer). The rules:

1. A router whose recorded node is a registered gateway node that is up **stays
   there**, whatever else comes or goes: a node coming back takes no router from a
   live node (each move loses the router's NAT state, so it moves only when it must).
2. A router with a gateway that has no record, or whose recorded node is down or gone,
   is recorded on a live gateway node: ``nat.fallback_node`` (router key modulo the
   number of live gateway nodes, by name), the node agents' own answer for a router
   without a live record, so that answer and the record never disagree.
3. With no live gateway node the record stays as it is (nothing to move to; if that
   node comes back first, the router is served there again without a move).
4. A router without a gateway has no record (cleared when the gateway goes).

``reschedule(cloud)`` gives the records that must change; the Repository applies it
to every commit (``tenant/repo.py``).
"""

from __future__ import annotations

from routeflow.tenant import nat
from routeflow.tenant.model import Cloud, Router

__all__ = ["reschedule"]


def wanted(cloud: Cloud, router: Router) -> str:
    """The node ``router`` must be recorded on in ``cloud`` (rules 1-4; "": none)."""
    if router.external_gateway_info is None:
        return ""
    if nat.live_record(cloud, router) is not None:
        return router.gateway_node
    node = nat.fallback_node(cloud, router)
    return node.id if node is not None else router.gateway_node


def reschedule(cloud: Cloud) -> dict[str, str]:
    """Router id -> its new record, for the routers whose record must change."""
    out = {}
    for router in cloud.routers.values():
        want = wanted(cloud, router)
        if want != router.gateway_node:
            out[router.id] = want
    return out

"""rfweb's tenant view: networks, routers, ports per compute node, floating IPs.

The data comes from the tenant server's Neutron API (``--tenant-api URL`` with
``--tenant-token-file``), not from its store: the API is the tenant server's stable
contract (the store's keys are its private layout), it answers from any host (rfserver
and the tenant server rarely share a disk), it is always the leader's current state
(a standby forwards, tenant/standby.py), and floating IPs appear there the day the API
has them without rfweb knowing the model. ``tenant_view`` (pure) shapes the five
listings for the page; ``TenantSource`` (I/O) fetches them, in parallel, with a short
timeout, and says what went wrong instead of raising.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TenantSource", "tenant_view"]

ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"


def _ips(port: Mapping[str, Any]) -> list[str]:
    return [f.get("ip_address", "") for f in port.get("fixed_ips") or []]


def tenant_view(
    networks: Sequence[Mapping[str, Any]],
    subnets: Sequence[Mapping[str, Any]],
    routers: Sequence[Mapping[str, Any]],
    ports: Sequence[Mapping[str, Any]],
    floatingips: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The page's tables from the API's listings (any missing key is shown empty)."""
    net_name = {n["id"]: n.get("name") or n["id"][:8] for n in networks}
    cidrs: dict[str, list[str]] = {}
    for s in subnets:
        cidrs.setdefault(s.get("network_id", ""), []).append(s.get("cidr", ""))
    out_networks = [
        {
            "id": n["id"],
            "name": net_name[n["id"]],
            "project_id": n.get("project_id", ""),
            "cidrs": sorted(cidrs.get(n["id"], [])),
            "vni": n.get("provider:segmentation_id"),
            "external": bool(n.get("router:external")),
            "ports": sum(1 for p in ports if p.get("network_id") == n["id"]),
        }
        for n in sorted(networks, key=lambda n: (n.get("project_id", ""), net_name[n["id"]]))
    ]
    out_routers = []
    for r in sorted(routers, key=lambda r: (r.get("project_id", ""), r.get("name", ""))):
        mine = [p for p in ports if p.get("device_id") == r["id"]]
        gateway = r.get("external_gateway_info") or {}
        out_routers.append(
            {
                "id": r["id"],
                "name": r.get("name") or r["id"][:8],
                "project_id": r.get("project_id", ""),
                "interfaces": sorted(
                    f"{net_name.get(p.get('network_id'), '?')} {ip}"
                    for p in mine
                    if p.get("device_owner") == ROUTER_INTERFACE
                    for ip in _ips(p)
                ),
                "gateway": sorted(
                    f.get("ip_address", "") for f in gateway.get("external_fixed_ips") or []
                ),
                "snat": bool(gateway) and bool(gateway.get("enable_snat", True)),
            }
        )
    nodes: dict[str, list[dict[str, Any]]] = {}
    for p in ports:
        if str(p.get("device_owner", "")).startswith("network:"):
            continue  # router and DHCP ports live on every node: listed with their router
        host = p.get("binding:host_id") or ""
        nodes.setdefault(host, []).append(
            {
                "id": p["id"],
                "name": p.get("name") or p["id"][:8],
                "network": net_name.get(p.get("network_id"), p.get("network_id", "")),
                "ips": _ips(p),
                "mac": p.get("mac_address", ""),
                "status": p.get("status", ""),
            }
        )
    out_nodes: list[dict[str, Any]] = [
        {
            "node": host or "(unbound)",
            "ports": sorted(items, key=lambda q: (q["network"], q["ips"])),
        }
        for host, items in sorted(nodes.items(), key=lambda kv: (kv[0] == "", kv[0]))
    ]
    out_fips = [
        {
            "id": f["id"],
            "address": f.get("floating_ip_address", ""),
            "fixed": f.get("fixed_ip_address") or "",
            "port_id": f.get("port_id") or "",
            "status": f.get("status", ""),
        }
        for f in sorted(floatingips, key=lambda f: f.get("floating_ip_address", ""))
    ]
    return {
        "networks": out_networks,
        "routers": out_routers,
        "nodes": out_nodes,
        "floating_ips": out_fips,
    }


class TenantSource:
    """The tenant server's API as rfweb reads it (admin token: every project)."""

    COLLECTIONS = ("networks", "subnets", "routers", "ports", "floatingips")

    def __init__(self, url: str, token: str | None, timeout: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def fetch(self) -> dict[str, Any]:
        """``tenant_view`` of the API now, or ``{"error": ...}`` saying why not."""
        import httpx2

        headers = {"X-Auth-Token": self.token} if self.token else {}
        try:
            async with httpx2.AsyncClient(timeout=self.timeout, headers=headers) as client:
                answers = await asyncio.gather(
                    *(client.get(f"{self.url}/v2.0/{c}") for c in self.COLLECTIONS)
                )
        except httpx2.HTTPError as exc:
            return {"error": f"tenant API {self.url}: {type(exc).__name__}: {exc}"}
        lists: dict[str, list[dict[str, Any]]] = {}
        for coll, resp in zip(self.COLLECTIONS, answers, strict=True):
            if coll == "floatingips" and resp.status_code == 404:
                lists[coll] = []  # not in this API (yet): no floating IPs to show
                continue
            if resp.status_code != 200:
                return {"error": f"tenant API {self.url}/v2.0/{coll}: HTTP {resp.status_code}"}
            try:
                lists[coll] = list(resp.json()[coll])
            except (ValueError, KeyError, TypeError):
                return {"error": f"tenant API {self.url}/v2.0/{coll}: not a Neutron listing"}
        try:
            return tenant_view(
                lists["networks"], lists["subnets"], lists["routers"], lists["ports"],
                lists["floatingips"],
            )  # fmt: skip
        except (KeyError, TypeError, AttributeError) as exc:
            return {"error": f"tenant API {self.url}: unexpected listing ({exc!r})"}

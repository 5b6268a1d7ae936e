"""rfproxy's settings: what main.py reads from flags and config files, in one value."""

from __future__ import annotations

from dataclasses import dataclass

from routeflow.proxy import core
from routeflow.proxy import openflow as of
from routeflow.proxy.flowpipe import DEFAULT_DEPTH, DEFAULT_WINDOW


@dataclass
class ProxySettings:
    server: str = "unix:/run/routeflow/rfserver.sock"
    ct_id: int = 1
    #: This process among the replicas of ct_id (default "ct<ct_id>"); see ControllerRole.
    replica: str = ""
    vs_dpid: int = of.DEFAULT_VS_DPID
    stats_interval: float = 5.0  # 0 disables flow statistics polling
    secret: bytes | None = None
    ssl_context: object = None
    #: Each switch's FlowPipe: messages per barrier, and windows in flight.
    pipe_window: int = DEFAULT_WINDOW
    pipe_depth: int = DEFAULT_DEPTH
    #: Datapath relay links, dp_id -> link (relay.parse_relay_links); empty: packet-in relay.
    relay_links: dict | None = None
    #: Virtual-domain control plane: links mirrored in the virtual switch (vlinks.py).
    virtual_links: list | None = None
    #: ... or the links topology discovery sees both ways (--virtual-links discovered).
    mirror_discovered: bool = False
    #: Topology discovery: seconds between link probes (0: off), probes a link may miss.
    discovery_interval: float = 0.0
    discovery_misses: int = 3

    def make_core(self) -> core.ProxyCore:
        """The pure core these settings describe (the shell only moves its events)."""
        return core.ProxyCore(
            self.ct_id,
            self.replica or f"ct{self.ct_id}",
            self.vs_dpid,
            self.relay_links,
            self.virtual_links,
            mirror_discovered=self.mirror_discovered,
            discovery_interval=self.discovery_interval,
            discovery_misses=self.discovery_misses,
        )

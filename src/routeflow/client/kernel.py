"""KernelView: the VM kernel's forwarding state, folded from netlink into RFProtocol deltas.

Pure on purpose (no sockets, threads or clock): this is the piece that must not
lose or invent updates, so it is driven by generated message sequences in tests,
and the I/O shell (``netlink.py``) only feeds it and ships what it drains.

Messages are pyroute2 rtnetlink messages, or anything with the same
``.get(name)`` interface (dict-like fakes work). Nexthop objects need the
``nhmsg`` class from ``netlink.py`` (pyroute2 0.9.7 has none): ``NHA_GROUP`` is a
list of ``{"id": ..., "weight": ...}`` with the real weight (1 and up).

Scope: IPv4 and IPv6 routes and neighbours, and IPv4 routes through IPv6
gateways (RFC 5549 ``RTA_VIA`` / AF_INET6 nexthop objects, as BGP unnumbered
installs them): their next hop is the IPv6 neighbour (link-local ones zoned by
port in rfserver), whose MAC is all the switch needs. A route the switch cannot
carry for a reason the operator must hear is refused out loud, not dropped
silently: ``take_refusals`` tells the shell which prefixes and why (once per
prefix), which it logs as a warning. IPv6
link-local prefixes (the per-interface fe80::/64) and multicast prefixes are
never routes for the switch, but every address of a VM port, link-local ones
included, is a LOCAL /128: OSPFv3 and ND talk to the router's link-local
address.

Some kernel changes are never announced over netlink: IPv4 routes through a
link that goes down or away, nexthop objects on a link that goes down or loses
its carrier, and routes or group members using a deleted nexthop object all
vanish silently. The view mimics those side effects itself and raises a hint
(``take_reconcile_hint``) so the shell can confirm them with a fresh dump.

IPv6 differs (checked on Linux 6.18): when a link goes administratively down
the kernel deletes every IPv6 route whose only device it is, local-table ones
included, and says so (RTM_DELROUTE) unless the sysctl
``net.ipv6.route.skip_notify_on_dev_down`` is set, when they go silently;
multipath routes keep a hop on it, flagged dead, unless every hop is dead. Its
addresses go as well (unless ``keep_addr_on_down``), with their local routes.
A lost carrier keeps the routes (flagged linkdown) in both families. The view
applies the IPv6 removal itself, so it is right with or without the
notifications. IPv6 also keeps routes of one prefix and metric apart by device
unless they have a gateway (those form one ECMP route), and deletes one ECMP
member with a message naming only that hop: see ``_on_route6``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from routeflow.client.fastnl import Shape, note_dict
from routeflow.rflib.protocol import (
    Message,
    Mod,
    Neighbour,
    NeighbourMod,
    NextHop,
    PortRegister,
    Route,
    RouteKind,
    RouteMod,
)

__all__ = ["DEFAULT_MAX_BATCH", "KernelView", "vm_port_of"]

#: Most routes (or neighbours) per RouteMod/NeighbourMod, so that a full BGP
#: table stays well under the codec's frame limit (about 110 bytes per route).
DEFAULT_MAX_BATCH = 10_000

AF_INET = 2
AF_INET6 = 10
NLM_F_REPLACE = 0x100
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTN_UNICAST = 1
RTN_LOCAL = 2
RTM_F_CLONED = 0x200
NTF_PROXY = 0x08

NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
#: States in which the kernel has a usable MAC for the neighbour.
NUD_VALID = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT

_ETH = re.compile(r"eth(\d+)")

T = TypeVar("T")


def vm_port_of(ifname: str | None) -> int | None:
    """``eth<N>`` is VM port N; any other interface is not a router port."""
    if not ifname:
        return None
    m = _ETH.fullmatch(ifname)
    return int(m.group(1)) if m else None


def _get(msg: Any, name: str, default: Any = None) -> Any:
    value = msg.get(name)
    return default if value is None else value


def _is_unicast_v4(ip: str) -> bool:
    try:
        first = int(ip.split(".", 1)[0])
    except ValueError:
        return False
    return ip != "0.0.0.0" and first < 224


@functools.lru_cache(maxsize=65536)
def _canon6(addr: str) -> str | None:
    """The contract's text of an IPv6 address: Python's, which differs from the
    kernel's inet_ntop for embedded IPv4 (``::ffff:1.2.3.4``). None if it is
    not one (pyroute2 leaves attributes it could not decode as raw bytes)."""
    try:
        return str(ipaddress.IPv6Address(addr))
    except ValueError:
        return None


def _first_hextet(addr: str) -> int:
    head = addr.split(":", 1)[0]
    return int(head, 16) if head else 0


def _is_multicast_v6(addr: str, plen: int = 128) -> bool:
    return plen >= 8 and _first_hextet(addr) >= 0xFF00


def _is_link_local_v6(addr: str, plen: int = 128) -> bool:
    return plen >= 10 and _first_hextet(addr) & 0xFFC0 == 0xFE80


def _special_v6(prefix: str) -> bool:
    """A multicast or link-local IPv6 prefix (text ``addr/len``): never a fast-path route."""
    addr, plen = prefix.rsplit("/", 1)
    return _is_multicast_v6(addr, int(plen)) or _is_link_local_v6(addr, int(plen))


def _is_unicast_v6(ip: str) -> bool:
    return ip != "::" and not _is_multicast_v6(ip)


@dataclass(frozen=True, slots=True)
class _Link:
    ifname: str
    mac: str | None
    up: bool
    carrier: bool = True


@dataclass(frozen=True, slots=True)
class _Hop:
    """A kernel next hop: out of ``oif``, to ``gateway`` (None: on-link)."""

    oif: int
    gateway: str | None
    weight: int = 1


@dataclass(frozen=True, slots=True)
class _NhObj:
    """A kernel nexthop object (``ip nexthop``): one hop, or a group of other ids."""

    oif: int = 0
    gateway: str | None = None
    group: tuple[tuple[int, int], ...] | None = None  # (member id, weight)
    blackhole: bool = False


@dataclass(frozen=True, slots=True)
class _KRoute:
    """One kernel route; a prefix can have several (tables, metrics, TOS)."""

    table: int
    rtype: int
    hops: tuple[_Hop, ...]
    nhid: int | None


@dataclass(frozen=True, slots=True)
class _Shape:
    """The outcome shared by all simple route messages of one shape (see KernelView)."""

    cands: dict[_RouteKey, _KRoute]  # never mutated (stored dicts are replaced, not edited)
    kroute: _KRoute
    impossible: bool
    kind: RouteKind | None  # None: the route cannot be used by the switch
    nexthops: list[NextHop]
    refusal: str | None = None  # why not, when the operator must be told
    #: (vm_port, gateway) of each hop with a gateway: the references a route of
    #: this shape holds in KernelView._gw_refs, made once rather than per route.
    gw_refs: tuple[tuple[int, str], ...] = ()


#: A kernel route within its prefix: (table, tos, priority), and for IPv6 a
#: fourth item, its slot (see _on_route6).
_RouteKey = tuple[int, ...]
_NeighKey = tuple[int, str]  # (ifindex, ip) on the kernel side, (vm_port, ip) on ours


def _hop_gateway(m: Any) -> str | None:
    gw = m.get("RTA_GATEWAY")
    if gw:
        return str(gw)
    via = m.get("RTA_VIA")
    if via:
        # An IPv4 route through an IPv6 neighbour (RFC 5549): a ":" in it tells
        # resolution so ("::" when the kernel gave no address: never on-link).
        addr = via.get("addr") if hasattr(via, "get") else None
        return str(addr) if addr else "::"
    return None


def _parse_hops(msg: Any) -> tuple[_Hop, ...]:
    multipath = msg.get("RTA_MULTIPATH")
    if multipath:
        return tuple(
            _Hop(int(_get(nh, "oif", 0)), _hop_gateway(nh), int(_get(nh, "hops", 0)) + 1)
            for nh in multipath
        )
    oif = msg.get("RTA_OIF")
    if oif is None:
        return ()
    return (_Hop(int(oif), _hop_gateway(msg), 1),)


def _parse_hops6(msg: Any) -> tuple[_Hop, ...] | None:
    """_parse_hops with IPv6 gateways in canonical text; None if one is no address."""
    hops = []
    for hop in _parse_hops(msg):
        if hop.gateway and ":" in hop.gateway:
            gateway = _canon6(hop.gateway)
            if gateway is None:
                return None
            hop = replace(hop, gateway=gateway)
        hops.append(hop)
    return tuple(hops)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class KernelView:
    """What the VM kernel forwards with, and what rfserver has been told of it.

    Every output key (port, prefix, neighbour) that changes is remembered with
    the value last reported; ``drain`` compares and emits only real changes,
    so an add and a delete inside one batch cancel out and a burst of updates
    to one prefix becomes at most one message entry.
    """

    def __init__(self, vm_id: int):
        self.vm_id = vm_id
        # --- kernel side
        self._links: dict[int, _Link] = {}
        self._nhs: dict[int, _NhObj] = {}
        self._nh_parents: dict[int, set[int]] = {}  # member id -> group ids
        self._kroutes: dict[str, dict[_RouteKey, _KRoute]] = {}
        self._by_oif: dict[int, set[str]] = {}  # ifindex -> prefixes with a direct hop there
        self._by_nhid: dict[int, set[str]] = {}  # nexthop id -> prefixes using it directly
        self._kneigh: dict[_NeighKey, str] = {}  # (ifindex, ip) -> MAC
        self._neigh_src: dict[_NeighKey, _NeighKey] = {}  # (ifindex, ip) -> (vm_port, ip)
        # --- our side: current output, and the last reported value of changed keys
        self._ports: dict[int, PortRegister] = {}
        self._routes: dict[str, Route] = {}
        self._neigh: dict[_NeighKey, Neighbour] = {}
        self._port_dirty: dict[int, PortRegister | None] = {}
        self._route_dirty: dict[str, Route | None] = {}
        self._neigh_dirty: dict[_NeighKey, Neighbour | None] = {}
        self._gw_refs: Counter[tuple[int, str]] = Counter()
        self._reconcile_hint = False
        # Prefixes the switch cannot carry out, and why: reported once each.
        self._refusals: dict[str, str] = {}
        self._refused: set[str] = set()
        # Fast path of a full table: what a simple route message of one shape
        # (key, table, type, oif, gateway, nhid) becomes. Shared by every
        # prefix of that shape, so a million routes through one gateway hold
        # one candidates dict, one _KRoute and one nexthops list between them.
        # Cleared whenever links or nexthop objects change.
        self._shapes: dict[Shape, _Shape] = {}

    # --- reading ---------------------------------------------------------------

    @property
    def routes(self) -> dict[str, Route]:
        """Current routes by prefix (a copy)."""
        return dict(self._routes)

    @property
    def neighbours(self) -> dict[tuple[int, str], Neighbour]:
        """Current resolved neighbours by (vm_port, ip) (a copy)."""
        return dict(self._neigh)

    @property
    def ports(self) -> dict[int, PortRegister]:
        """Current ethN ports by vm_port (a copy)."""
        return dict(self._ports)

    @property
    def pending_routes(self) -> int:
        """Kernel routes waiting for a nexthop object we have not seen yet."""
        return sum(
            len(prefixes) for nhid, prefixes in self._by_nhid.items() if self._nh_hops(nhid) is None
        )

    def counts(self) -> dict[str, int]:
        return {
            "ports": len(self._ports),
            "routes": len(self._routes),
            "neighbours": len(self._neigh),
            "pending": self.pending_routes,
        }

    def unresolved_gateways(self) -> set[tuple[int, str]]:
        """(vm_port, gateway) used by some route but with no resolved neighbour."""
        return {key for key in self._gw_refs if key not in self._neigh}

    def has_changes(self) -> bool:
        return bool(self._port_dirty or self._route_dirty or self._neigh_dirty)

    def take_reconcile_hint(self) -> bool:
        """True once after a change the kernel applies without telling (see module doc)."""
        hint, self._reconcile_hint = self._reconcile_hint, False
        return hint

    def take_refusals(self) -> dict[str, str]:
        """Prefixes refused since the last call (prefix -> reason), each only once."""
        out, self._refusals = self._refusals, {}
        return out

    # --- output ----------------------------------------------------------------

    def drain(self, max_batch: int = DEFAULT_MAX_BATCH) -> list[Message]:
        """The changes since the last drain or snapshot, coalesced.

        Order: PortRegisters, NeighbourMod ADD, RouteMod DELETE, RouteMod ADD,
        NeighbourMod DELETE, so rfserver learns a MAC before the routes that
        need it and drops routes before the neighbour they used.
        """
        out: list[Message] = []
        for port, registered in self._port_dirty.items():
            register = self._ports.get(port)
            if register is not None and register != registered:
                out.append(register)
        route_add: list[Route] = []
        route_del: list[Route] = []
        for prefix, before in self._route_dirty.items():
            now = self._routes.get(prefix)
            if now == before:
                continue
            if now is not None:
                route_add.append(now)
            elif before is not None:
                route_del.append(Route(prefix=prefix, kind=before.kind))
        neigh_add: list[Neighbour] = []
        neigh_del: list[Neighbour] = []
        for key, nbefore in self._neigh_dirty.items():
            nnow = self._neigh.get(key)
            if nnow == nbefore:
                continue
            if nnow is not None:
                neigh_add.append(nnow)
            else:
                neigh_del.append(Neighbour(vm_port=key[0], address=key[1]))
        self._clear_dirty()
        out += self._neigh_mods(Mod.ADD, neigh_add, max_batch)
        out += self._route_mods(Mod.DELETE, route_del, max_batch)
        out += self._route_mods(Mod.ADD, route_add, max_batch)
        out += self._neigh_mods(Mod.DELETE, neigh_del, max_batch)
        return out

    def snapshot(self, max_batch: int = DEFAULT_MAX_BATCH) -> list[Message]:
        """The whole current state, for a (re)connect; pending deltas are dropped.

        PortRegisters, then NeighbourMod ADD, then RouteMod ADD (one of each
        even when empty, more when above ``max_batch``).
        """
        self._clear_dirty()
        out: list[Message] = [self._ports[p] for p in sorted(self._ports)]
        out += self._neigh_mods(Mod.ADD, list(self._neigh.values()), max_batch) or [
            NeighbourMod(mod=Mod.ADD, vm_id=self.vm_id, neighbours=[])
        ]
        out += self._route_mods(Mod.ADD, list(self._routes.values()), max_batch) or [
            RouteMod(mod=Mod.ADD, vm_id=self.vm_id, routes=[])
        ]
        return out

    def _clear_dirty(self) -> None:
        self._port_dirty.clear()
        self._route_dirty.clear()
        self._neigh_dirty.clear()

    def _route_mods(self, mod: Mod, routes: list[Route], size: int) -> list[Message]:
        return [RouteMod(mod=mod, vm_id=self.vm_id, routes=list(c)) for c in _chunks(routes, size)]

    def _neigh_mods(self, mod: Mod, neigh: list[Neighbour], size: int) -> list[Message]:
        return [
            NeighbourMod(mod=mod, vm_id=self.vm_id, neighbours=list(c))
            for c in _chunks(neigh, size)
        ]

    # --- input -----------------------------------------------------------------

    def feed_many(self, messages: Iterable[Any]) -> None:
        on_note = self._on_note
        feed = self.feed
        for msg in messages:
            if msg.__class__ is tuple:
                on_note(*msg)
            else:
                feed(msg)

    def feed(self, msg: Any) -> None:
        """Apply one netlink message (or fastnl note); anything not understood is ignored."""
        if msg.__class__ is tuple:
            self._on_note(*msg)
            return
        event = msg.get("event")
        if event == "RTM_NEWROUTE":
            self._on_route(msg, deleted=False)
        elif event == "RTM_DELROUTE":
            self._on_route(msg, deleted=True)
        elif event == "RTM_NEWNEIGH":
            self._on_neigh(msg, deleted=False)
        elif event == "RTM_DELNEIGH":
            self._on_neigh(msg, deleted=True)
        elif event == "RTM_NEWLINK":
            self._on_link(msg, deleted=False)
        elif event == "RTM_DELLINK":
            self._on_link(msg, deleted=True)
        elif event == "RTM_NEWNEXTHOP":
            self._on_nexthop(msg, deleted=False)
        elif event == "RTM_DELNEXTHOP":
            self._on_nexthop(msg, deleted=True)

    def reset(self, messages: Iterable[Any]) -> None:
        """Replace the kernel side with a fresh dump, keeping what was reported.

        The differences from the previous state become ordinary deltas, so
        after a netlink overflow rfserver gets DELETEs for what vanished.
        """
        fresh = KernelView(self.vm_id)
        fresh.feed_many(messages)
        self.adopt(fresh)

    def adopt(self, fresh: KernelView) -> None:
        """Take ``fresh``'s kernel side (a new dump), keeping what was reported: see reset."""
        self._shapes = fresh._shapes
        self._links = fresh._links
        self._nhs = fresh._nhs
        self._nh_parents = fresh._nh_parents
        self._kroutes = fresh._kroutes
        self._by_oif = fresh._by_oif
        self._by_nhid = fresh._by_nhid
        self._kneigh = fresh._kneigh
        self._neigh_src = fresh._neigh_src
        for port in self._ports.keys() | fresh._ports.keys():
            self._set_port(port, fresh._ports.get(port))
        for prefix in self._routes.keys() | fresh._routes.keys():
            self._set_route(prefix, fresh._routes.get(prefix))
        for key in self._neigh.keys() | fresh._neigh.keys():
            self._set_neigh(key, fresh._neigh.get(key))
        self._reconcile_hint = False

    # --- links -----------------------------------------------------------------

    def _port(self, ifindex: int) -> int | None:
        link = self._links.get(ifindex)
        return None if link is None else vm_port_of(link.ifname)

    def _is_up(self, ifindex: int) -> bool:
        link = self._links.get(ifindex)
        return link is not None and link.up

    def _is_down(self, ifindex: int) -> bool:
        """Known and administratively down (unknown links are not judged)."""
        link = self._links.get(ifindex)
        return link is not None and not link.up

    def _on_link(self, msg: Any, deleted: bool) -> None:
        if _get(msg, "family", 0) != 0:
            return  # AF_BRIDGE port notifications reuse RTM_NEWLINK/DELLINK
        ifindex = msg.get("index")
        if ifindex is None:
            return
        old = self._links.get(ifindex)
        if deleted:
            if old is None:
                return
            del self._links[ifindex]
            self._shapes.clear()
            self._link_gone(ifindex, unregister=True)
            self._link_changed(ifindex)
            self._refresh_port(vm_port_of(old.ifname))
            return
        ifname = msg.get("IFLA_IFNAME") or (old.ifname if old else None)
        if not ifname:
            return
        mac = msg.get("IFLA_ADDRESS") or (old.mac if old else None)
        flags = _get(msg, "flags", 0)
        new = _Link(
            ifname=str(ifname),
            mac=str(mac).lower() if mac else None,
            up=bool(flags & IFF_UP),
            carrier=bool(flags & (IFF_RUNNING | IFF_LOWER_UP)),
        )
        if new == old:
            return
        self._links[ifindex] = new
        self._shapes.clear()
        if old is not None and old.up and not new.up:
            self._link_gone(ifindex, unregister=False)
        elif old is not None and old.carrier and not new.carrier:
            self._flush_nexthops(ifindex)  # routes without nexthop objects stay
        if old is None or old.ifname != new.ifname or old.up != new.up:
            self._link_changed(ifindex)
        if old is not None:
            self._refresh_port(vm_port_of(old.ifname))
        self._refresh_port(vm_port_of(new.ifname))

    def _refresh_port(self, port: int | None) -> None:
        if port is None:
            return
        reg = None
        for link in self._links.values():
            if vm_port_of(link.ifname) == port and link.mac:
                reg = PortRegister(
                    vm_id=self.vm_id, vm_port=port, hwaddress=link.mac, ifname=link.ifname
                )
                break
        self._set_port(port, reg)

    def _link_gone(self, ifindex: int, *, unregister: bool) -> None:
        """Do what the kernel does, silently, when a link goes down or away."""
        self._flush_nexthops(ifindex)
        for prefix in list(self._by_oif.get(ifindex, ())):
            cands = self._kroutes[prefix]
            keep: dict[_RouteKey, _KRoute] = {}
            for key, kr in cands.items():
                if kr.nhid is None and any(h.oif == ifindex for h in kr.hops):
                    if unregister:
                        continue  # any route touching a removed device is flushed
                    if (kr.table == RT_TABLE_MAIN or ":" in prefix) and not any(
                        self._is_up(h.oif) for h in kr.hops
                    ):
                        continue  # every hop dead: flushed (IPv4 local routes stay)
                keep[key] = kr
            if len(keep) != len(cands):
                self._store_prefix(prefix, keep)
        for nkey in [k for k in self._kneigh if k[0] == ifindex]:
            self._set_kneigh(nkey, None)

    def _flush_nexthops(self, ifindex: int) -> None:
        """Nexthop objects on a link that is down or lost its carrier vanish silently."""
        self._reconcile_hint = True
        for nhid in [i for i, o in self._nhs.items() if o.group is None and o.oif == ifindex]:
            self._remove_nexthop(nhid)

    def _link_changed(self, ifindex: int) -> None:
        """Re-resolve what depends on this link's name or state."""
        prefixes = set(self._by_oif.get(ifindex, ()))
        for nhid, obj in self._nhs.items():
            if obj.group is None and obj.oif == ifindex:
                prefixes |= self._nh_users(nhid)
        for prefix in prefixes:
            self._recompute(prefix)
        for key in [k for k in self._kneigh if k[0] == ifindex]:
            self._recompute_neigh(key)

    # --- nexthop objects -------------------------------------------------------

    def _on_nexthop(self, msg: Any, deleted: bool) -> None:
        nhid = msg.get("NHA_ID")
        if nhid is None:
            return
        nhid = int(nhid)
        if deleted:
            if self._nh_users(nhid):
                self._reconcile_hint = True
            self._remove_nexthop(nhid)
            return
        group = msg.get("NHA_GROUP")
        if group:
            obj = _NhObj(group=tuple((int(m["id"]), int(_get(m, "weight", 1))) for m in group))
        elif msg.get("NHA_FDB"):
            obj = _NhObj(blackhole=True)  # VXLAN FDB nexthops never carry routes
        else:
            gw = msg.get("NHA_GATEWAY")
            if gw:
                gw = str(gw)
                if ":" in gw:
                    gw = _canon6(gw)
                    if gw is None:
                        return  # not an address: not a kernel message
            obj = _NhObj(
                oif=int(_get(msg, "NHA_OIF", 0)),
                gateway=gw or None,
                blackhole=bool(msg.get("NHA_BLACKHOLE")),
            )
            if obj.oif and self._is_down(obj.oif):
                # The kernel refuses nexthops on a down link and flushes them when it
                # goes down: this is an old notification replayed after a dump.
                self._remove_nexthop(nhid)
                return
        self._set_nexthop(nhid, obj)

    def _nh_users(self, nhid: int) -> set[str]:
        users = set(self._by_nhid.get(nhid, ()))
        for gid in self._nh_parents.get(nhid, ()):
            users |= self._by_nhid.get(gid, set())
        return users

    def _set_nexthop(self, nhid: int, obj: _NhObj) -> None:
        old = self._nhs.get(nhid)
        if old == obj:
            return
        if old is not None and old.group:
            for mid, _w in old.group:
                self._nh_parents.get(mid, set()).discard(nhid)
        self._nhs[nhid] = obj
        self._shapes.clear()
        if obj.group:
            for mid, _w in obj.group:
                self._nh_parents.setdefault(mid, set()).add(nhid)
        for prefix in self._nh_users(nhid):
            self._recompute(prefix)

    def _remove_nexthop(self, nhid: int) -> None:
        obj = self._nhs.pop(nhid, None)
        self._shapes.clear()
        if obj is not None and obj.group:
            for mid, _w in obj.group:
                self._nh_parents.get(mid, set()).discard(nhid)
        # Routes using it go with it, and groups lose it as a member.
        for prefix in list(self._by_nhid.get(nhid, ())):
            cands = self._kroutes[prefix]
            self._store_prefix(prefix, {k: r for k, r in cands.items() if r.nhid != nhid})
        for gid in sorted(self._nh_parents.pop(nhid, ())):
            group = self._nhs.get(gid)
            if group is None or group.group is None:
                continue
            members = tuple(m for m in group.group if m[0] != nhid)
            if members:
                self._set_nexthop(gid, replace(group, group=members))
            else:
                self._remove_nexthop(gid)

    def _nh_hops(self, nhid: int) -> tuple[_Hop, ...] | None:
        """The hops of a nexthop object; None while it (or a member) is unknown."""
        obj = self._nhs.get(nhid)
        if obj is None:
            return None
        if obj.group is None:
            return () if obj.blackhole else (_Hop(obj.oif, obj.gateway, 1),)
        hops = []
        for mid, weight in obj.group:
            member = self._nhs.get(mid)
            if member is None:
                return None
            if member.group is None and not member.blackhole:
                hops.append(_Hop(member.oif, member.gateway, weight))
        return tuple(hops)

    # --- routes ----------------------------------------------------------------

    def _on_route(self, msg: Any, deleted: bool) -> None:
        if not deleted and self._on_simple_route(msg):
            return
        family = msg.get("family")
        if family == AF_INET6:
            self._on_route6(msg, deleted)
            return
        if family != AF_INET:
            return
        table = _get(msg, "RTA_TABLE", None) or _get(msg, "table", 0)
        if table not in (RT_TABLE_MAIN, RT_TABLE_LOCAL):
            return
        if _get(msg, "flags", 0) & RTM_F_CLONED:
            return
        prefix = f"{_get(msg, 'RTA_DST', '0.0.0.0')}/{_get(msg, 'dst_len', 0)}"
        key = (table, _get(msg, "tos", 0), _get(msg, "RTA_PRIORITY", 0))
        rtype = msg.get("type")
        cands = dict(self._kroutes.get(prefix, {}))
        wanted = rtype == (RTN_UNICAST if table == RT_TABLE_MAIN else RTN_LOCAL)
        if deleted or not wanted:
            old = cands.get(key)
            # A deleted broadcast/blackhole route must not take our route with it;
            # a replace with an unwanted type (e.g. blackhole) does.
            if old is None or (deleted and rtype is not None and old.rtype != rtype):
                return
            del cands[key]
        else:
            # A local-table route is resolved by its device alone (_resolve): a nexthop
            # id on it is not what it depends on, so it is indexed by device.
            nhid = msg.get("RTA_NH_ID") if table != RT_TABLE_LOCAL else None
            kr = _KRoute(table, rtype, _parse_hops(msg), None if nhid is None else int(nhid))
            if cands.get(key) == kr:
                return
            if self._impossible(kr):
                # The kernel refuses such a route and flushes it when its links go
                # down: this is an old notification replayed after a dump.
                if cands.pop(key, None) is None:
                    return
            else:
                cands[key] = kr
        self._store_prefix(prefix, cands)

    def _on_route6(self, msg: Any, deleted: bool) -> None:
        """An IPv6 route message; the kernel's IPv6 FIB differs from IPv4's in two ways.

        Routes of one prefix, table and metric coexist unless both have a
        gateway (then they are the hops of one ECMP route): so the key has a
        slot, 0 for the ECMP route, -1 for a nexthop-object route and the
        device for any other. And deleting one hop of an ECMP route sends a
        message naming only that hop, while adding one (``append``) sends
        the whole route.
        """
        table = _get(msg, "RTA_TABLE", None) or _get(msg, "table", 0)
        if table not in (RT_TABLE_MAIN, RT_TABLE_LOCAL):
            return
        if _get(msg, "flags", 0) & RTM_F_CLONED:
            return
        dst = msg.get("RTA_DST")
        plen = _get(msg, "dst_len", 0)
        addr = _canon6(str(dst)) if dst else "::"
        if addr is None or _is_multicast_v6(addr, plen):
            return
        if table == RT_TABLE_MAIN and _is_link_local_v6(addr, plen):
            return  # fe80::/64 on every interface: link-local, never forwarded
        prefix = f"{addr}/{plen}"
        rtype = msg.get("type")
        nhid = msg.get("RTA_NH_ID")
        hops = _parse_hops6(msg)
        if hops is None:
            return  # a gateway pyroute2 could not decode: not a kernel message
        if nhid is not None:
            slot = -1
        elif any(h.gateway is not None for h in hops):
            slot = 0
        else:
            slot = hops[0].oif if hops else 0
        metric = _get(msg, "RTA_PRIORITY", 0)
        key = (table, 0, metric, slot)
        cands = dict(self._kroutes.get(prefix, {}))
        header = msg.get("header")
        nlflags = _get(header, "flags", 0) if header is not None else 0
        if deleted:
            old = cands.get(key)
            if old is None or (rtype is not None and old.rtype != rtype):
                return
            if slot == 0:
                gone = {(h.oif, h.gateway) for h in hops}
                rest = tuple(h for h in old.hops if (h.oif, h.gateway) not in gone)
                if len(rest) == len(old.hops):
                    return  # none of our hops: nothing we know of went
                if rest:
                    if len(rest) == 1:
                        rest = (replace(rest[0], weight=1),)  # as a dump shows a lone hop
                    cands[key] = replace(old, hops=rest)
                else:
                    del cands[key]
            else:
                del cands[key]
            self._store_prefix(prefix, cands)
            return
        if nlflags & NLM_F_REPLACE:
            self._drop_replaced(cands, key)
        if rtype == (RTN_UNICAST if table == RT_TABLE_MAIN else RTN_LOCAL):
            kr = _KRoute(table, rtype, hops, None if nhid is None else int(nhid))
            if self._impossible(kr):
                cands.pop(key, None)  # a replayed notification of a flushed route
            else:
                cands[key] = kr
        if cands != self._kroutes.get(prefix, {}):
            self._store_prefix(prefix, cands)

    def _drop_replaced(self, cands: dict[_RouteKey, _KRoute], key: _RouteKey) -> None:
        """Forget the route an IPv6 NLM_F_REPLACE took the place of.

        The kernel replaces the first route of the same table and metric
        that is as ECMP-capable as the new one (has a gateway), else the
        first of any kind. The view knows no order between coexisting
        routes: when several could have been the one, it guesses and asks
        for a dump.
        """
        table, _tos, metric, slot = key
        peers = [k for k in cands if len(k) == 4 and k[0] == table and k[2] == metric]
        alike = [k for k in peers if (k[3] == 0) == (slot == 0)]
        pool = alike or peers
        if not pool:
            return
        if len(pool) > 1:
            self._reconcile_hint = True
        del cands[key if key in pool else min(pool)]

    def _on_simple_route(self, msg: Any) -> bool:
        """A pyroute2 message that fits the fast path (see _on_note); False if not."""
        get = msg.get
        if get("family") != AF_INET or get("RTA_MULTIPATH") or get("RTA_VIA"):
            return False
        dst = get("RTA_DST")
        prefix = f"{'0.0.0.0' if dst is None else dst}/{get('dst_len') or 0}"
        if prefix in self._kroutes:
            return False
        tos = get("tos")
        shape_key = (
            AF_INET,
            get("RTA_TABLE") or get("table") or 0,
            0 if tos is None else tos,
            get("RTA_PRIORITY") or 0,
            get("type"),
            get("flags"),
            get("RTA_OIF"),
            get("RTA_GATEWAY"),
            get("RTA_NH_ID"),
        )
        shape = self._shapes.get(shape_key) or self._make_shape(shape_key, prefix)
        if shape is None:
            return False
        self._add_simple(prefix, shape)
        return True

    def _on_note(self, prefix: str, shape_key: Shape, deleted: bool, nlflags: int = 0) -> None:
        """A simple route message as fastnl decodes it: the bulk of a full table.

        A new prefix by a single hop or a nexthop object, or the removal of
        one, does what the general path would at a fraction of its cost (see
        _Shape); anything else takes the general path. For IPv6 that holds
        because a new prefix has no route that a replace could take the place
        of, and a removal of the very route stored leaves none.
        """
        shape = self._shapes.get(shape_key)
        if not deleted:
            old = self._kroutes.get(prefix)
            if old is None and (
                shape_key[0] == AF_INET or prefix[:2] not in ("ff", "fe") or not _special_v6(prefix)
            ):
                if shape is None:
                    shape = self._make_shape(shape_key, prefix)
                if shape is not None:
                    self._add_simple(prefix, shape)
                    return
            elif old is not None and len(old) == 1:
                # A route replaced by another of the same key (BGP moving a prefix
                # to another peer): the general path would end with the new one
                # alone, which is the new shape's.
                if shape is None:
                    shape = self._make_shape(shape_key, prefix)
                if shape is not None and not shape.impossible and old.keys() == shape.cands.keys():
                    if old is not shape.cands:
                        for kr in old.values():
                            self._index(prefix, kr, add=False)
                        self._add_simple(prefix, shape)
                    return
        else:
            old = self._kroutes.get(prefix)
            if shape is not None and old is shape.cands:
                self._del_simple(prefix, shape.kroute)
                return
            if old is not None and len(old) == 1:
                # The removal of the one route stored, though not by the shape it came
                # with: that shape was forgotten (a nexthop object or link changed, as
                # zebra's do all the time) or it came by a dump. Compared by value: an
                # IPv6 route zebra moves to another peer is a removal then an addition.
                simple = self._simple_kroute(shape_key)
                if simple is not None and old.get(simple[0]) == simple[1]:
                    self._del_simple(prefix, simple[1])
                    return
        self._on_route(note_dict((prefix, shape_key, deleted, nlflags)), deleted)

    @staticmethod
    def _simple_kroute(shape_key: Shape) -> tuple[_RouteKey, _KRoute] | None:
        """The route a simple message of ``shape_key`` stands for, under the key the
        general path files it by; None if the general path must judge it."""
        family, table, tos, prio, rtype, flags, oif, gw, nhid = shape_key
        if table not in (RT_TABLE_MAIN, RT_TABLE_LOCAL) or (flags or 0) & RTM_F_CLONED:
            return None
        if rtype != (RTN_UNICAST if table == RT_TABLE_MAIN else RTN_LOCAL):
            return None
        if family == AF_INET6 and gw is not None and _canon6(gw) != gw:
            return None  # not fastnl's text of an address: the general path judges it
        hops = () if oif is None else (_Hop(int(oif), str(gw) if gw else None, 1),)
        if table == RT_TABLE_LOCAL and family == AF_INET:
            nhid = None  # as _on_route: a local route depends on its device alone
        kr = _KRoute(table, rtype, hops, None if nhid is None else int(nhid))
        key: _RouteKey
        if family == AF_INET:
            key = (table, tos, prio)
        elif family == AF_INET6:
            # as _on_route6: a nexthop object's route, the ECMP route, one per device
            key = (table, 0, prio, -1 if nhid is not None else 0 if gw else (oif or 0))
        else:
            return None
        return key, kr

    def _make_shape(self, shape_key: Shape, prefix: str) -> _Shape | None:
        simple = self._simple_kroute(shape_key)
        if simple is None:
            return None
        key, kr = simple
        resolved = self._resolve(prefix, kr)
        nexthops = [] if resolved is None else resolved.nexthops
        shape = _Shape(
            cands={key: kr},
            kroute=kr,
            impossible=self._impossible(kr),
            kind=None if resolved is None else resolved.kind,
            nexthops=nexthops,
            refusal=self._refusals.get(prefix),
            gw_refs=tuple((nh.vm_port, nh.gateway) for nh in nexthops if nh.gateway is not None),
        )
        self._shapes[shape_key] = shape
        return shape

    def _add_simple(self, prefix: str, shape: _Shape) -> None:
        if shape.impossible:
            return  # a replayed notification of a route the kernel flushed
        self._kroutes[prefix] = shape.cands
        kr = shape.kroute
        if kr.nhid is not None:
            users = self._by_nhid.get(kr.nhid)
            if users is None:
                users = self._by_nhid[kr.nhid] = set()
            users.add(prefix)
        else:
            by_oif = self._by_oif
            for hop in kr.hops:
                users = by_oif.get(hop.oif)
                if users is None:
                    users = by_oif[hop.oif] = set()
                users.add(prefix)
        kind = shape.kind
        if shape.refusal is not None and prefix not in self._refused:
            self._refused.add(prefix)
            self._refusals[prefix] = shape.refusal
        route = None if kind is None else Route(prefix=prefix, kind=kind, nexthops=shape.nexthops)
        routes = self._routes
        if route is not None and prefix not in routes:
            # A new usable route, the bulk of a full table: what _set_route does
            # then, with the gateway references counted once per shape.
            self._route_dirty.setdefault(prefix, None)
            routes[prefix] = route
            gw_refs = self._gw_refs
            for ref in shape.gw_refs:
                gw_refs[ref] += 1
            return
        self._set_route(prefix, route)

    def _del_simple(self, prefix: str, kr: _KRoute) -> None:
        del self._kroutes[prefix]
        self._index(prefix, kr, add=False)
        self._set_route(prefix, None)

    def _impossible(self, kr: _KRoute) -> bool:
        """A main-table route whose every hop is on a link known to be down."""
        return (
            kr.table == RT_TABLE_MAIN
            and kr.nhid is None
            and bool(kr.hops)
            and all(self._is_down(h.oif) for h in kr.hops)
        )

    def _store_prefix(self, prefix: str, cands: dict[_RouteKey, _KRoute]) -> None:
        for kr in self._kroutes.get(prefix, {}).values():
            self._index(prefix, kr, add=False)
        if cands:
            self._kroutes[prefix] = cands
            for kr in cands.values():
                self._index(prefix, kr, add=True)
        else:
            self._kroutes.pop(prefix, None)
        self._recompute(prefix)

    def _index(self, prefix: str, kr: _KRoute, *, add: bool) -> None:
        if kr.nhid is not None:
            refs = [(self._by_nhid, kr.nhid)]
        else:
            refs = [(self._by_oif, h.oif) for h in kr.hops]
        for index, ref in refs:
            if add:
                index.setdefault(ref, set()).add(prefix)
            else:
                prefixes = index.get(ref)
                if prefixes is not None:
                    prefixes.discard(prefix)
                    if not prefixes:
                        del index[ref]

    def _recompute(self, prefix: str) -> None:
        """Pick the kernel's preferred route the switch can carry out."""
        cands = self._kroutes.get(prefix)
        best = None
        if cands:
            order = sorted(cands, key=lambda k: (k[0] != RT_TABLE_LOCAL, k[1] != 0, k[2], k))
            for key in order:
                best = self._resolve(prefix, cands[key])
                if best is not None:
                    break
        self._set_route(prefix, best)

    def _resolve(self, prefix: str, kr: _KRoute) -> Route | None:
        if kr.table == RT_TABLE_LOCAL:
            for hop in kr.hops:
                port = self._port(hop.oif)
                if port is not None:
                    nexthops = [NextHop(vm_port=port)]
                    return Route(prefix=prefix, kind=RouteKind.LOCAL, nexthops=nexthops)
            return None
        hops = kr.hops if kr.nhid is None else self._nh_hops(kr.nhid)
        if not hops:
            return None  # pending nexthop object, blackhole, or no next hop at all
        v6 = ":" in prefix
        weights: dict[tuple[int, str | None], int] = {}
        cross_family = False
        for hop in hops:
            link = self._links.get(hop.oif)
            if link is None or not link.up:
                continue  # the kernel marks hops on a down link dead
            port = vm_port_of(link.ifname)
            if port is None:
                continue
            gateway = hop.gateway
            if gateway is not None and (":" in gateway) != v6:
                if v6:  # an IPv6 route through an IPv4 gateway: refused, said once
                    cross_family = True
                    continue
                # RFC 5549 (BGP unnumbered, extended next hop): an IPv4 route through
                # an IPv6 neighbour. The switch needs only the neighbour's MAC, which
                # rfserver resolves from the IPv6 neighbour table like any other.
                gateway = _canon6(gateway)
                if gateway is None or gateway == "::":
                    continue
            key = (port, gateway)
            weights[key] = weights.get(key, 0) + hop.weight
        if not weights:
            if cross_family and prefix not in self._refused:
                self._refused.add(prefix)
                self._refusals[prefix] = (
                    "an IPv6 route through an IPv4 next hop is not carried to the switch"
                )
            return None
        nexthops = [
            NextHop(vm_port=port, gateway=gw, weight=w)
            for (port, gw), w in sorted(weights.items(), key=lambda i: (i[0][0], i[0][1] or ""))
        ]
        via_gateway = any(nh.gateway is not None for nh in nexthops)
        kind = RouteKind.UNICAST if via_gateway else RouteKind.CONNECTED
        return Route(prefix=prefix, kind=kind, nexthops=nexthops)

    # --- neighbours ------------------------------------------------------------

    def _on_neigh(self, msg: Any, deleted: bool) -> None:
        family = msg.get("family")
        if family != AF_INET and family != AF_INET6:
            return
        if _get(msg, "flags", 0) & NTF_PROXY:
            return
        ip = msg.get("NDA_DST")
        ifindex = msg.get("ifindex")
        if not ip or ifindex is None:
            return
        ip = str(ip)
        if family == AF_INET6:
            ip = _canon6(ip)
            if ip is None or not _is_unicast_v6(ip):
                return  # ff02::... entries (NOARP) are not next hops
        elif not _is_unicast_v4(ip):
            return  # multicast/broadcast entries are not next hops
        lladdr = msg.get("NDA_LLADDR")
        valid = not deleted and _get(msg, "state", 0) & NUD_VALID and lladdr
        self._set_kneigh((int(ifindex), str(ip)), str(lladdr).lower() if valid else None)

    def _set_kneigh(self, key: _NeighKey, lladdr: str | None) -> None:
        if lladdr is None:
            if self._kneigh.pop(key, None) is None:
                return
        elif self._kneigh.get(key) == lladdr:
            return
        else:
            self._kneigh[key] = lladdr
        self._recompute_neigh(key)

    def _recompute_neigh(self, key: _NeighKey) -> None:
        ifindex, ip = key
        out_old = self._neigh_src.pop(key, None)
        if out_old is not None:
            self._set_neigh(out_old, None)
        lladdr = self._kneigh.get(key)
        port = self._port(ifindex) if lladdr else None
        if port is not None:
            out = (port, ip)
            self._neigh_src[key] = out
            self._set_neigh(out, Neighbour(vm_port=port, address=ip, hwaddress=lladdr))

    # --- output bookkeeping ----------------------------------------------------

    def _set_port(self, port: int, reg: PortRegister | None) -> None:
        old = self._ports.get(port)
        if old == reg:
            return
        self._port_dirty.setdefault(port, old)
        if reg is None:
            del self._ports[port]
        else:
            self._ports[port] = reg

    def _set_route(self, prefix: str, route: Route | None) -> None:
        old = self._routes.get(prefix)
        if old == route:
            return
        self._route_dirty.setdefault(prefix, old)
        if old is not None:
            for nh in old.nexthops:
                if nh.gateway is not None:
                    ref = (nh.vm_port, nh.gateway)
                    self._gw_refs[ref] -= 1
                    if self._gw_refs[ref] <= 0:
                        del self._gw_refs[ref]
        if route is None:
            del self._routes[prefix]
        else:
            self._routes[prefix] = route
            for nh in route.nexthops:
                if nh.gateway is not None:
                    self._gw_refs[(nh.vm_port, nh.gateway)] += 1

    def _set_neigh(self, key: _NeighKey, neigh: Neighbour | None) -> None:
        old = self._neigh.get(key)
        if old == neigh:
            return
        self._neigh_dirty.setdefault(key, old)
        if neigh is None:
            del self._neigh[key]
        else:
            self._neigh[key] = neigh

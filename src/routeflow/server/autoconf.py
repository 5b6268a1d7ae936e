"""Automatic configuration (rfserver --auto), pure: what VMs the discovered network needs.

An operator who runs rfserver with ``--auto`` writes no mapping: the switches that connect,
the links rfproxy discovers between them (server/discovered.py) and the edge ports the
operator declares (where hosts or external routers plug in, with the router address of
each) decide everything else, here, with no I/O and no clock (time is passed in):

* one VM per switch, ``vm_id`` = the switch's dp_id, named ``vm-<dp_id hex>``;
* one VM interface per discovered link end and per edge port of the switch, ``eth<N>``
  for switch port N (vm_port == dp_port, so the mapping is implied by the port);
* link addressing: a /31 (or /30) per link from the link pool, the lower address to the
  end with the smaller (dp_id, port); loopbacks: a /32 per switch from the loopback pool,
  used as the router id. Every allocation is kept in the state store (``records``), so
  it is stable across restarts, and a new link only takes a free subnet: nothing
  allocated is ever renumbered;
* an FRR configuration from a template (OSPF, point-to-point links, passive edge ports);
* the mapping (ConfigEntry rows) that the association table needs, to which the
  operator's own mapping CSV, when given, is added: the switches it names are the
  operator's, and get no automatic VM.

Interfaces, once given, stay: a link that goes down keeps its interface and its subnet
(the port's link state already tells the VM), and comes back with the same addresses. A
switch that leaves keeps its VM for ``grace`` seconds (a flap or a controller failover
must not restart routing); after that the VM is stopped, but its allocations stay.

Facts in: ``switch_up``, ``switch_down``, ``set_links`` and ``tick``. Actions out:
``VmWanted`` (a VM's desired spec changed, None = stop it), ``MappingChanged`` and
``StoreWrites``, ``Problem``. What a backend must do to go from the VM it runs to the
desired one is ``vm_ops`` (start, add or remove interfaces, stop).
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable, Mapping

import msgspec

from routeflow.rflib.types import ConfigEntry

__all__ = [
    "AddInterfaces",
    "AutoConf",
    "AutoSettings",
    "EdgePort",
    "EdgePortError",
    "IfaceSpec",
    "MappingChanged",
    "Pool",
    "PoolExhausted",
    "Problem",
    "RemoveInterfaces",
    "StartVm",
    "StopVm",
    "StoreWrites",
    "VmSpec",
    "VmWanted",
    "link_key",
    "parse_edge_ports",
    "vm_mac",
    "vm_ops",
]

#: State store keys: autoconf/link/<dp hex>:<port>-<dp hex>:<port> -> subnet,
#: autoconf/loopback/<dp hex> -> address, autoconf/switch/<dp hex> -> ct_id.
RECORD_PREFIX = "autoconf/"
_LINK = RECORD_PREFIX + "link/"
_LOOPBACK = RECORD_PREFIX + "loopback/"
_SWITCH = RECORD_PREFIX + "switch/"

End = tuple[int, int]  # (dp_id, port)
LinkKey = tuple[End, End]  # the smaller end first


def link_key(a: End, b: End) -> LinkKey:
    """The undirected link between two switch ports, however it was reported."""
    return (a, b) if a <= b else (b, a)


def vm_mac(vm_id: int, port: int) -> str:
    """02:<vm_id low 24 bits>:<port>, as the lab's VMs (lab/model.py vm_mac)."""
    octets = (2, vm_id >> 16 & 255, vm_id >> 8 & 255, vm_id & 255, port >> 8 & 255, port & 255)
    return ":".join(f"{o:02x}" for o in octets)


# --- settings and edge ports ------------------------------------------------------------------


class EdgePort(msgspec.Struct, frozen=True, kw_only=True):
    """A switch port where something that is not a switch plugs in (a host, a peer router):
    the VM's interface there gets ``address`` (router address with prefix length)."""

    dp_id: int
    port: int
    address: str  # "172.31.1.1/24"


class EdgePortError(ValueError):
    """An edge-port file that cannot be used; every problem, each naming line and field."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


EDGE_HEADER = "dp_id,dp_port,address"


def parse_edge_ports(text: str, source: str = "<string>") -> list[EdgePort]:
    """``dp_id,dp_port,address`` lines (dp_id hex, port decimal, address with /len) after
    that header; '#' comments and blank lines are skipped. Raises EdgePortError."""
    errors: list[str] = []
    out: list[EdgePort] = []
    seen: dict[End, int] = {}
    header = False
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{n}"
        if not header:
            header = True
            if line.replace(" ", "").lower() != EDGE_HEADER:
                errors.append(f"{where}: expected the header {EDGE_HEADER!r}, got {line!r}")
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3:
            errors.append(f"{where}: expected 3 columns ({EDGE_HEADER}), got {len(fields)}")
            continue
        try:
            dp_id = int(fields[0], 16)
            if not 0 <= dp_id < 1 << 64:
                raise ValueError
        except ValueError:
            errors.append(f"{where}: dp_id: {fields[0]!r} is not a 64-bit hexadecimal id")
            continue
        try:
            port = int(fields[1])
            if not 1 <= port <= 0xFFFFFF00:
                raise ValueError
        except ValueError:
            errors.append(f"{where}: dp_port: {fields[1]!r} is not a switch port (1..0xffffff00)")
            continue
        try:
            iface = ipaddress.IPv4Interface(fields[2])
            if "/" not in fields[2] or iface.network.prefixlen > 31:
                raise ValueError("needs a prefix length of at most /31")
            net = iface.network
            if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
                raise ValueError("is the subnet's network or broadcast address")
        except ValueError as exc:
            errors.append(f"{where}: address: {fields[2]!r}: {exc}")
            continue
        if (dp_id, port) in seen:
            errors.append(
                f"{where}: dp port ({dp_id:#x}, {port}) already on line {seen[(dp_id, port)]}"
            )
            continue
        seen[(dp_id, port)] = n
        out.append(EdgePort(dp_id=dp_id, port=port, address=str(iface)))
    if not header:
        errors.append(f"{source}: empty: expected the header {EDGE_HEADER!r}")
    if errors:
        raise EdgePortError(errors)
    return out


#: The FRR configuration template (string.Template): ${hostname}, ${dp_id}, ${router_id},
#: ${interfaces} (one stanza per interface, from IFACE_TEMPLATE_* below), ${hello}, ${dead}.
DEFAULT_TEMPLATE = """\
! ${hostname}: VM of switch ${dp_id}, configured by rfserver --auto; edits are overwritten
frr defaults traditional
hostname ${hostname}
!
${interfaces}\
router ospf
 ospf router-id ${router_id}
 timers throttle spf 0 50 1000
 timers throttle lsa all 0
 timers lsa min-arrival 0
!
"""
IFACE_TEMPLATE_LINK = """\
interface ${ifname}
 description ${description}
 ip ospf area 0
 ip ospf network point-to-point
 ip ospf hello-interval ${hello}
 ip ospf dead-interval ${dead}
!
"""
IFACE_TEMPLATE_EDGE = """\
interface ${ifname}
 description ${description}
 ip ospf area 0
 ip ospf passive
!
"""


class AutoSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator chooses; everything else is derived."""

    link_pool: str = "10.0.0.0/16"
    #: 31 (two addresses, RFC 3021) or 30 (two usable of four).
    link_prefix: int = 31
    loopback_pool: str = "10.255.0.0/16"
    #: Seconds a switch may be gone before its VM is stopped.
    grace: float = 60.0
    hello: int = 1
    dead: int = 4
    template: str = DEFAULT_TEMPLATE

    def check(self, edges: Iterable[EdgePort] = ()) -> list[str]:
        """Every problem with these settings (and edge ports), naming the setting."""
        problems = []
        nets: dict[str, ipaddress.IPv4Network] = {}
        for name in ("link_pool", "loopback_pool"):
            try:
                nets[name] = ipaddress.IPv4Network(getattr(self, name))
            except ValueError as exc:
                problems.append(f"{name}: {getattr(self, name)!r}: {exc}")
        if self.link_prefix not in (30, 31):
            problems.append(f"link_prefix: {self.link_prefix}: must be 30 or 31")
        elif "link_pool" in nets and nets["link_pool"].prefixlen > self.link_prefix:
            problems.append(f"link_pool: {self.link_pool} is smaller than one /{self.link_prefix}")
        if len(nets) == 2 and nets["link_pool"].overlaps(nets["loopback_pool"]):
            problems.append(
                f"loopback_pool: {self.loopback_pool} overlaps link_pool {self.link_pool}"
            )
        for e in edges:
            net = ipaddress.IPv4Interface(e.address).network
            for name, pool in nets.items():
                if net.overlaps(pool):
                    problems.append(
                        f"edge port ({e.dp_id:#x}, {e.port}): {e.address} overlaps {name} {pool}"
                    )
        if not 0 <= self.grace <= 86400:
            problems.append(f"grace: {self.grace}: must be 0-86400 seconds")
        if not 1 <= self.hello < self.dead <= 65535:
            problems.append(f"hello/dead: {self.hello}/{self.dead}: need 1 <= hello < dead")
        try:
            self.render_check()
        except (KeyError, ValueError) as exc:
            problems.append(f"template: unknown or bad placeholder {exc}")
        return problems

    def render_check(self) -> None:
        string.Template(self.template).substitute(_template_values(0, "h", "0.0.0.0", "", 1, 4))


def _template_values(
    dp_id: int, hostname: str, router_id: str, interfaces: str, hello: int, dead: int
) -> dict[str, str]:
    return {
        "hostname": hostname,
        "dp_id": f"{dp_id:#x}",
        "router_id": router_id,
        "interfaces": interfaces,
        "hello": str(hello),
        "dead": str(dead),
    }


# --- address pools ------------------------------------------------------------------------------


class PoolExhausted(Exception):
    pass


class Pool:
    """Subnets of one size handed out from a pool, each kept by its owner for good.

    Owners are strings (store keys); the lowest free subnet is taken, so a pool's use is
    compact and a restart that reloads the allocations reproduces the same numbers.
    """

    def __init__(self, pool: str, prefixlen: int) -> None:
        self.net = ipaddress.IPv4Network(pool)
        self.prefixlen = prefixlen
        self.size = 1 << (prefixlen - self.net.prefixlen)
        self._by_owner: dict[str, int] = {}
        self._taken: dict[int, str] = {}
        self._next = 0  # every index below is taken

    def __len__(self) -> int:
        return len(self._by_owner)

    def subnet(self, index: int) -> ipaddress.IPv4Network:
        base = int(self.net.network_address) + (index << (32 - self.prefixlen))
        return ipaddress.IPv4Network((base, self.prefixlen))

    def index_of(self, subnet: str) -> int | None:
        """The index of ``subnet`` in this pool, or None when it is not one of its subnets."""
        try:
            net = ipaddress.IPv4Network(subnet)
        except ValueError:
            return None
        if net.prefixlen != self.prefixlen or not net.subnet_of(self.net):
            return None
        return (int(net.network_address) - int(self.net.network_address)) >> (32 - self.prefixlen)

    def restore(self, owner: str, subnet: str) -> bool:
        """Take back a stored allocation; False if it is not in this pool or already taken."""
        index = self.index_of(subnet)
        if index is None or index in self._taken or owner in self._by_owner:
            return False
        self._by_owner[owner] = index
        self._taken[index] = owner
        return True

    def get(self, owner: str) -> ipaddress.IPv4Network | None:
        index = self._by_owner.get(owner)
        return None if index is None else self.subnet(index)

    def take(self, owner: str) -> tuple[ipaddress.IPv4Network, bool]:
        """The owner's subnet, allocating the lowest free one; (subnet, newly allocated)."""
        if owner in self._by_owner:
            return self.subnet(self._by_owner[owner]), False
        while self._next in self._taken:
            self._next += 1
        if self._next >= self.size:
            raise PoolExhausted(f"{self.net} has no free /{self.prefixlen} left for {owner}")
        self._by_owner[owner] = self._next
        self._taken[self._next] = owner
        return self.subnet(self._next), True

    def allocations(self) -> dict[str, ipaddress.IPv4Network]:
        return {o: self.subnet(i) for o, i in self._by_owner.items()}


# --- the desired VMs ----------------------------------------------------------------------------


class IfaceSpec(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """One VM interface: eth<port>, facing switch port ``port``."""

    port: int
    ifname: str
    address: str  # "10.0.0.0/31"
    mac: str
    kind: str  # "link" | "edge"
    #: Links: the switch port at the other end, (dp_id, port).
    peer: tuple[int, int] | None = None
    #: Its stanza of the FRR configuration.
    frr: str = ""


class VmSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a backend needs to run the VM of one switch."""

    vm_id: int
    dp_id: int
    ct_id: int
    name: str
    router_id: str  # also the loopback address (/32)
    interfaces: tuple[IfaceSpec, ...]  # by port
    frr_config: str
    routing: str = "ospf"

    def interface(self, port: int) -> IfaceSpec | None:
        return next((i for i in self.interfaces if i.port == port), None)


class VmWanted(msgspec.Struct, frozen=True):
    """The VM of ``dp_id`` should now look like ``spec`` (None: it should not run)."""

    dp_id: int
    spec: VmSpec | None


class MappingChanged(msgspec.Struct, frozen=True):
    """The association table's config: every automatic port, then the operator's CSV."""

    entries: tuple[ConfigEntry, ...]


class StoreWrites(msgspec.Struct, frozen=True):
    writes: dict[str, bytes | None]


class Problem(msgspec.Struct, frozen=True):
    """Something the operator must hear about (nothing is retried until the facts change)."""

    text: str


Action = VmWanted | MappingChanged | StoreWrites | Problem


class AutoConf:
    """The planner (see the module docstring)."""

    def __init__(
        self,
        settings: AutoSettings,
        edges: Iterable[EdgePort] = (),
        manual: Iterable[ConfigEntry] = (),
        stored: Iterable[tuple[str, bytes]] = (),
        now: float = 0.0,
    ) -> None:
        problems = settings.check(edges)
        if problems:
            raise ValueError("; ".join(problems))
        self.settings = settings
        self.edges: dict[End, EdgePort] = {(e.dp_id, e.port): e for e in edges}
        self.manual = tuple(sorted(manual))
        self.manual_dps = {e.dp_id for e in self.manual}
        self.manual_vms = {e.vm_id for e in self.manual}
        self.links_pool = Pool(settings.link_pool, settings.link_prefix)
        self.loopbacks = Pool(settings.loopback_pool, 32)
        #: dp_id -> ct_id of every switch we know (connected, or within its grace).
        self.switches: dict[int, int] = {}
        #: dp_id -> when it left (absent: connected).
        self.left: dict[int, float] = {}
        #: Every link ever seen between two automatic ports (interfaces stay), and the
        #: link each port belongs to: the first that claimed it.
        self.links: set[LinkKey] = set()
        self.port_link: dict[End, LinkKey] = {}
        self._wanted: dict[int, VmSpec] = {}
        self._mapping: tuple[ConfigEntry, ...] = self.manual
        self._told: set[str] = set()  # problems already reported
        self.restore_problems: list[str] = []
        for name, value in stored:
            self._restore(name, value, now)

    # --- restoring ---------------------------------------------------------------------------

    def _restore(self, name: str, value: bytes, now: float) -> None:
        text = value.decode(errors="replace")
        ok = False
        try:
            if name.startswith(_LINK):
                a, b = name[len(_LINK) :].split("-")
                key = link_key(_end(a), _end(b))
                ok = not any(e in self.port_link for e in key)
                ok = ok and self.links_pool.restore(_link_owner(key), text)
                if ok:
                    self._claim(key)
            elif name.startswith(_LOOPBACK):
                dp = int(name[len(_LOOPBACK) :], 16)
                ok = self.loopbacks.restore(_loopback_owner(dp), f"{text}/32")
            elif name.startswith(_SWITCH):
                dp = int(name[len(_SWITCH) :], 16)
                self.switches[dp] = int(text)
                self.left[dp] = now  # until it connects again, its grace runs
                ok = True
        except ValueError:
            ok = False
        if not ok:
            self.restore_problems.append(f"{name}={text!r}")

    # --- facts in -----------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """The actions for what was restored (before any switch connects again)."""
        return self._update()

    def switch_up(self, ct_id: int, dp_id: int) -> list[Action]:
        """A switch's port registered with controller ``ct_id`` (repeats change nothing)."""
        if self.switches.get(dp_id) == ct_id and dp_id not in self.left:
            return []
        self.left.pop(dp_id, None)
        out: list[Action] = []
        if self.switches.get(dp_id) != ct_id:
            self.switches[dp_id] = ct_id
            out.append(StoreWrites({f"{_SWITCH}{dp_id:x}": str(ct_id).encode()}))
        return out + self._update()

    def switch_down(self, dp_id: int, now: float) -> list[Action]:
        """The switch left; its VM stays for the grace period (see tick)."""
        if dp_id in self.switches and dp_id not in self.left:
            self.left[dp_id] = now
        return self.tick(now)

    def set_links(self, directed: Iterable[tuple[End, End]]) -> list[Action]:
        """The discovered links now (either direction is enough); new ones get interfaces."""
        new = {link_key(a, b) for a, b in directed} - self.links
        if not new:
            return []
        out: list[Action] = []
        for key in sorted(new):
            (da, pa), (db, pb) = key
            if da == db:
                out += self._problem(f"link {da:#x}:{pa} - {db:#x}:{pb} loops back to its switch")
                continue
            clash = [e for e in key if e in self.edges]
            if clash:
                out += self._problem(
                    f"link {da:#x}:{pa} - {db:#x}:{pb} is on edge port "
                    + ", ".join(f"{d:#x}:{p}" for d, p in clash)
                    + " (the edge-port declaration wins; link ignored)"
                )
                continue
            taken = [self.port_link[e] for e in key if e in self.port_link]
            if taken:
                out += self._problem(
                    f"link {_link_owner(key)}: port already on link {_link_owner(taken[0])} "
                    "(recabled? the first link keeps the port; restart with its record removed)"
                )
                continue
            self._claim(key)
        return out + self._update()

    def _claim(self, key: LinkKey) -> None:
        self.links.add(key)
        for end in key:
            self.port_link[end] = key

    def tick(self, now: float) -> list[Action]:
        """Stop the VMs of switches gone longer than the grace period."""
        gone = [dp for dp, t in self.left.items() if now - t >= self.settings.grace]
        out: list[Action] = []
        for dp in gone:
            del self.left[dp]
            del self.switches[dp]
            out.append(StoreWrites({f"{_SWITCH}{dp:x}": None}))
        return out + self._update() if gone else []

    def next_deadline(self) -> float | None:
        """When tick has something to do, or None."""
        return min(self.left.values()) + self.settings.grace if self.left else None

    # --- the desired state --------------------------------------------------------------------

    def wanted(self) -> dict[int, VmSpec]:
        return dict(self._wanted)

    def mapping(self) -> tuple[ConfigEntry, ...]:
        return self._mapping

    def allocations(self) -> dict[str, str]:
        """owner -> subnet or address, for the operator's view."""
        out = {o: str(n) for o, n in self.links_pool.allocations().items()}
        out.update({o: str(n.network_address) for o, n in self.loopbacks.allocations().items()})
        return out

    def _problem(self, text: str) -> list[Action]:
        if text in self._told:
            return []
        self._told.add(text)
        return [Problem(text)]

    def _update(self) -> list[Action]:
        out: list[Action] = []
        writes: dict[str, bytes | None] = {}
        wanted: dict[int, VmSpec] = {}
        for dp, ct in sorted(self.switches.items()):
            if dp in self.manual_dps:
                continue
            if dp in self.manual_vms:
                out += self._problem(
                    f"switch {dp:#x}: its automatic vm_id {dp:#x} is a VM of the mapping CSV; "
                    "no automatic VM"
                )
                continue
            spec = self._spec(dp, ct, writes, out)
            if spec is not None:
                wanted[dp] = spec
        for dp in sorted(set(self._wanted) | set(wanted)):
            if self._wanted.get(dp) != wanted.get(dp):
                out.append(VmWanted(dp, wanted.get(dp)))
        self._wanted = wanted
        mapping = (
            tuple(
                ConfigEntry(
                    vm_id=s.vm_id, vm_port=i.port, ct_id=s.ct_id, dp_id=s.dp_id, dp_port=i.port
                )
                for s in wanted.values()
                for i in s.interfaces
            )
            + self.manual
        )
        if mapping != self._mapping:
            self._mapping = mapping
            out.append(MappingChanged(mapping))
        if writes:
            out.insert(0, StoreWrites(writes))
        return out

    def _spec(
        self, dp: int, ct: int, writes: dict[str, bytes | None], out: list[Action]
    ) -> VmSpec | None:
        try:
            loop, new = self.loopbacks.take(_loopback_owner(dp))
        except PoolExhausted as exc:
            out += self._problem(f"switch {dp:#x}: no loopback: {exc}")
            return None
        if new:
            writes[f"{_LOOPBACK}{dp:x}"] = str(loop.network_address).encode()
        router_id = str(loop.network_address)
        name = f"vm-{dp:x}"
        ifaces: dict[int, IfaceSpec] = {}
        for (edp, port), edge in self.edges.items():
            if edp == dp:
                ifaces[port] = self._iface(dp, port, edge.address, "edge", None, "edge port")
        for key in sorted(self.links):
            if dp not in (key[0][0], key[1][0]):
                continue
            try:
                subnet, new = self.links_pool.take(_link_owner(key))
            except PoolExhausted as exc:
                out += self._problem(f"link {_link_owner(key)}: no subnet: {exc}")
                continue
            if new:
                writes[_LINK + _link_owner(key)] = str(subnet).encode()
            hosts = [subnet.network_address, subnet.network_address + 1]
            if subnet.prefixlen == 30:
                hosts = [subnet.network_address + 1, subnet.network_address + 2]
            for i, (edp, port) in enumerate(key):
                if edp != dp or port in ifaces:
                    continue
                peer = key[1 - i]
                address = f"{hosts[i]}/{subnet.prefixlen}"
                who = f"link to {peer[0]:#x} port {peer[1]}"
                ifaces[port] = self._iface(dp, port, address, "link", peer, who)
        ordered = tuple(ifaces[p] for p in sorted(ifaces))
        s = self.settings
        config = string.Template(s.template).substitute(
            _template_values(dp, name, router_id, "".join(i.frr for i in ordered), s.hello, s.dead)
        )
        return VmSpec(
            vm_id=dp,
            dp_id=dp,
            ct_id=ct,
            name=name,
            router_id=router_id,
            interfaces=ordered,
            frr_config=config,
        )

    def _iface(
        self, dp: int, port: int, address: str, kind: str, peer: End | None, description: str
    ) -> IfaceSpec:
        ifname = f"eth{port}"
        template = IFACE_TEMPLATE_LINK if kind == "link" else IFACE_TEMPLATE_EDGE
        frr = string.Template(template).substitute(
            ifname=ifname,
            description=description,
            hello=self.settings.hello,
            dead=self.settings.dead,
        )
        return IfaceSpec(
            port=port,
            ifname=ifname,
            address=address,
            mac=vm_mac(dp, port),
            kind=kind,
            peer=peer,
            frr=frr,
        )


def _end(text: str) -> End:
    dp, port = text.split(":")
    return int(dp, 16), int(port)


def _link_owner(key: LinkKey) -> str:
    (da, pa), (db, pb) = key
    return f"{da:x}:{pa}-{db:x}:{pb}"


def _loopback_owner(dp: int) -> str:
    return f"loopback {dp:x}"


def records(items: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    """The store's autoconf records as AutoConf takes them (key order, for determinism)."""
    return sorted((k, v) for k, v in items.items() if k.startswith(RECORD_PREFIX))


# --- from the VM a backend runs to the one wanted -------------------------------------------


class StartVm(msgspec.Struct, frozen=True):
    spec: VmSpec


class AddInterfaces(msgspec.Struct, frozen=True):
    """Add ``ifaces`` to the running VM; ``spec`` is the whole VM after it (its config)."""

    spec: VmSpec
    ifaces: tuple[IfaceSpec, ...]


class RemoveInterfaces(msgspec.Struct, frozen=True):
    spec: VmSpec
    ifaces: tuple[IfaceSpec, ...]


class StopVm(msgspec.Struct, frozen=True):
    vm_id: int
    name: str


VmOp = StartVm | AddInterfaces | RemoveInterfaces | StopVm


def vm_ops(want: VmSpec | None, have: VmSpec | None) -> list[VmOp]:
    """What a backend running ``have`` must do to run ``want`` (None: no VM), in order.

    An interface whose address or peer changed is removed, then added again; a VM whose
    identity changed (vm_id, router id) is stopped and started again. Interfaces already
    right are never touched.
    """
    if want is None:
        return [] if have is None else [StopVm(have.vm_id, have.name)]
    if have is None:
        return [StartVm(want)]
    if (want.vm_id, want.name, want.router_id) != (have.vm_id, have.name, have.router_id):
        return [StopVm(have.vm_id, have.name), StartVm(want)]
    wanted = set(want.interfaces)
    running = set(have.interfaces)
    ops: list[VmOp] = []
    gone = tuple(sorted(running - wanted))
    if gone:
        kept = tuple(i for i in have.interfaces if i in wanted)
        ops.append(RemoveInterfaces(msgspec.structs.replace(have, interfaces=kept), gone))
    new = tuple(sorted(wanted - running))
    if new:
        ops.append(AddInterfaces(want, new))
    return ops


def encode_spec(spec: VmSpec) -> bytes:
    return msgspec.json.encode(spec)


def decode_spec(data: bytes) -> VmSpec:
    return msgspec.json.decode(data, type=VmSpec)


def view(conf: AutoConf) -> dict:
    """The operator's view (status file, rfweb): VMs, their interfaces, the pools' use."""
    return {
        "vms": [
            {
                "vm_id": s.vm_id,
                "dp_id": s.dp_id,
                "ct_id": s.ct_id,
                "name": s.name,
                "router_id": s.router_id,
                "interfaces": [
                    {"port": i.port, "address": i.address, "kind": i.kind, "peer": i.peer}
                    for i in s.interfaces
                ],
                "leaving": s.dp_id in conf.left,
            }
            for s in conf.wanted().values()
        ],
        "link_subnets": len(conf.links_pool),
        "link_pool": conf.settings.link_pool,
        "loopbacks": len(conf.loopbacks),
        "loopback_pool": conf.settings.loopback_pool,
        "manual_switches": sorted(conf.manual_dps),
    }

"""Lab files: the topology an operator writes by hand, and the plan every other piece derives from.

A lab file names switches, links and hosts and nothing else; ports, addresses, MACs, VM ids,
router ids and routes are derived here, deterministically, so that the lab runner, the
controller configuration and the tests all agree without anybody keeping tables in sync by hand.
Everything in this module is pure apart from reading the file in :func:`load_lab`.

IPv6 (a lab file saying ``ipv6: true``) is derived, never written: operators draw an IPv4
network and get the same network dual-stacked, with addresses nobody has to choose or keep
consistent. The scheme, fixed so that plans, configs and tests agree run after run:

* the lab's prefix is a unique local /48 (RFC 4193): ``fd`` followed by a 40-bit global ID,
  the first five bytes of SHA-256 of ``"routeflow-lab:<lab name>"`` (so two labs differ,
  and one lab is the same on every machine);
* the host of ``hosts[i]`` (lab-file order) sits on subnet ID ``i + 1`` (``<prefix>:1::/64``
  for the first host, ``:2::`` ... like rftest2's 172.31.1-4); its VM port is ``::1`` and
  the host ``::100``, with ``::1`` as its default gateway;
* the link ``links[j]`` (lab-file order) gets subnet ID ``0x8000 + j``; end ``a`` (the first
  switch named) is ``::1``, end ``b`` is ``::2``.

IPv4 labs are unaffected: without ``ipv6: true`` every IPv6 field of the plan is None and
every IPv4 number is what it always was.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from routeflow.lab.cloud import CloudLab, CloudSpec, validate_cloud
from routeflow.rflib.types import ConfigEntry

__all__ = [
    "DEFAULT_LINK_POOL",
    "IPV6_HOST",
    "IPV6_LINK_BASE",
    "IPV6_ROUTER",
    "Announce",
    "BgpNeighbor",
    "Controller",
    "Host",
    "HostPlan",
    "Interface",
    "Lab",
    "LabError",
    "LabPlan",
    "Link",
    "LinkEnd",
    "LinkPlan",
    "OspfOptions",
    "Routing",
    "Speaker",
    "SpeakerPlan",
    "StaticRoute",
    "Switch",
    "VmPlan",
    "host_mac",
    "ipv6_prefix",
    "load_lab",
    "parse_lab",
    "plan",
    "vm_mac",
]

Routing = Literal["ospf", "bgp", "static"]

DEFAULT_LINK_POOL = "10.0.0.0/16"
LINK_PREFIX = 30  # /30 per pooled link: two usable addresses, one per end
MAX_UINT64 = 2**64 - 1
MAX_ASN = 2**32 - 1
MAX_OSPF_COST = 65535
MAX_ANNOUNCE = 4_000_000
LAB_NAME_RE = re.compile(r"^[a-z0-9_-]{1,24}$")
# Node names are as real topologies have them ("Amsterdam", "FrankfurtAmMain"); they name
# files, processes and FRR hostnames, so they are kept shell-safe. Linux interface names (15
# characters) are derived from them only when every one fits; see switch_ifprefixes.
NODE_NAME_MAX = 32
IFNAMSIZ = 15  # longest Linux interface name
#: Names the lab runner uses itself in the switches' namespace (the virtual switch's bridge
#: br-rfvs and its ports vs-eth<N>); a switch whose name would collide gets index names.
RESERVED_IFPREFIXES = frozenset({"vs", "rfvs"})
NODE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

# IPv6 numbering (see the module docstring): interface IDs and the first link subnet ID.
IPV6_ROUTER = 1  # a VM's port on a host subnet, and end a of a link
IPV6_HOST = 0x100  # the host on its subnet
IPV6_LINK_BASE = 0x8000  # subnet ID of links[0]; hosts take 1 .. IPV6_LINK_BASE - 1


class LabError(ValueError):
    """Every problem found in one lab file, so an operator can fix them in one pass."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# --------------------------------------------------------------------------------------------
# The file as written (decoded by msgspec, so wrong types are reported with msgspec's path)
# --------------------------------------------------------------------------------------------


class OspfOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Lab-wide OSPF timers; short defaults so that labs converge in seconds, not minutes."""

    #: Seconds between OSPF hellos on every link (1-65535).
    hello: int = 1
    #: Seconds without a hello before a neighbour is declared down; above hello.
    dead: int = 4
    #: BFD on every OSPF link: failures the switch cannot see (the link stays
    #: up, packets vanish) are detected in bfd_interval x bfd_multiplier ms.
    bfd: bool = False
    #: BFD transmit and receive interval, ms (10-60000).
    bfd_interval: int = 100
    #: BFD packets missed before the session goes down (2-255).
    bfd_multiplier: int = 3


#: ``control_plane:`` of a lab file (see _LabSpec).
ControlPlaneMode = Literal["classic", "virtual"]


class ControlPlane(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How rfserver runs: one process on an SQLite file (the default), or
    several sharing an etcd cluster, one leading and the others standing by."""

    #: rfserver processes (1-3): one leads, the others stand by; more than one needs etcd.
    servers: int = 1
    #: State store: one SQLite file, or the lab's own etcd cluster.
    store: Literal["sqlite", "etcd"] = "sqlite"
    #: Members of the lab's own etcd cluster (on loopback), when store is etcd.
    etcd_members: int = 3
    #: Seconds a dead leader's lease outlives it: the bulk of the takeover time.
    lease_ttl: int = 3
    #: How control frames cross between switch ports and VM ports: through rfproxy
    #: (packet-in/packet-out), or over a patch-port relay link from each switch to
    #: the virtual switch, tagged with the port (rfproxy --relay datapath).
    relay: Literal["controller", "datapath"] = "controller"


class _ControllerSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: The controller's id (RFProtocol ct_id), unique in the lab.
    ct_id: int
    #: Its name in plans and logs (default ct<ct_id>).
    name: str | None = None
    #: rfproxy processes serving this ct_id (one OpenFlow master, the others slaves).
    replicas: int = 1


class _SwitchSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Unique node name: a letter, then up to 31 of [A-Za-z0-9_-].
    name: str
    #: OpenFlow datapath id (64-bit, unique).
    dpid: int
    #: Routing protocol of this switch's VM (default: the lab's routing).
    routing: Routing | None = None
    #: Controller of this switch (default: the first of controllers).
    ct_id: int | None = None
    #: Id of the switch's VM (default: the dpid); its low 24 bits make up the VM's MACs.
    vm_id: int | None = None
    #: OSPF/BGP router id, an IPv4 address (default 10.255.0.0 + the switch's position + 1).
    router_id: str | None = None
    #: BGP AS number of the VM (default 65000 + position + 1).
    asn: int | None = None


class _LinkSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: The two switches it joins, [a, b]; a link may also be written as just [a, b].
    ends: list[str]
    #: The link's IPv4 subnet, /30 or larger (default: the next free /30 of link_pool).
    subnet: str | None = None
    #: Addresses of end a and end b in subnet (default: its first two usable ones).
    addresses: list[str] | None = None
    #: OSPF cost of both ends (1-65535).
    cost: int = 1


class _HostSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Unique node name (as for switches).
    name: str
    #: The switch it hangs off (a port of its own).
    switch: str
    #: Address with prefix length, e.g. 172.31.1.100/24; the subnet is the host's alone.
    ip: str
    #: Default gateway, the VM port's address (default: the subnet's first usable address).
    gateway: str | None = None


class _AnnounceSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Consecutive prefixes announced (0-4,000,000).
    count: int = 0
    #: Instead of count/start/prefixlen: a table file (``prefix [as_path...]`` lines, see
    #: `routeflow bench table-gen`), relative to the lab file; every prefix is announced
    #: with its AS path (after the speaker's own AS).
    file: str | None = None
    #: Network address of the first prefix.
    start: str = "100.64.0.0"
    #: Length of every prefix (8-32).
    prefixlen: int = 24


class _SpeakerSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An external BGP speaker (ExaBGP) on a switch port, peering with that switch's VM."""

    #: Unique node name; the speaker is also a host of that name.
    name: str
    #: The switch whose port it sits on; that switch must route with bgp.
    switch: str
    #: The speaker's address with prefix length; the VM's port is its BGP neighbour.
    ip: str
    #: The speaker's AS number (not the VM's: the session is eBGP).
    asn: int
    #: As for hosts (default: the subnet's first usable address).
    gateway: str | None = None
    #: Prefixes it announces (default: none).
    announce: _AnnounceSpec | None = None
    #: BFD on the VM's session with it (bfdd in the VM, the lab's ospf.bfd_interval and
    #: bfd_multiplier as timers): a speaker that goes silent is dropped in that time.
    bfd: bool = False


class BgpOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Lab-wide BGP options."""

    #: Sessions between VMs over their links' IPv6 link-local addresses (FRR's BGP
    #: unnumbered, ``neighbor ethN interface``): IPv4 routes then come with IPv6 next
    #: hops (RFC 5549, extended next hop). Speakers keep their numbered sessions.
    unnumbered: bool = False


class _LabSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: The lab's name: 1-24 of [a-z0-9_-]; it also seeds the lab's IPv6 prefix.
    name: str
    #: The OpenFlow switches; each gets a VM running the routing engine.
    switches: list[_SwitchSpec]
    #: Switch-to-switch links, [a, b] or a mapping; parallel links are allowed.
    links: list[list[str] | _LinkSpec] = msgspec.field(default_factory=list)
    #: End hosts, one per switch port, each alone in its subnet.
    hosts: list[_HostSpec] = msgspec.field(default_factory=list)
    #: External BGP speakers (ExaBGP) peering with a switch's VM.
    speakers: list[_SpeakerSpec] = msgspec.field(default_factory=list)
    #: Routing of every switch that does not say otherwise.
    routing: Routing = "ospf"
    #: OSPF timers and BFD, for the whole lab.
    ospf: OspfOptions = msgspec.field(default_factory=OspfOptions)
    #: BGP options, for the whole lab.
    bgp: BgpOptions = msgspec.field(default_factory=BgpOptions)
    #: The controllers (default: one, ct_id 1, one replica).
    controllers: list[_ControllerSpec] | None = None
    #: How many rfservers on which store, and how control frames are relayed.
    control: ControlPlane = msgspec.field(default_factory=ControlPlane)
    #: Where links without a subnet get their /30s.
    link_pool: str = DEFAULT_LINK_POOL
    #: Dual stack: IPv6 derived for every link and host subnet (OSPFv3, MP-BGP or static).
    ipv6: bool = False
    #: Tenant networks on compute nodes (lab/cloud.py); with it, ``switches`` may be empty.
    cloud: CloudSpec | None = None
    #: Where routers' hellos and LSAs cross: the physical links through the relay
    #: (classic), or VM to VM in the virtual switch (virtual; proxy/vlinks.py).
    control_plane: ControlPlaneMode = "classic"


# --------------------------------------------------------------------------------------------
# The validated lab: every default resolved, every address allocated
# --------------------------------------------------------------------------------------------


#: Most rfproxy replicas one controller may have in a lab.
MAX_REPLICAS = 4


class Controller(msgspec.Struct, frozen=True, kw_only=True):
    """A controller instance; switches are spread over controllers by ct_id.

    It runs as ``replicas`` rfproxy processes, named ``ct<ct_id>a``,
    ``ct<ct_id>b``, ... (just ``ct<ct_id>`` when there is one): every switch of
    the controller connects to all of them, and rfserver makes one the
    OpenFlow master (normally the first, "a") and the others slaves.
    """

    ct_id: int
    name: str
    replicas: int = 1

    @property
    def replica_names(self) -> tuple[str, ...]:
        if self.replicas == 1:
            return (f"ct{self.ct_id}",)
        return tuple(f"ct{self.ct_id}{chr(ord('a') + i)}" for i in range(self.replicas))


class Switch(msgspec.Struct, frozen=True, kw_only=True):
    """A switch with its defaults resolved (routing, ct_id, vm_id, router_id, asn)."""

    name: str
    index: int  # position in the lab file; fixes tie-breaks and default ids
    dpid: int
    routing: Routing
    ct_id: int
    vm_id: int
    router_id: str
    asn: int


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """A switch-to-switch link with its subnet and both end addresses decided."""

    index: int
    a: str
    b: str
    subnet: str  # "10.0.0.0/30"
    addresses: tuple[str, str]  # plain IPs of end a and end b
    cost: int = 1  # OSPF cost, both directions


class Host(msgspec.Struct, frozen=True, kw_only=True):
    """A host hanging off one switch port, alone in its subnet."""

    name: str
    switch: str
    ip: str  # "172.31.1.100/24"
    gateway: str  # "172.31.1.1"


class Announce(msgspec.Struct, frozen=True, kw_only=True):
    """``count`` consecutive /``prefixlen`` prefixes from ``start``, or the ``file``'s."""

    count: int
    start: str  # network address of the first prefix
    prefixlen: int
    file: str | None = None  # a table file (absolute path): its prefixes and AS paths

    def table(self) -> list[Any]:
        """The table file's routes (routeflow.bench.table.TableEntry); [] without a file."""
        if self.file is None:
            return []
        from routeflow.bench.table import read_table_file

        return read_table_file(self.file)

    def prefixes(self) -> list[str]:
        if self.file is not None:
            return [e.prefix for e in self.table()]
        step = 1 << (32 - self.prefixlen)
        first = int(ipaddress.IPv4Address(self.start))
        return [
            f"{ipaddress.IPv4Address(first + i * step)}/{self.prefixlen}" for i in range(self.count)
        ]

    def prefix(self, index: int) -> str:
        if self.file is not None:
            return self.prefixes()[index]
        step = 1 << (32 - self.prefixlen)
        addr = ipaddress.IPv4Address(int(ipaddress.IPv4Address(self.start)) + index * step)
        return f"{addr}/{self.prefixlen}"


class Speaker(msgspec.Struct, frozen=True, kw_only=True):
    """A BGP speaker: a host (same name) that also peers with its switch's VM."""

    name: str
    switch: str
    asn: int
    announce: Announce
    bfd: bool = False


class Lab(msgspec.Struct, frozen=True, kw_only=True):
    """A lab file that passed validation; plan() can derive from it without failing."""

    name: str
    source: str
    routing: Routing
    ospf: OspfOptions
    controllers: tuple[Controller, ...]
    switches: tuple[Switch, ...]
    bgp: BgpOptions = BgpOptions()
    links: tuple[Link, ...]
    control: ControlPlane
    hosts: tuple[Host, ...]  # speakers are hosts too, after the declared ones
    link_pool: str
    speakers: tuple[Speaker, ...] = ()
    #: Dual stack: IPv6 addresses derived for every link and host (see module docstring).
    ipv6: bool = False
    #: Compute nodes and tenants (lab/cloud.py), or None for a routeflow-only lab.
    cloud: CloudLab | None = None
    control_plane: ControlPlaneMode = "classic"

    def switch(self, name: str) -> Switch:
        for sw in self.switches:
            if sw.name == name:
                return sw
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML would otherwise silently drop."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        except TypeError:
            pass  # unhashable key: construct_mapping reports it
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# Booleans as YAML 1.2 has them: true and false only. Under YAML 1.1 (PyYAML's default)
# yes/no/on/off are booleans too, so Norway's node NO, Ontario's ON or a switch called Off
# would silently become False or True. Real topologies have such names; here they stay
# strings, and a yes/no where a boolean belongs gets a hint (see _msgspec_problem).
_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_lab(path: str | Path) -> Lab:
    """Read and validate a lab file; errors name the file as given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabError(str(path), [f"cannot read lab file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise LabError(str(path), [f"not UTF-8 text: {exc}"]) from exc
    return parse_lab(text, str(path))


def parse_lab(text: str, source: str = "<string>") -> Lab:
    """Decode and validate lab YAML; raises LabError listing every problem found."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is not None:
            loc = f"line {mark.line + 1}, column {mark.column + 1}"
            raise LabError(source, [f"{loc}: invalid YAML: {problem}"]) from None
        raise LabError(source, [f"invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise LabError(source, [f"invalid YAML: {exc}"]) from None
    if raw is None:
        raise LabError(source, ["empty lab file"])
    if not isinstance(raw, dict):
        raise LabError(source, [f"expected a mapping at the top level, got {_kind(raw)}"])
    try:
        spec = msgspec.convert(raw, _LabSpec)
    except msgspec.ValidationError as exc:
        raise LabError(source, [_msgspec_problem(str(exc))]) from None
    return _Validator(spec, source).run()


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?) - at `(?P<path>[^`]*)`$", re.DOTALL)


def _msgspec_problem(message: str) -> str:
    """Rewrite "Expected `int`, got `str` - at `$.x`" as "$.x: Expected int, got str"."""
    m = _MSGSPEC_AT.match(message)
    path, msg = (m["path"], m["msg"]) if m else ("$", message)
    msg = re.sub(r"field `([^`]*)`", r"field '\1'", msg).replace("`", "")
    if msg == "Expected bool, got str":
        msg += " (write true or false; yes/no/on/off are plain words here, as in YAML 1.2)"
    elif re.fullmatch(r"Expected str, got (int|float|null|bool)", msg):
        msg += " (quote it to use it as a name)"
    return f"{path}: {msg}"


def _usable(net: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """First and last address that may sit on an interface (prefix <= 30 assumed)."""
    return net.network_address + 1, net.broadcast_address - 1


class _Validator:
    """Walks the decoded spec once, resolving defaults and collecting every problem."""

    def __init__(self, spec: _LabSpec, source: str) -> None:
        self.spec = spec
        self.source = source
        self.errors: list[str] = []
        self.names: dict[str, str] = {}  # node name -> path of its definition
        self.subnets: list[tuple[ipaddress.IPv4Network, str]] = []  # (subnet, owner path)

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def run(self) -> Lab:
        spec = self.spec
        if not LAB_NAME_RE.match(spec.name):
            self.err("name", f"{spec.name!r} must be 1-24 characters of [a-z0-9_-]")
        self.check_ospf(spec.ospf)
        self.check_control(spec.control)
        controllers = self.controllers()
        switches = self.switches(controllers)
        by_name = {sw.name: sw for sw in switches}
        pending = self.links(by_name)
        hosts = self.hosts(by_name)
        speakers = self.speakers(by_name, hosts)
        links = self.allocate(pending)
        self.check_connected(switches, pending)
        if spec.ipv6:
            self.check_ipv6(switches)
        cloud = validate_cloud(spec.cloud, self.err) if spec.cloud is not None else None
        if cloud is not None and cloud.external is not None:
            names = {h.name for h in hosts}
            fields = ("host", "outside") if cloud.external.mode == "connected" else ("outside",)
            for field in fields:
                if getattr(cloud.external, field) not in names:
                    self.err(f"cloud.external.{field}", "is not a host of the lab")
            by_speaker = {sp.name: sp for sp in speakers}
            for node, speaker in cloud.external.gateways:
                if speaker not in by_speaker:
                    self.err(f"cloud.external.gateways.{node}", f"{speaker!r} is not a speaker")
        if self.errors:
            raise LabError(self.source, self.errors)
        return Lab(
            name=spec.name,
            source=self.source,
            routing=spec.routing,
            ospf=spec.ospf,
            bgp=spec.bgp,
            controllers=tuple(controllers),
            control=spec.control,
            switches=tuple(switches),
            links=tuple(links),
            hosts=tuple(hosts),
            link_pool=spec.link_pool,
            speakers=tuple(speakers),
            ipv6=spec.ipv6,
            cloud=cloud,
            control_plane=spec.control_plane,
        )

    # -- pieces -------------------------------------------------------------------------------

    def check_ospf(self, ospf: OspfOptions) -> None:
        if not 1 <= ospf.hello <= 65535:
            self.err("ospf.hello", f"{ospf.hello} is out of range 1-65535")
        if not 1 <= ospf.dead <= 65535:
            self.err("ospf.dead", f"{ospf.dead} is out of range 1-65535")
        elif ospf.dead <= ospf.hello:
            self.err("ospf.dead", f"{ospf.dead} must be greater than ospf.hello ({ospf.hello})")
        if not 10 <= ospf.bfd_interval <= 60000:
            self.err("ospf.bfd_interval", f"{ospf.bfd_interval} ms is out of range 10-60000")
        if not 2 <= ospf.bfd_multiplier <= 255:
            self.err("ospf.bfd_multiplier", f"{ospf.bfd_multiplier} is out of range 2-255")

    def check_ipv6(self, switches: list[Switch]) -> None:
        """IPv6 routes come from OSPFv3, MP-BGP or static routes, whichever the switch
        routes IPv4 with; the subnet IDs must not run into each other."""
        if len(self.spec.hosts) + len(self.spec.speakers) >= IPV6_LINK_BASE:
            self.err("hosts", f"ipv6: true numbers at most {IPV6_LINK_BASE - 1} host subnets")
        if len(self.spec.links) > 0x10000 - IPV6_LINK_BASE:
            self.err("links", f"ipv6: true numbers at most {0x10000 - IPV6_LINK_BASE} links")

    def check_control(self, control: ControlPlane) -> None:
        if not 1 <= control.servers <= 3:
            self.err("control.servers", f"{control.servers} is out of range 1-3")
        elif control.servers > 1 and control.store != "etcd":
            self.err(
                "control.servers",
                f"{control.servers} rfservers need a shared store: set control.store: etcd",
            )
        if control.etcd_members not in (1, 3, 5):
            self.err(
                "control.etcd_members",
                f"{control.etcd_members}: use 1, 3 or 5 (an odd cluster keeps a majority)",
            )
        if not 1 <= control.lease_ttl <= 60:
            self.err("control.lease_ttl", f"{control.lease_ttl} s is out of range 1-60")

    def controllers(self) -> list[Controller]:
        specs = self.spec.controllers
        if specs is None:
            return [Controller(ct_id=1, name="ct1")]
        if not specs:
            self.err("controllers", "at least one controller is required (or omit the key)")
            return [Controller(ct_id=1, name="ct1")]
        out: list[Controller] = []
        seen: dict[int, int] = {}
        for i, c in enumerate(specs):
            if not 0 <= c.ct_id <= MAX_UINT64:
                self.err(f"controllers[{i}].ct_id", f"{c.ct_id} is out of range")
            if c.ct_id in seen:
                self.err(
                    f"controllers[{i}].ct_id",
                    f"duplicate ct_id {c.ct_id} (also controllers[{seen[c.ct_id]}])",
                )
            seen.setdefault(c.ct_id, i)
            replicas = c.replicas
            if not 1 <= replicas <= MAX_REPLICAS:
                self.err(
                    f"controllers[{i}].replicas", f"{replicas} is out of range 1-{MAX_REPLICAS}"
                )
                replicas = 1
            out.append(Controller(ct_id=c.ct_id, name=c.name or f"ct{c.ct_id}", replicas=replicas))
        return out

    def claim_name(self, name: str, path: str) -> None:
        if len(name) > NODE_NAME_MAX or not NODE_NAME_RE.match(name):
            self.err(
                f"{path}.name",
                f"{name!r} must start with a letter and be at most {NODE_NAME_MAX} "
                "characters of [A-Za-z0-9_-]",
            )
        if name in self.names:
            self.err(f"{path}.name", f"duplicate name {name!r} (also {self.names[name]})")
        else:
            self.names[name] = path

    def switches(self, controllers: list[Controller]) -> list[Switch]:
        specs = self.spec.switches
        if not specs and self.spec.cloud is None:
            self.err("switches", "at least one switch is required")
        ct_ids = {c.ct_id for c in controllers}
        out: list[Switch] = []
        dpids: dict[int, int] = {}
        vm_ids: dict[int, int] = {}
        mac_ids: dict[int, int] = {}
        for i, s in enumerate(specs):
            path = f"switches[{i}]"
            self.claim_name(s.name, path)
            if not 0 <= s.dpid <= MAX_UINT64:
                self.err(f"{path}.dpid", f"{s.dpid} is out of range (64-bit unsigned)")
            if s.dpid in dpids:
                self.err(
                    f"{path}.dpid", f"duplicate dpid {s.dpid} (also switches[{dpids[s.dpid]}])"
                )
            dpids.setdefault(s.dpid, i)
            ct_id = controllers[0].ct_id if s.ct_id is None else s.ct_id
            if ct_id not in ct_ids:
                self.err(f"{path}.ct_id", f"unknown controller ct_id {ct_id}")
            vm_id = s.dpid if s.vm_id is None else s.vm_id
            # A defaulted vm_id clashes only if the dpid does, and that is reported above.
            hint = "" if s.vm_id is not None else ", from the dpid"
            if s.vm_id is not None and not 0 <= vm_id <= MAX_UINT64:
                self.err(f"{path}.vm_id", f"{vm_id} is out of range (64-bit unsigned)")
            if vm_id in vm_ids:
                if s.vm_id is not None or vm_ids[vm_id] != dpids[s.dpid]:
                    self.err(
                        f"{path}.vm_id",
                        f"duplicate vm_id {vm_id}{hint} (also switches[{vm_ids[vm_id]}])",
                    )
            elif vm_id & 0xFFFFFF in mac_ids:
                self.err(
                    f"{path}.vm_id",
                    f"vm_id {vm_id:#x}{hint} has the same low 24 bits as switches"
                    f"[{mac_ids[vm_id & 0xFFFFFF]}] (they make up the VM's MAC addresses)",
                )
            vm_ids.setdefault(vm_id, i)
            mac_ids.setdefault(vm_id & 0xFFFFFF, i)
            router_id = self.router_id(s, i)
            asn = 65000 + i + 1 if s.asn is None else s.asn
            if not 1 <= asn <= MAX_ASN:
                self.err(f"{path}.asn", f"{asn} is out of range 1-{MAX_ASN}")
            out.append(
                Switch(
                    name=s.name,
                    index=i,
                    dpid=s.dpid,
                    routing=s.routing or self.spec.routing,
                    ct_id=ct_id,
                    vm_id=vm_id,
                    router_id=router_id,
                    asn=asn,
                )
            )
        self.unique(out, "router_id", lambda sw: sw.router_id)
        self.unique([sw for sw in out if sw.routing == "bgp"], "asn", lambda sw: sw.asn)
        return out

    def router_id(self, s: _SwitchSpec, i: int) -> str:
        if s.router_id is None:
            return str(ipaddress.IPv4Address(0x0AFF0000 + ((i + 1) & 0xFFFF)))
        try:
            rid = ipaddress.IPv4Address(s.router_id)
        except ValueError:
            self.err(f"switches[{i}].router_id", f"{s.router_id!r} is not an IPv4 address")
            return s.router_id
        if rid.is_unspecified:
            self.err(f"switches[{i}].router_id", "0.0.0.0 is not a valid router id")
        return str(rid)

    def unique(self, switches: list[Switch], field: str, key: Any) -> None:
        seen: dict[Any, int] = {}
        for sw in switches:
            value = key(sw)
            if value in seen:
                self.err(
                    f"switches[{sw.index}].{field}",
                    f"duplicate {field} {value} (also switches[{seen[value]}])",
                )
            seen.setdefault(value, sw.index)

    def claim_subnet(self, net: ipaddress.IPv4Network, path: str, owner: str, what: str) -> bool:
        """Record net as owned by owner unless it overlaps a subnet claimed earlier."""
        for other, prev in self.subnets:
            if net.overlaps(other):
                self.err(path, f"{what} overlaps {prev} subnet {other}")
                return False
        self.subnets.append((net, owner))
        return True

    def links(self, by_name: dict[str, Switch]) -> list[_PendingLink]:
        out: list[_PendingLink] = []
        for i, raw in enumerate(self.spec.links):
            path = f"links[{i}]"
            spec = raw if isinstance(raw, _LinkSpec) else _LinkSpec(ends=raw)
            epath = path if isinstance(raw, list) else f"{path}.ends"
            if len(spec.ends) != 2:
                self.err(epath, f"a link has exactly two ends, got {len(spec.ends)}")
                continue
            a, b = spec.ends
            ok = True
            for end in (a, b):
                if end not in by_name:
                    self.err(path, f"unknown switch {end!r}")
                    ok = False
            if a == b:
                self.err(path, f"self-link on switch {a!r}")
                ok = False
            subnet, addresses = self.link_addresses(spec, path)
            if not 1 <= spec.cost <= MAX_OSPF_COST:
                self.err(f"{path}.cost", f"{spec.cost} is out of range 1-{MAX_OSPF_COST}")
                ok = False
            if ok:
                out.append(_PendingLink(i, a, b, subnet, addresses, spec.cost))
        return out

    def link_addresses(
        self, spec: _LinkSpec, path: str
    ) -> tuple[ipaddress.IPv4Network | None, tuple[str, str] | None]:
        if spec.subnet is None:
            if spec.addresses is not None:
                self.err(f"{path}.addresses", "needs an explicit subnet")
            return None, None
        try:
            net = ipaddress.IPv4Network(spec.subnet, strict=True)
        except ValueError as exc:
            self.err(f"{path}.subnet", f"{spec.subnet!r} is not a valid IPv4 subnet ({exc})")
            return None, None
        if "/" not in spec.subnet:
            self.err(f"{path}.subnet", f"{spec.subnet!r} needs a prefix length, e.g. /30")
            return None, None
        if net.prefixlen > LINK_PREFIX:
            self.err(
                f"{path}.subnet",
                f"{net} is too small for a link (needs /{LINK_PREFIX} or larger)",
            )
            return None, None
        if not self.claim_subnet(net, f"{path}.subnet", path, str(net)):
            return None, None
        first, last = _usable(net)
        if spec.addresses is None:
            return net, (str(first), str(first + 1))
        if len(spec.addresses) != 2:
            self.err(f"{path}.addresses", f"needs two addresses, got {len(spec.addresses)}")
            return net, None
        ips: list[str] = []
        for j, text in enumerate(spec.addresses):
            try:
                addr = ipaddress.IPv4Address(text)
            except ValueError:
                self.err(f"{path}.addresses[{j}]", f"{text!r} is not an IPv4 address")
                continue
            if not first <= addr <= last:
                self.err(f"{path}.addresses[{j}]", f"{addr} is not a usable address of {net}")
                continue
            ips.append(str(addr))
        if len(ips) != 2:
            return net, None
        if ips[0] == ips[1]:
            self.err(f"{path}.addresses", f"both ends have address {ips[0]}")
            return net, None
        return net, (ips[0], ips[1])

    def hosts(self, by_name: dict[str, Switch]) -> list[Host]:
        out: list[Host] = []
        for i, h in enumerate(self.spec.hosts):
            path = f"hosts[{i}]"
            self.claim_name(h.name, path)
            ok = True
            if h.switch not in by_name:
                hint = " (that is a host)" if h.switch in self.names else ""
                self.err(f"{path}.switch", f"unknown switch {h.switch!r}{hint}")
                ok = False
            iface = self.host_ip(h, path)
            if iface is None:
                continue
            gateway = self.host_gateway(h, iface, path)
            if gateway is None:
                continue
            if self.claim_subnet(iface.network, f"{path}.ip", path, h.ip) and ok:
                out.append(Host(name=h.name, switch=h.switch, ip=str(iface), gateway=gateway))
        return out

    def speakers(self, by_name: dict[str, Switch], hosts: list[Host]) -> list[Speaker]:
        """Each speaker is validated as a host (appended to ``hosts``) plus its BGP side."""
        out: list[Speaker] = []
        for i, sp in enumerate(self.spec.speakers):
            path = f"speakers[{i}]"
            before = len(self.errors)
            as_host = self._one_host(
                _HostSpec(name=sp.name, switch=sp.switch, ip=sp.ip, gateway=sp.gateway), path
            )
            sw = by_name.get(sp.switch)
            if sw is not None and sw.routing != "bgp":
                self.err(
                    f"{path}.switch",
                    f"switch {sp.switch!r} routes with {sw.routing}; a speaker needs routing: bgp",
                )
            if not 1 <= sp.asn <= MAX_ASN:
                self.err(f"{path}.asn", f"{sp.asn} is out of range 1-{MAX_ASN}")
            elif sw is not None and sp.asn == sw.asn:
                self.err(f"{path}.asn", f"{sp.asn} is the VM's own AS: the session must be eBGP")
            announce = self.announce(sp.announce, f"{path}.announce")
            if as_host is not None and announce is not None and len(self.errors) == before:
                hosts.append(as_host)
                out.append(
                    Speaker(
                        name=sp.name, switch=sp.switch, asn=sp.asn, announce=announce, bfd=sp.bfd
                    )
                )
        return out

    def announce(self, spec: _AnnounceSpec | None, path: str) -> Announce | None:
        if spec is None:
            return Announce(count=0, start="100.64.0.0", prefixlen=24)
        if spec.file is not None:
            return self.announce_file(spec, path)
        ok = True
        if not 8 <= spec.prefixlen <= 32:
            self.err(f"{path}.prefixlen", f"{spec.prefixlen} is out of range 8-32")
            return None
        if not 0 <= spec.count <= MAX_ANNOUNCE:
            self.err(f"{path}.count", f"{spec.count} is out of range 0-{MAX_ANNOUNCE}")
            ok = False
        try:
            start = ipaddress.IPv4Network(f"{spec.start}/{spec.prefixlen}", strict=True)
        except ValueError as exc:
            self.err(f"{path}.start", f"{spec.start!r} does not start a /{spec.prefixlen} ({exc})")
            return None
        if not ok:
            return None
        step = 1 << (32 - spec.prefixlen)
        first = int(start.network_address)
        end = first + spec.count * step  # exclusive
        if end > int(ipaddress.IPv4Address("224.0.0.0")):
            self.err(f"{path}.count", f"{spec.count} prefixes from {start} reach past 224.0.0.0")
            return None
        for net, owner in self.subnets:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            if spec.count and lo < end and first <= hi:
                self.err(path, f"announced prefixes overlap {owner} subnet {net}")
                return None
        return Announce(
            count=spec.count, start=str(start.network_address), prefixlen=spec.prefixlen
        )

    def announce_file(self, spec: _AnnounceSpec, path: str) -> Announce | None:
        """A table file to announce: readable, IPv4 only, clear of the lab's subnets."""
        from routeflow.bench.table import TableError, read_table_file

        if spec.count:
            self.err(path, "give count (with start, prefixlen) or file, not both")
            return None
        assert spec.file is not None
        base = os.path.dirname(self.source) if os.path.exists(self.source) else "."
        file = os.path.abspath(os.path.join(base, spec.file))
        try:
            table = read_table_file(file)
        except TableError as exc:
            self.err(f"{path}.file", str(exc))
            return None
        if len(table) > MAX_ANNOUNCE:
            self.err(f"{path}.file", f"{len(table)} prefixes: more than {MAX_ANNOUNCE}")
            return None
        lab6 = ipv6_prefix(self.spec.name) if self.spec.ipv6 else None
        for e in table:
            if ":" in e.prefix:
                if lab6 is None:
                    self.err(
                        f"{path}.file",
                        f"{e.prefix}: IPv6 prefixes need ipv6: true "
                        "(MP-BGP carries them over the speaker's session)",
                    )
                    return None
                if ipaddress.IPv6Network(e.prefix).overlaps(lab6):
                    self.err(f"{path}.file", f"{e.prefix} overlaps the lab's IPv6 prefix {lab6}")
                    return None
                continue
            for net, owner in self.subnets:
                lo, hi = int(net.network_address), int(net.broadcast_address)
                if e.net <= hi and lo <= e.net | ((1 << (32 - e.plen)) - 1):
                    self.err(f"{path}.file", f"{e.prefix} overlaps {owner} subnet {net}")
                    return None
        return Announce(count=len(table), start="", prefixlen=0, file=file)

    def _one_host(self, h: _HostSpec, path: str) -> Host | None:
        """Validate one host-like entry (as hosts() does); None if it has problems."""
        self.claim_name(h.name, path)
        ok = True
        if h.switch not in self.names or not self.names[h.switch].startswith("switches"):
            hint = " (that is a host)" if h.switch in self.names else ""
            self.err(f"{path}.switch", f"unknown switch {h.switch!r}{hint}")
            ok = False
        iface = self.host_ip(h, path)
        if iface is None:
            return None
        gateway = self.host_gateway(h, iface, path)
        if gateway is None:
            return None
        if self.claim_subnet(iface.network, f"{path}.ip", path, h.ip) and ok:
            return Host(name=h.name, switch=h.switch, ip=str(iface), gateway=gateway)
        return None

    def host_ip(self, h: _HostSpec, path: str) -> ipaddress.IPv4Interface | None:
        try:
            iface = ipaddress.IPv4Interface(h.ip)
        except ValueError:
            self.err(f"{path}.ip", f"{h.ip!r} is not an IPv4 address with prefix (a.b.c.d/len)")
            return None
        if "/" not in h.ip:
            self.err(f"{path}.ip", f"{h.ip!r} needs a prefix length, e.g. {h.ip}/24")
            return None
        if iface.network.prefixlen > LINK_PREFIX:
            self.err(
                f"{path}.ip",
                f"{h.ip} leaves no room for a gateway (needs /{LINK_PREFIX} or larger)",
            )
            return None
        first, last = _usable(iface.network)
        if not first <= iface.ip <= last:
            self.err(f"{path}.ip", f"{h.ip} is not a usable address of {iface.network}")
            return None
        return iface

    def host_gateway(self, h: _HostSpec, iface: ipaddress.IPv4Interface, path: str) -> str | None:
        first, last = _usable(iface.network)
        if h.gateway is None:
            if iface.ip == first:
                self.err(
                    f"{path}.ip",
                    f"{h.ip} is the subnet's default gateway {first}; "
                    "pick another address or set gateway",
                )
                return None
            return str(first)
        try:
            gw = ipaddress.IPv4Address(h.gateway)
        except ValueError:
            self.err(f"{path}.gateway", f"{h.gateway!r} is not an IPv4 address")
            return None
        if not first <= gw <= last:
            self.err(f"{path}.gateway", f"{gw} is not a usable address of {iface.network}")
            return None
        if gw == iface.ip:
            self.err(f"{path}.gateway", f"{gw} is the host's own address")
            return None
        return str(gw)

    def allocate(self, pending: list[_PendingLink]) -> list[Link]:
        """Give every link without a subnet the next free /30 of the pool."""
        try:
            pool = ipaddress.IPv4Network(self.spec.link_pool, strict=True)
        except ValueError as exc:
            self.err("link_pool", f"{self.spec.link_pool!r} is not a valid IPv4 subnet ({exc})")
            return []
        if pool.prefixlen > LINK_PREFIX:
            self.err("link_pool", f"{pool} is smaller than one /{LINK_PREFIX}")
            return []
        taken = [net for net, _ in self.subnets]
        free: Iterator[ipaddress.IPv4Network] = (
            net
            for net in pool.subnets(new_prefix=LINK_PREFIX)
            if not any(net.overlaps(t) for t in taken)
        )
        out: list[Link] = []
        exhausted = False
        for p in pending:
            subnet, addresses = p.subnet, p.addresses
            if subnet is None:
                if exhausted:
                    continue
                subnet = next(free, None)
                if subnet is None:
                    exhausted = True
                    self.err(
                        "link_pool",
                        f"{pool} is exhausted: no free /{LINK_PREFIX} left for links[{p.index}]",
                    )
                    continue
                first = subnet.network_address + 1
                addresses = (str(first), str(first + 1))
            if addresses is None:
                continue  # an error was already reported
            out.append(
                Link(
                    index=p.index,
                    a=p.a,
                    b=p.b,
                    subnet=str(subnet),
                    addresses=addresses,
                    cost=p.cost,
                )
            )
        return out

    def check_connected(self, switches: list[Switch], pending: list[_PendingLink]) -> None:
        if len(switches) < 2 or self.errors:
            return
        adj: dict[str, set[str]] = {sw.name: set() for sw in switches}
        for p in pending:
            adj[p.a].add(p.b)
            adj[p.b].add(p.a)
        start = switches[0].name
        seen = {start}
        queue = deque([start])
        while queue:
            for nxt in adj[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        missing = [sw.name for sw in switches if sw.name not in seen]
        if missing:
            self.err("links", f"switches unreachable from {start!r}: {', '.join(missing)}")


class _PendingLink:
    """A link whose ends checked out; its subnet may still come from the pool."""

    __slots__ = ("a", "addresses", "b", "cost", "index", "subnet")

    def __init__(
        self,
        index: int,
        a: str,
        b: str,
        subnet: ipaddress.IPv4Network | None,
        addresses: tuple[str, str] | None,
        cost: int = 1,
    ) -> None:
        self.index, self.a, self.b = index, a, b
        self.subnet, self.addresses, self.cost = subnet, addresses, cost


# --------------------------------------------------------------------------------------------
# The plan: what the lab runner builds and what the controller is told
# --------------------------------------------------------------------------------------------


def vm_mac(vm_id: int, port: int) -> str:
    """Locally administered MAC of VM interface eth<port>: 02:<vm_id low 24 bits>:<port>."""
    return _mac(0x02, vm_id, port)


def host_mac(vm_id: int, port: int) -> str:
    """MAC of the host on switch port <port>; a different prefix keeps it apart from the VM's."""
    return _mac(0x06, vm_id, port)


def _mac(prefix: int, vm_id: int, port: int) -> str:
    octets = (
        prefix,
        (vm_id >> 16) & 0xFF,
        (vm_id >> 8) & 0xFF,
        vm_id & 0xFF,
        (port >> 8) & 0xFF,
        port & 0xFF,
    )
    return ":".join(f"{o:02x}" for o in octets)


class Interface(msgspec.Struct, frozen=True, kw_only=True):
    """One VM interface; eth<N> mirrors switch port N, so vm_port == dp_port == port."""

    port: int
    ifname: str  # "eth<port>"
    address: str  # "172.31.1.1/24"
    mac: str
    kind: Literal["host", "link"]
    peer: str  # host name, or the switch at the other end of the link
    peer_port: int | None = None  # switch port at the other end (links only)
    link: int | None = None  # index into LabPlan.links / the lab file's links (links only)
    address6: str | None = None  # "fd..:1::1/64" in ipv6 labs

    @property
    def ip(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def subnet(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).network)

    @property
    def ip6(self) -> str | None:
        return None if self.address6 is None else self.address6.split("/", 1)[0]

    @property
    def subnet6(self) -> str | None:
        return (
            None if self.address6 is None else str(ipaddress.IPv6Interface(self.address6).network)
        )


class BgpNeighbor(msgspec.Struct, frozen=True, kw_only=True):
    """An eBGP session over one link, addressed to the peer's end of it."""

    address: str
    remote_as: int
    switch: str  # the peer switch (or the speaker's name when peer == "speaker")
    port: int  # our port towards the peer
    peer: Literal["vm", "speaker"] = "vm"
    bfd: bool = False  # BFD on the session (a speaker with bfd: true)
    #: Unnumbered (``bgp: {unnumbered: true}``): the session runs over this VM
    #: interface's link-local address, and ``address`` is only the peer's IPv4 one.
    interface: str | None = None

    @property
    def key(self) -> str:
        """How FRR's configuration names the neighbour."""
        return self.interface or self.address


class SpeakerPlan(msgspec.Struct, frozen=True, kw_only=True):
    """An external BGP speaker: the host ``name`` (see LabPlan.hosts) plus its BGP side."""

    name: str
    switch: str
    dp_port: int
    ip: str  # "192.0.2.2/30"
    gateway: str  # the VM's address on that port, its BGP neighbor
    asn: int
    vm_asn: int
    announce: Announce
    #: Dual-stack labs: the speaker's IPv6 address ("fd..:2::100/64"), the next hop
    #: of the IPv6 prefixes it announces over its (IPv4) session with MP-BGP.
    ip6: str | None = None

    @property
    def address(self) -> str:
        return self.ip.split("/", 1)[0]

    @property
    def address6(self) -> str | None:
        return None if self.ip6 is None else self.ip6.split("/", 1)[0]


class StaticRoute(msgspec.Struct, frozen=True, kw_only=True):
    """A route a static-routed VM needs: first hop of a shortest path towards prefix."""

    prefix: str
    next_hop: str
    port: int  # our port towards next_hop
    hops: int  # links to cross until a switch attached to prefix is reached


class VmPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The VM mirroring one switch, with everything needed to build and configure it."""

    switch: str
    name: str  # "vm-<switch>"
    vm_id: int
    ct_id: int
    dp_id: int
    routing: Routing
    router_id: str
    asn: int
    interfaces: tuple[Interface, ...]  # ordered by port
    #: Prefix of this switch's Linux interface and bridge names (see switch_ifprefixes).
    ifprefix: str = ""
    bgp_neighbors: tuple[BgpNeighbor, ...] = ()  # only when routing == "bgp"
    static_routes: tuple[StaticRoute, ...] = ()  # only when routing == "static"

    def interface(self, port: int) -> Interface:
        for iface in self.interfaces:
            if iface.port == port:
                return iface
        raise KeyError(port)

    def port_ifname(self, port: int) -> str:
        """Linux name of the switch side of dp_port ``port`` (in the switches' namespace)."""
        return f"{self.ifprefix or self.switch}-eth{port}"

    @property
    def bridge(self) -> str:
        """The OVS bridge that stands for this switch."""
        return f"br-{self.ifprefix or self.switch}"

    @property
    def link_ports(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.kind == "link")

    def ipv4_interfaces(self, unnumbered: bool) -> tuple[Interface, ...]:
        """The interfaces that carry their IPv4 address: all, or with BGP unnumbered
        (LabPlan.bgp.unnumbered) the host ports only, links having none."""
        return tuple(i for i in self.interfaces if not (unnumbered and i.kind == "link"))


class HostPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A host and where it plugs in."""

    name: str
    switch: str
    dp_port: int
    ip: str  # "172.31.1.100/24"
    gateway: str  # "172.31.1.1"
    mac: str
    ip6: str | None = None  # "fd..:1::100/64" in ipv6 labs
    gateway6: str | None = None  # "fd..:1::1"

    @property
    def address(self) -> str:
        return self.ip.split("/", 1)[0]

    @property
    def subnet(self) -> str:
        return str(ipaddress.IPv4Interface(self.ip).network)

    @property
    def address6(self) -> str | None:
        return None if self.ip6 is None else self.ip6.split("/", 1)[0]

    @property
    def subnet6(self) -> str | None:
        return None if self.ip6 is None else str(ipaddress.IPv6Interface(self.ip6).network)

    def address_of(self, family: int) -> str | None:
        """The host's address in IP ``family`` (4 or 6); None where it has none (no IPv6)."""
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {family!r}")
        return self.address if family == 4 else self.address6

    def gateway_of(self, family: int) -> str | None:
        """The host's gateway in IP ``family`` (4 or 6); None where it has none (no IPv6)."""
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {family!r}")
        return self.gateway if family == 4 else self.gateway6


class LinkEnd(msgspec.Struct, frozen=True, kw_only=True):
    """One end of a link: a switch port and the VM address behind it."""

    switch: str
    port: int
    address: str  # "10.0.0.1/30"
    address6: str | None = None  # "fd..:8000::1/64" in ipv6 labs


class LinkPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A link with both ends placed."""

    index: int
    subnet: str
    a: LinkEnd
    b: LinkEnd
    subnet6: str | None = None  # "fd..:8000::/64" in ipv6 labs
    cost: int = 1  # OSPF cost of both ends


class LabPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything derived from a lab; frozen so that all consumers see the same numbers."""

    name: str
    source: str
    ospf: OspfOptions
    controllers: tuple[Controller, ...]
    vms: tuple[VmPlan, ...]  # in lab-file switch order
    bgp: BgpOptions = BgpOptions()
    hosts: tuple[HostPlan, ...]  # in lab-file order (speakers last)
    links: tuple[LinkPlan, ...]  # in lab-file order
    speakers: tuple[SpeakerPlan, ...] = ()
    control: ControlPlane = ControlPlane()
    #: The lab's IPv6 /48 (see ipv6_prefix) when it is dual-stack, else None.
    ipv6_prefix: str | None = None
    control_plane: ControlPlaneMode = "classic"

    @property
    def ipv6(self) -> bool:
        return self.ipv6_prefix is not None

    def vm(self, switch: str) -> VmPlan:
        for vm in self.vms:
            if vm.switch == switch:
                return vm
        raise KeyError(switch)

    def host(self, name: str) -> HostPlan:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def config_entries(self) -> list[ConfigEntry]:
        """The VM-port to switch-port mapping the RouteFlow server needs, one per port."""
        return [
            ConfigEntry(
                vm_id=vm.vm_id,
                vm_port=iface.port,
                ct_id=vm.ct_id,
                dp_id=vm.dp_id,
                dp_port=iface.port,
            )
            for vm in self.vms
            for iface in vm.interfaces
        ]

    def neighbors(self, switch: str) -> list[tuple[int, str, int]]:
        """(port, peer switch, peer port) for every link port of switch, by port."""
        return [
            (i.port, i.peer, i.peer_port)
            for i in self.vm(switch).link_ports
            if i.peer_port is not None
        ]

    def all_host_pairs(self) -> list[tuple[HostPlan, HostPlan]]:
        """Every unordered pair of distinct hosts, in lab order: what a full ping test covers."""
        hosts = self.hosts
        return [(a, b) for i, a in enumerate(hosts) for b in hosts[i + 1 :]]


def ipv6_prefix(lab_name: str) -> ipaddress.IPv6Network:
    """The lab's unique local /48: fd + 40 bits of SHA-256 of its name (RFC 4193 section 3.2)."""
    global_id = hashlib.sha256(f"routeflow-lab:{lab_name}".encode()).digest()[:5]
    return ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 48))


def _subnet6(prefix: ipaddress.IPv6Network, subnet_id: int) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((int(prefix.network_address) | subnet_id << 64, 64))


def _address6(subnet: ipaddress.IPv6Network | None, interface_id: int) -> str | None:
    if subnet is None:
        return None
    return f"{subnet.network_address + interface_id}/{subnet.prefixlen}"


def plan(lab: Lab) -> LabPlan:
    """Derive ports, addresses, MACs and routes. Pure and total for any validated Lab."""
    ifaces: dict[str, list[Interface]] = {sw.name: [] for sw in lab.switches}
    vm_ids = {sw.name: sw.vm_id for sw in lab.switches}
    prefix6 = ipv6_prefix(lab.name) if lab.ipv6 else None

    def subnet6(subnet_id: int) -> ipaddress.IPv6Network | None:
        return None if prefix6 is None else _subnet6(prefix6, subnet_id)

    def next_port(switch: str) -> int:
        return len(ifaces[switch]) + 1

    hosts: list[HostPlan] = []
    for hi, h in enumerate(lab.hosts):
        port = next_port(h.switch)
        prefixlen = h.ip.split("/", 1)[1]
        net6 = subnet6(hi + 1)
        gateway6 = _address6(net6, IPV6_ROUTER)
        ifaces[h.switch].append(
            Interface(
                port=port,
                ifname=f"eth{port}",
                address=f"{h.gateway}/{prefixlen}",
                mac=vm_mac(vm_ids[h.switch], port),
                kind="host",
                peer=h.name,
                address6=gateway6,
            )
        )
        hosts.append(
            HostPlan(
                name=h.name,
                switch=h.switch,
                dp_port=port,
                ip=h.ip,
                gateway=h.gateway,
                mac=host_mac(vm_ids[h.switch], port),
                ip6=_address6(net6, IPV6_HOST),
                gateway6=None if gateway6 is None else gateway6.split("/", 1)[0],
            )
        )

    links: list[LinkPlan] = []
    for ln in lab.links:
        prefixlen = ln.subnet.split("/", 1)[1]
        pa = next_port(ln.a)
        pb = next_port(ln.b)  # a != b: validation rejects self-links
        net6 = subnet6(IPV6_LINK_BASE + ln.index)
        ends = (
            LinkEnd(
                switch=ln.a,
                port=pa,
                address=f"{ln.addresses[0]}/{prefixlen}",
                address6=_address6(net6, IPV6_ROUTER),
            ),
            LinkEnd(
                switch=ln.b,
                port=pb,
                address=f"{ln.addresses[1]}/{prefixlen}",
                address6=_address6(net6, IPV6_ROUTER + 1),
            ),
        )
        for me, other in (ends, ends[::-1]):
            ifaces[me.switch].append(
                Interface(
                    port=me.port,
                    ifname=f"eth{me.port}",
                    address=me.address,
                    mac=vm_mac(vm_ids[me.switch], me.port),
                    kind="link",
                    peer=other.switch,
                    peer_port=other.port,
                    link=ln.index,
                    address6=me.address6,
                )
            )
        links.append(
            LinkPlan(
                index=ln.index,
                subnet=ln.subnet,
                a=ends[0],
                b=ends[1],
                subnet6=None if net6 is None else str(net6),
                cost=ln.cost,
            )
        )

    routing = {sw.name: sw.routing for sw in lab.switches}
    asns = {sw.name: sw.asn for sw in lab.switches}
    routes = _static_routes(lab, ifaces)
    ifprefixes = switch_ifprefixes([(sw.name, len(ifaces[sw.name])) for sw in lab.switches])
    vms: list[VmPlan] = []
    for sw in lab.switches:
        mine = tuple(ifaces[sw.name])
        neighbors: tuple[BgpNeighbor, ...] = ()
        if sw.routing == "bgp":
            neighbors = tuple(
                BgpNeighbor(
                    address=_peer_address(ifaces, i),
                    remote_as=asns[i.peer],
                    switch=i.peer,
                    port=i.port,
                    interface=i.ifname if lab.bgp.unnumbered else None,
                )
                for i in mine
                if i.kind == "link" and routing[i.peer] == "bgp"
            )
            neighbors += tuple(
                BgpNeighbor(
                    address=h.address,
                    remote_as=sp.asn,
                    switch=sp.name,
                    port=h.dp_port,
                    peer="speaker",
                    bfd=sp.bfd,
                )
                for sp in lab.speakers
                for h in hosts
                if sp.switch == sw.name and h.name == sp.name
            )
        vms.append(
            VmPlan(
                switch=sw.name,
                name=f"vm-{sw.name}",
                vm_id=sw.vm_id,
                ct_id=sw.ct_id,
                dp_id=sw.dpid,
                routing=sw.routing,
                router_id=sw.router_id,
                asn=sw.asn,
                interfaces=mine,
                ifprefix=ifprefixes[sw.name],
                bgp_neighbors=neighbors,
                static_routes=routes[sw.name] if sw.routing == "static" else (),
            )
        )
    return LabPlan(
        name=lab.name,
        source=lab.source,
        ospf=lab.ospf,
        bgp=lab.bgp,
        controllers=lab.controllers,
        control=lab.control,
        vms=tuple(vms),
        hosts=tuple(hosts),
        links=tuple(links),
        speakers=tuple(
            SpeakerPlan(
                name=sp.name,
                switch=sp.switch,
                dp_port=h.dp_port,
                ip=h.ip,
                gateway=h.gateway,
                asn=sp.asn,
                vm_asn=asns[sp.switch],
                announce=sp.announce,
                ip6=h.ip6,
            )
            for sp in lab.speakers
            for h in hosts
            if h.name == sp.name
        ),
        ipv6_prefix=None if prefix6 is None else str(prefix6),
        control_plane=lab.control_plane,
    )


def switch_ifprefixes(switches: list[tuple[str, int]]) -> dict[str, str]:
    """Prefix of each switch's interface and bridge names: its name, or ``s<index>`` for all.

    Input: (switch name, highest dp_port) in lab-file order. Names are used when every
    switch's ``<name>-eth<highest port>`` and ``br-<name>`` fit in a Linux interface name and
    none collides with the runner's own; otherwise every switch is named by its position
    (``s1-eth3``, ``br-s1``), one rule for the whole lab so names never mix schemes.
    """

    def fits(name: str, ports: int) -> bool:
        return (
            len(f"{name}-eth{max(ports, 1)}") <= IFNAMSIZ
            and len(f"br-{name}") <= IFNAMSIZ
            and name.lower() not in RESERVED_IFPREFIXES
        )

    if all(fits(name, ports) for name, ports in switches):
        return {name: name for name, _ in switches}
    return {name: f"s{i + 1}" for i, (name, _) in enumerate(switches)}


def _peer_address(ifaces: dict[str, list[Interface]], iface: Interface, family: int = 4) -> str:
    assert iface.peer_port is not None
    peer = ifaces[iface.peer][iface.peer_port - 1]
    if family == 6:
        assert peer.ip6 is not None
        return peer.ip6
    return peer.ip


def _static_routes(
    lab: Lab, ifaces: dict[str, list[Interface]]
) -> dict[str, tuple[StaticRoute, ...]]:
    """Hop-count shortest paths to every subnet a switch is not attached to.

    Among equally short first hops the neighbour listed first in the lab file wins (then the
    lowest port, for parallel links), so the routes never depend on dict or set ordering.
    """
    order = {sw.name: sw.index for sw in lab.switches}
    adj: dict[str, set[str]] = {sw.name: set() for sw in lab.switches}
    for ln in lab.links:
        adj[ln.a].add(ln.b)
        adj[ln.b].add(ln.a)
    dist = {sw.name: _bfs(sw.name, adj) for sw in lab.switches}

    # Destination subnets and the switches directly attached to them; in a dual-stack
    # lab the IPv6 ones too, through the peer's global IPv6 address on the link.
    dests: list[tuple[str, tuple[str, ...]]] = [
        (str(ipaddress.IPv4Interface(h.ip).network), (h.switch,)) for h in lab.hosts
    ]
    dests += [(ln.subnet, (ln.a, ln.b)) for ln in lab.links]
    if lab.ipv6:
        seen: set[str] = set()
        for sw in lab.switches:
            for i in ifaces[sw.name]:
                if i.subnet6 is not None and i.subnet6 not in seen:
                    seen.add(i.subnet6)
                    dests.append((i.subnet6, (sw.name, i.peer) if i.kind == "link" else (sw.name,)))

    out: dict[str, tuple[StaticRoute, ...]] = {}
    for sw in lab.switches:
        candidates = sorted(
            (i for i in ifaces[sw.name] if i.kind == "link"),
            key=lambda i: (order[i.peer], i.port),
        )
        routes: list[StaticRoute] = []
        for prefix, attached in dests:
            if sw.name in attached:
                continue
            reach = [dist[sw.name][t] for t in attached if t in dist[sw.name]]
            if not reach:
                continue  # unreachable; validation rejects disconnected labs anyway
            d = min(reach)
            for i in candidates:
                if min((dist[i.peer].get(t, d) for t in attached), default=d) == d - 1:
                    routes.append(
                        StaticRoute(
                            prefix=prefix,
                            next_hop=_peer_address(ifaces, i, 6 if ":" in prefix else 4),
                            port=i.port,
                            hops=d,
                        )
                    )
                    break
        out[sw.name] = tuple(routes)
    return out


def _bfs(start: str, adj: dict[str, set[str]]) -> dict[str, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for nxt in adj[here]:
            if nxt not in dist:
                dist[nxt] = dist[here] + 1
                queue.append(nxt)
    return dist

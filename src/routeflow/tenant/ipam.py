"""IP address management for tenant subnets and ports: pure functions, no I/O.

Neutron's rules, as real clients and tempest expect them: the gateway defaults to the
first host of the cidr, the allocation pool to the rest of it; pools lie inside the
cidr, do not overlap and leave the gateway out; a port gets the address it asks for
or the lowest free one. MACs and the data plane's integers (VNI, router and port keys)
are chosen here too, deterministically from what the caller passes in, so the same
history always gives the same numbers.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Collection, Iterable, Sequence

from routeflow.tenant.model import AllocationPool

MAC_PREFIX = "fa:16:3e"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpamError(ValueError):
    """Bad input; `field` names the attribute at fault (for a 400 that says which)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Exhausted(IpamError):
    """No free address or number is left (Neutron answers 409)."""


def parse_cidr(cidr: str, ip_version: int = 4, field: str = "cidr") -> Net:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except (ValueError, TypeError) as err:
        raise IpamError(field, f"invalid {field} {cidr!r}: {err}") from None
    if net.version != ip_version:
        raise IpamError(field, f"{field} {cidr} is not an IPv{ip_version} network")
    return net


def parse_ip(value: str, field: str) -> Address:
    try:
        return ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise IpamError(field, f"invalid IP address {value!r} in {field}") from None


def _hosts_range(net: Net) -> tuple[int, int]:
    """First and last usable host as integers (network and broadcast excluded for v4)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen >= 31:
        return first, last
    if net.version == 4:
        return first + 1, last - 1
    return first + 1, last


def _addr(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def default_gateway(net: Net) -> str:
    return _addr(net.version, _hosts_range(net)[0])


def default_pools(net: Net, gateway: str | None) -> tuple[AllocationPool, ...]:
    """Every host of the cidr except the gateway, as one or two pools."""
    lo, hi = _hosts_range(net)
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    if gateway is None:
        return (AllocationPool(str(make(lo)), str(make(hi))),) if lo <= hi else ()
    gw = int(make(gateway))
    pools = []
    if lo <= gw - 1:
        pools.append(AllocationPool(str(make(lo)), str(make(min(hi, gw - 1)))))
    if gw + 1 <= hi:
        pools.append(AllocationPool(str(make(max(lo, gw + 1))), str(make(hi))))
    return tuple(pools)


def check_gateway(net: Net, gateway: str) -> str:
    addr = parse_ip(gateway, "gateway_ip")
    if addr not in net:
        raise IpamError("gateway_ip", f"gateway_ip {gateway} is not in cidr {net}")
    if (
        net.version == 4
        and net.prefixlen < 31
        and addr in (net.network_address, net.broadcast_address)
    ):
        raise IpamError("gateway_ip", f"gateway_ip {gateway} is the network or broadcast address")
    return str(addr)


def check_pools(
    net: Net, pools: Sequence[AllocationPool], gateway: str | None
) -> tuple[AllocationPool, ...]:
    """Validate pools: inside the cidr's hosts, start <= end, no overlap, gateway outside."""
    lo, hi = _hosts_range(net)
    spans: list[tuple[int, int]] = []
    for pool in pools:
        start = parse_ip(pool.start, "allocation_pools")
        end = parse_ip(pool.end, "allocation_pools")
        if start.version != net.version or end.version != net.version:
            raise IpamError(
                "allocation_pools", f"pool {pool.start}-{pool.end} is not IPv{net.version}"
            )
        s, e = int(start), int(end)
        if s > e:
            raise IpamError("allocation_pools", f"pool start {pool.start} is after end {pool.end}")
        if s < lo or e > hi:
            raise IpamError(
                "allocation_pools", f"pool {pool.start}-{pool.end} is outside the hosts of {net}"
            )
        spans.append((s, e))
    spans.sort()
    for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
        if s2 <= e1:
            raise IpamError("allocation_pools", "allocation pools overlap")
    if gateway is not None:
        gw = int(ipaddress.ip_address(gateway))
        if any(s <= gw <= e for s, e in spans):
            raise IpamError("gateway_ip", f"gateway_ip {gateway} is inside an allocation pool")
    return tuple(pools)


def allocate_ip(
    cidr: str,
    pools: Sequence[AllocationPool],
    used: Collection[str],
    requested: str | None = None,
    gateway: str | None = None,
) -> str:
    """The requested address (checked: in cidr, free) or the lowest free one of the pools."""
    net = ipaddress.ip_network(cidr)
    taken = {int(ipaddress.ip_address(u)) for u in used}
    if requested is not None:
        addr = parse_ip(requested, "fixed_ips")
        if addr not in net:
            raise IpamError("fixed_ips", f"IP address {requested} is not in subnet {cidr}")
        if int(addr) in taken:
            raise IpAddressInUse(
                "fixed_ips", f"IP address {requested} is already allocated in subnet {cidr}"
            )
        return str(addr)
    for pool in pools:
        s = int(ipaddress.ip_address(pool.start))
        e = int(ipaddress.ip_address(pool.end))
        for value in range(s, e + 1):
            if value not in taken:
                return _addr(net.version, value)
    raise Exhausted("fixed_ips", f"no more IP addresses available in subnet {cidr}")


class IpAddressInUse(IpamError):
    """The requested fixed IP is taken (Neutron answers 409)."""


def overlapping(cidrs: Iterable[str]) -> tuple[str, str] | None:
    """A pair of overlapping cidrs among `cidrs` (subnets on one router), or None."""
    nets = sorted(
        {ipaddress.ip_network(c) for c in cidrs}, key=lambda n: (n.version, int(n.network_address))
    )
    seen = list(nets)
    for i, a in enumerate(seen):
        for b in seen[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                return str(a), str(b)
    return None


def make_mac(seed: int) -> str:
    """`fa:16:3e:xx:xx:xx` from a counter: a fixed bijective mix of its low 24 bits."""
    value = (seed * 0x9E3779B1) & 0xFFFFFF
    value ^= value >> 12
    return MAC_PREFIX + ":" + ":".join(f"{(value >> s) & 0xFF:02x}" for s in (16, 8, 0))


def allocate_mac(seed: int, used: Collection[str]) -> str:
    """The first MAC from `seed` upward that is not in `used`."""
    lowered = {u.lower() for u in used}
    for step in range(1 << 24):
        mac = make_mac(seed + step)
        if mac not in lowered:
            return mac
    raise Exhausted("mac_address", "no free MAC address")


def check_mac(value: str) -> str:
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise IpamError("mac_address", f"invalid MAC address {value!r}")
    if int(parts[0], 16) & 1:
        raise IpamError("mac_address", f"MAC address {value} is multicast")
    return value.lower()


def lowest_free(used: Collection[int], lo: int, hi: int, field: str = "key") -> int:
    """The lowest integer in [lo, hi] not in `used` (VNI, router key, port key)."""
    taken = set(used)
    for value in range(lo, hi + 1):
        if value not in taken:
            return value
    raise Exhausted(field, f"no free {field} in {lo}..{hi}")

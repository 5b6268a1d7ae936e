"""What a gateway node announces over BGP in ``bgp`` mode, and the relay to its speaker.

In ``bgp`` mode the external network's addresses (router gateway IPs, the SNAT
addresses, and floating IPs) come from a pool that is on-link nowhere: each gateway
node announces a /32 for every address it serves, with its uplink address as next hop
(tenant/nat.py ``Uplink``), to the routeflow switch it hangs off; routeflow installs
them as FIB flows like any BGP route. When a router moves to the other gateway node
(this one is down), or a floating IP is associated, moved or released, the set changes
and the announcement follows.

Pure core: ``addresses(cloud, node)`` (the model in, the /32s out) and
``commands(old, new, next_hop)`` (ExaBGP API lines). Thin shells: the node agent
writes its set to a file (``write_state``, an atomic rename) whenever it changes, and
``python -m routeflow.tenant.announce FILE`` runs as ExaBGP's API process: it
watches the file and prints ``announce``/``withdraw`` lines to ExaBGP. A speaker that
restarts starts a new relay, which announces the file's whole set again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from routeflow.tenant import nat
from routeflow.tenant.model import Cloud

__all__ = ["addresses", "commands", "read_state", "transition", "write_state"]


def addresses(cloud: Cloud, node_name: str) -> frozenset[str]:
    """The /32s ``node_name`` serves: the gateway IP (SNAT address) of every router
    scheduled on it and every associated floating IP of those routers."""
    out: set[str] = set()
    for router in nat.served_routers(cloud, node_name):
        gw = nat.gateway_of(cloud, router)
        if gw is None:
            continue
        out.add(f"{gw.ip}/32")
        out.update(f"{f.floating_ip_address}/32" for f in nat.floating_ips(cloud, router))
    return frozenset(out)


def commands(old: Iterable[str], new: Iterable[str], next_hop: str) -> list[str]:
    """ExaBGP API lines turning announcement ``old`` into ``new`` (withdrawals first)."""
    before, after = set(old), set(new)
    return [f"withdraw route {p} next-hop {next_hop}" for p in sorted(before - after)] + [
        f"announce route {p} next-hop {next_hop}" for p in sorted(after - before)
    ]


def transition(old: Iterable[str], old_hop: str, new: Iterable[str], new_hop: str) -> list[str]:
    """``commands`` when the next hop may change too (then all is re-announced)."""
    if old_hop != new_hop:
        return commands(old, (), old_hop) + commands((), new, new_hop)
    return commands(old, new, new_hop)


def encode(prefixes: Iterable[str], next_hop: str) -> bytes:
    return json.dumps({"next_hop": next_hop, "prefixes": sorted(prefixes)}).encode()


def decode(data: bytes) -> tuple[frozenset[str], str] | None:
    """(prefixes, next hop) of a state file's bytes; None if they are not one."""
    try:
        doc = json.loads(data)
        prefixes = doc["prefixes"]
        next_hop = doc["next_hop"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(next_hop, str) or not isinstance(prefixes, list):
        return None
    if not all(isinstance(p, str) for p in prefixes):
        return None
    return frozenset(prefixes), next_hop


def write_state(path: str, prefixes: Iterable[str], next_hop: str) -> None:
    """Replace the state file at once (a reader sees the old set or the new one)."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(encode(prefixes, next_hop))
    os.replace(tmp, path)


def read_state(path: str) -> tuple[frozenset[str], str] | None:
    try:
        with open(path, "rb") as fh:
            return decode(fh.read())
    except OSError:
        return None


def relay(path: str, out: TextIO | None = None, interval: float = 0.01) -> None:  # pragma: no cover
    """ExaBGP's API process: follow the state file, print the difference each time."""
    stream = out if out is not None else sys.stdout
    current: frozenset[str] = frozenset()
    hop = ""
    seen: tuple[int, int] | None = None
    parent = os.getppid()
    while os.getppid() == parent:  # the speaker is gone: so is its relay
        try:
            st = os.stat(path)
            stamp: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp != seen and stamp is not None:
            state = read_state(path)
            if state is not None:
                seen = stamp
                new, new_hop = state
                lines = transition(current, hop or new_hop, new, new_hop)
                for line in lines:
                    stream.write(line + "\n")
                stream.flush()
                current, hop = new, new_hop
        time.sleep(interval)


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        print("usage: python -m routeflow.tenant.announce STATE_FILE", file=sys.stderr)
        sys.exit(2)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        relay(sys.argv[1])

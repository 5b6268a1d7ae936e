"""Model changes on the server <-> node link (pure): encode, decode, full state.

``TenantChanges.changes`` carries msgpack of ``list[Change]``. A full state is a
set of changes that all carry the snapshot's revision, so a node builds its
snapshot from it directly (``Cloud.apply`` would ignore all but the first,
since they share one revision).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from routeflow.rflib.protocol import TenantChanges
from routeflow.tenant.model import KIND_OF, Change, Cloud

__all__ = ["WireError", "decode", "delta", "encode", "full_cloud", "full_state"]

_decoder = msgspec.msgpack.Decoder(list[Change])


class WireError(ValueError):
    pass


def encode(changes: Iterable[Change]) -> bytes:
    return msgspec.msgpack.encode(list(changes))


def decode(data: bytes) -> list[Change]:
    """The changes in ``data``; WireError names what is wrong."""
    try:
        changes = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise WireError(f"bad tenant changes: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"undecodable tenant changes: {exc}") from None
    for c in changes:
        if c.obj is not None and (c.obj.id != c.id or KIND_OF[type(c.obj)] is not c.kind):
            raise WireError(f"change {c.kind}/{c.id} carries a mismatched object")
    return changes


def full_state(cloud: Cloud) -> TenantChanges:
    return TenantChanges(revision=cloud.revision, changes=encode(cloud.changes()), full=True)


def delta(change: Change) -> TenantChanges:
    return TenantChanges(revision=change.revision, changes=encode([change]))


def full_cloud(revision: int, changes: Iterable[Change]) -> Cloud:
    """The snapshot a full state describes (deletions in it are ignored)."""
    return Cloud.from_changes(revision, changes)

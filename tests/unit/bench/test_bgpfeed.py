"""bench/bgpfeed.py: the UPDATEs it packs announce every prefix with its path, and
nothing else (decoded here independently, by RFC 4271's layout)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.bench import bgpfeed


def _prefixes(nlri: bytes, width: int) -> list[str]:
    out = []
    i = 0
    while i < len(nlri):
        plen = nlri[i]
        n = (plen + 7) // 8
        raw = nlri[i + 1 : i + 1 + n] + bytes(width - n)
        out.append(str(ipaddress.ip_network((raw if width == 16 else socket.inet_ntoa(raw), plen))))
        i += 1 + n
    return out


def decode_update(msg: bytes) -> tuple[tuple[int, ...], str, list[str]]:
    """(AS path, next hop, prefixes) of one UPDATE without withdrawals: IPv4 in the
    NLRI field with NEXT_HOP, or IPv6 in MP_REACH_NLRI (RFC 4760) and nothing else."""
    assert msg[:16] == b"\xff" * 16
    length, kind = struct.unpack("!HB", msg[16:19])
    assert kind == 2 and length == len(msg) <= 4096
    body = msg[19:]
    (withdrawn,) = struct.unpack("!H", body[:2])
    assert withdrawn == 0
    (alen,) = struct.unpack("!H", body[2:4])
    attrs, nlri = body[4 : 4 + alen], body[4 + alen :]
    path: tuple[int, ...] = ()
    hop = ""
    seen = []
    pos = 0
    while pos < len(attrs):
        flags, code = attrs[pos], attrs[pos + 1]
        if flags & 0x10:
            (size,) = struct.unpack("!H", attrs[pos + 2 : pos + 4])
            pos += 4
        else:
            size = attrs[pos + 2]
            pos += 3
        value = attrs[pos : pos + size]
        pos += size
        seen.append(code)
        if code == 2:
            i = 0
            while i < len(value):
                kind, count = value[i], value[i + 1]
                assert kind == 2  # AS_SEQUENCE
                path += struct.unpack(f"!{count}I", value[i + 2 : i + 2 + 4 * count])
                i += 2 + 4 * count
        elif code == 3:
            hop = socket.inet_ntoa(value)
        elif code == 1:
            assert value == b"\x00"
        elif code == 14:
            assert flags & 0x80 and not flags & 0x40  # optional, non-transitive
            afi, safi, hlen = struct.unpack("!HBB", value[:4])
            assert (afi, safi, hlen) == (2, 1, 16) and value[20] == 0  # reserved
            hop = str(ipaddress.IPv6Address(value[4:20]))
            assert not nlri  # one family per message
            return path, hop, _prefixes(value[21:], 16)
    assert seen == [1, 2, 3]  # ORIGIN, AS_PATH, NEXT_HOP: the mandatory ones
    return path, hop, _prefixes(nlri, 4)


networks6 = st.builds(
    lambda addr, plen: str(ipaddress.IPv6Network((addr, plen), strict=False)),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
networks = st.builds(
    lambda addr, plen: str(ipaddress.IPv4Network((addr, plen), strict=False)),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
paths = st.lists(st.integers(1, 2**32 - 1), max_size=300).map(tuple)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(networks, st.sampled_from([(), (3356,), (174, 13335)]) | paths))
def test_every_prefix_is_announced_once_with_its_path(table):
    got: dict[str, tuple[int, ...]] = {}
    for msg in bgpfeed.updates(table.items(), 65100, "192.0.2.2"):
        path, hop, prefixes = decode_update(msg)
        assert hop == "192.0.2.2" and path[0] == 65100
        for p in prefixes:
            assert p not in got
            got[p] = path[1:]
    assert got == table


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(networks | networks6, st.sampled_from([(), (3356,), (174, 13335)]) | paths))
def test_both_families_are_announced_once_each_with_their_next_hop(table):
    got: dict[str, tuple[int, ...]] = {}
    for msg in bgpfeed.updates(table.items(), 65100, "192.0.2.2", "fd00:2::2"):
        path, hop, prefixes = decode_update(msg)
        assert path[0] == 65100 and prefixes
        for p in prefixes:
            assert hop == ("fd00:2::2" if ":" in p else "192.0.2.2")
            assert p not in got
            got[p] = path[1:]
    assert got == table


def test_ipv6_prefixes_without_an_ipv6_next_hop_are_refused():
    with pytest.raises(ValueError, match="IPv6 next hop"):
        list(bgpfeed.updates([("2001:db8::/32", ())], 65100, "192.0.2.2"))


def test_a_big_ipv6_table_fills_messages():
    table = [(f"2001:db8:{i:x}::/48", (3356,)) for i in range(5000)]
    msgs = list(bgpfeed.updates(table, 65100, "192.0.2.2", "fd00:2::2"))
    assert all(len(m) <= 4096 for m in msgs)
    assert len(msgs) == 9  # 7 bytes a /48, about 580 a message


def test_a_big_table_fills_messages():
    table = [(f"10.{i >> 8}.{i & 255}.0/24", (3356,)) for i in range(5000)]
    msgs = list(bgpfeed.updates(table, 65100, "192.0.2.2"))
    assert all(len(m) <= 4096 for m in msgs)
    assert len(msgs) == 5  # 4 bytes a /24, about 1000 a message


def test_open_says_ipv4_unicast_and_four_octet_as():
    msg = bgpfeed.open_message(4_200_000_000, "192.0.2.2", hold=90)
    length, kind = struct.unpack("!HB", msg[16:19])
    assert (length, kind) == (len(msg), 1)
    version, my_as, hold, rid, plen = struct.unpack("!BHH4sB", msg[19:29])
    assert (version, my_as, hold, socket.inet_ntoa(rid)) == (4, 23456, 90, "192.0.2.2")
    caps = msg[29 + 2 : 29 + plen]
    assert bytes((1, 4, 0, 1, 0, 1)) in caps
    assert bytes((1, 4, 0, 2, 0, 1)) not in caps
    assert bytes((65, 4)) + struct.pack("!I", 4_200_000_000) in caps


def test_open_with_ipv6_adds_ipv6_unicast():
    msg = bgpfeed.open_message(65100, "192.0.2.2", ipv6=True)
    assert bytes((1, 4, 0, 1, 0, 1)) in msg and bytes((1, 4, 0, 2, 0, 1)) in msg


def test_prepend_repeats_the_own_as_ahead_of_each_path():
    table = {"10.0.0.0/8": (3356,), "10.1.0.0/16": ()}
    got = {}
    for msg in bgpfeed.updates(table.items(), 65200, "192.0.2.6", prepend=1):
        path, _hop, prefixes = decode_update(msg)
        for p in prefixes:
            got[p] = path
    assert got == {"10.0.0.0/8": (65200, 65200, 3356), "10.1.0.0/16": (65200, 65200)}


def test_the_peer_down_notification_is_cease_administrative_shutdown():
    msg = bgpfeed.notification(bgpfeed.CEASE, bgpfeed.ADMINISTRATIVE_SHUTDOWN)
    assert msg[:16] == b"\xff" * 16
    assert struct.unpack("!HB", msg[16:19]) == (21, 3)  # RFC 4271 4.5, RFC 4486
    assert msg[19:] == bytes((6, 2))

"""MRT files written by real routers (BIRD, OpenBGPD, Quagga; tests/data/mrt) as
tables and churn streams: the formats collectors and routers really write, read
by mrtparse and cut to what the benches replay."""

from __future__ import annotations

import bz2
import gzip
import os
import shutil

import pytest

from routeflow.bench.churn import ChurnError, final_state
from routeflow.bench.churnrun import load_stream
from routeflow.bench.recorded import stream_from_records
from routeflow.bench.table import TableError, read_table_file
from routeflow.bench.tablemrt import mrt_records, mrt_type, read_mrt

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "mrt")
QUAGGA_PATH = (4200000000, 4200000000, 4200000000, 64512, 64512, 64512)


def data(name: str) -> str:
    return os.path.join(DATA, name)


def test_the_old_and_the_new_rib_dump_of_one_rib_are_one_table():
    """OpenBGPD dumped the same RIB as TABLE_DUMP and as TABLE_DUMP_V2."""
    old = [(e.prefix, e.as_path) for e in read_mrt(data("openbgpd_rib_table"))]
    new = [(e.prefix, e.as_path) for e in read_table_file(data("openbgpd_rib_table-v2"))]
    assert old == new and len(old) == 21
    assert ("192.168.0.0/16", (65015,)) in old
    assert mrt_type(data("openbgpd_rib_table")) == 12 and mrt_type(data("quagga_rib")) == 13


def test_quagga_rib_dump():
    table = read_table_file(data("quagga_rib"))
    assert {e.prefix for e in table} >= {"172.17.0.0/24", "fd01:1::/64"}
    assert all(e.as_path == QUAGGA_PATH for e in table)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("openbgpd_rib_table-mp", "BGP4MP_ENTRY.*table-v2"),
        ("quagga_bgp", "an update file, not a RIB dump.*bench churn"),
    ],
)
def test_what_is_not_a_rib_dump_is_told_so(name, says):
    with pytest.raises(TableError, match=says):
        read_table_file(data(name))


def test_a_rib_dump_is_not_a_stream():
    with pytest.raises(ChurnError, match=r"RIB dump.*churn-gen --table"):
        load_stream(data("quagga_rib"))


def test_quagga_updates_one_peer_with_its_session_reset():
    """Two peers; 192.168.0.10 announces 6 prefixes (both families by MP-BGP),
    its session drops 66 s later (all withdrawn) and comes back 8 s after that."""
    updates, info = stream_from_records(mrt_records(data("quagga_bgp")), "q")
    assert info.peer == "192.168.0.10" and set(info.peers) == {"192.168.0.10", "fd02::10"}
    assert info.session_downs == 1 and len(updates) == 18
    ops = [(u.op, round(u.t)) for u in updates]
    assert ops == [("A", 0)] * 6 + [("W", 66)] * 6 + [("A", 74)] * 6
    assert final_state(updates) == {
        p: QUAGGA_PATH
        for p in (
            "172.17.0.0/24",
            "172.17.1.0/24",
            "172.17.2.0/24",
            "fd01:1::/64",
            "fd01:1:1::/64",
            "fd01:1:2::/64",
        )
    }
    other, _ = stream_from_records(mrt_records(data("quagga_bgp")), "q", peer="fd02::10")
    assert {u.prefix for u in other} == {"fd01:1::/64", "fd01:1:1::/64", "fd01:1:2::/64"}


def test_bird_add_path_updates_keep_their_path_ids():
    recs = mrt_records(data("bird6_bgp"))
    assert any(r.path_id for r in recs if r.op == "A")
    updates, info = stream_from_records(recs, "b")
    assert info.peer == "fd02::10" and updates


def test_openbgpd_updates_skip_vpn_routes():
    recs = mrt_records(data("openbgpd_bgp"))
    assert recs and all(":" not in r.prefix.split("/")[0] or "::" in r.prefix for r in recs)
    updates, _ = stream_from_records(recs, "o")
    assert ("A", "192.168.0.0/16") in {(u.op, u.prefix) for u in updates}


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_compressed_update_files(tmp_path, compress):
    path = tmp_path / "updates.x"
    with open(data("quagga_bgp"), "rb") as fh:
        path.write_bytes(compress(fh.read()))
    assert mrt_type(str(path)) == 16
    updates, summary = load_stream(str(path))
    assert len(updates) == 18 and "peer 192.168.0.10" in summary


def test_a_damaged_update_file_names_the_file(tmp_path):
    path = tmp_path / "cut.mrt"
    with open(data("quagga_bgp"), "rb") as fh:
        path.write_bytes(fh.read()[:-7])
    with pytest.raises(ChurnError, match=r"cut\.mrt"):
        load_stream(str(path))


def test_our_own_stream_text_still_loads(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("# routeflow churn stream v1\n0.0 A 1.0.0.0/8 3356\n1.0 W 1.0.0.0/8\n")
    updates, summary = load_stream(str(path))
    assert len(updates) == 2 and summary == ""
    with pytest.raises(ChurnError, match="--peer is for recorded files"):
        load_stream(str(path), peer="1.2.3.4")
    shutil.copy(data("quagga_bgp"), tmp_path / "q")
    with pytest.raises(ChurnError, match=r"no updates from peer 1\.2\.3\.4"):
        load_stream(str(tmp_path / "q"), peer="1.2.3.4")

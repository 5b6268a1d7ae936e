"""The backup procedures of docs/operations.md ("Backups of the state store"), as written.

SQLite: an online copy with SQLite's backup API while the store is open (its WAL holds
the recent writes), restored by putting the copy in place. etcd: `etcdctl snapshot save`,
`etcdctl snapshot restore` into a new single-member cluster, the store read back from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from routeflow.lab.etcd import ETCD
from routeflow.rflib.etcdstore import EtcdStore
from routeflow.rflib.store import open_store
from routeflow.rflib.types import AssociationEntry
from unit.rflib import test_store as contract

LATE = AssociationEntry(vm_id=9, vm_port=9, hwaddress="02:00:00:00:09:09")


def _fill(store) -> None:
    store.replace_config(contract.CONFIG)
    store.put_association(contract.ACTIVE)
    store.kv_put("nexthop/group/10.0.0.1", b"\x00\x07")


def _same_as_filled(store) -> None:
    assert store.load_config() == contract.CONFIG
    assert store.load_associations() == [contract.ACTIVE]
    assert store.kv_get("nexthop/group/10.0.0.1") == b"\x00\x07"


def test_sqlite_online_backup_and_restore(tmp_path):
    path = tmp_path / "state.db"
    copy = tmp_path / "backup.db"
    store = open_store(f"sqlite:{path}")
    try:
        _fill(store)
        assert (tmp_path / "state.db-wal").exists()  # recent writes are in the WAL
        # docs/operations.md, word for word (minus the paths), from another process as
        # an operator runs it
        line = (
            f"import sqlite3; sqlite3.connect({str(path)!r}).backup(sqlite3.connect({str(copy)!r}))"
        )
        subprocess.run([sys.executable, "-c", line], check=True, timeout=30)
        store.put_association(LATE)  # after the backup: not in the copy
    finally:
        store.close()
    # Restore: rfserver stopped, the copy in place of state.db, -wal and -shm removed.
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, path)
    with open_store(f"sqlite:{path}") as restored:
        _same_as_filled(restored)


def _etcdctl(endpoint: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    env["ETCDCTL_API"] = "3"
    out = subprocess.run(
        ["etcdctl", f"--endpoints={endpoint}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_etcd_snapshot_save_and_restore(etcd1, prefix, tmp_path):
    if shutil.which("etcdctl") is None:
        pytest.fail("etcdctl is missing: run `make setup` (Debian package etcd-client)")
    store = EtcdStore(etcd1.endpoints, prefix)
    try:
        _fill(store)
    finally:
        store.close()
    snapshot = tmp_path / "etcd.db"
    _etcdctl(etcd1.endpoints[0], "snapshot", "save", str(snapshot))
    readable = _etcdctl(etcd1.endpoints[0], "get", "--prefix", prefix, "-w", "json")
    assert '"kvs"' in readable  # the readable copy the manual shows has the keys

    client, peer = _free_ports(2)
    peer_url = f"http://127.0.0.1:{peer}"
    data = tmp_path / "restored.data"
    _etcdctl(
        etcd1.endpoints[0],
        "snapshot",
        "restore",
        str(snapshot),
        "--name",
        "restored",
        "--data-dir",
        str(data),
        "--initial-cluster",
        f"restored={peer_url}",
        "--initial-advertise-peer-urls",
        peer_url,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    log = open(tmp_path / "restored.log", "wb")  # noqa: SIM115 (the child keeps it)
    argv = [
        ETCD,
        "--name", "restored",
        "--data-dir", str(data),
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"restored={peer_url}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1) as r:
                    if b'"true"' in r.read():
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "restored.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the restored etcd is not healthy after 20 s"
            time.sleep(0.1)
        restored = EtcdStore([f"127.0.0.1:{client}"], prefix)
        try:
            _same_as_filled(restored)
        finally:
            restored.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

"""Component fixtures: real etcd clusters on loopback (never ports 2379/2380), always stopped."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from routeflow.lab.etcd import ETCD, EtcdCluster
from routeflow.rflib.etcdstore import EtcdStore


def _need_etcd() -> None:
    if not os.access(ETCD, os.X_OK):
        pytest.fail(f"{ETCD} is missing: run `make setup` (Debian package etcd-server)")


def _cluster(tmp_path_factory, members: int):
    _need_etcd()
    cluster = EtcdCluster(str(tmp_path_factory.mktemp(f"etcd{members}")), members=members)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def etcd1(tmp_path_factory):
    """One single-member cluster for the whole session; tests use their own prefix."""
    yield from _cluster(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def _etcd3_cluster(tmp_path_factory):
    yield from _cluster(tmp_path_factory, 3)


@pytest.fixture
def etcd3(_etcd3_cluster: EtcdCluster) -> EtcdCluster:
    """The session's three-member cluster, whole again: the tests using it kill members.

    Killed members are restarted on their data (they rejoin and catch up), then a raft
    leader is awaited. Tests use their own prefix, so nothing else needs resetting; one
    cluster instead of one per test saves its start and stop (about 4 s each here).
    """
    cluster = _etcd3_cluster
    for i in range(cluster.members):
        if not cluster.alive(i):
            cluster.restart_member(i)
    deadline = time.monotonic() + 20
    while cluster.leader() is None:
        assert time.monotonic() < deadline, "the etcd cluster elected no leader in 20 s"
        time.sleep(0.1)
    return cluster


@pytest.fixture
def prefix() -> str:
    return f"/routeflow-test/{uuid.uuid4().hex}/"


@pytest.fixture
def open_stores():
    """Make EtcdStores that are closed after the test."""
    stores: list[EtcdStore] = []

    def make(endpoints, prefix, **kwargs) -> EtcdStore:
        s = EtcdStore(endpoints, prefix, **kwargs)
        stores.append(s)
        return s

    yield make
    for s in stores:
        s.close()

"""The standby tenant server's pieces that need no etcd: the leader identity, and the
proxy's answer when there is no leader to forward to (the takeover is a component test,
tests/component/tenant/test_standby.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from routeflow.tenant.standby import Dispatch, StandbyProxy, identity, leader_url


def test_the_leader_key_names_the_url_to_forward_to() -> None:
    assert leader_url(identity("a", "http://10.0.0.1:9696/")) == "http://10.0.0.1:9696"
    assert leader_url(None) is None
    assert leader_url("rfserver-without-url") is None


def test_no_leader_is_a_neutron_503_with_retry_after() -> None:
    proxy = StandbyProxy("http://127.0.0.1:1")
    client = TestClient(Dispatch(proxy))
    r = client.post("/v2.0/networks", json={"network": {}})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1" and r.headers["x-routeflow-role"] == "standby"
    assert r.json()["NeutronError"]["type"] == "ServiceUnavailable"
    proxy.leader = "http://127.0.0.1:1"  # itself: never forwards to itself
    assert client.get("/").status_code == 503

"""A VIF plugged while br-int has no agent connected is bound when the switch comes back.

Port-status messages only tell an agent of changes after its switch connected, so
the agent reads OVSDB's VIFs again on every switch connect. Here the switch is
pointed away from the agent (changing the controller does not flush flows: only a
bridge's first controller does), a VM port is plugged, then the controller is put
back: the port must be reported plugged and its flow installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from component.tenant.test_node_agent import Server, _node, flows, start_agent, wait
from routeflow.lab.ovs import OvsInstance
from unit.tenant.cloudfix import VM1, cloud


@pytest.fixture(scope="module")
def bare_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    yield from _node(tmp_path_factory, {}, cloud())  # VM1 is bound to c1, not plugged


def test_a_vif_plugged_while_disconnected_is_bound_on_reconnect(
    bare_node: dict[str, object], tmp_path: Path
) -> None:
    ovs, server = bare_node["ovs"], bare_node["server"]
    assert isinstance(ovs, OvsInstance) and isinstance(server, Server)
    log = tmp_path / "agent.log"
    agent = start_agent(bare_node, log)
    try:
        wait(lambda: "switch holds" in log.read_text(), "the agent's switch")
        wait(lambda: len(flows(bare_node)) == 1, "the first install")  # net 100 only
        target = f"tcp:127.0.0.1:{bare_node['ofp_port']}"
        ovs.vsctl("set-controller", "br-int", "tcp:127.0.0.1:1")  # nobody listens there
        ovs.vsctl(
            "add-port", "br-int", "vm1", "--", "set", "interface", "vm1", "type=internal",
            "ofport_request=1", f"external_ids:iface-id={VM1.id}",
        )  # fmt: skip
        assert (VM1.id, "c1", True) not in server.repo.binds
        ovs.vsctl("set-controller", "br-int", target)
        wait(lambda: (VM1.id, "c1", True) in server.repo.binds, "the binding after reconnect")
        wait(lambda: len(flows(bare_node)) == 2, "the VIF's flow")
    finally:
        agent.terminate()
        agent.wait(10)

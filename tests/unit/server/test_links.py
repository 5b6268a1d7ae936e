"""Tests for routeflow.server.links: switch port link states and what VMs hear of them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routeflow.rflib import protocol as p
from routeflow.rflib.types import ConfigEntry
from routeflow.server.association import AssociationTable
from routeflow.server.links import LinkChanged, LinkStates

UP, DOWN = p.PortOperation.LINK_UP, p.PortOperation.LINK_DOWN


def table() -> AssociationTable:
    """vm 5 port 1 <-> switch 5 port 1 (associated); vm 5 port 2 configured, not registered."""
    t = AssociationTable(
        [
            ConfigEntry(vm_id=5, vm_port=1, ct_id=1, dp_id=5, dp_port=1),
            ConfigEntry(vm_id=5, vm_port=2, ct_id=1, dp_id=5, dp_port=2),
        ]
    )
    t.handle(p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:05:01"))
    t.handle(p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1))
    return t


def status(port: int, up: bool) -> p.DatapathPortStatus:
    return p.DatapathPortStatus(ct_id=1, dp_id=5, dp_port=port, up=up)


def test_a_change_is_reported_and_the_vm_port_follows():
    links, t = LinkStates(), table()
    assert links.update(status(1, False), t) == [
        LinkChanged(1, 5, 1, up=False),
        p.PortConfig(vm_id=5, vm_port=1, operation_id=DOWN),
    ]
    assert not links.is_up(1, 5, 1)
    # A repeat is no change, but the VM port still follows (it may have missed it).
    assert links.update(status(1, False), t) == [
        p.PortConfig(vm_id=5, vm_port=1, operation_id=DOWN)
    ]
    assert links.update(status(1, True), t) == [
        LinkChanged(1, 5, 1, up=True),
        p.PortConfig(vm_id=5, vm_port=1, operation_id=UP),
    ]
    assert links.is_up(1, 5, 1) and links.down == set()


def test_a_port_nobody_is_associated_with_only_changes_state():
    links, t = LinkStates(), table()
    assert links.update(status(2, False), t) == [LinkChanged(1, 5, 2, up=False)]
    assert links.update(status(2, True), t) == [LinkChanged(1, 5, 2, up=True)]
    assert links.update(status(2, True), t) == []


def test_a_reconnected_vm_hears_which_of_its_links_are_down():
    links, t = LinkStates(), table()
    assert links.for_vm(5, t) == []
    links.update(status(1, False), t)
    links.update(status(2, False), t)  # not associated: not the VM's business yet
    assert links.for_vm(5, t) == [p.PortConfig(vm_id=5, vm_port=1, operation_id=DOWN)]
    assert links.for_vm(6, t) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.booleans()), max_size=25))
def test_state_is_the_last_report_and_changes_are_exactly_the_flips(reports):
    links, t = LinkStates(), table()
    last: dict[int, bool] = {}
    for port, up in reports:
        out = links.update(status(port, up), t)
        changed = [a for a in out if isinstance(a, LinkChanged)]
        assert len(changed) == (last.get(port, True) != up)
        last[port] = up
    assert links.down == {(1, 5, port) for port, up in last.items() if not up}

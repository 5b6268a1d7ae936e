"""The proxy core's topology discovery: probes out, sightings in, reports to rfserver."""

from __future__ import annotations

from routeflow.proxy import openflow as of
from routeflow.proxy import probe
from routeflow.proxy.actions import PacketOut, Port, ToServer
from routeflow.proxy.core import ProxyCore
from routeflow.rflib import protocol as p

VS = of.DEFAULT_VS_DPID
A, B = 0x5, 0x6
MAC = "02:00:00:00:00:01"
VM_MAC = "02:00:00:00:00:aa"


def to_server(actions) -> list[p.Message]:
    return [m for a in actions if isinstance(a, ToServer) for m in a.messages]


def probes(actions) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(dp, port) a probe leaves from -> what it says."""
    return {
        (a.dp_id, a.port): probe.parse_probe(a.frame) for a in actions if isinstance(a, PacketOut)
    }


def link(sd, sp, dd, dport, up=True, reason="") -> p.DatapathLink:
    ends = p.LinkEnds(src_dp_id=sd, src_port=sp, dst_dp_id=dd, dst_port=dport)
    return p.DatapathLink(ct_id=1, link=ends, up=up, reason=reason)


def master(interval: float = 1.0) -> ProxyCore:
    """Switches A (ports 1, 2) and B (ports 1, 2, 3 down) and the virtual switch; master."""
    c = ProxyCore(ct_id=1, replica="a", vs_dpid=VS, discovery_interval=interval)
    for dp in (A, B, VS):
        c.switch_connected(dp, object())
    c.ports_described(A, [Port(1, MAC, "a1", True), Port(2, MAC, "a2", True)])
    c.ports_described(
        B, [Port(1, MAC, "b1", True), Port(2, MAC, "b2", True), Port(3, MAC, "b3", False)]
    )
    c.ports_described(VS, [Port(1, MAC, "vs1", True)])
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))
    return c


def deliver(c: ProxyCore, out, cabling: dict, now: float) -> list:
    """Carry probes over the cables (end -> end) into packet-ins; the actions they give."""
    got = []
    for a in out:
        if isinstance(a, PacketOut) and (a.dp_id, a.port) in cabling:
            dst = cabling[(a.dp_id, a.port)]
            got += c.packet_in(*dst, a.frame, now)
    return got


CABLES = {(A, 1): (B, 1), (B, 1): (A, 1)}


def test_the_master_probes_every_up_port_of_every_physical_switch():
    c = master()
    out = c.discovery_tick(0.0)
    assert probes(out) == {
        (A, 1): (A, 1, 3),
        (A, 2): (A, 2, 3),
        (B, 1): (B, 1, 3),
        (B, 2): (B, 2, 3),
    }  # not B's port 3 (down), not the virtual switch
    assert to_server(out) == []  # no full table before probing has run a hold time


def test_no_probes_without_discovery_or_mastership():
    assert ProxyCore(ct_id=1, replica="a", vs_dpid=VS).discovery_tick(0.0) == []
    c = master()
    c.server_message(p.ControllerRole(ct_id=1, role=p.SLAVE, generation=2))
    assert c.discovery_tick(0.0) == []


def test_a_returning_probe_is_a_link_reported_once_and_never_relayed():
    c = master()
    # Both ends are router ports mapped to VM ports: a relayed frame would reach a VM.
    c.server_message(p.Resync(phase="begin"))
    for dp in (A, B):
        c.server_message(
            p.DataPlaneMap(ct_id=1, dp_id=dp, dp_port=1, vs_id=VS, vs_port=dp, hwaddress=VM_MAC)
        )
    c.server_message(p.Resync(phase="end"))
    got = deliver(c, c.discovery_tick(0.0), CABLES, 0.01)
    assert not [a for a in got if isinstance(a, PacketOut)]
    assert sorted(to_server(got), key=str) == sorted([link(A, 1, B, 1), link(B, 1, A, 1)], key=str)
    assert to_server(deliver(c, c.discovery_tick(1.0), CABLES, 1.01)) == []  # known: renewed
    # LLDP that is not a probe is dropped too, not relayed.
    other = b"\x01\x80\xc2\x00\x00\x0e" + bytes.fromhex(MAC.replace(":", "")) + b"\x88\xcc\x00\x00"
    assert not [a for a in c.packet_in(A, 1, other, 1.5) if isinstance(a, PacketOut | ToServer)]


def test_links_age_out_after_the_misses_and_go_at_once_with_their_port():
    c = master()
    deliver(c, c.discovery_tick(0.0), CABLES, 0.0)
    # Port B1 goes down: both directions at once.
    down = to_server(c.port_status(B, "modify", Port(1, MAC, "b1", False)))
    assert link(A, 1, B, 1, False, "port down") in down
    assert link(B, 1, A, 1, False, "port down") in down
    assert c.links.links() == []
    # B1 is down: it is not probed any more, and A1's probes go unanswered.
    assert (B, 1) not in probes(c.discovery_tick(1.0))
    c.port_status(B, "modify", Port(1, MAC, "b1", True))
    deliver(c, c.discovery_tick(2.0), CABLES, 2.0)
    assert len(c.links) == 2
    # The cable is cut silently: 3 probes missed.
    for now in (3.0, 4.0):
        assert not [m for m in to_server(c.discovery_tick(now)) if isinstance(m, p.DatapathLink)]
    aged = to_server(c.discovery_tick(5.0))
    assert {m for m in aged if isinstance(m, p.DatapathLink)} == {
        link(A, 1, B, 1, False, "aged"),
        link(B, 1, A, 1, False, "aged"),
    }


def test_the_full_table_goes_once_probing_has_run_a_hold_time_and_after_each_hello():
    c = master()
    deliver(c, c.discovery_tick(10.0), CABLES, 10.0)
    tick = c.discovery_tick(12.0)
    assert not [m for m in to_server(tick) if isinstance(m, p.DatapathLinks)]
    deliver(c, tick, CABLES, 12.0)
    full = [m for m in to_server(c.discovery_tick(13.0)) if isinstance(m, p.DatapathLinks)]
    ends = [link(A, 1, B, 1).link, link(B, 1, A, 1).link]
    assert [sorted(m.links, key=str) for m in full] == [sorted(ends, key=str)]
    assert not [m for m in to_server(c.discovery_tick(14.0)) if isinstance(m, p.DatapathLinks)]
    c.hello()  # a new rfserver session is owed the table: at the next tick
    full = [m for m in to_server(c.discovery_tick(14.5)) if isinstance(m, p.DatapathLinks)]
    assert len(full) == 1 and len(full[0].links) == 2


def test_a_switch_leaving_reports_its_links_down_before_the_switch():
    c = master()
    deliver(c, c.discovery_tick(0.0), CABLES, 0.0)
    msgs = to_server(c.switch_left(B, c.switches[B]))
    assert isinstance(msgs[-1], p.DatapathDown)
    assert {(m.link.src_dp_id, m.reason) for m in msgs[:-1]} == {
        (A, "switch left"),
        (B, "switch left"),
    }


def test_a_slave_forgets_the_links_and_a_new_master_starts_over():
    c = master()
    deliver(c, c.discovery_tick(0.0), CABLES, 0.0)
    c.server_message(p.ControllerRole(ct_id=1, role=p.SLAVE, generation=2))
    assert c.links.links() == []
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=3))
    assert c.packet_in(B, 1, probe.build_probe(A, 1, MAC, 3), 20.0)  # sighting, reported
    assert not [m for m in to_server(c.discovery_tick(20.0)) if isinstance(m, p.DatapathLinks)]
    full = [m for m in to_server(c.discovery_tick(23.0)) if isinstance(m, p.DatapathLinks)]
    assert len(full) == 1


def test_the_probe_punt_flow_is_desired_on_every_physical_switch_with_discovery_only():
    from routeflow.proxy.actions import Stream, SwitchRead, WriteFlows

    def planned(c: ProxyCore) -> set:
        plan = c.plan(Stream(A, c.switches[A]), SwitchRead(c.switches[A], 1, 2))
        return {f.key for a in plan.first if isinstance(a, WriteFlows) for f in a.flows}

    lldp = of.discovery_flows()[0]
    assert lldp.key in planned(master())
    assert lldp.key not in planned(master(interval=0.0))
    assert lldp.priority > max(of.PRIO_PUNT_LOCAL_ARP, of.PRIO_MAPPING, of.PRIO_RELAY_ARP)


def test_every_mastership_word_from_rfserver_is_owed_the_table():
    """A session rfserver held back (role hold) dropped the table as not-master's: resend."""
    c = master()
    deliver(c, c.discovery_tick(0.0), CABLES, 0.0)
    c.hello()
    tick = c.discovery_tick(3.0)
    assert [m for m in to_server(tick) if isinstance(m, p.DatapathLinks)]
    deliver(c, tick, CABLES, 3.0)
    c.server_message(p.ControllerRole(ct_id=1, role=p.MASTER, generation=1))  # the same role
    full = [m for m in to_server(c.discovery_tick(4.0)) if isinstance(m, p.DatapathLinks)]
    assert len(full) == 1 and len(full[0].links) == 2


def test_a_switch_table_goes_only_once_it_was_probed_a_hold_time():
    """A switch that connects late (OVS's reconnect back-off) gets its own table, later:
    an early table must not speak for it, or rfserver would drop its links meanwhile."""
    c = master()
    deliver(c, c.discovery_tick(0.0), CABLES, 0.0)
    c.switch_connected(0x7, object())
    c.ports_described(0x7, [Port(1, MAC, "c1", True)])
    tick = c.discovery_tick(3.0)
    (table,) = [m for m in to_server(tick) if isinstance(m, p.DatapathLinks)]
    assert table.dp_ids == [A, B] and len(table.links) == 0  # aged at 3.0: nothing delivered
    deliver(c, tick, CABLES, 3.0)
    tick = c.discovery_tick(5.0)
    assert not [m for m in to_server(tick) if isinstance(m, p.DatapathLinks)]  # 0x7 from 3.0
    deliver(c, tick, CABLES, 5.0)
    (table,) = [m for m in to_server(c.discovery_tick(6.0)) if isinstance(m, p.DatapathLinks)]
    assert table.dp_ids == [0x7] and table.links == []

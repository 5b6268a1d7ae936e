"""The pipeline simulator's own rules, on small hand-written pipelines.

The routeflow pipeline's claims are tested in tests/unit/proxy/test_forwarding.py;
the simulator is held to Open vSwitch in tests/component/test_ofsim_vs_ovs.py.
"""

from __future__ import annotations

import pytest

from routeflow.rflib import ofsim as o

MAC_R = "02:00:00:00:00:01"
MAC_H = "02:00:00:00:00:55"


def ip(dst: str = "10.0.0.9", ttl: int = 64, in_port: int = 1, **more) -> dict:
    return {
        "in_port": in_port,
        "eth_src": MAC_H,
        "eth_dst": MAC_R,
        "eth_type": 0x0800,
        "ip_proto": 17,
        "ipv4_src": "10.9.9.9",
        "ipv4_dst": dst,
        "nw_ttl": ttl,
        **more,
    }


def apply(*actions) -> tuple:
    return (o.ApplyActions(tuple(actions)),)


def test_highest_priority_wins_and_masks_match_bits_not_text():
    flows = [
        o.Flow(0, 10, {"eth_type": 0x0800, "ipv4_dst": "10.0.0.0/8"}, apply(o.Output(2))),
        o.Flow(0, 20, {"eth_type": 0x0800, "ipv4_dst": ("10.1.0.0", "255.255.0.0")},
               apply(o.Output(3))),
        o.Flow(0, 30, {"eth_dst": "01:00:00:00:00:00/01:00:00:00:00:00"}, apply(o.Output(4))),
    ]  # fmt: skip
    p = o.Pipeline(flows)
    assert p.run(ip("10.1.2.3")).ports == {3}
    assert p.run(ip("10.2.2.3")).ports == {2}
    assert p.run(ip("11.0.0.1")).dropped
    assert p.run({**ip(), "eth_dst": "33:33:00:00:00:05"}).ports == {4}  # multicast bit


def test_a_field_the_packet_lacks_matches_only_flows_that_do_not_name_it():
    flows = [
        o.Flow(0, 10, {"ipv4_dst": "10.0.0.9"}, apply(o.Output(2))),
        o.Flow(0, 5, {}, apply(o.Output(3))),
    ]
    arp = {"in_port": 1, "eth_type": 0x0806, "arp_tpa": "10.0.0.9"}
    assert o.Pipeline(flows).run(arp).ports == {3}


def test_two_matching_flows_at_one_priority_are_an_error():
    flows = [
        o.Flow(0, 10, {"in_port": 1}, apply(o.Output(2))),
        o.Flow(0, 10, {"eth_type": 0x0800}, apply(o.Output(3))),
    ]
    with pytest.raises(o.SimError, match="two flows of priority 10"):
        o.Pipeline(flows).run(ip())


def test_instructions_run_in_the_specified_order_and_the_action_set_at_the_end():
    flows = [
        # Given out of order on purpose: goto, write, apply.
        o.Flow(0, 1, {}, (
            o.GotoTable(1),
            o.WriteActions((o.Output(5), o.SetField("eth_dst", "02:00:00:00:00:99"))),
            o.ApplyActions((o.SetField("eth_src", MAC_R), o.Output(4))),
        )),
        o.Flow(1, 1, {}, (o.WriteActions((o.DecTtl(),)),)),
    ]  # fmt: skip
    r = o.Pipeline(flows).run(ip())
    first, second = r.outcomes
    assert (first.port, first.packet["eth_src"], first.packet["nw_ttl"]) == (4, MAC_R, 64)
    assert first.packet["eth_dst"] == MAC_R  # the written set-field waits for the action set
    assert (second.port, second.packet["eth_dst"], second.packet["nw_ttl"]) == (
        5, "02:00:00:00:00:99", 63,
    )  # fmt: skip
    assert [s.table for s in r.trace] == [0, 1]


def test_clear_actions_empties_the_set_and_a_group_beats_an_output_in_it():
    groups = [o.GroupEntry(1, "indirect", (o.Bucket((o.Output(7),)),))]
    cleared = [
        o.Flow(0, 1, {}, (o.WriteActions((o.Output(5),)), o.GotoTable(1))),
        o.Flow(1, 1, {}, (o.ClearActions(),)),
    ]
    assert o.Pipeline(cleared).run(ip()).dropped
    both = [o.Flow(0, 1, {}, (o.WriteActions((o.Output(5), o.Group(1))),))]
    assert o.Pipeline(both, groups).run(ip()).ports == {7}


def test_metadata_is_written_under_its_mask_and_matched_later():
    flows = [
        o.Flow(0, 1, {}, (o.WriteMetadata(0xAB, 0xF0), o.GotoTable(1))),
        o.Flow(1, 2, {"metadata": (0xA0, 0xF0)}, apply(o.Output(2))),
        o.Flow(1, 1, {}, apply(o.Output(3))),
    ]
    assert o.Pipeline(flows).run(ip()).ports == {2}


def test_goto_must_go_forward():
    flows = [o.Flow(1, 1, {}, (o.GotoTable(1),)), o.Flow(0, 1, {}, (o.GotoTable(1),))]
    with pytest.raises(o.SimError, match="does not go forward"):
        o.Pipeline(flows).run(ip())


def test_ttl_decrements_and_expires():
    flows = [o.Flow(0, 1, {}, apply(o.DecTtl(), o.Output(2)))]
    assert o.Pipeline(flows).run(ip(ttl=2)).outputs[0].packet["nw_ttl"] == 1
    for ttl in (1, 0):
        r = o.Pipeline(flows).run(ip(ttl=ttl))
        assert [x.kind for x in r.outcomes] == [o.TTL_EXPIRED]  # and no output after it
        assert r.punted
    arp = {"in_port": 1, "eth_type": 0x0806}
    assert o.Pipeline(flows).run(arp).ports == {2}  # nothing to decrement: no-op
    with pytest.raises(o.SimError, match="nw_ttl"):
        o.Pipeline(flows).run({"in_port": 1, "eth_type": 0x0800})


def test_output_to_the_ingress_port_needs_in_port():
    hairpin = [o.Flow(0, 1, {}, apply(o.Output(1)))]
    r = o.Pipeline(hairpin).run(ip(in_port=1))
    assert r.dropped
    assert "ingress port 1" in r.executions[0].notes[0]
    back = [o.Flow(0, 1, {}, apply(o.Output(o.IN_PORT)))]
    assert o.Pipeline(back).run(ip(in_port=1)).ports == {1}


def test_controller_local_and_flood():
    flows = [o.Flow(0, 1, {}, apply(o.Output(o.CONTROLLER), o.Output(o.LOCAL), o.Output(o.FLOOD)))]
    r = o.Pipeline(flows, ports=[1, 2, 3]).run(ip(in_port=2))
    assert [(x.kind, x.port) for x in r.outcomes] == [
        (o.CONTROLLER_OUT, None), (o.OUTPUT, o.LOCAL), (o.OUTPUT, 1), (o.OUTPUT, 3),
    ]  # fmt: skip
    with pytest.raises(o.SimError, match="ports"):
        o.Pipeline(flows).run(ip())


def test_group_types():
    b = [
        o.Bucket((o.SetField("eth_dst", "02:00:00:00:00:0a"), o.Output(2)), weight=1, watch_port=2),
        o.Bucket((o.SetField("eth_dst", "02:00:00:00:00:0b"), o.Output(3)), weight=0, watch_port=3),
        o.Bucket((o.SetField("eth_dst", "02:00:00:00:00:0c"), o.Output(4)), weight=2, watch_port=4),
    ]
    flows = [o.Flow(0, 1, {}, apply(o.Group(1), o.Output(9)))]

    def result(kind, down=()):
        return o.Pipeline(flows, [o.GroupEntry(1, kind, tuple(b))], down=down).run(ip())

    everything = result("all")
    assert len(everything.executions) == 1
    assert [x.port for x in everything.outcomes] == [2, 3, 4, 9]
    # The group worked on a copy: the output after it sees the original header.
    assert everything.outcomes[-1].packet["eth_dst"] == MAC_R

    select = result("select")  # weight 0 is never chosen
    assert [[x.port for x in ex.outcomes] for ex in select.executions] == [[2, 9], [4, 9]]
    assert select.ports == {2, 4, 9}

    assert result("ff").ports == {2, 9}
    assert result("ff", down={2}).ports == {3, 9}
    assert result("ff", down={2, 3, 4}).ports == {9}


def test_bucket_actions_are_an_action_set():
    # Listed output first, then set and dec: run as set (dec, set, output), as OVS does.
    listed = (o.Output(2), o.SetField("eth_dst", MAC_H), o.DecTtl())
    g = o.GroupEntry(1, "indirect", (o.Bucket(listed),))
    r = o.Pipeline([o.Flow(0, 1, {}, apply(o.Group(1)))], [g]).run(ip(ttl=1))
    assert [x.kind for x in r.outcomes] == [o.TTL_EXPIRED]
    assert r.outcomes[0].packet["eth_dst"] == MAC_R  # expired before the set-field
    r = o.Pipeline([o.Flow(0, 1, {}, apply(o.Group(1)))], [g]).run(ip())
    assert (r.outcomes[0].port, r.outcomes[0].packet["eth_dst"]) == (2, MAC_H)


def test_select_groups_in_sequence_give_every_combination():
    def sel(gid, *ports):
        return o.GroupEntry(gid, "select", tuple(o.Bucket((o.Output(p),)) for p in ports))

    flows = [o.Flow(0, 1, {}, apply(o.Group(1), o.Group(2)))]
    r = o.Pipeline(flows, [sel(1, 2, 3), sel(2, 4, 5, 6)]).run(ip())
    ways = [tuple(x.port for x in ex.outcomes) for ex in r.executions]
    assert sorted(ways) == [(a, b) for a in (2, 3) for b in (4, 5, 6)]


def test_vlan_push_set_pop():
    flows = [
        o.Flow(0, 2, {"vlan_vid": 0}, apply(
            o.PushVlan(), o.SetField("vlan_vid", o.OFPVID_PRESENT | 5), o.Output(2))),
        o.Flow(0, 1, {"vlan_vid": (o.OFPVID_PRESENT, o.OFPVID_PRESENT)}, apply(
            o.PopVlan(), o.Output(3))),
    ]  # fmt: skip
    p = o.Pipeline(flows)
    tagged = p.run(ip()).outcomes[0]
    assert (tagged.port, tagged.packet["vlan_vid"], tagged.packet["vlan_pcp"]) == (2, 0x1005, 0)
    untagged = p.run({**ip(), "vlan_vid": 0x1005, "vlan_pcp": 3}).outcomes[0]
    assert untagged.port == 3 and "vlan_vid" not in untagged.packet


def test_bad_input_is_refused_not_guessed():
    with pytest.raises(o.SimError, match="unknown field"):
        o.Flow(0, 1, {"ip_dst": "10.0.0.1"})
    with pytest.raises(o.SimError, match="in_port"):
        o.Pipeline([]).run({"eth_type": 0x0806})
    with pytest.raises(o.SimError, match="no group 3"):
        o.Pipeline([o.Flow(0, 1, {}, apply(o.Group(3)))]).run(ip())
    with pytest.raises(o.SimError, match="one identity"):
        o.Pipeline([o.Flow(0, 1, {"in_port": 1}), o.Flow(0, 1, {"in_port": 1})])
    with pytest.raises(o.SimError, match="indirect group 1 has 2"):
        o.GroupEntry(1, "indirect", (o.Bucket(()), o.Bucket(())))
    with pytest.raises(o.SimError, match="does not fit"):
        o.Flow(0, 1, {"eth_type": 0x10000})


def test_an_all_zero_mask_is_no_field_and_matches_equal_however_written():
    a = o.Flow(0, 1, {"eth_type": 0x800, "ipv4_dst": "10.1.2.3/16"})
    b = o.Flow(0, 1, [("ipv4_dst", ("10.1.0.0", "255.255.0.0")), ("eth_type", "0x0800")])
    assert a == b
    assert o.Flow(0, 1, {"ipv4_dst": "0.0.0.0/0"}).match == ()


def test_registers_start_at_zero_moves_copy_bits_and_tunnel_fields_show_on_output():
    flows = [
        o.Flow(0, 1, {"reg6": 0}, (o.ApplyActions((o.SetField("reg6", 9),)), o.GotoTable(1))),
        o.Flow(1, 1, {"reg6": 9}, (o.ApplyActions((
            o.Move("eth_dst", "reg0", 32, 0, 0),  # the low 32 bits of the MAC
            o.Move("eth_src", "eth_dst"),
            o.Move("reg0", "eth_src", 32, 0, 0),
            o.SetField("tun_ipv4_dst", "198.51.100.2"),
            o.SetField("tunnel_id", 100),
            o.Output(5),
        )),)),
    ]  # fmt: skip
    packet = {"in_port": 1, "eth_src": "02:00:00:00:00:01", "eth_dst": "04:00:aa:bb:cc:dd"}
    (out,) = o.run(flows, (), packet).outcomes
    assert out.port == 5
    assert out.packet == {"eth_src": "02:00:aa:bb:cc:dd", "eth_dst": "02:00:00:00:00:01"}
    assert dict(out.tunnel) == {"tunnel_id": 100, "tun_ipv4_dst": "198.51.100.2"}
    with pytest.raises(o.SimError, match="widths"):
        o.Move("eth_src", "reg0")


def test_conjunctions_and_conntrack_as_ovs_runs_them():
    """Clause flows alone never hit; all clauses of an id -> the conj_id flow; a
    connection committed in a zone is established there for both directions."""
    ip = {"eth_type": 0x0800}
    flows = [
        o.Flow(0, 10, {**ip, "ipv4_src": "10.0.0.1"}, (o.ApplyActions((o.Conjunction(5, 1, 2),)),)),
        o.Flow(0, 10, {**ip, "ipv4_dst": "10.0.0.9"}, (o.ApplyActions((o.Conjunction(5, 2, 2),)),)),
        o.Flow(0, 10, {"conj_id": 5, **ip}, (o.ApplyActions((o.Ct(table=1, zone=3),)),)),
        o.Flow(0, 1, ip, (o.ApplyActions((o.Output(9),)),)),
        o.Flow(1, 5, {"ct_state": (o.CT_EST | o.CT_TRK, o.CT_EST | o.CT_TRK)}, (o.GotoTable(2),)),
        o.Flow(1, 1, {"ct_state": (o.CT_NEW, o.CT_NEW)},
               (o.ApplyActions((o.Ct(commit=True, zone=3), o.Output(2))),)),
        o.Flow(2, 1, {}, (o.ApplyActions((o.Output(3),)),)),
    ]  # fmt: skip
    pipe = o.Pipeline(flows)
    base = {"in_port": 1, **ip, "ip_proto": 17, "nw_ttl": 9, "udp_src": 1, "udp_dst": 2}
    new = pipe.run({**base, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.9"})
    assert new.ports == {2} and len(new.commits) == 1
    again = pipe.run({**base, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.9"}, new.commits)
    assert again.ports == {3} and not again.commits
    # Only one clause matches: the conjunctive flows are as if absent.
    assert pipe.run({**base, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.8"}).ports == {9}

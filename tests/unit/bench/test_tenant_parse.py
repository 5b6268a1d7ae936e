"""What the tenant benchmark reads from switches and OVSDB (pure helpers)."""

from __future__ import annotations

from routeflow.bench import apistub, ovn
from routeflow.bench.tenantplan import cookies, count_by_port, metadata_flows
from routeflow.tenant import pipeline as p

PORT7 = p.cookie_of(p.Kind.PORT, 7)
NET = p.cookie_of(p.Kind.NETWORK, 100)

DUMP = f"""OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie={PORT7:#x}, table=0, priority=100,in_port=1 actions=set_field:0x7->reg6,goto_table:5
 cookie={PORT7:#x}, table=55, priority=100,ip,metadata=0x64,nw_dst=10.1.0.2 actions=goto_table:70
 cookie={NET:#x}, table=40, priority=50,metadata=0x64,dl_dst=ff:ff:ff:ff:ff:ff actions=drop
 cookie=0x0, table=0, priority=0 actions=drop
"""


def test_flows_are_counted_by_port_cookie() -> None:
    assert cookies(DUMP) == [PORT7, PORT7, NET, 0]
    per_port, per_node = count_by_port({"n1": DUMP, "n2": ""}, {7: "port-a"})
    assert per_port == {"port-a": {"n1": 2}}
    assert per_node == {"n1": 3}  # the cookie-0 flow is not the tenant pipeline's


def test_metadata_flows_match_the_exact_value_in_the_match_only() -> None:
    assert metadata_flows(DUMP, 100) == 2
    assert metadata_flows(DUMP, 0x6) == 0
    line = "cookie=0x1, table=8, metadata=0x640 actions=load:0x64->OXM_OF_METADATA[]"
    assert metadata_flows(line, 100) == 0


def test_lsp_insert_is_one_transaction_of_lsp_add_and_addresses() -> None:
    ops = ovn.lsp_insert_ops("sw-uuid", "p1", "fa:16:3e:00:00:01", "10.1.0.2", "dhcp-uuid")
    insert, mutate = ops
    assert insert["row"] == {
        "name": "p1",
        "addresses": "fa:16:3e:00:00:01 10.1.0.2",
        "dhcpv4_options": ["uuid", "dhcp-uuid"],
    }
    assert mutate["where"] == [["_uuid", "==", ["uuid", "sw-uuid"]]]
    assert mutate["mutations"] == [["ports", "insert", ["set", [["named-uuid", "lsp"]]]]]
    assert "dhcpv4_options" not in ovn.lsp_insert_ops("s", "p", "m", "i", None)[0]["row"]


def test_the_api_stub_answers_a_port_create() -> None:
    body = apistub.port_body({"port": {"network_id": "n", "name": "x"}})["port"]
    assert body["network_id"] == "n" and body["name"] == "x" and body["id"]
    assert apistub.port_body("junk")["port"]["network_id"] == ""


def test_a_port_joins_its_security_group_in_the_same_transaction() -> None:
    ops = ovn.lsp_insert_ops("s", "p", "m", "i", None, ovn.DEFAULT_SG)
    assert ops[2]["table"] == "Port_Group"
    assert ops[2]["where"] == [["name", "==", ovn.DEFAULT_SG]]
    assert ops[2]["mutations"] == [["ports", "insert", ["set", [["named-uuid", "lsp"]]]]]
    assert {verdict for *_, verdict in ovn.DEFAULT_SG_ACLS} == {"allow-related", "drop"}

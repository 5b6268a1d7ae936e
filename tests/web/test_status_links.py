"""`routeflow status` renders the discovered links (and leaves the table out when none)."""

from __future__ import annotations

import time

from rich.console import Console

from routeflow.web.status import render

SUMMARY = {
    "pid": 1, "started": time.time(), "lab": "t", "switches": 2, "switches_registered": 2,
    "vms": 0, "vms_connected": 0, "associations": 0, "associations_by_state": {},
    "routes": 0, "fib_entries": 0, "nexthops": 0, "flow_packets": 0, "relayed_to_vm": 0,
    "relayed_to_dp": 0, "links": 1,
}  # fmt: skip


def link(src, sport, dst, dport, reverse, confirmed=True):
    return {
        "src_dp_id": src, "src_port": sport, "src_port_name": f"{src}-eth{sport}",
        "dst_dp_id": dst, "dst_port": dport, "dst_port_name": "", "ct_id": 1,
        "since": time.time() - 5, "confirmed": confirmed, "reverse": reverse,
    }  # fmt: skip


def _render(links) -> str:
    console = Console(record=True, width=160)
    data = {
        "summary": SUMMARY, "associations": [], "vms": [], "switches": [], "flows": [],
        "controllers": [], "events": [], "links": links,
    }  # fmt: skip
    render(console, data, "http://x")
    return console.export_text()


def test_status_shows_discovered_links_one_way_and_stored():
    text = _render(
        [link("0x5", 2, "0x6", 1, True), link("0x6", 1, "0x5", 2, True, confirmed=False),
         link("0x5", 3, "0x7", 1, False)]
    )  # fmt: skip
    assert "discovered links" in text and "links 1" in text
    assert "0x5-eth2" in text and "one-way" in text and "stored" in text and "5 s ago" in text


def test_status_without_links_has_no_links_table():
    assert "discovered links" not in _render([])

"""BGP unnumbered (labs/rftest2-unnumbered.yaml): IPv4 routes through IPv6 next hops.

rftest2's four switches as an eBGP fabric whose VMs peer over their links' IPv6
link-local addresses (FRR's `neighbor ethN interface`), with no IPv4 address on those
links: every IPv4 route a VM learns is `via inet6 fe80::... dev ethN` (RFC 5549), and
the switches must forward it, rewritten to that IPv6 neighbour's MAC. Evidence from
outside routeflow: the VM kernels, ping, ovs-ofctl. One lab serves the module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from faultkit import converged_lab

from routeflow.lab import checks
from routeflow.lab.faults import ContinuousPing
from routeflow.lab.runner import LabRun

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def run() -> Iterator[LabRun]:
    yield from converged_lab("rftest2-unnumbered", "unnumbered")


def bgp_routes(run: LabRun, switch: str) -> list[checks.KernelRoute]:
    return [
        r
        for r in checks.kernel_route_table(run, switch, 4)
        if r.type == "unicast" and "bgp" in r.line
    ]


def test_ipv4_routes_go_through_ipv6_link_local_next_hops(run):
    for vm in run.plan.vms:
        routes = bgp_routes(run, vm.switch)
        assert len(routes) == 3, [r.line for r in routes]  # the other three hosts' subnets
        for r in routes:
            assert r.hops and all(gw.startswith("fe80:") for gw, _dev in r.hops), r.line
        out = run.vm_node(vm.switch).cmd("ip -4 -o addr show")
        for i in vm.link_ports:  # no IPv4 on the links: unnumbered
            assert f" {i.ifname} " not in out, out


def test_pingall_and_flows_rewrite_to_the_ipv6_neighbours_mac(run):
    assert checks.wait_until(lambda: not checks.pingall(run)[2], 30), checks.pingall(run)
    flows = checks.check_flows(run)  # each group's eth_dst == the kernel's MAC for fe80::..
    assert flows.ok, flows
    paths = checks.shortest_paths(run, "switch")
    assert paths.ok, paths.detail()


def test_a_cut_link_reroutes_and_comes_back(run):
    """A-D down: the session over it ends with the interface, h1 -> h4 goes round."""
    h4 = run.plan.host("h4")
    port = next(i.port for i in run.plan.vm("A").link_ports if i.peer == "D")

    def via_a_d() -> bool:
        routes = {r.prefix: r for r in bgp_routes(run, "A")}
        r = routes.get(h4.subnet)
        return r is not None and any(dev == f"eth{port}" for _gw, dev in r.hops)

    assert checks.wait_until(via_a_d, 30)
    ping = ContinuousPing(run.host("h1"), h4.address, interval=0.02)
    time.sleep(1)
    try:
        run.set_link("A", "D", up=False)
        assert checks.wait_until(lambda: not via_a_d(), 20)
        assert checks.wait_until(lambda: checks.ping(run, "h1", h4.address), 20)
        time.sleep(1)
        down = ping.stop()
        assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)
    finally:
        if ping.proc.poll() is None:
            ping.stop()
        run.set_link("A", "D", up=True)
    print(f"unnumbered A-D cut: {down.lost}/{down.sent} pings lost, outage {down.outage_s:.2f} s")
    assert checks.wait_until(via_a_d, 60)  # the session re-forms over the link-local
    assert checks.wait_until(lambda: checks.check_flows(run).ok, 20), checks.check_flows(run)

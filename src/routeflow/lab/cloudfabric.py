"""`lab check` of a cloud whose external network is the routeflow fabric (I/O shell).

The routeflow lab comes up and converges first (scenarios.run_check: OSPF, every host
pings every host); then, as its extra check, the cloud: compute and gateway nodes,
tenant server, agents (lab/cloudrun.py). The lab host ``external.host`` gives its
subnet to the external network: its interface moves onto a Linux bridge in its own
namespace, and every gateway node's external port (br-int ofport 101) joins that
bridge, so the gateway nodes sit on the switch's host subnet, which OSPF carries
("connected" mode). Through the API (openstacksdk): the external network and subnet
(the host's gateway, the switch's VM, is its gateway_ip), every tenant router's
gateway, an ingress rule for ICMP and UDP from anywhere in each tenant's default group,
and the floating IPs. Stages after the usual plug and DHCP:

* the outside host sees the SNAT address (a UDP echo tells each side the source it saw);
* the outside reaches a VM through its floating IP (ping; the echo names the VM and the
  reply comes from the floating IP);
* a floating IP re-associated to another port answers from the new VM within a second
  (the time is the API call to the first answer, polled every 50 ms);
* security groups allow and block what their rules say, and removing a rule leaves an
  established connection up (lab/cloudsg.py, as in the plain cloud lab's check);
* last, gateway failover: with a ping every 20 ms from the outside to the floating IP,
  the gateway node serving its router drops off the external link and its agent is
  SIGKILLed; the stage's time is the longest gap in the replies (lab/pingwatch.py),
  and it passes when the other gateway node serves the router (the tenant server runs
  with ``--gateway-grace 0``).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from routeflow.lab.cloud import CloudLab
from routeflow.lab.cloudcheck import _dhcp, _plug
from routeflow.lab.cloudrun import CloudFailure, CloudRun, Vm
from routeflow.lab.cloudsg import secgroup_stages
from routeflow.lab.ovsnode import EXTERNAL_OFPORT, run
from routeflow.lab.pingwatch import measure_outage
from routeflow.lab.runner import LabRun
from routeflow.lab.scenarios import CheckResult, run_check

__all__ = ["run_fabric_cloud_check"]

ECHO_PORT = 7777
ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "while True:\n"
    "    d,a=s.recvfrom(100)\n"
    "    s.sendto((sys.argv[2]+' '+a[0]).encode(),a)\n"
)
ASK = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.settimeout(float(sys.argv[3]))\n"
    "s.sendto(b'?',(sys.argv[1],int(sys.argv[2])))\n"
    "d,a=s.recvfrom(100)\n"
    "print(d.decode(),a[0])\n"
)


#: Every 20 ms a probe from a fresh socket (a new connection: an old one keeps its NAT
#: entry); prints the wall-clock time of the first answer from argv[3], or "none".
PROBE = (
    "import select,socket,sys,time\n"
    "dst,port,want,limit=sys.argv[1],int(sys.argv[2]),sys.argv[3],float(sys.argv[4])\n"
    "print('ready',flush=True)\n"
    "socks=[];end=time.time()+limit;nxt=0.0\n"
    "while time.time()<end:\n"
    "    if time.time()>=nxt:\n"
    "        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setblocking(False)\n"
    "        s.sendto(b'?',(dst,port));socks.append(s);nxt=time.time()+0.02\n"
    "    r,_,_=select.select(socks,[],[],0.005)\n"
    "    for s in r:\n"
    "        d=s.recv(100).decode().split()\n"
    "        if d and d[0]==want:\n"
    "            print(repr(time.time()),flush=True);sys.exit(0)\n"
    "    socks=socks[-200:]\n"
    "print('none',flush=True)\n"
)


def _ask(prefix: list[str], dst: str, wait: float = 0.3) -> tuple[str, str, str] | None:
    """(who answered, the source it saw, the reply's source) or None."""
    r = subprocess.run(
        [*prefix, sys.executable, "-c", ASK, dst, str(ECHO_PORT), str(wait)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    parts = r.stdout.split()
    return (parts[0], parts[1], parts[2]) if r.returncode == 0 and len(parts) == 3 else None


def _until(fn: Callable[[], Any], deadline: float) -> Any:
    end = time.monotonic() + deadline
    while True:
        got = fn()
        if got or time.monotonic() > end:
            return got


class External:
    """The cloud's external side on one routeflow lab run."""

    def __init__(self, lab: LabRun, crun: CloudRun, cloud: CloudLab) -> None:
        assert cloud.external is not None
        self.lab, self.crun, self.x = lab, crun, cloud.external
        self.host = lab.plan.host(self.x.host)
        self.outside = lab.plan.host(self.x.outside)
        self.echoes: list[subprocess.Popen[bytes]] = []
        #: Gateway node -> its external port's device (in the node's namespace).
        self.ext_devs: dict[str, str] = {}

    def ns_of(self, host: str) -> list[str]:
        return ["nsenter", "-t", str(self.lab.host(host).pid), "-n"]

    def attach(self) -> None:
        """The external host's link becomes a bridge every gateway node's port joins."""
        node = self.lab.host(self.x.host)
        intf = node.defaultIntf().name
        cmds = [
            "ip link add brx type bridge",
            "ip link set brx up",
            f"ip addr flush dev {intf}",
            f"ip link set {intf} master brx",
            f"ip addr add {self.host.ip} dev brx",
            f"ip route replace default via {self.host.gateway}",
        ]
        for cmd in cmds:
            node.cmd(cmd)
        for i, gw in enumerate(n for n in self.crun.cloud.nodes if n.gateway):
            ovs = self.crun.nodes[gw.name]
            dev, peer = f"x{ovs.ns}"[:15], f"gx{i}"
            run(
                [
                    "ip",
                    "link",
                    "add",
                    dev,
                    "netns",
                    ovs.ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer,
                    "netns",
                    str(node.pid),
                ]
            )
            run(["ip", "-n", ovs.ns, "link", "set", dev, "up"])
            run(["ip", "netns", "exec", ovs.ns, "ethtool", "-K", dev, "tx", "off"], check=False)
            node.cmd(f"ip link set {peer} master brx && ip link set {peer} up")
            node.cmd(f"ethtool -K {peer} tx off")
            self.ext_devs[gw.name] = dev
            ovs.vsctl(
                "add-port",
                "br-int",
                dev,
                "--",
                "set",
                "interface",
                dev,
                f"ofport_request={EXTERNAL_OFPORT}",
            )

    def bootstrap(self, conn: Any, vms: dict[str, Vm]) -> dict[str, Any]:
        """External network, router gateways, SG rules, floating IPs; VM name -> FIP."""
        subnet = ipaddress.IPv4Network(self.host.subnet)
        hosts = list(subnet.hosts())
        pub = conn.network.create_network(name="public", is_router_external=True)
        conn.network.create_subnet(
            network_id=pub.id,
            name="public-v4",
            ip_version=4,
            cidr=str(subnet),
            gateway_ip=self.host.gateway,
            enable_dhcp=False,
            allocation_pools=[{"start": str(hosts[9]), "end": str(hosts[min(99, len(hosts) - 2)])}],
        )
        for tenant in self.crun.cloud.tenants:
            for r in tenant.routers:
                router = conn.network.find_router(r.name)
                conn.network.update_router(router, external_gateway_info={"network_id": pub.id})
            sg = next(iter(conn.network.security_groups(name="default", project_id=tenant.name)))
            for proto in ("icmp", "udp"):
                conn.network.create_security_group_rule(
                    security_group_id=sg.id,
                    direction="ingress",
                    protocol=proto,
                    remote_ip_prefix="0.0.0.0/0",
                    ethertype="IPv4",
                )
        fips = {}
        for name in self.x.floating_ips:
            fips[name] = conn.network.create_ip(
                floating_network_id=pub.id, port_id=vms[name].port_id
            )
        return fips

    def kill_gateway(self, node: str) -> None:
        """The node drops off the external link (its port down) and its agent dies
        (SIGKILL by recorded pid): its br-int keeps the flows, nothing answers."""
        run(["ip", "-n", self.crun.nodes[node].ns, "link", "set", self.ext_devs[node], "down"])
        self.crun.kill(f"agent-{node}")

    def start_echoes(self) -> None:
        for name, prefix in [(self.x.outside, self.ns_of(self.x.outside))] + [
            (vm.name, ["ip", "netns", "exec", vm.ns]) for vm in self.crun.vms.values()
        ]:
            self.echoes.append(
                subprocess.Popen(
                    [*prefix, sys.executable, "-c", ECHO, str(ECHO_PORT), name],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for p in self.echoes:
            p.kill()
            p.wait()
        self.echoes = []


def checks(
    lab: LabRun, result: CheckResult, cloud: CloudLab, run_dir: str, timeout: float, log_level: str
) -> None:
    # A gateway node whose agent is gone is down at once: its routers move (failover).
    crun = CloudRun(
        cloud,
        os.path.join(run_dir, "cloud"),
        log_level=log_level,
        server_args=["--gateway-grace", "0"],
    )
    ext: External | None = None
    try:
        t = time.monotonic()
        crun.start()
        result.add(
            "cloud: nodes, tenant server, agents",
            True,
            time.monotonic() - t,
            ", ".join(f"{s} {sec:.1f} s" for s, sec in crun.timings),
        )
        ext = External(lab, crun, cloud)
        t = time.monotonic()
        ext.attach()
        gws = [n.name for n in cloud.nodes if n.gateway]
        result.add(
            "gateway nodes' external ports on the fabric",
            True,
            time.monotonic() - t,
            f"{', '.join(gws)} on {ext.host.switch}'s host subnet {ext.host.subnet}",
        )
        conn = crun.connect()
        t = time.monotonic()
        ports = crun.bootstrap(conn)
        result.add("bootstrap through the API", True, time.monotonic() - t)
        if not _plug(crun, result, conn, ports, timeout):
            return
        if _dhcp(crun, result) is None:  # type: ignore[arg-type]
            return
        t = time.monotonic()
        fips = ext.bootstrap(conn, crun.vms)
        result.add(
            "external network, gateways, floating IPs (API)",
            True,
            time.monotonic() - t,
            ", ".join(f"{vm} {f.floating_ip_address}" for vm, f in fips.items()),
        )
        ext.start_echoes()
        outside = ext.ns_of(cloud.external.outside)  # type: ignore[union-attr]
        snat_stage(crun, result, conn, ext, timeout)
        for vm, fip in fips.items():
            fip_stage(crun, result, ext, outside, vm, fip.floating_ip_address, timeout)
        if fips:
            move_stage(crun, result, conn, ext, outside, next(iter(fips.items())))
        secgroup_stages(crun, result, conn, timeout)  # lab/cloudsg.py: tcp ports, ICMP
        if fips:  # last: it kills a gateway node
            fip = next(iter(fips.values())).floating_ip_address
            failover_stage(crun, result, ext, outside, fip)
    except (CloudFailure, OSError, subprocess.SubprocessError) as exc:
        result.add("cloud", False, 0.0, f"{type(exc).__name__}: {exc}")
    finally:
        if ext is not None:
            ext.stop()
        crun.keep_logs = not result.ok
        crun.stop()


def snat_stage(
    crun: CloudRun, result: CheckResult, conn: Any, ext: External, timeout: float
) -> None:
    t = time.monotonic()
    seen: dict[str, str] = {}
    want: dict[str, str] = {}
    for vm in crun.vms.values():
        if vm.name in ext.x.floating_ips:
            continue
        router = next(
            (
                r
                for r in conn.network.routers()
                if r.external_gateway_info
                and any(i.network_id == vm.network_id for i in conn.network.ports(device_id=r.id))
            ),
            None,
        )
        if router is None:
            continue
        want[vm.name] = router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
        prefix = ["ip", "netns", "exec", vm.ns]

        def ask(prefix: list[str] = prefix) -> tuple[str, str, str] | None:
            return _ask(prefix, ext.outside.address)

        got = _until(ask, min(timeout, 15.0))
        seen[vm.name] = got[1] if got else "no answer"
    bad = [f"{v}: {seen[v]} (want {want[v]})" for v in want if seen[v] != want[v]]
    result.add(
        "outside sees the SNAT address",
        bool(want) and not bad,
        time.monotonic() - t,
        "; ".join(f"{v} -> {ext.x.outside} as {s}" for v, s in seen.items())
        if not bad
        else "; ".join(bad),
    )


def fip_stage(
    crun: CloudRun,
    result: CheckResult,
    ext: External,
    outside: list[str],
    vm: str,
    fip: str,
    timeout: float,
) -> None:
    t = time.monotonic()
    got = _until(lambda: _ask(outside, fip), min(timeout, 15.0))
    ping = subprocess.run(
        [*outside, "ping", "-n", "-c", "1", "-W", "2", fip],
        capture_output=True,
        text=True,
        timeout=10,
    )
    ok = got is not None and got[0] == vm and got[2] == fip and ping.returncode == 0
    ttl = next((w[4:] for w in ping.stdout.split() if w.startswith("ttl=")), "?")
    detail = (
        (
            f"{ext.x.outside} -> {fip}: answered by {got[0]} (saw {got[1]}), reply from "
            f"{got[2]}; ping ttl {ttl}"
        )
        if got
        else f"no answer from {fip}"
    )
    result.add(f"outside reaches {vm} through its floating IP", ok, time.monotonic() - t, detail)


def move_stage(
    crun: CloudRun,
    result: CheckResult,
    conn: Any,
    ext: External,
    outside: list[str],
    first: tuple[str, Any],
) -> None:
    vm, fip = first
    other = next(
        (v for v in crun.vms.values() if v.name != vm and v.network_id == crun.vms[vm].network_id),
        None,
    )
    if other is None:
        result.add(
            "floating IP re-association moves within a second",
            False,
            0.0,
            f"no other VM on {vm}'s network to move it to",
        )
        return
    probe = subprocess.Popen(
        [*outside, sys.executable, "-c", PROBE, fip.floating_ip_address, str(ECHO_PORT),
         other.name, "10"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert probe.stdout is not None
    probe.stdout.readline()  # ready
    t, wall = time.monotonic(), time.time()
    conn.network.update_ip(fip, port_id=other.port_id)
    answer = probe.stdout.readline().strip()
    probe.wait(15)
    got = answer not in ("", "none")
    took = float(answer) - wall if got else time.monotonic() - t
    ok = got and took <= 1.0
    result.add(
        "floating IP re-association moves within a second",
        ok,
        took,
        f"{fip.floating_ip_address}: {vm} -> {other.name}, first answer from "
        f"{other.name} {took * 1000:.0f} ms after the API call was made (a probe every 20 ms)"
        if got
        else f"{fip.floating_ip_address} still not at {other.name} after 10 s",
    )


def serving_gateway(cloud: Any, fip: str) -> str | None:
    """The gateway node that NATs floating IP ``fip`` in the model (None: none)."""
    from routeflow.tenant import nat

    f = next((f for f in cloud.floatingips.values() if f.floating_ip_address == fip), None)
    router = cloud.routers.get(f.router_id) if f is not None and f.router_id else None
    node = nat.gateway_node(cloud, router) if router is not None else None
    return node.id if node is not None else None


def failover_stage(
    crun: CloudRun, result: CheckResult, ext: External, outside: list[str], fip: str
) -> None:
    """Kill the gateway node serving ``fip`` under a 20 ms ping from the outside; the
    stage's time is the longest gap in the replies (target: under 1 s)."""
    stage = "gateway failover: floating IP unreachable for"
    t = time.monotonic()
    node = serving_gateway(crun.snapshot(), fip)
    gateways = [n.name for n in crun.cloud.nodes if n.gateway]
    if node is None or len(gateways) < 2:
        result.add(stage, False, 0.0, f"{fip} served by {node or 'nobody'} of {gateways}")
        return
    moved: list[tuple[float, str | None]] = []

    def watch(at: float) -> None:
        if not moved:
            now = serving_gateway(crun.snapshot(), fip)
            if now != node:
                moved.append((time.time() - at, now))

    seen = measure_outage(outside, fip, lambda: ext.kill_gateway(node), watch)
    if not seen.steady:
        result.add(stage, False, 0.0, f"no steady ping to {fip} before: {seen.lines[-3:]}")
        return
    after = serving_gateway(crun.snapshot(), fip)
    if seen.gap is None:
        result.add(
            stage,
            False,
            time.monotonic() - t,
            f"{fip} unreachable after {node} was killed (now served by {after}; load {seen.load})",
        )
        return
    seconds, lost = seen.gap
    ok = after is not None and after != node
    result.add(
        stage,
        ok,
        seconds,
        f"{node} killed (external port down, agent SIGKILL): {fip} answered again via "
        f"{after} after {seconds * 1000:.0f} ms, {lost} pings lost at 20 ms (target < 1 s: "
        f"{'met' if seconds < 1.0 else 'missed'})"
        + (
            f"; the model moved the router to {moved[0][1]} {moved[0][0] * 1000:.0f} ms "
            "after the kill"
            if moved
            else ""
        )
        + f"; load {seen.load}",
    )


def run_fabric_cloud_check(
    plan: Any,
    cloud: CloudLab,
    run_dir: str,
    *,
    timeout: float = 120.0,
    log_level: str = "INFO",
    on_stage: Any = None,
) -> CheckResult:
    """The routeflow lab's own check, then the cloud's external stages (see above; in
    bgp mode lab/cloudbgp.py's)."""
    if cloud.external is not None and cloud.external.mode == "bgp":
        from routeflow.lab import cloudbgp

        extra = cloudbgp.checks
    else:
        extra = checks
    return run_check(
        plan,
        run_dir,
        timeout=timeout,
        log_level=log_level,
        on_stage=on_stage,
        extra_checks=lambda lab, result: extra(lab, result, cloud, run_dir, timeout, log_level),
    )

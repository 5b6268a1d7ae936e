"""`lab check` of a cloud whose external network is announced over BGP (I/O shell).

``cloud.external.mode: bgp``: the external subnet is ``pool``, on-link nowhere. Each
gateway node takes over a lab speaker (``speakers:``, with ``bfd: true``): the lab's
own ExaBGP for it is stopped once the fabric's stages have passed, the speaker
host's link becomes a bridge, and two veths from the gateway node's namespace join
it: the external port (br-int ofport 101, the node's *uplink*, an address of that
subnet answered by the pipeline) and the speaker's interface with the speaker's
address. In the gateway node's namespace then run zebra + bfdd (BFD with the VM,
the lab's timers) and ExaBGP, whose API process (``python -m
routeflow.tenant.announce``) follows the file the node agent writes the /32s it
serves to (``--announce-file``): the SNAT address of every router scheduled on it
and their floating IPs, next hop the uplink. The tenant server runs with
``--gateway-grace 0``: a gateway node whose agent is gone is down at once and its
routers move.

Stages after the cloud's bring-up: the speakers' sessions are Established with BFD
up; the outside sees the SNAT address; reaches a VM through its floating IP; a
floating IP re-associated answers from the new VM within a second; and gateway
failover: with a ping every 20 ms from the outside to the floating IP, the gateway
node serving it is killed (its links go down, then SIGKILL of its agent, ExaBGP,
bfdd and zebra), and the gap in the replies is measured (target: under 1 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from routeflow.lab import exabgp
from routeflow.lab.cloud import CloudLab, uplink_address
from routeflow.lab.cloudfabric import External, fip_stage, move_stage, snat_stage
from routeflow.lab.cloudrun import SRC, CloudRun
from routeflow.lab.model import SpeakerPlan
from routeflow.lab.ovsnode import EXTERNAL_OFPORT, run
from routeflow.lab.pingwatch import measure_outage
from routeflow.lab.poll import poll_until
from routeflow.lab.procs import ProcessSet
from routeflow.lab.runner import FRR_DIR, LabRun
from routeflow.lab.scenarios import CheckResult
from routeflow.tenant import announce

__all__ = ["BgpExternal", "failover_stage"]

HOLD_TIME = 9


class Gateway:
    """One gateway node's BGP side: its speaker's link, its uplink, its files."""

    def __init__(self, node: str, sp: SpeakerPlan, run_dir: str) -> None:
        self.node, self.sp = node, sp
        self.uplink = uplink_address(sp.ip, {sp.address, sp.gateway})
        self.dir = os.path.join(run_dir, "gateways", node)
        self.announce_file = os.path.join(self.dir, "announce.json")
        self.devs: list[str] = []

    def agent_args(self) -> list[str]:
        return [
            "--uplink-ip", self.uplink, "--uplink-next-hop", self.sp.gateway,
            "--announce-file", self.announce_file,
        ]  # fmt: skip

    def announced(self) -> frozenset[str]:
        state = announce.read_state(self.announce_file)
        return state[0] if state else frozenset()


class BgpExternal(External):
    """The cloud's external side in bgp mode (see the module docstring)."""

    def __init__(self, lab: LabRun, cloud: CloudLab, run_dir: str) -> None:
        assert cloud.external is not None
        self.lab, self.x = lab, cloud.external
        self.outside = lab.plan.host(self.x.outside)
        self.echoes: list[subprocess.Popen[bytes]] = []
        speakers = {sp.name: sp for sp in lab.plan.speakers}
        self.gateways = {
            node: Gateway(node, speakers[name], os.path.join(run_dir, "cloud"))
            for node, name in self.x.gateways
        }
        self.speaker_procs = ProcessSet()
        self.killed: set[str] = set()

    def agent_args(self) -> dict[str, list[str]]:
        return {node: gw.agent_args() for node, gw in self.gateways.items()}

    def attach_crun(self, crun: CloudRun) -> None:
        self.crun = crun

    # --- the gateway nodes' links and speakers -------------------------------------------

    def attach(self) -> None:
        for gw in self.gateways.values():
            self._link(gw)
            self._frr(gw)
            self._exabgp(gw)

    def _link(self, gw: Gateway) -> None:
        exabgp.stop(self.lab, gw.sp)  # the lab's own speaker: the gateway node's now
        host = self.lab.host(gw.sp.name)
        intf = host.defaultIntf().name
        host.cmd(
            f"ip link add brx type bridge && ip link set brx up && ip addr flush dev {intf} "
            f"&& ip link set {intf} master brx"
        )
        ovs = self.crun.nodes[gw.node]
        up, spk = f"x{ovs.ns}"[:15], f"s{ovs.ns}"[:15]
        for dev, peer in ((up, "gx-up"), (spk, "gx-sp")):
            run(["ip", "link", "add", dev, "netns", ovs.ns, "type", "veth",
                 "peer", "name", peer, "netns", str(host.pid)])  # fmt: skip
            run(["ip", "-n", ovs.ns, "link", "set", dev, "up"])
            run(["ip", "netns", "exec", ovs.ns, "ethtool", "-K", dev, "tx", "off"], check=False)
            host.cmd(f"ip link set {peer} master brx && ip link set {peer} up")
            host.cmd(f"ethtool -K {peer} tx off")
        gw.devs = [up, spk]
        run(["ip", "-n", ovs.ns, "addr", "add", gw.sp.ip, "dev", spk])
        ovs.vsctl(
            "add-port", "br-int", up, "--", "set", "interface", up,
            f"ofport_request={EXTERNAL_OFPORT}",
        )  # fmt: skip

    def _frr(self, gw: Gateway) -> None:
        """zebra + bfdd in the gateway node's namespace, FRR's directories its own."""
        d = gw.dir
        os.makedirs(d, exist_ok=True)
        for sub in ("", "frr-run", "frr-tmp"):
            path = os.path.join(d, sub)
            os.makedirs(path, exist_ok=True)
            shutil.chown(path, "frr", "frr")
        os.chmod(d, 0o775)
        ospf = self.lab.plan.ospf
        spk = gw.devs[1]
        with open(os.path.join(d, "zebra.conf"), "w") as fh:
            fh.write(f"hostname {gw.node}\n")
        with open(os.path.join(d, "bfdd.conf"), "w") as fh:
            fh.write(
                "\n".join(
                    [
                        "bfd",
                        f" peer {gw.sp.gateway} local-address {gw.sp.address} interface {spk}",
                        f"  receive-interval {ospf.bfd_interval}",
                        f"  transmit-interval {ospf.bfd_interval}",
                        f"  detect-multiplier {ospf.bfd_multiplier}",
                        " !",
                        "!",
                        "",
                    ]
                )
            )

        def daemon(name: str) -> str:
            return (
                f"{FRR_DIR}/{name} -d -i {d}/{name}.pid -z {d}/zserv.api --vty_socket {d} "
                f"-f {d}/{name}.conf --log file:{d}/{name}.log"
            )

        script = (
            f"mount --bind {d}/frr-run /var/run/frr && mount --bind {d}/frr-tmp /var/tmp/frr"
            f" && {daemon('zebra')} && {daemon('bfdd')}"
        )
        ns = self.crun.nodes[gw.node].ns
        r = subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
        )
        for name in ("zebra", "bfdd"):
            try:
                self.speaker_procs.add_pidfile(f"{name}@{gw.node}", f"{d}/{name}.pid")
            except RuntimeError as exc:
                raise OSError(f"{name} of {gw.node}: {r.stdout}{r.stderr}") from exc

    def _exabgp(self, gw: Gateway) -> None:
        d, sp = gw.dir, gw.sp
        relay = os.path.join(d, "relay.sh")
        with open(relay, "w") as fh:
            fh.write(
                f"#!/bin/sh\nPYTHONPATH={SRC} exec {sys.executable} -m routeflow.tenant.announce "
                f"{gw.announce_file}\n"
            )
        os.chmod(relay, 0o755)
        conf = os.path.join(d, "exabgp.conf")
        with open(conf, "w") as fh:
            fh.write(
                "\n".join(
                    [
                        f"# gateway node {gw.node}: its /32s from {gw.announce_file}",
                        "process relay {",
                        f"    run {relay};",
                        "    encoder text;",
                        "}",
                        f"neighbor {sp.gateway} {{",
                        f"    router-id {sp.address};",
                        f"    local-address {sp.address};",
                        f"    local-as {sp.asn};",
                        f"    peer-as {sp.vm_asn};",
                        f"    hold-time {HOLD_TIME};",
                        "    family {",
                        "        ipv4 unicast;",
                        "    }",
                        "    api {",
                        "        processes [ relay ];",
                        "    }",
                        "}",
                        "",
                    ]
                )
            )
        os.chmod(conf, 0o644)
        exe = os.path.join(os.path.dirname(self.lab.python), "exabgp")
        env = {
            **os.environ,
            "exabgp_daemon_daemonize": "false",
            "exabgp_daemon_drop": "false",
            "exabgp_daemon_user": "root",
            "exabgp_log_destination": "stdout",
            "exabgp_api_cli": "false",
            "exabgp_api_ack": "false",
            "exabgp_tcp_bind": "",
            "PYTHONUNBUFFERED": "1",
        }
        ns = self.crun.nodes[gw.node].ns
        with open(os.path.join(d, "exabgp.log"), "ab") as log:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", ns, exe, "server", conf],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.speaker_procs.add_popen(f"exabgp@{gw.node}", popen)

    def bootstrap(self, conn: Any, vms: dict[str, Any]) -> dict[str, Any]:
        """As connected mode's, the external subnet being the pool (no gateway: the
        gateway nodes send to their uplink's next hop)."""
        import ipaddress

        pool = ipaddress.IPv4Network(self.x.pool)
        hosts = list(pool.hosts())
        pub = conn.network.create_network(name="public", is_router_external=True)
        conn.network.create_subnet(
            network_id=pub.id,
            name="public-v4",
            ip_version=4,
            cidr=str(pool),
            gateway_ip=None,
            enable_dhcp=False,
            allocation_pools=[{"start": str(hosts[min(9, len(hosts) - 1)]), "end": str(hosts[-1])}],
        )
        return self._gateways_and_fips(conn, vms, pub)

    def _gateways_and_fips(self, conn: Any, vms: dict[str, Any], pub: Any) -> dict[str, Any]:
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
        return {
            name: conn.network.create_ip(floating_network_id=pub.id, port_id=vms[name].port_id)
            for name in self.x.floating_ips
        }

    def kill_gateway(self, node: str) -> None:
        """The node drops off the fabric (its links down), then its agent and speaker
        die (SIGKILL): the VM hears nothing more; only BFD tells it."""
        gw = self.gateways[node]
        ns = self.crun.nodes[node].ns
        for dev in gw.devs:
            run(["ip", "-n", ns, "link", "set", dev, "down"])
        self.crun.kill(f"agent-{node}")
        for t in [t for t in self.speaker_procs.procs if t.name.endswith(f"@{node}")]:
            t.signal(signal.SIGKILL)
            if t.popen is not None:
                t.popen.wait(10)
        self.killed.add(node)

    def stop(self) -> None:
        super().stop()
        self.speaker_procs.stop_all()


def session_ok(lab: LabRun, sp: SpeakerPlan) -> tuple[str, str]:
    """(BGP state, BFD status) of the VM's session with the gateway speaker."""
    state = "unknown"
    out = lab.vtysh(sp.switch, f"show bgp neighbors {sp.address} json")
    with contextlib.suppress(ValueError):
        state = str(json.loads(out[out.index("{") :]).get(sp.address, {}).get("bgpState"))
    bfd = "unknown"
    out = lab.vtysh(sp.switch, "show bfd peers json")
    with contextlib.suppress(ValueError):
        for peer in json.loads(out[out.index("[") :]):
            if peer.get("peer") == sp.address:
                bfd = str(peer.get("status"))
    return state, bfd


def with_bfd(lab: LabRun, sp: SpeakerPlan) -> bool:
    """Whether the VM's session with the speaker has BFD (the speaker's bfd: true)."""
    return any(n.address == sp.address and n.bfd for n in lab.plan.vm(sp.switch).bgp_neighbors)


def sessions_stage(lab: LabRun, result: CheckResult, ext: BgpExternal, timeout: float) -> bool:
    t = time.monotonic()
    states: dict[str, tuple[str, str]] = {}

    def up() -> bool:
        for node, gw in ext.gateways.items():
            states[node] = session_ok(lab, gw.sp)
        return all(
            s[0] == "Established" and (s[1] == "up" or not with_bfd(lab, ext.gateways[n].sp))
            for n, s in states.items()
        )

    ok = poll_until(up, timeout=min(timeout, 60.0), interval=0.2).ok
    result.add(
        "gateway nodes' BGP sessions up, with BFD",
        ok,
        time.monotonic() - t,
        "; ".join(
            f"{node} ({gw.sp.address}, AS {gw.sp.asn}, uplink {gw.uplink}) <-> "
            f"vm-{gw.sp.switch}: {states[node][0]}, BFD {states[node][1]}"
            for node, gw in ext.gateways.items()
        ),
    )
    return ok


def failover_stage(
    crun: CloudRun, result: CheckResult, ext: BgpExternal, outside: list[str], fip: str
) -> None:
    t = time.monotonic()
    want = f"{fip}/32"
    serving = [n for n, gw in ext.gateways.items() if want in gw.announced()]
    if len(serving) != 1 or len(ext.gateways) < 2:
        result.add("gateway failover", False, 0.0, f"{want} announced by {serving or 'nobody'}")
        return
    node = serving[0]
    other = next(n for n in ext.gateways if n != node)
    took_over: list[float] = []

    def watch(at: float) -> None:
        if not took_over and want in ext.gateways[other].announced():
            took_over.append(time.time() - at)

    seen = measure_outage(outside, fip, lambda: ext.kill_gateway(node), watch)
    if not seen.steady:
        result.add("gateway failover", False, 0.0, f"no steady ping to {fip} before: {seen.lines}")
        return
    moved = poll_until(lambda: want in ext.gateways[other].announced(), timeout=5).ok
    if seen.gap is None:
        result.add(
            "gateway failover",
            False,
            time.monotonic() - t,
            f"{fip} unreachable after {node} was killed (load {seen.load})",
        )
        return
    seconds, lost = seen.gap
    bfd = "BFD" if with_bfd(ext.lab, ext.gateways[node].sp) else "no BFD: the hold time"
    result.add(
        f"gateway failover ({bfd}): floating IP unreachable for",
        moved,
        seconds,
        f"{node} killed (links down, agent/ExaBGP/bfdd SIGKILL): {fip} answered again "
        f"via {other} after {seconds * 1000:.0f} ms, {lost} pings lost at 20 ms "
        f"(target < 1 s: {'met' if seconds < 1.0 else 'missed'}); {want} now announced "
        f"by {other if moved else 'nobody'}"
        + (
            f" (its agent wrote it {took_over[0] * 1000:.0f} ms after the kill)"
            if took_over
            else ""
        )
        + f"; load {seen.load}",
    )


def checks(
    lab: LabRun, result: CheckResult, cloud: CloudLab, run_dir: str, timeout: float, log_level: str
) -> None:
    from routeflow.lab.cloudcheck import _dhcp, _plug
    from routeflow.lab.cloudrun import CloudFailure

    ext = BgpExternal(lab, cloud, run_dir)
    crun = CloudRun(
        cloud,
        os.path.join(run_dir, "cloud"),
        log_level=log_level,
        agent_args=ext.agent_args(),
        server_args=["--gateway-grace", "0"],
    )
    ext.attach_crun(crun)
    try:
        t = time.monotonic()
        crun.start()
        result.add(
            "cloud: nodes, tenant server, agents",
            True,
            time.monotonic() - t,
            ", ".join(f"{s} {sec:.1f} s" for s, sec in crun.timings),
        )
        t = time.monotonic()
        ext.attach()
        result.add(
            "gateway nodes on the fabric: uplinks, zebra+bfdd, ExaBGP",
            True,
            time.monotonic() - t,
            "; ".join(
                f"{n} on {gw.sp.switch} ({gw.sp.name}'s link, uplink {gw.uplink})"
                for n, gw in ext.gateways.items()
            ),
        )
        if not sessions_stage(lab, result, ext, timeout):
            return
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
            "external network (pool), gateways, floating IPs (API)",
            True,
            time.monotonic() - t,
            ", ".join(f"{vm} {f.floating_ip_address}" for vm, f in fips.items()),
        )
        t = time.monotonic()
        ok = poll_until(
            lambda: all(
                any(f"{f.floating_ip_address}/32" in gw.announced() for gw in ext.gateways.values())
                for f in fips.values()
            ),
            timeout=15,
        ).ok
        result.add(
            "gateway nodes announce what they serve",
            ok,
            time.monotonic() - t,
            "; ".join(
                f"{n}: {' '.join(sorted(gw.announced())) or 'nothing'}"
                for n, gw in ext.gateways.items()
            ),
        )
        ext.start_echoes()
        outside = ext.ns_of(cloud.external.outside)  # type: ignore[union-attr]
        snat_stage(crun, result, conn, ext, timeout)
        for vm, fip in fips.items():
            fip_stage(crun, result, ext, outside, vm, fip.floating_ip_address, timeout)
        if fips:
            first = next(iter(fips.items()))
            move_stage(crun, result, conn, ext, outside, first)
            failover_stage(crun, result, ext, outside, first[1].floating_ip_address)
    except (CloudFailure, OSError, subprocess.SubprocessError) as exc:
        result.add("cloud", False, 0.0, f"{type(exc).__name__}: {exc}")
    finally:
        ext.stop()
        crun.keep_logs = not result.ok
        crun.stop()

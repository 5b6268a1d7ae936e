"""rfproxy against a real Open vSwitch: IPv6 FIB flows, and a restart that changes nothing.

The unit tests compare our text forms with os-ken's encoding of our own
flow-mods; only a real switch says how it stores and reports an IPv6 match
(masks, the default route's missing field, field order). rfserver is played
by this test over a unix socket, so the FIB is exactly what the test says.

Everything runs in a private network namespace (ovs-vswitchd's userspace
datapath makes a tap device per bridge; rfproxy listens on the namespace's
loopback), and every process is stopped by its recorded pid, even on failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from routeflow.lab.ovs import OvsInstance
from routeflow.lab.procs import ProcessSet
from routeflow.proxy import openflow as of
from routeflow.rflib import codec
from routeflow.rflib.protocol import (
    Bucket,
    ControllerRegister,
    ControllerRole,
    DataPlaneMap,
    FibEntry,
    FibMod,
    Mod,
    NextHopMod,
    Resync,
    RouteKind,
)

pytestmark = [
    pytest.mark.component,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

DPID = 0x6A
OF_PORT = 16653  # inside the test's own namespace: cannot collide
ROUTER_PORT = 1
ROUTER_MAC = "02:00:00:00:06:01"
GATEWAY_MAC = "02:00:00:00:06:02"
NEXTHOP = 7

FIB = [
    FibEntry(prefix="2001:db8:1::/64", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
    FibEntry(prefix="2001:db8:2::5/128", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
    FibEntry(prefix="::/0", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
    FibEntry(prefix="2001:db8:3::/48", kind=RouteKind.CONNECTED, dp_port=ROUTER_PORT),
    FibEntry(prefix="2001:db8:3::1/128", kind=RouteKind.LOCAL, dp_port=ROUTER_PORT),
    FibEntry(prefix="fe80::ff:fe00:601/128", kind=RouteKind.LOCAL, dp_port=ROUTER_PORT),
    # An address Python and inet_ntop write differently ("::ffff:c000:201").
    FibEntry(prefix="::ffff:192.0.2.1/128", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
    FibEntry(prefix="198.51.100.0/24", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),  # dual stack
]

# What Open vSwitch reports (ovs-ofctl dump-flows), written out by hand rather
# than derived from openflow.py: (table, priority, match, actions).
EXPECTED = {
    (1, 1064, "ipv6,ipv6_dst=2001:db8:1::/64", "group:7"),
    (1, 1128, "ipv6,ipv6_dst=2001:db8:2::5", "group:7"),
    (1, 1000, "ipv6", "group:7"),
    (1, 1048, "ipv6,ipv6_dst=2001:db8:3::/48", "CONTROLLER:65535"),
    (1, 2000, "ipv6,ipv6_dst=2001:db8:3::1", "CONTROLLER:65535"),
    (1, 2000, "ipv6,ipv6_dst=fe80::ff:fe00:601", "CONTROLLER:65535"),
    (1, 1128, "ipv6,ipv6_dst=::ffff:192.0.2.1", "group:7"),
    (1, 1024, "ip,nw_dst=198.51.100.0/24", "group:7"),
    (0, 300, f"arp,in_port=1,dl_dst={ROUTER_MAC}", "CONTROLLER:65535"),
    (0, 300, "ip,in_port=1,nw_dst=224.0.0.0/24", "CONTROLLER:65535"),
    (0, 300, "ipv6,in_port=1,ipv6_dst=ff02::/16", "CONTROLLER:65535"),
    (0, 200, f"in_port=1,dl_dst={ROUTER_MAC}", "goto_table:1"),
    (0, 0, "", "drop"),
    (1, 0, "", "drop"),
    (0, 500, "dl_type=0x88cc", "CONTROLLER:65535"),  # link probes (topology discovery)
}

_FLOW = re.compile(
    r"duration=(?P<age>[\d.]+)s, table=(?P<table>\d+), .*?priority=(?P<prio>\d+)"
    r"(?:,(?P<match>\S+))? actions=(?P<actions>\S+)"
)


class FakeServer:
    """rfserver's side of RFProtocol: on every ControllerRegister, the full state.

    A restarted rfproxy reconnects and is sent the same state again, as
    rfserver does; ``send`` reaches the current session (changes after that).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.sessions = 0
        self.conn: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def state(self) -> list:
        bucket = Bucket(dp_port=2, src_hwaddress=ROUTER_MAC, dst_hwaddress=GATEWAY_MAC)
        return [
            ControllerRole(ct_id=1, role="master", generation=self.sessions),
            Resync(phase="begin"),
            DataPlaneMap(
                ct_id=1, dp_id=DPID, dp_port=ROUTER_PORT, vs_id=1, vs_port=1, hwaddress=ROUTER_MAC
            ),
            NextHopMod(mod=Mod.ADD, ct_id=1, dp_id=DPID, nexthop_id=NEXTHOP, buckets=[bucket]),
            FibMod(mod=Mod.ADD, ct_id=1, dp_id=DPID, entries=FIB),
            Resync(phase="end"),
        ]

    def send(self, msgs: list) -> None:
        assert self.conn is not None
        self.conn.sendall(codec.encode_many(msgs))

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conn = conn
            decoder = codec.FrameDecoder()
            conn.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                for msg in decoder.feed(data):
                    if isinstance(msg, ControllerRegister):
                        self.sessions += 1
                        self.send(self.state())
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def lab(tmp_path):
    """A namespace with a private OVS and one bridge; torn down whatever happens."""
    token = secrets.token_hex(3)
    ns = f"rfp6-{token}"
    rundir = str(tmp_path / "ovs")
    procs = ProcessSet()
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=10)
        ovs = OvsInstance(rundir, procs)
        ovs.start(
            popen=lambda argv, **kw: subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], start_new_session=True, **kw
            )
        )
        br = f"br6{token}"
        ovs.vsctl(
            "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
            "fail-mode=secure", "protocols=OpenFlow13",
            f"other-config:datapath-id={DPID:016x}", "other-config:disable-in-band=true",
            "--", "set-controller", br, f"tcp:127.0.0.1:{OF_PORT}",
        )  # fmt: skip
        ctl = ovs.vsctl("get", "bridge", br, "controller").strip("[]\n")
        ovs.vsctl("set", "controller", ctl, "max_backoff=1000")
        # A unix socket path must stay short (108 bytes): not under tmp_path.
        sock_path = f"/tmp/rfp6-{token}.sock"
        server = FakeServer(sock_path)
        yield Lab(ns, ovs, br, procs, server, str(tmp_path))
    finally:
        if server is not None:
            server.close()
            with contextlib.suppress(OSError):
                os.unlink(server.path)
        procs.stop_all()
        subprocess.run(["ip", "netns", "delete", ns], timeout=10, check=False)


class Lab:
    def __init__(self, ns, ovs, br, procs, server, tmp) -> None:
        self.ns, self.ovs, self.br, self.procs, self.server = ns, ovs, br, procs, server
        self.tmp = tmp
        self.proxy = None
        self.starts = 0

    def start_proxy(self) -> str:
        self.starts += 1
        log_path = os.path.join(self.tmp, f"rfproxy{self.starts}.log")
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [
                    "ip", "netns", "exec", self.ns, sys.executable, "-m", "routeflow.proxy",
                    "--server", f"unix:{self.server.path}", "--ct-id", "1",
                    "--ofp-port", str(OF_PORT), "--stats-interval", "0",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.proxy = self.procs.add_popen(f"rfproxy{self.starts}", popen)
        return log_path

    def kill_proxy(self) -> None:
        """SIGKILL, as a crash: nothing gets to clean up the switch."""
        assert self.proxy is not None
        self.proxy.signal(signal.SIGKILL)
        self.procs.stop_one(self.proxy)

    def flows(self) -> dict[tuple, float]:
        """(table, priority, match, actions) -> age in seconds, as OVS reports them."""
        out = self.ovs.ofctl("-O", "OpenFlow13", "dump-flows", self.br)
        flows = {}
        for line in out.splitlines():
            m = _FLOW.search(line)
            if m:
                match = m["match"] or ""
                key = (int(m["table"]), int(m["prio"]), match, _next_hop_of(m["actions"], match))
                flows[key] = float(m["age"])
        return flows


def _next_hop_of(actions: str, match: str) -> str:
    """``group:<shard>`` -> ``group:<next hop>``, if the shard is the one the route's
    prefix should use (openflow.route_group); otherwise left as it is, with why."""
    m = re.fullmatch(r"group:(\d+)", actions)
    if m is None:
        return actions
    gid = int(m[1])
    nh = of.nexthop_of_group(gid)
    dst = re.search(r"(?:ipv6_dst|nw_dst)=(\S+)", match)
    prefix = dst[1] if dst else ("::/0" if match.startswith("ipv6") else "0.0.0.0/0")
    if "/" not in prefix:
        prefix += "/128" if ":" in prefix else "/32"
    if gid != of.route_group(nh, prefix):
        return f"{actions} (not next hop {nh}'s shard for {prefix})"
    return f"group:{nh}"


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def reconciled(log_path: str) -> str | None:
    with open(log_path, errors="replace") as fh:
        # the line ends in its structured fields (rflib/logs.py: " ct_id=1 dp_id=...")
        m = re.search(r"reconciled switch 0x6a: (.*?)(?: \w+_id=\S+)*$", fh.read(), re.M)
    return m[1] if m else None


def test_ipv6_fib_is_installed_and_survives_a_restart_untouched(lab):
    log1 = lab.start_proxy()
    wait_for("the FIB on the switch", lambda: set(lab.flows()) == EXPECTED)
    summary = wait_for("rfproxy's reconciliation", lambda: reconciled(log1))
    # The next hop's groups: the shards its routes use (openflow.GROUP_SHARDS), no other.
    shards = len(of.used_groups(FIB))
    assert 1 < shards < of.GROUP_SHARDS
    assert summary == f"flows +{len(EXPECTED)} -0 =0, groups +{shards} ~0 -0 =0"

    time.sleep(1.5)  # every flow now reports an age past the restart below
    lab.kill_proxy()
    restarted = time.monotonic()
    log2 = lab.start_proxy()
    summary = wait_for("the restarted rfproxy's reconciliation", lambda: reconciled(log2))
    assert summary == f"flows +0 -0 ={len(EXPECTED)}, groups +0 ~0 -0 ={shards}"
    # Nothing re-added behind the summary's back: every flow predates the restart.
    ages = lab.flows()
    assert set(ages) == EXPECTED
    since = time.monotonic() - restarted
    young = {k: age for k, age in ages.items() if age < since}
    assert not young, f"flows re-installed by the restart: {young}"
    assert lab.server.sessions == 2

    # Live IPv6 changes, written by fibwriter: packed flow-mods (the /64 and /128
    # deletes, the new routes) and os-ken's (::/0; a LOCAL address turned into a
    # route). A delete must name the match exactly as the switch stored it, or
    # the flow would stay; a packed add must be accepted as it is.
    added = [
        FibEntry(prefix="2001:db8:3::1/128", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
        FibEntry(prefix="2001:db8:4:500::/56", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
        FibEntry(prefix="2001:db8:4::9/128", kind=RouteKind.UNICAST, nexthop_id=NEXTHOP),
    ]
    lab.server.send(
        [
            FibMod(mod=Mod.DELETE, ct_id=1, dp_id=DPID, entries=FIB[:3]),
            FibMod(mod=Mod.ADD, ct_id=1, dp_id=DPID, entries=added),
        ]
    )
    want = EXPECTED - {
        (1, 1064, "ipv6,ipv6_dst=2001:db8:1::/64", "group:7"),
        (1, 1128, "ipv6,ipv6_dst=2001:db8:2::5", "group:7"),
        (1, 1000, "ipv6", "group:7"),
        (1, 2000, "ipv6,ipv6_dst=2001:db8:3::1", "CONTROLLER:65535"),
    } | {
        (1, 1128, "ipv6,ipv6_dst=2001:db8:3::1", "group:7"),
        (1, 1056, "ipv6,ipv6_dst=2001:db8:4:500::/56", "group:7"),
        (1, 1128, "ipv6,ipv6_dst=2001:db8:4::9", "group:7"),
    }
    wait_for("the FIB after the changes", lambda: set(lab.flows()) == want, timeout=15)
    with open(log2, errors="replace") as fh:
        assert "rejected a message" not in fh.read()

"""Topology discovery with real Open vSwitch, rfproxy and rfserver.

Three switches cabled in a triangle with veth pairs (A1-B1, B2-C1, C2-A2)
and a virtual switch with one VM port, all in a private OVS inside a private
network namespace. rfserver runs for real on a SQLite store; the VM is played
by this test (an rfclient's hello, port and mapping packet), so switch A's
port 1, one end of a discovered link, is a router port whose relay to the VM
is live. Checked: the links appear in rfserver; a port taken down removes its
links at once; a link made silent (its probes dropped by a flow of someone
else) ages out; rfserver restarted remembers the links and reconciles them
with rfproxy's resent table; rfproxy killed and restarted drops none; and no
probe ever leaves the VM's port.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from routeflow.proxy.openflow import DEFAULT_VS_DPID
from routeflow.rflib import codec
from routeflow.rflib import protocol as p
from routeflow.rflib.mapping import encode_mapping_frame

pytestmark = [
    pytest.mark.component,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
]

OF_PORT = 16654
A, B, C = 0xA1, 0xB2, 0xC3
VM, VM_MAC = 0xA1, "02:00:00:00:0a:01"
#: (switch, port) <-> (switch, port), as patch ports.
CABLES = [((A, 1), (B, 1)), ((B, 2), (C, 1)), ((C, 2), (A, 2))]
ALL = {(a, b) for x, y in CABLES for a, b in ((x, y), (y, x))}


class FakeVm:
    """rfclient's side for one VM port: hello, port, resync; a mapping packet when asked."""

    def __init__(self, sock_path: str, inject) -> None:
        self.inject = inject
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        self.sock.sendall(
            codec.encode_many(
                [
                    p.ClientHello(vm_id=VM),
                    p.PortRegister(vm_id=VM, vm_port=1, hwaddress=VM_MAC, ifname="eth1"),
                    p.Resync(phase="begin"),
                    p.Resync(phase="end"),
                ]
            )
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        decoder = codec.FrameDecoder()
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            for msg in decoder.feed(data):
                if (
                    isinstance(msg, p.PortConfig)
                    and msg.operation_id == p.PortOperation.SEND_MAPPING_PACKET
                ):
                    self.inject(encode_mapping_frame(VM_MAC, VM, 1))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Net:
    def __init__(self, tmp, token: str) -> None:
        self.tmp, self.token = tmp, token
        self.ns = f"rfd-{token}"
        self.procs = ProcessSet()
        self.sock = f"/tmp/rfd-{token}.sock"
        self.status = os.path.join(tmp, "status.json")
        self.db = os.path.join(tmp, "state.db")
        self.config = os.path.join(tmp, "rfserver.csv")
        with open(self.config, "w") as fh:
            fh.write(f"vm_id,vm_port,ct_id,dp_id,dp_port\n{VM:#x},1,0x1,{A:#x},1\n")
        self.ovs: OvsInstance | None = None
        self.server = None
        self.proxy = None
        self.vm: FakeVm | None = None
        self.servers = 0

    def br(self, dp: int) -> str:
        return f"b{dp:x}{self.token}"

    def up(self) -> None:
        subprocess.run(["ip", "netns", "add", self.ns], check=True, timeout=10)
        self.ip("link", "set", "lo", "up")
        # No IPv6 on the cables: their kernels' router solicitations would be relayed to
        # the VM (rightly: link-local multicast is control traffic), and this test counts
        # what reaches the VM's port.
        subprocess.run(
            ["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
            check=True, timeout=10,
        )  # fmt: skip
        self.ovs = OvsInstance(os.path.join(self.tmp, "ovs"), self.procs)
        self.ovs.start(
            popen=lambda argv, **kw: subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv], start_new_session=True, **kw
            )
        )
        args: list[str] = []
        for dp in (A, B, C, DEFAULT_VS_DPID):
            br = self.br(dp) if dp != DEFAULT_VS_DPID else f"vs{self.token}"
            args += [
                "--", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                "fail-mode=secure", "protocols=OpenFlow13",
                f"other-config:datapath-id={dp:016x}", "other-config:disable-in-band=true",
                "--", "set-controller", br, f"tcp:127.0.0.1:{OF_PORT}",
            ]  # fmt: skip
        for (da, pa), (db, pb) in CABLES:
            na, nb = self.cable_end(da, pa), self.cable_end(db, pb)
            self.ip("link", "add", na, "type", "veth", "peer", "name", nb)
            for dev, dp, port in ((na, da, pa), (nb, db, pb)):
                self.ip("link", "set", dev, "up")
                args += ["--", "add-port", self.br(dp), dev, "--", "set", "interface", dev,
                         f"ofport_request={port}"]  # fmt: skip
        # The VM's port: a veth whose far end the test writes the mapping packet into.
        self.ip("link", "add", f"vm{self.token}", "type", "veth", "peer", "name", f"ve{self.token}")
        for dev in (f"vm{self.token}", f"ve{self.token}"):
            self.ip("link", "set", dev, "up")
        args += ["--", "add-port", f"vs{self.token}", f"ve{self.token}", "--", "set",
                 "interface", f"ve{self.token}", "ofport_request=1"]  # fmt: skip
        self.ovs.vsctl(*args[1:])

    def cable_end(self, dp: int, port: int) -> str:
        return f"p{dp:x}{port}{self.token}"

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.ns, *args], check=True, timeout=10)

    def inject(self, frame: bytes) -> None:
        """Send ``frame`` out of the VM's end of the veth (as the VM's kernel would)."""
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
            f"s.bind(('vm{self.token}',0))\n"
            "s.send(bytes.fromhex(sys.argv[1]))\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", code, frame.hex()],
            check=True,
            timeout=10,
        )

    def start_server(self) -> None:
        self.servers += 1
        log = open(os.path.join(self.tmp, f"rfserver{self.servers}.log"), "wb")  # noqa: SIM115
        popen = subprocess.Popen(
            [
                sys.executable, "-m", "routeflow.server", "--config", self.config,
                "--store", f"sqlite:{self.db}", "--listen", f"unix:{self.sock}",
                "--status-file", self.status, "--resync-wait", "2",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.server = self.procs.add_popen(f"rfserver{self.servers}", popen)
        wait_for("rfserver's socket", lambda: os.path.exists(self.sock), 15)

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.signal(signal.SIGTERM)
        self.procs.stop_one(self.server)
        with contextlib.suppress(OSError):
            os.unlink(self.status)

    def start_proxy(self) -> None:
        log = open(os.path.join(self.tmp, "rfproxy.log"), "ab")  # noqa: SIM115
        popen = subprocess.Popen(
            [
                "ip", "netns", "exec", self.ns, sys.executable, "-m", "routeflow.proxy",
                "--server", f"unix:{self.sock}", "--ct-id", "1", "--ofp-port", str(OF_PORT),
                "--stats-interval", "1", "--discovery-interval", "1",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.proxy = self.procs.add_popen("rfproxy", popen)

    def state(self) -> dict:
        try:
            with open(self.status) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def links(self, confirmed: bool | None = None) -> set:
        return {
            ((k["src_dp_id"], k["src_port"]), (k["dst_dp_id"], k["dst_port"]))
            for k in self.state().get("links", [])
            if confirmed is None or k["confirmed"] == confirmed
        }

    def vm_port_tx(self) -> int:
        """Frames the virtual switch sent to the VM (its port's transmit counter)."""
        assert self.ovs is not None
        out = self.ovs.ofctl("-O", "OpenFlow13", "dump-ports", f"vs{self.token}", "1")
        return int(out.split("tx pkts=")[1].split(",")[0])

    def down(self) -> None:
        if self.vm is not None:
            self.vm.close()
        self.procs.stop_all()
        subprocess.run(["ip", "netns", "delete", self.ns], timeout=10, check=False)
        with contextlib.suppress(OSError):
            os.unlink(self.sock)


def wait_for(what: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def net(tmp_path):
    n = Net(str(tmp_path), secrets.token_hex(2))
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_links_are_discovered_age_out_go_down_with_their_port_and_survive_a_restart(net):
    net.start_server()
    started = time.monotonic()
    net.start_proxy()
    net.vm = FakeVm(net.sock, net.inject)
    wait_for("every link in rfserver", lambda: net.links() == ALL)
    took = time.monotonic() - started
    print(f"\n{len(ALL)} directed links ({len(CABLES)} cables) in rfserver {took:.1f} s "
          "after rfproxy started (probes every 1 s)")  # fmt: skip
    # The relay to the VM is live at A1 (an end of a discovered link).
    wait_for(
        "A1's association",
        lambda: any(a["state"].startswith("active") for a in net.state().get("associations", [])),
    )

    # Port B1 down: A1->B1 and B1->A1 go at once (not after aging).
    assert net.ovs is not None
    t0 = time.monotonic()
    net.ip("link", "set", net.cable_end(B, 1), "down")  # A1 loses its carrier too
    wait_for("B1's links gone", lambda: net.links() == ALL - {((A, 1), (B, 1)), ((B, 1), (A, 1))})
    port_down = time.monotonic() - t0
    assert port_down < 1.5, f"port down took {port_down:.1f} s: aged, not dropped at once"

    # B2->C1 made silent: C drops its probes with a flow of its own (not routeflow's).
    t0 = time.monotonic()
    net.ovs.ofctl(
        "-O", "OpenFlow13", "add-flow", net.br(C),
        "table=0,priority=600,in_port=1,dl_type=0x88cc,actions=drop",
    )  # fmt: skip
    silent = ALL - {((A, 1), (B, 1)), ((B, 1), (A, 1)), ((B, 2), (C, 1))}
    wait_for("B2->C1 aged out", lambda: net.links() == silent)
    aged = time.monotonic() - t0
    assert 2.0 < aged < 6.0, f"aging took {aged:.1f} s (3 probes of 1 s)"

    # rfserver restarts on its store: the links are there, unconfirmed, at once. Meanwhile
    # the network heals; rfproxy's resent table confirms what is there and adds the rest.
    net.stop_server()
    net.ip("link", "set", net.cable_end(B, 1), "up")
    net.ovs.ofctl(
        "-O", "OpenFlow13", "del-flows", net.br(C), "--strict",
        "table=0,priority=600,in_port=1,dl_type=0x88cc",
    )  # fmt: skip
    net.vm.close()
    assert net.proxy is not None
    net.proxy.signal(signal.SIGSTOP)  # so that rfserver's first view is the store's
    try:
        net.start_server()
        wait_for("the stored links", lambda: net.state().get("links") is not None)
        assert net.links() == silent and net.links(confirmed=False) == silent
    finally:
        net.proxy.signal(signal.SIGCONT)
    net.vm = FakeVm(net.sock, net.inject)
    wait_for("every link confirmed again", lambda: net.links(confirmed=True) == ALL, 25)

    # rfproxy killed and restarted: its table starts empty, but the full table it owes
    # rfserver waits a hold time of probing, so no link leaves rfserver meanwhile.
    net.proxy.signal(signal.SIGKILL)
    net.procs.stop_one(net.proxy)
    net.start_proxy()
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline:
        assert net.links() == ALL
        time.sleep(0.1)
    with open(os.path.join(net.tmp, f"rfserver{net.servers}.log")) as fh:
        assert "down: not in the table" not in fh.read()

    # Nothing of all this reached the VM: every probe was punted and none relayed.
    assert net.vm_port_tx() == 0
    assert net.proxy is not None and net.proxy.alive()

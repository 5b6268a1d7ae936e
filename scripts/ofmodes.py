"""What replacing N FIB flows' actions costs Open vSwitch, by message form.

A scratch measurement (issue #15, peer down): a private ovsdb-server and
ovs-vswitchd in a network namespace of their own, one userspace bridge
(datapath_type=netdev), N route flows of a table file's IPv4 prefixes in
table 1 (priority 1000 + prefix length, one group action, as rfproxy writes
them), then their group changed from 1 to 2 and back by each message form:

  add       OFPFC_ADD of each flow (replaces it; what rfproxy sends today)
  modify    OFPFC_MODIFY_STRICT of each flow
  add-b     the ADDs inside one ONF (OpenFlow 1.3 extension) bundle
  modify-b  the MODIFY_STRICTs inside one bundle
  del-add   DELETE_STRICT then ADD of each flow
  fresh     ADD of N flows into an empty table (the reference)
  fresh-b   the same inside one bundle (what ``ovs-ofctl --bundle`` does)
  freshK    the same, spread over K groups (a next hop's K shards, K <= 512)
  moveK     after freshK: each flow's group changed to one of K other groups
  del       DELETE_STRICT of each flow

Messages go in windows of 4096 closed by a barrier, at most 3 windows
unacknowledged (rfproxy's FlowPipe). Reported per form: wall seconds until the
last barrier (commit) reply, ovs-vswitchd CPU seconds, OpenFlow errors.

    sudo .venv/bin/python scripts/ofmodes.py --table /tmp/t.txt -n 100000

Everything it starts it stops (by pid); the namespace is deleted.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from routeflow.proxy import fastof

OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_EXPERIMENTER = 4
OFPT_BARRIER_REPLY = 21
OFPFC_ADD = 0
OFPFC_MODIFY_STRICT = 2
ONF = 0x4F4E4600
ONF_ET_BUNDLE_CONTROL = 2300
ONF_ET_BUNDLE_ADD = 2301
BCT_OPEN, BCT_COMMIT = 0, 4
BF_ATOMIC_ORDERED = 3
WINDOW = 4096
DEPTH = 3


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Conn:
    def __init__(self, path: str) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.sendall(struct.pack("!BBHI", 4, OFPT_HELLO, 8, 1))
        self.cond = threading.Condition()
        self.acked: set[int] = set()
        self.errors: list[tuple[int, int, int]] = []
        self.commits: list[int] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            data = self.s.recv(1 << 16)
            if not data:
                return
            buf += data
            while len(buf) >= 8:
                _v, t, length, xid = struct.unpack_from("!BBHI", buf)
                if len(buf) < length:
                    break
                body = buf[8:length]
                buf = buf[length:]
                with self.cond:
                    if t == OFPT_BARRIER_REPLY:
                        self.acked.add(xid)
                    elif t == OFPT_ERROR:
                        et, code = struct.unpack_from("!HH", body)
                        self.errors.append((xid, et, code))
                    elif t == OFPT_EXPERIMENTER:
                        exp, et, _bid, typ = struct.unpack_from("!IIIH", body)
                        if exp == ONF and et == ONF_ET_BUNDLE_CONTROL:
                            self.commits.append(typ)
                    self.cond.notify_all()

    def wait(self, pred, timeout: float = 600) -> None:
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise SystemExit("timed out waiting for the switch")

    def paced(self, msgs: list[bytes], count_per: int = 1) -> None:
        """Send in windows closed by barriers, at most DEPTH unacknowledged."""
        xid = 0xF0000000 + int(time.monotonic() * 1000) % 0x1000000 * 16
        pending: list[int] = []
        for start in range(0, len(msgs), WINDOW):
            self.wait(lambda: sum(x not in self.acked for x in pending) < DEPTH)
            xid += 1
            pending.append(xid)
            self.s.sendall(b"".join(msgs[start : start + WINDOW]) + fastof.barrier_request(xid))
        self.wait(lambda: all(x in self.acked for x in pending))


def flow_mod(net: int, plen: int, group: int, command: int) -> bytes:
    buf = bytearray(fastof.FLOW_ADD_SIZE)
    fastof.pack_route_add(buf, 0, 7, net, plen, group)
    buf[25] = command  # ofp_flow_mod.command (after header 8, cookie 16, table 1)
    return bytes(buf)


def delete(net: int, plen: int) -> bytes:
    buf = bytearray(fastof.FLOW_DELETE_SIZE)
    fastof.pack_route_delete(buf, 0, 7, net, plen)
    return bytes(buf)


def bundle_ctrl(bid: int, typ: int) -> bytes:
    return struct.pack("!BBHIIIIHH", 4, OFPT_EXPERIMENTER, 24, 9, ONF, ONF_ET_BUNDLE_CONTROL,
                       bid, typ, BF_ATOMIC_ORDERED)  # fmt: skip


def bundle_add(bid: int, msg: bytes) -> bytes:
    xid = struct.unpack_from("!I", msg, 4)[0]
    head = struct.pack("!BBHIIIIxxH", 4, OFPT_EXPERIMENTER, 24 + len(msg), xid, ONF,
                       ONF_ET_BUNDLE_ADD, bid, BF_ATOMIC_ORDERED)  # fmt: skip
    return head + msg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", required=True)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--dir", default="/tmp/h28-ofmodes")
    ap.add_argument("--forms", default="fresh,add,modify,add-b,modify-b,del-add,fresh")
    args = ap.parse_args()
    prefixes = []
    with open(args.table) as fh:
        for line in fh:
            p = line.split(None, 1)[0] if line.strip() and not line.startswith("#") else ""
            if p and ":" not in p:
                prefixes.append(fastof.parse_prefix(p))
            if len(prefixes) >= args.n:
                break
    n = len(prefixes)
    d = args.dir
    ns = f"h28of{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    env = {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}
    db = f"{d}/conf.db"
    if os.path.exists(db):
        os.remove(db)
    subprocess.run(["ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema"],
                   check=True)  # fmt: skip
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        procs.append(subprocess.Popen(["ovsdb-server", db, f"--remote=punix:{d}/db.sock",
                                       f"--pidfile={d}/db.pid", f"--unixctl={d}/db.ctl",
                                       f"--log-file={d}/db.log", "-vconsole:off"],
                                      start_new_session=True))  # fmt: skip
        while not os.path.exists(f"{d}/db.sock"):
            time.sleep(0.05)
        time.sleep(0.2)
        vsctl = ["ovs-vsctl", f"--db=unix:{d}/db.sock"]
        subprocess.run([*vsctl, "--no-wait", "init"], check=True, env=env)
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "ovs-vswitchd",
                                       f"unix:{d}/db.sock", f"--pidfile={d}/vs.pid",
                                       f"--unixctl={d}/vs.ctl", f"--log-file={d}/vs.log",
                                       "-vconsole:off"], env=env,
                                      start_new_session=True))  # fmt: skip
        while not os.path.exists(f"{d}/vs.pid"):
            time.sleep(0.05)
        time.sleep(0.3)
        vpid = int(_read(f"{d}/vs.pid"))
        subprocess.run([*vsctl, "add-br", "h28b", "--", "set", "bridge", "h28b",
                        "datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure"],
                       check=True, env=env)  # fmt: skip
        of = ["ovs-ofctl", "-O", "OpenFlow13"]
        for g, mac in [(1, "02:00:00:00:00:01"), (2, "02:00:00:00:00:02")] + [
            (g, f"02:00:00:00:01:{g % 256:02x}") for g in range(10, 10 + 1024)
        ]:
            subprocess.run([*of, "add-group", "h28b",
                            f"group_id={g},type=indirect,bucket=set_field:{mac}->eth_dst,"
                            "output:LOCAL"], check=True, env=env)  # fmt: skip
        c = Conn(f"{d}/h28b.mgmt")
        load = _read("/proc/loadavg").split()[:3]
        print(f"n={n} flows, load {' '.join(load)}, ovs {vpid}")
        group = 1
        bid = 100
        for form in args.forms.split(","):
            new = 2 if group == 1 else 1
            if form == "poll":
                for what in (
                    ["dump-aggregate", "h28b", f"table=1,out_group={group}"],
                    ["dump-tables", "h28b"],
                    ["dump-group-stats", "h28b", f"group_id={group}"],
                ):
                    cpu0 = cpu_of(vpid)
                    t0 = time.monotonic()
                    r = subprocess.run([*of, *what], capture_output=True, env=env, check=True)
                    if what[0] == "dump-group-stats":
                        print(r.stdout.decode().strip())
                    print(
                        f"poll {what[0]}: {time.monotonic() - t0:.3f} s wall, "
                        f"{cpu_of(vpid) - cpu0:.3f} s ovs cpu"
                    )
                continue
            if form in ("fresh", "fresh-b"):
                subprocess.run([*of, "del-flows", "h28b", "table=1"], check=True, env=env)
                new = 1
                msgs = [flow_mod(a, p, new, OFPFC_ADD) for a, p in prefixes]
            elif form == "del":
                msgs = [delete(a, p) for a, p in prefixes]
                new = 0
            elif form.startswith("fresh") and form[5:].isdigit():
                k = int(form[5:])
                subprocess.run([*of, "del-flows", "h28b", "table=1"], check=True, env=env)
                new = 10
                msgs = [flow_mod(a, p, 10 + i % k, OFPFC_ADD) for i, (a, p) in enumerate(prefixes)]
            elif form.startswith("move") and form[4:].isdigit():
                # After freshK: every flow leaves its group for another of K others,
                # as a dead next hop's routes leave its K shards (peer down).
                k = int(form[4:])
                new = 10 + 512
                msgs = [flow_mod(a, p, 522 + i % k, OFPFC_ADD) for i, (a, p) in enumerate(prefixes)]
            elif form in ("add", "add-b"):
                msgs = [flow_mod(a, p, new, OFPFC_ADD) for a, p in prefixes]
            elif form == "add-rev":
                msgs = [flow_mod(a, p, new, OFPFC_ADD) for a, p in reversed(prefixes)]
            elif form == "add-rand":
                msgs = [flow_mod(a, p, new, OFPFC_ADD) for a, p in prefixes]
                random.Random(1).shuffle(msgs)
            elif form in ("modify", "modify-b"):
                msgs = [flow_mod(a, p, new, OFPFC_MODIFY_STRICT) for a, p in prefixes]
            elif form == "del-add":
                msgs = []
                for a, p in prefixes:
                    msgs.append(delete(a, p))
                    msgs.append(flow_mod(a, p, new, OFPFC_ADD))
            else:
                raise SystemExit(f"unknown form {form}")
            if form.endswith("-b"):
                bid += 1
                msgs = [bundle_add(bid, m) for m in msgs]
            errs0 = len(c.errors)
            cpu0 = cpu_of(vpid)
            t0 = time.monotonic()
            if form.endswith("-b"):
                ncommit = len(c.commits)
                c.s.sendall(bundle_ctrl(bid, BCT_OPEN))
                c.paced(msgs)
                t_add = time.monotonic() - t0
                c.s.sendall(bundle_ctrl(bid, BCT_COMMIT))
                c.wait(lambda n0=ncommit, e0=errs0: len(c.commits) >= n0 + 2 or len(c.errors) > e0)
                extra = f" (adds acked {t_add:.2f} s)"
            else:
                c.paced(msgs)
                extra = ""
            wall = time.monotonic() - t0
            cpu = cpu_of(vpid) - cpu0
            out = subprocess.run([*of, "dump-aggregate", "h28b", f"table=1,out_group={new}"],
                                 capture_output=True, text=True, env=env).stdout  # fmt: skip
            got = out.split("flow_count=")[1].split()[0] if "flow_count=" in out else "?"
            print(f"{form:9s} {wall:6.2f} s wall  {cpu:6.2f} s ovs cpu  "
                  f"{n / wall:9.0f} flows/s  on group {new}: {got}  errors {len(c.errors) - errs0}"
                  f"{extra}", flush=True)  # fmt: skip
            group = new
        print("load after", " ".join(_read("/proc/loadavg").split()[:3]))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()

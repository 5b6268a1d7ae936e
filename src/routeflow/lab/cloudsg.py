"""`lab check` stages for security groups on a running cloud lab (I/O shell).

Two VMs of one tenant on different nodes (the last same-network pair of the lab: in
``labs/cloud.yaml`` b1 on c2 -> b2 on c3, in ``labs/cloud-external.yaml`` a1 -> a2).
The server VM runs a TCP echo server on ports 22 and 2222; its port moves through the
API (openstacksdk) from its tenant's ``default`` group to a new group ``sg-check``
whose ingress rules are tcp/22 from the client's address (a CIDR rule) and ICMP from
the client's group (a remote-group rule: a conjunction); the new group's own egress
rules are Neutron's (all egress). Every probe waits first until the flows on both VMs'
nodes equal the compiler's output for the stored model (the agents applied the change),
so a probe tests the rule, not the propagation delay.

1. ``security groups allow and block what their rules say``: before the change both
   ports connect (``default`` admits members); after it tcp/22 connects, tcp/2222 is
   blocked (dropped, so the connect times out: not refused), ICMP passes, and the
   server can no longer ping the client (it left ``default``, whose ingress admits
   members only) while the client's pings still get their replies (stateful: the
   replies are established); unless the client's groups let ICMP in by address (the
   cloud-external lab opens ICMP from anywhere): then the server's ping is answered.
2. ``rule removed: ping blocked, established connection stays``: a TCP connection to
   port 22 is opened and echoes; the ICMP rule is deleted through the API; ping fails,
   and the open connection still echoes (conntrack keeps it: the tcp/22 rule still
   allows it) and a new one to port 22 still connects.

At the end the server's port goes back to its groups and ``sg-check`` is deleted, so
the stages after these (and other checks of the lab) see the lab as bootstrapped.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from routeflow.lab.cloud import same_network_pairs
from routeflow.lab.cloudrun import CloudRun, Vm
from routeflow.lab.poll import poll_until
from routeflow.lab.scenarios import CheckResult

__all__ = ["ALLOWED_PORT", "BLOCKED_PORT", "GROUP", "secgroup_stages"]

GROUP = "sg-check"
ALLOWED_PORT = 22
BLOCKED_PORT = 2222
#: How long a blocked TCP connect or ping is given before it counts as blocked.
BLOCK_WAIT = 1.0

#: A TCP echo server on every port in argv[1:] (threads; one line back per line).
TCP_ECHO = (
    "import socket,sys,threading\n"
    "def serve(c):\n"
    "    f=c.makefile('rwb',0)\n"
    "    for line in f:\n"
    "        f.write(line)\n"
    "def listen(port):\n"
    "    s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "    s.bind(('0.0.0.0',port));s.listen(16)\n"
    "    while True:\n"
    "        c,_=s.accept();threading.Thread(target=serve,args=(c,),daemon=True).start()\n"
    "for p in sys.argv[1:]:\n"
    "    threading.Thread(target=listen,args=(int(p),),daemon=True).start()\n"
    "print('ready',flush=True)\n"
    "threading.Event().wait()\n"
)
#: One TCP connect: prints ``open``, ``refused`` or ``timeout``.
CONNECT = (
    "import socket,sys\n"
    "s=socket.socket();s.settimeout(float(sys.argv[3]))\n"
    "try:\n"
    "    s.connect((sys.argv[1],int(sys.argv[2])));print('open')\n"
    "except ConnectionRefusedError:\n"
    "    print('refused')\n"
    "except OSError:\n"
    "    print('timeout')\n"
)
#: A long-lived connection: connects, prints ``connected``, then per stdin line sends it
#: and prints the echo (or ``lost``).
HOLD = (
    "import socket,sys\n"
    "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3)\n"
    "f=s.makefile('rwb',0);print('connected',flush=True)\n"
    "for line in sys.stdin:\n"
    "    try:\n"
    "        f.write(line.encode());got=f.readline().decode().strip()\n"
    "    except OSError:\n"
    "        got=''\n"
    "    print(got or 'lost',flush=True)\n"
)


def pair(run: CloudRun) -> tuple[Vm, Vm] | None:
    """(client, server): the lab's last same-network pair across nodes."""
    pairs = same_network_pairs(run.cloud)
    if not pairs:
        return None
    client, server = pairs[-1]
    return run.vms[client], run.vms[server]


def connect(run: CloudRun, vm: Vm, ip: str, port: int, wait: float = BLOCK_WAIT) -> str:
    r = run.vm_exec(vm, sys.executable, "-c", CONNECT, ip, str(port), str(wait))
    return r.stdout.strip() or f"error: {r.stderr.strip()[-120:]}"


def _ping(run: CloudRun, vm: Vm, ip: str) -> bool:
    return run.ping(vm, ip, wait=BLOCK_WAIT).returncode == 0


def icmp_open_to(conn: Any, groups: list[str], ip: str) -> str | None:
    """The first of ``groups``' ingress rules that lets ICMP from ``ip`` in by address (no
    remote group): its remote prefix, or None when only members may (the default group)."""
    import ipaddress

    for group in groups:
        for rule in conn.network.security_group_rules(security_group_id=group):
            if rule.direction != "ingress" or rule.ether_type != "IPv4":
                continue
            if rule.protocol not in (None, "icmp", "1") or rule.remote_group_id:
                continue
            prefix = rule.remote_ip_prefix or "0.0.0.0/0"
            if ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(prefix):
                return prefix
    return None


def _applied(run: CloudRun, nodes: set[str], timeout: float) -> bool:
    """Both nodes' br-int equal the compiler's flows for the stored model."""

    def equal() -> bool:
        cloud = run.snapshot()
        return all(not run.flow_problems(node, cloud) for node in nodes)

    return bool(poll_until(equal, timeout=timeout, interval=0.1).ok)


def secgroup_stages(run: CloudRun, result: CheckResult, conn: Any, timeout: float) -> None:
    """Both stages (see the module's doc); the lab is restored at the end."""
    got = pair(run)
    if got is None:
        result.add("security groups allow and block what their rules say", False, 0.0,
                   "no two VMs of one network on different nodes")  # fmt: skip
        return
    client, server = got
    nodes = {client.node, server.node}
    t = time.monotonic()
    port = conn.network.get_port(server.port_id)
    project = port.project_id
    old_groups = list(port.security_group_ids)
    client_groups = list(conn.network.get_port(client.port_id).security_group_ids)
    echo = subprocess.Popen(
        ["ip", "netns", "exec", server.ns, sys.executable, "-c", TCP_ECHO,
         str(ALLOWED_PORT), str(BLOCKED_PORT)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    hold: subprocess.Popen[str] | None = None
    group = None
    try:
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the TCP echo server in {server.name} did not start")
        dst = server.fixed_ip
        before = {p: connect(run, client, dst, p, wait=3.0) for p in (ALLOWED_PORT, BLOCKED_PORT)}
        group = conn.network.create_security_group(
            name=GROUP, project_id=project, description="lab check"
        )
        conn.network.create_security_group_rule(
            security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
            port_range_min=ALLOWED_PORT, port_range_max=ALLOWED_PORT,
            remote_ip_prefix=f"{client.fixed_ip}/32", project_id=project,
        )  # fmt: skip
        icmp = conn.network.create_security_group_rule(
            security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="icmp",
            remote_group_id=client_groups[0], project_id=project,
        )  # fmt: skip
        conn.network.update_port(server.port_id, security_group_ids=[group.id])
        applied = _applied(run, nodes, timeout)
        after = {p: connect(run, client, dst, p) for p in (ALLOWED_PORT, BLOCKED_PORT)}
        pings = run.pings([(client, dst), (server, client.fixed_ip)], wait=BLOCK_WAIT)
        ping_in, ping_out = (r.returncode == 0 for r in pings)
        # The client's groups admit the server now only by an address rule (the default
        # group admits members, which the server no longer is; a lab may open ICMP wider).
        reverse = icmp_open_to(conn, client_groups, dst)
        want = {ALLOWED_PORT: "open", BLOCKED_PORT: "timeout"}
        ok = (
            applied
            and before == {ALLOWED_PORT: "open", BLOCKED_PORT: "open"}
            and after == want
            and ping_in
            and ping_out == (reverse is not None)
        )
        if reverse is None:
            why = "blocked" if not ping_out else "ANSWERED"
            why += " (not in its group any more)"
        else:
            why = "answered" if ping_out else "NOT answered"
            why += f" ({client.name}'s groups let ICMP in from {reverse})"
        result.add(
            "security groups allow and block what their rules say",
            ok,
            time.monotonic() - t,
            f"{server.name} in {GROUP} (tcp/{ALLOWED_PORT} from {client.fixed_ip}/32, icmp "
            f"from {client.name}'s group): {client.name} -> tcp/{ALLOWED_PORT} "
            f"{after[ALLOWED_PORT]}, tcp/{BLOCKED_PORT} {after[BLOCKED_PORT]} (both open "
            f"before: {before[ALLOWED_PORT]}, {before[BLOCKED_PORT]}), ping "
            f"{'answered' if ping_in else 'NOT answered'}; {server.name} -> {client.name} "
            f"ping {why}" + ("" if applied else "; the agents did not apply the change in time"),
        )
        if not ok:
            return
        t = time.monotonic()
        hold = subprocess.Popen(
            ["ip", "netns", "exec", client.ns, sys.executable, "-c", HOLD, dst,
             str(ALLOWED_PORT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert hold.stdin is not None and hold.stdout is not None
        opened = hold.stdout.readline().strip() == "connected"

        def echoed(word: str) -> bool:
            assert hold is not None and hold.stdin is not None and hold.stdout is not None
            try:
                hold.stdin.write(word + "\n")
                hold.stdin.flush()
                return hold.stdout.readline().strip() == word
            except OSError:
                return False

        first = opened and echoed("before")
        conn.network.delete_security_group_rule(icmp)
        applied = _applied(run, nodes, timeout)
        pinged = _ping(run, client, dst)
        still = echoed("after")
        fresh = connect(run, client, dst, ALLOWED_PORT)
        ok = first and applied and not pinged and still and fresh == "open"
        result.add(
            "rule removed: ping blocked, established connection stays",
            ok,
            time.monotonic() - t,
            f"icmp rule deleted: {client.name} -> {server.name} ping "
            f"{'STILL ANSWERED' if pinged else 'blocked'}; the tcp/{ALLOWED_PORT} connection "
            f"opened before {'still echoes' if still else 'WAS CUT'}"
            + ("" if first else " (it never echoed before the change)")
            + f"; a new one: {fresh}"
            + ("" if applied else "; the agents did not apply the change in time"),
        )
    finally:
        for proc in (hold, echo):
            if proc is not None:
                proc.kill()
                proc.wait()
        conn.network.update_port(server.port_id, security_group_ids=old_groups)
        if group is not None:
            conn.network.delete_security_group(group)

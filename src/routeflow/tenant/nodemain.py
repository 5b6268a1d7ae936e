"""Starts a tenant node agent: ``routeflow tenant node --name N --server ADDR``.

The agent runs in the compute node's namespace next to its ovs-vswitchd:
br-int's controller is ``tcp:127.0.0.1:<--ofp-port>`` (set when the bridge is
created: OVS flushes a bridge's flows when it first gets a controller).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import re
import sys
from typing import Any

from routeflow.rflib import daemonconf, logs
from routeflow.tenant.pipeline import EXTERNAL_OFPORT


def _name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a node name is 1-63 of [A-Za-z0-9_.-]")
    return text


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeflow tenant node", description=__doc__)
    daemonconf.add_config_file_option(parser)
    parser.add_argument("--name", type=_name, required=True, help="this compute node's name")
    parser.add_argument(
        "--server", required=True, help="tenant server's node link: tcp:HOST:PORT or unix:PATH"
    )
    parser.add_argument(
        "--tunnel-ip", type=_ip, default="127.0.0.1", help="this node's VXLAN endpoint"
    )
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="this node is a gateway node: it NATs for routers scheduled on it, through its "
        "external port (br-int ofport 101)",
    )
    parser.add_argument(
        "--uplink-ip",
        type=_ip,
        help="bgp mode (with --gateway): this node's own address on its external link, the "
        "next hop of the /32s it announces (answered by ARP on the external port)",
    )
    parser.add_argument(
        "--uplink-next-hop",
        type=_ip,
        help="bgp mode: the fabric router on the external link, where all traffic to outside goes",
    )
    parser.add_argument(
        "--announce-file",
        default="",
        help="bgp mode: where the /32s this node serves are written whenever they change "
        "(JSON); `python -m routeflow.tenant.announce FILE` relays them to ExaBGP",
    )
    parser.add_argument("--ofp-host", default="127.0.0.1", help="OpenFlow listen address")
    parser.add_argument("--ofp-port", type=int, default=6653, help="OpenFlow listen port")
    parser.add_argument(
        "--ovsdb", default="", help="OVSDB of this node's ovs-vswitchd (ovs-vsctl --db=...)"
    )
    parser.add_argument("--secret-file", help="shared secret (mode 0600) for the server link")
    parser.add_argument("--bridge", default="br-int", help="the integration bridge")
    parser.add_argument(
        "--pipeline",
        default="",
        help="module giving compile_view(cloud, view) and codec() instead of the tenant "
        "compiler (tests use a toy pipeline)",
    )
    daemonconf.add_log_level_option(parser)
    logs.add_log_format_option(parser)
    return parser


class TenantCodec:
    """The tenant compiler's flows on the wire (tenant/ofmsg.py) and read back as text.

    The switch's flows are read with ``ovs-ofctl dump-flows`` (the agent runs next to its
    ovs-vswitchd) and parsed by rflib.ovstext, the parser the lab's flow check uses, so a
    flow read back equals the compiled one. An ADD replaces a flow with the same table,
    priority and match, so a changed flow is one ADD, with no delete before it (no gap).
    """

    def __init__(self, ofmsg: Any, bridge: str) -> None:
        self.ofmsg = ofmsg
        self.bridge = bridge
        self.cookie, self.cookie_mask = ofmsg.tenant_cookie_filter()

    def read_flows(self) -> frozenset[Any]:
        import subprocess

        from routeflow.rflib import ovstext

        cmd = [
            "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.bridge,
            f"cookie={self.cookie:#x}/{self.cookie_mask:#x}",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
        return frozenset(
            f for f in ovstext.parse_flows(out.stdout) if f.cookie & self.cookie_mask == self.cookie
        )

    def from_stats(self, stats: Any) -> frozenset[Any]:
        raise NotImplementedError("the tenant codec reads flows with read_flows()")

    def flow_mods(self, datapath: Any, add: frozenset[Any], delete: frozenset[Any]) -> list[Any]:
        replaced = {(f.table, f.priority, f.match) for f in add}
        mods = [
            self.ofmsg.flow_delete(datapath, f)
            for f in delete
            if (f.table, f.priority, f.match) not in replaced
        ]
        return mods + [self.ofmsg.flow_mod(datapath, f) for f in add]


def pipeline(module: str = "", bridge: str = "br-int") -> tuple[Any, Any]:
    """(compile, codec) from the tenant flow compiler; ImportError if it is not there."""
    import importlib

    if module:
        mod = importlib.import_module(module)
        return mod.compile_view, mod.codec()
    from routeflow.tenant.nodecore import NodeView

    # Optional until the flow compiler and its messages land (a clear error in main()).
    compiler = importlib.import_module("routeflow.tenant.compiler")
    ofmsg = importlib.import_module("routeflow.tenant.ofmsg")

    def compile_view(cloud: Any, view: NodeView) -> Any:
        ctx = compiler.NodeContext(
            view.name,
            dict(view.bindings),
            view.tunnel_ofport,
            external_ofport=view.external_ofport,
            neighbours=dict(view.neighbours),
            uplink=view.uplink,
        )
        return compiler.compile_node(cloud, ctx)

    return compile_view, TenantCodec(ofmsg, bridge)


def incremental(module: str = "") -> Any:
    """What makes the compiler's incremental form (None for a ``--pipeline`` module
    without one)."""
    import importlib

    if module:
        return getattr(importlib.import_module(module), "incremental", None)
    return importlib.import_module("routeflow.tenant.incremental").NodeCompiler


def main(argv: list[str] | None = None) -> int:
    args = daemonconf.parse_args(build_parser(), argv)
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # every thread's stack on demand (a stuck agent)
    logs.setup(args.log_level, args.log_format, "routeflow-tenant-node")
    from routeflow.rflib.auth import AuthError, load_secret
    from routeflow.rflib.ipc import parse_addresses

    try:
        parse_addresses(args.server)
        secret = load_secret(args.secret_file) if args.secret_file else None
    except (ValueError, AuthError) as exc:
        print(f"routeflow tenant node: {exc}", file=sys.stderr)
        return 2
    if (args.uplink_ip is None) != (args.uplink_next_hop is None) or (
        args.uplink_ip is not None and not args.gateway
    ):
        print(
            "routeflow tenant node: --uplink-ip and --uplink-next-hop go together, "
            "on a --gateway node",
            file=sys.stderr,
        )
        return 2
    try:
        compile_view, codec = pipeline(args.pipeline, args.bridge)
    except (ImportError, AttributeError) as exc:
        print(f"routeflow tenant node: the tenant flow compiler is missing: {exc}", file=sys.stderr)
        return 2
    from os_ken import cfg
    from os_ken.base import app_manager  # noqa: F401  (imports the controller: ofp-* options)

    cfg.CONF(
        args=["--ofp-listen-host", args.ofp_host, "--ofp-tcp-listen-port", str(args.ofp_port)],
        project="os_ken",
    )
    from routeflow.proxy.main import _run_apps
    from routeflow.tenant.nat import Uplink
    from routeflow.tenant.node import NodeSettings

    settings = NodeSettings(
        name=args.name,
        tunnel_ip=args.tunnel_ip,
        server=args.server,
        compile=compile_view,
        codec=codec,
        ovsdb=args.ovsdb,
        secret=secret,
        gateway=args.gateway,
        # The external port is created at this ofport (lab/ovsnode.py add_external).
        external_ofport=EXTERNAL_OFPORT if args.gateway else 0,
        uplink=Uplink(args.uplink_ip, args.uplink_next_hop) if args.uplink_ip else None,
        announce_file=args.announce_file,
        incremental=incremental(args.pipeline),
    )
    with contextlib.suppress(KeyboardInterrupt):
        _run_apps(["routeflow.tenant.node"], settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

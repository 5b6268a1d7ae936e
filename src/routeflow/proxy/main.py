"""Starts rfproxy: configures os-ken, then runs the RFProxy application."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys

from routeflow.proxy.openflow import DEFAULT_VS_DPID
from routeflow.rflib import daemonconf, logs, sdnotify, tls


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _replica(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a replica name is 1-64 characters of [A-Za-z0-9_.-]"
        )
    return text


def _listening_tcp_ports() -> set[int]:
    """Local TCP ports in LISTEN in this network namespace (/proc/net/tcp, tcp6)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _wait_for_openflow_listener(hub, timeout: float = 10.0) -> None:
    """Yield to os-ken's hub until its OpenFlow port listens (or ``timeout`` passes)."""
    import time

    from os_ken import cfg

    tls_on = cfg.CONF.ctl_privkey is not None and cfg.CONF.ctl_cert is not None
    port = cfg.CONF.ofp_ssl_listen_port if tls_on else cfg.CONF.ofp_tcp_listen_port
    deadline = time.monotonic() + timeout
    hub.sleep(0)
    while port not in _listening_tcp_ports():
        if time.monotonic() > deadline:
            logging.getLogger(__name__).warning(
                "OpenFlow port %s not listening %.0f s after start; saying ready anyway",
                port,
                timeout,
            )
            return
        hub.sleep(0.02)


def _run_apps(apps: list[str], **kwargs) -> None:
    """os-ken's AppManager.run_apps, with ``kwargs`` for the applications.

    os-ken hands its contexts to every application as keyword arguments
    (its apps accept and ignore the ones they do not know): rfproxy's settings
    travel the same way, instead of through a module global.
    """
    import gc

    from os_ken.base.app_manager import AppManager
    from os_ken.lib import hub

    mgr = AppManager.get_instance()
    mgr.load_apps(apps)
    contexts = mgr.create_contexts()
    services = mgr.instantiate_apps(**contexts, **kwargs)
    # os-ken's OpenFlow listener binds in a green thread of its own: READY=1 only once
    # it listens. The watchdog pings from os-ken's own hub, so a wedged hub stops the
    # pings and systemd restarts rfproxy.
    _wait_for_openflow_listener(hub)
    sdnotify.notify("READY=1", "STATUS=OpenFlow listener up")
    period = sdnotify.watchdog_period()

    def watchdog() -> None:
        while period is not None:
            sdnotify.notify("WATCHDOG=1")
            hub.sleep(period)

    pinger = hub.spawn(watchdog)
    try:
        hub.joinall(services)
    finally:
        pinger.kill()
        sdnotify.notify("STOPPING=1")
        mgr.close()
        for t in services:
            t.kill()
        hub.joinall(services)
        gc.collect()


def _virtual_links(path: str | None) -> list:
    from routeflow.proxy.vlinks import parse_virtual_links

    if path is None:
        return []
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"--virtual-links {path}: {exc.strerror}") from None
    return parse_virtual_links(text, path)


def build_parser() -> argparse.ArgumentParser:
    """rfproxy's options; also the schema of its config file (rflib.daemonconf)."""
    parser = argparse.ArgumentParser(prog="routeflow proxy", description=__doc__)
    daemonconf.add_config_file_option(parser)
    parser.add_argument(
        "--server",
        default="unix:/run/routeflow/rfserver.sock",
        help="rfserver address: unix:PATH or tcp:HOST:PORT; several, comma-separated, "
        "for a leader and its standby (tried in turn)",
    )
    parser.add_argument("--ct-id", type=_int, default=1, help="this controller's id")
    parser.add_argument(
        "--replica",
        type=_replica,
        default=None,
        help="this process among the replicas of its controller (default: ct<ct-id>); "
        "rfserver makes one replica OpenFlow master, the others slaves",
    )
    parser.add_argument(
        "--vs-dpid",
        type=_int,
        default=None,
        help='virtual switch datapath id (default: ASCII "rfvsrfvs")',
    )
    parser.add_argument(
        "--ofp-host",
        default="127.0.0.1",
        help="OpenFlow listen address (loopback unless exposed on purpose)",
    )
    parser.add_argument("--ofp-port", type=_int, default=6653, help="OpenFlow listen port")
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=5.0,
        help="seconds between flow statistics polls (0: off)",
    )
    parser.add_argument(
        "--relay",
        choices=("controller", "datapath"),
        default="controller",
        help="how control frames cross between router ports and VM ports: through rfproxy "
        "(packet-in/packet-out), or over each switch's relay link to the virtual switch",
    )
    parser.add_argument(
        "--relay-links",
        default="",
        metavar="DPID:DP_PORT:VS_PORT,...",
        help="with --relay datapath: each switch's relay link, its port on the switch and on "
        "the virtual switch; switches without one keep the packet-in relay",
    )
    parser.add_argument(
        "--virtual-links",
        default=None,
        metavar="FILE|discovered",
        help="virtual-domain control plane: switch links to mirror between the VM ports "
        "of their ends in the virtual switch, one a line, DPID:PORT DPID:PORT; or "
        "'discovered': the links topology discovery sees both ways",
    )
    parser.add_argument(
        "--discovery-interval",
        type=float,
        default=1.0,
        help="topology discovery: seconds between LLDP link probes on every switch port (0: off)",
    )
    parser.add_argument(
        "--discovery-misses",
        type=_int,
        default=3,
        help="probes a discovered link may miss before it is declared down",
    )
    parser.add_argument(
        "--secret-file", help="shared secret (mode 0600) to answer rfserver's challenge"
    )
    tls.add_arguments(parser)
    daemonconf.add_log_level_option(parser)
    logs.add_log_format_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = daemonconf.parse_args(build_parser(), argv)

    logs.setup(args.log_level, args.log_format, "rfproxy", ct_id=args.ct_id)
    from routeflow.rflib.tuning import tune_gc

    tune_gc()  # a full table is millions of objects (see rflib.tuning)
    from routeflow.proxy.relay import parse_relay_links
    from routeflow.rflib.auth import peer_credentials
    from routeflow.rflib.ipc import parse_addresses

    try:
        parse_addresses(args.server)
        relay_links = parse_relay_links(args.relay_links) if args.relay == "datapath" else {}
        if args.relay == "datapath" and not relay_links:
            raise ValueError("--relay datapath needs --relay-links")
        mirror_discovered = args.virtual_links == "discovered"
        virtual_links = [] if mirror_discovered else _virtual_links(args.virtual_links)
        if mirror_discovered and args.discovery_interval <= 0:
            raise ValueError("--virtual-links discovered needs --discovery-interval > 0")
        if args.discovery_interval < 0 or args.discovery_misses < 1:
            raise ValueError("--discovery-interval must be >= 0 and --discovery-misses >= 1")
        secret, ssl_context = peer_credentials(args, server=False)
    except ValueError as exc:
        print(f"rfproxy: {exc}", file=sys.stderr)
        return 2
    # os-ken reads its options from oslo.config's global CONF.
    from os_ken import cfg
    from os_ken.base import app_manager  # noqa: F401  (imports the controller: ofp-* options)

    cfg.CONF(
        args=["--ofp-listen-host", args.ofp_host, "--ofp-tcp-listen-port", str(args.ofp_port)],
        project="os_ken",
    )
    from routeflow.proxy import app

    settings = app.ProxySettings(
        server=args.server,
        ct_id=args.ct_id,
        replica=args.replica or f"ct{args.ct_id}",
        vs_dpid=args.vs_dpid if args.vs_dpid is not None else DEFAULT_VS_DPID,
        stats_interval=args.stats_interval,
        secret=secret,
        ssl_context=ssl_context,
        relay_links=relay_links,
        virtual_links=virtual_links,
        mirror_discovered=mirror_discovered,
        discovery_interval=args.discovery_interval,
        discovery_misses=args.discovery_misses,
    )
    if relay_links:
        logging.getLogger("routeflow.proxy").info("datapath relay on %d switches", len(relay_links))
    if mirror_discovered:
        logging.getLogger("routeflow.proxy").info(
            "virtual-domain control plane: links mirrored as discovery finds them"
        )
    if virtual_links:
        logging.getLogger("routeflow.proxy").info(
            "virtual-domain control plane: %d links mirrored", len(virtual_links)
        )
    with contextlib.suppress(KeyboardInterrupt):
        _run_apps(["routeflow.proxy.app"], settings=settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

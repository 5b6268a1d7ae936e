"""Starts rfserver: loads the operator config and the state store, then serves."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time

from routeflow.rflib import daemonconf, logs, sdnotify, tls
from routeflow.rflib.auth import peer_credentials
from routeflow.rflib.store import StoreError, open_store
from routeflow.rflib.tuning import tune_gc
from routeflow.server import autoconf
from routeflow.server.autoconf import (
    DEFAULT_TEMPLATE,
    AutoConf,
    AutoSettings,
    EdgePortError,
    parse_edge_ports,
)
from routeflow.server.autorun import AutoRunner
from routeflow.server.config import ConfigError, load_config
from routeflow.server.service import RFServer
from routeflow.web.options import WebError, add_web_arguments, web_options


async def _announce_ready(ready: asyncio.Event, listen: str) -> None:
    await ready.wait()
    sdnotify.notify("READY=1", f"STATUS=serving RFProtocol on {listen}")


def build_parser() -> argparse.ArgumentParser:
    """rfserver's options; also the schema of its config file (rflib.daemonconf)."""
    parser = argparse.ArgumentParser(prog="routeflow server", description=__doc__)
    daemonconf.add_config_file_option(parser)
    parser.add_argument(
        "--mapping",
        "--config",
        dest="config",
        default=None,
        help="mapping CSV: vm_id,vm_port,ct_id,dp_id,dp_port (required unless the etcd "
        "store already holds a config); --config is the older name of this flag",
    )
    parser.add_argument(
        "--store",
        default="sqlite:/var/lib/routeflow/state.db",
        help="state store: sqlite:PATH, memory:, or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] "
        "(etcd: several rfservers share it; one leads, the others stand by)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="this rfserver's identity in the leader election (default: HOST:PID)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=int,
        default=2,
        help="seconds the leader lease outlives a dead leader (etcd store only)",
    )
    parser.add_argument(
        "--listen",
        default="unix:/run/routeflow/rfserver.sock",
        help="RFProtocol address: unix:PATH or tcp:HOST:PORT (loopback by default)",
    )
    parser.add_argument("--status-file", default=None, help="write a JSON status snapshot here")
    parser.add_argument(
        "--client-grace",
        type=float,
        default=30.0,
        help="seconds a disconnected rfclient keeps its routes on the switches",
    )
    parser.add_argument(
        "--resync-wait",
        type=float,
        default=10.0,
        help="seconds a restarted server waits for VMs to resend their routes "
        "before giving a controller its full state",
    )
    parser.add_argument(
        "--role-hold",
        type=float,
        default=5.0,
        help="seconds a controller's slave replicas wait for its old master to come back "
        "(after an rfserver restart) before one of them is promoted",
    )
    auto = parser.add_argument_group("automatic configuration (--auto)")
    auto.add_argument(
        "--auto",
        action="store_true",
        help="build the virtual network from discovery: a VM per switch that connects, an "
        "interface per discovered link and edge port, /31s from --link-pool, OSPF "
        "(a --mapping CSV still wins for the switches it names)",
    )
    auto.add_argument(
        "--edge-ports",
        default=None,
        help="--auto: CSV 'dp_id,dp_port,address' of the ports where hosts or peers plug in, "
        "with the VM's address there (e.g. 0x5,1,172.31.1.1/24)",
    )
    auto.add_argument("--link-pool", default="10.0.0.0/16", help="--auto: link subnets' pool")
    auto.add_argument(
        "--link-prefix", type=int, default=31, choices=(30, 31), help="--auto: link subnet size"
    )
    auto.add_argument(
        "--loopback-pool", default="10.255.0.0/16", help="--auto: loopbacks (router ids) pool"
    )
    auto.add_argument(
        "--auto-grace",
        type=float,
        default=60.0,
        help="--auto: seconds a switch may be gone before its VM is stopped",
    )
    auto.add_argument(
        "--auto-template",
        default=None,
        help="--auto: FRR configuration template (string.Template: ${hostname}, ${dp_id}, "
        "${router_id}, ${interfaces}, ${hello}, ${dead}); default: OSPF",
    )
    auto.add_argument(
        "--vm-backend", default="netns", choices=("netns",), help="--auto: VM backend"
    )
    auto.add_argument(
        "--vm-dir", default="/var/lib/routeflow/vms", help="--auto: the VMs' directories (netns)"
    )
    auto.add_argument(
        "--vs-bridge", default="br-rfvs", help="--auto: the virtual switch's Open vSwitch bridge"
    )
    auto.add_argument(
        "--vs-netns",
        default=None,
        help="--auto: network namespace of the virtual switch's ports (a file such as "
        "/run/netns/NAME or /proc/PID/ns/net; default: rfserver's own)",
    )
    auto.add_argument(
        "--vm-server",
        default=None,
        help="--auto: the address the VMs' rfclients connect to (default: --listen)",
    )
    auto.add_argument(
        "--vm-starts", type=int, default=4, help="--auto: VMs started or changed side by side"
    )
    tls.add_arguments(parser)
    parser.add_argument(
        "--secret-file",
        default=None,
        help="shared secret (mode 0600): peers must prove they know it (HMAC challenge)",
    )
    daemonconf.add_log_level_option(parser)
    logs.add_log_format_option(parser)
    add_web_arguments(parser)
    return parser


def _auto_settings(args: argparse.Namespace) -> tuple[AutoSettings, list]:
    edges = []
    if args.edge_ports:
        try:
            with open(args.edge_ports, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ValueError(f"--edge-ports {args.edge_ports}: {exc.strerror or exc}") from exc
        try:
            edges = parse_edge_ports(text, args.edge_ports)
        except EdgePortError as exc:
            raise ValueError(f"bad --edge-ports:\n{exc}") from exc
    template = DEFAULT_TEMPLATE
    if args.auto_template:
        try:
            with open(args.auto_template, encoding="utf-8") as fh:
                template = fh.read()
        except OSError as exc:
            raise ValueError(
                f"--auto-template {args.auto_template}: {exc.strerror or exc}"
            ) from exc
    if not 1 <= args.vm_starts <= 64:
        raise ValueError("--vm-starts must be 1-64")
    settings = AutoSettings(
        link_pool=args.link_pool,
        link_prefix=args.link_prefix,
        loopback_pool=args.loopback_pool,
        grace=args.auto_grace,
        template=template,
    )
    problems = settings.check(edges)
    if problems:
        raise ValueError("bad --auto settings: " + "; ".join(problems))
    return settings, edges


def _auto_runner(args: argparse.Namespace, conf: AutoConf, server: RFServer, secret) -> AutoRunner:
    from routeflow.server.vmnetns import NetnsBackend

    client = [sys.executable, "-m", "routeflow.client", "--server", args.vm_server or args.listen]
    if args.secret_file:
        client += ["--secret-file", args.secret_file]
    client += ["--log-level", args.log_level]
    backend = NetnsBackend(
        args.vm_dir, vs_bridge=args.vs_bridge, vs_netns=args.vs_netns, client_argv=client
    )
    return AutoRunner(
        conf,
        backend,
        apply_mapping=server.apply_auto_mapping,
        store_writes=lambda w: server._persist("autoconf records", server.store.kv_put_many, w),
        event=server.event,
        concurrency=args.vm_starts,
    )


def main(argv: list[str] | None = None) -> int:
    args = daemonconf.parse_args(build_parser(), argv)
    logs.setup(args.log_level, args.log_format, "rfserver")
    tune_gc()  # a full table is millions of objects (see rflib.tuning)
    try:
        web = web_options(args)
    except WebError as exc:
        print(f"rfserver: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config) if args.config else None
    except (ConfigError, OSError) as exc:
        print(f"rfserver: bad config: {exc}", file=sys.stderr)
        return 2
    try:
        secret, ssl_context = peer_credentials(args, server=True)
    except ValueError as exc:
        print(f"rfserver: {exc}", file=sys.stderr)
        return 2
    if args.lease_ttl < 1:
        print("rfserver: --lease-ttl must be at least 1 second", file=sys.stderr)
        return 2
    try:
        store = open_store(args.store)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"rfserver: cannot open state store {args.store}: {exc}", file=sys.stderr)
        return 2
    shared = hasattr(store, "fence")  # a replicated store: run the leader election
    if config is None and not shared and not args.auto:
        print("rfserver: --mapping (the mapping CSV) is required (or --auto)", file=sys.stderr)
        store.close()
        return 2
    auto_settings = None
    if args.auto:
        try:
            auto_settings, edges = _auto_settings(args)
        except ValueError as exc:
            print(f"rfserver: {exc}", file=sys.stderr)
            store.close()
            return 2

    def make_server(ha: dict | None = None) -> RFServer:
        entries = config
        conf = None
        if auto_settings is not None:
            conf = AutoConf(
                auto_settings,
                edges,
                config or (),
                autoconf.records(dict(store.kv_items(autoconf.RECORD_PREFIX))),
                now=time.time(),
            )
            entries = list(conf.mapping())  # what it ran with before a restart, or the CSV
        elif entries is None:  # etcd without --config: the operator's config lives there
            entries = store.load_config()
            if not entries:
                raise ValueError(f"no --config given and the store {args.store} holds none")
        server = RFServer(
            entries,
            store,
            status_path=args.status_file,
            client_grace=args.client_grace,
            resync_wait=args.resync_wait,
            role_hold=args.role_hold,
            config_path=args.config,
            secret=secret,
            ssl_context=ssl_context,
            ha=ha,
        )
        if conf is not None:
            server.auto = _auto_runner(args, conf, server, secret)
        return server

    async def serve(server: RFServer) -> None:
        web_service = None
        if web is not None:  # before serve(): the web port is open once the socket is
            from routeflow.web.service import start_web

            web_service = start_web(server, web)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, server.reload_config)
        ready = asyncio.Event()
        announce = asyncio.ensure_future(_announce_ready(ready, args.listen))
        try:
            await server.serve(args.listen, ready)
        finally:
            announce.cancel()
            loop.remove_signal_handler(signal.SIGHUP)
            if web_service is not None:
                await web_service.stop()

    async def run() -> None:
        if shared:
            from routeflow.server.standby import run_with_standby

            body = run_with_standby(
                store=store,
                identity=args.name or f"{socket.gethostname()}:{os.getpid()}",
                ttl=args.lease_ttl,
                status_path=args.status_file,
                make_server=make_server,
                serve=serve,
            )
            sdnotify.notify("READY=1", "STATUS=standing by (leader election)")
        else:
            body = serve(make_server())
        task = asyncio.ensure_future(body)
        watchdog = asyncio.ensure_future(sdnotify.watchdog())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            sdnotify.notify("STOPPING=1")
            logging.getLogger("routeflow.server").info("rfserver stopping")
        finally:
            watchdog.cancel()

    try:
        asyncio.run(run())
    except ValueError as exc:  # config and persisted table cannot be reconciled
        print(f"rfserver: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # the store became unusable (etcd unreachable, fenced)
        print(f"rfserver: state store failure: {exc}", file=sys.stderr)
        return 3
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

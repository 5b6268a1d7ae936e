"""Starts rfserver: loads the operator config and the state store, then serves."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from routeflow.rflib import daemonconf, logs, sdnotify, tls
from routeflow.rflib.auth import peer_credentials
from routeflow.rflib.store import StoreError, open_store
from routeflow.rflib.tuning import tune_gc
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
    if config is None and not shared:
        print("rfserver: --mapping (the mapping CSV) is required", file=sys.stderr)
        store.close()
        return 2

    def make_server(ha: dict | None = None) -> RFServer:
        entries = config
        if entries is None:  # etcd without --config: the operator's config lives there
            entries = store.load_config()
            if not entries:
                raise ValueError(f"no --config given and the store {args.store} holds none")
        return RFServer(
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

"""Starts rfserver: loads the operator config and the state store, then serves."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from routeflow.rflib.store import open_store
from routeflow.server.config import ConfigError, load_config
from routeflow.server.service import RFServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="routeflow server", description=__doc__)
    parser.add_argument(
        "--config", required=True, help="mapping CSV: vm_id,vm_port,ct_id,dp_id,dp_port"
    )
    parser.add_argument(
        "--store",
        default="sqlite:/var/lib/routeflow/state.db",
        help="state store: sqlite:PATH or memory:",
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
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"rfserver: bad config: {exc}", file=sys.stderr)
        return 2
    try:
        store = open_store(args.store)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"rfserver: cannot open state store {args.store}: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        server = RFServer(
            config, store, status_path=args.status_file, client_grace=args.client_grace
        )
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(server.serve(args.listen))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            logging.getLogger("routeflow.server").info("rfserver stopping")

    try:
        asyncio.run(run())
    except ValueError as exc:  # config and persisted table cannot be reconciled
        print(f"rfserver: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

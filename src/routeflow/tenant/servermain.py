"""`routeflow tenant server`: its options (also the schema of its config file) and start-up.

argparse like the other daemons, so `--config-file`, `routeflow config check tenant-server`
and the manual's generated reference come from the same parser (rflib.daemonconf).
"""

from __future__ import annotations

import argparse
import sys

from routeflow.rflib import daemonconf, logs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routeflow tenant server",
        description="Serve the Neutron v2.0 subset with a durable store, and the node agents.",
    )
    daemonconf.add_config_file_option(parser)
    parser.add_argument("--listen", default="127.0.0.1:9696", help="API HOST:PORT")
    parser.add_argument("--store", default="sqlite:tenant.db", help="sqlite:PATH or etcd://...")
    parser.add_argument("--token-file", help="require this token (X-Auth-Token) on every call")
    parser.add_argument("--users", help="users YAML for the Keystone v3 shim (/identity/v3)")
    parser.add_argument(
        "--nodes-listen", help="where node agents connect: tcp:HOST:PORT or unix:PATH"
    )
    parser.add_argument("--nodes-secret-file", help="shared secret of the node sessions")
    parser.add_argument(
        "--gateway-grace",
        type=float,
        default=5.0,
        help="seconds a gateway node's session may stay lost before the node is marked "
        "down and its routers move to the other gateway nodes (0: at once); they stay "
        "there when it comes back",
    )
    parser.add_argument(
        "--name", help="this server's name in the leader election (etcd store only)"
    )
    parser.add_argument(
        "--lease-ttl",
        type=int,
        default=2,
        help="seconds the leader lease outlives a dead leader (etcd store only)",
    )
    parser.add_argument(
        "--advertise-url",
        help="API URL the standbys forward requests to while this server leads "
        "(etcd store only; default http://LISTEN)",
    )
    daemonconf.add_log_level_option(parser)
    logs.add_log_format_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = daemonconf.parse_args(build_parser(), argv)
    from routeflow.tenant.server import ServerConfig, ServerConfigError, build, run

    logs.setup(args.log_level, args.log_format, "routeflow-tenant-server")
    config = ServerConfig(
        args.listen,
        args.store,
        args.token_file,
        args.users,
        args.nodes_listen,
        args.nodes_secret_file,
        args.name,
        args.lease_ttl,
        args.advertise_url,
        gateway_grace=max(0.0, args.gateway_grace),
    )
    try:
        build(config)[0].store.close()  # check every flag before serving
    except ServerConfigError as err:
        print(f"routeflow tenant server: {err}", file=sys.stderr)
        return 2
    try:
        run(config)
    except KeyboardInterrupt:
        pass
    except (ServerConfigError, OSError) as err:
        print(f"routeflow tenant server: {err}", file=sys.stderr)
        return 1
    return 0

"""rfserver's web options (--web, --web-token, --web-token-file, --topology).

Kept free of FastAPI/uvicorn imports: rfserver only loads those when --web is given.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"


class WebError(ValueError):
    """A web option or the web listener cannot be used (rfserver exits with 2)."""


@dataclass(frozen=True)
class WebOptions:
    host: str
    port: int
    token: str | None = None
    topology: dict[str, Any] | None = None
    #: The tenant server's API for the page's Tenants tab (web/tenant.py), and its token.
    tenant_api: str | None = None
    tenant_token: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_listen(text: str) -> tuple[str, int]:
    """'PORT', ':PORT', 'HOST:PORT' or '[V6]:PORT'; the host defaults to loopback."""
    t = text.strip()
    host, sep, port_text = t.rpartition(":")
    if not sep:
        host, port_text = "", t
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise WebError(f"--web {text!r}: write IPv6 hosts in brackets, e.g. [::1]:6680")
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise WebError(f"--web {text!r}: expected [HOST:]PORT with a port 0-65535")
    return host or DEFAULT_HOST, int(port_text)


def add_web_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("web interface (REST API, live page, /metrics)")
    group.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        default=None,
        help="serve rfweb here (host defaults to 127.0.0.1); off when absent",
    )
    group.add_argument(
        "--web-token",
        default=None,
        help="bearer token that enables state-changing endpoints (prefer --web-token-file)",
    )
    group.add_argument(
        "--web-token-file",
        default=None,
        help="file whose first line is the bearer token",
    )
    group.add_argument(
        "--topology",
        default=None,
        help="JSON drawing of the network (nodes, edges) for the web graph",
    )
    group.add_argument(
        "--tenant-api",
        metavar="URL",
        default=None,
        help="the tenant server's API (http://HOST:PORT) for the page's Tenants tab",
    )
    group.add_argument(
        "--tenant-token-file",
        default=None,
        help="file whose first line is the tenant API's token (X-Auth-Token)",
    )


def web_options(args: argparse.Namespace) -> WebOptions | None:
    """Check the web options before anything starts; None when --web is absent."""
    if not getattr(args, "web", None):
        for opt in ("web_token", "web_token_file", "topology", "tenant_api", "tenant_token_file"):
            if getattr(args, opt, None):
                raise WebError(f"--{opt.replace('_', '-')} needs --web")
        return None
    host, port = parse_listen(args.web)
    token = args.web_token
    if args.web_token_file:
        if token:
            raise WebError("give --web-token or --web-token-file, not both")
        try:
            with open(args.web_token_file) as fh:
                token = fh.readline().strip()
        except OSError as exc:
            raise WebError(f"--web-token-file {args.web_token_file}: {exc.strerror}") from exc
        if not token:
            raise WebError(f"--web-token-file {args.web_token_file}: empty")
    if token is not None and len(token) < 8:
        raise WebError("--web-token: use at least 8 characters")
    topology = None
    if args.topology:
        from routeflow.web.topology import TopologyError, load_topology

        try:
            topology = load_topology(args.topology)
        except TopologyError as exc:
            raise WebError(str(exc)) from exc
    tenant_api = getattr(args, "tenant_api", None)
    tenant_token = None
    if tenant_api is not None and not tenant_api.startswith(("http://", "https://")):
        raise WebError(f"--tenant-api {tenant_api!r}: expected http(s)://HOST:PORT")
    if getattr(args, "tenant_token_file", None):
        if tenant_api is None:
            raise WebError("--tenant-token-file needs --tenant-api")
        try:
            with open(args.tenant_token_file) as fh:
                tenant_token = fh.readline().strip() or None
        except OSError as exc:
            raise WebError(f"--tenant-token-file {args.tenant_token_file}: {exc.strerror}") from exc
    return WebOptions(
        host=host,
        port=port,
        token=token or None,
        topology=topology,
        tenant_api=tenant_api,
        tenant_token=tenant_token,
    )

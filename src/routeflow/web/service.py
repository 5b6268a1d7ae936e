"""Runs rfweb inside rfserver's event loop: uvicorn as one more task.

The listening socket is bound synchronously when the service is created, so a
bad address or a port in use stops rfserver at start-up with a clear message,
and the port is accepting by the time rfserver's own socket appears (the lab
runner waits for that one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING

import uvicorn

from routeflow.web.api import create_app
from routeflow.web.options import WebError, WebOptions

if TYPE_CHECKING:
    from routeflow.server.service import RFServer

log = logging.getLogger("routeflow.web")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handling: rfserver owns SIGINT/SIGTERM/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise WebError(f"--web {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class WebService:
    def __init__(self, server: RFServer, options: WebOptions) -> None:
        self.options = options
        tenant = None
        if options.tenant_api:
            from routeflow.web.tenant import TenantSource

            tenant = TenantSource(options.tenant_api, options.tenant_token)
        self.app = create_app(server, token=options.token, topology=options.topology, tenant=tenant)
        self.sock = _bind(options.host, options.port)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # keep rfserver's logging set-up
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self._uv = _Uvicorn(config)
        self._task: asyncio.Future | None = None

    @property
    def url(self) -> str:
        host = self.options.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._uv.serve(sockets=[self.sock]))
        self._task.add_done_callback(self._done)
        log.info(
            "rfweb on %s (changes %s)",
            self.url,
            "need the bearer token" if self.options.token else "disabled: no token",
        )

    def _done(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("rfweb stopped: %s", task.exception())

    async def stop(self, timeout: float = 5.0) -> None:
        self.app.state.closing = True  # event streams end at their next tick
        self._uv.should_exit = True
        if self._task is None:
            self.sock.close()
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except (TimeoutError, asyncio.CancelledError):
            self._uv.force_exit = True
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        except Exception:  # already logged by _done
            pass
        self.sock.close()


def start_web(server: RFServer, options: WebOptions | None) -> WebService | None:
    """Start rfweb for ``server`` in the running loop (None: --web not given)."""
    if options is None:
        return None
    web = WebService(server, options)
    web.start()
    return web

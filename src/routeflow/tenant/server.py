"""`routeflow tenant server`: the I/O shell around the tenant API and repository.

Opens the store, loads the users file and token, then runs uvicorn in-process on one
asyncio loop (the repository is single-threaded by design: every endpoint and every
subscriber runs on this loop). The node listener (tenant.nodelink, helper H3's part)
starts on the same loop when `--nodes-listen` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from routeflow.rflib import sdnotify
from routeflow.rflib.auth import AuthError, load_secret
from routeflow.rflib.store import StoreError, open_store
from routeflow.tenant.api import create_app
from routeflow.tenant.identity import Auth, UsersFileError, load_users
from routeflow.tenant.repo import Repository

log = logging.getLogger(__name__)


class ServerConfigError(ValueError):
    """A bad flag or file; the message says which."""


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:9696"
    store: str = "sqlite:tenant.db"
    token_file: str | None = None
    users: str | None = None
    nodes_listen: str | None = None
    nodes_secret_file: str | None = None
    #: With an etcd store: this server's name in the leader election, the lease's TTL
    #: and the API URL the others forward to while it leads (tenant.standby).
    name: str | None = None
    lease_ttl: int = 2
    advertise: str | None = None
    #: Seconds a gateway node's session may stay lost before it is marked down.
    gateway_grace: float = 5.0


def parse_listen(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerConfigError(f"{flag} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9696")
    return host.strip("[]"), int(port)


def read_token(path: str, flag: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise ServerConfigError(f"{flag} {path}: {err.strerror}") from None
    if not token:
        raise ServerConfigError(f"{flag} {path}: the file is empty")
    return token


def node_secret(config: ServerConfig) -> bytes | None:
    if config.nodes_secret_file is None:
        return None
    try:
        return load_secret(config.nodes_secret_file)
    except AuthError as err:
        raise ServerConfigError(f"--nodes-secret-file: {err}") from None


def build(config: ServerConfig) -> tuple[Repository, Auth, tuple[str, int]]:
    """Check every flag and open the store; raises ServerConfigError with a clear message."""
    host, port = parse_listen(config.listen, "--listen")
    if config.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", config.name):
        raise ServerConfigError(f"--name {config.name!r}: 1-63 characters of [A-Za-z0-9_.-]")
    if config.lease_ttl < 1:
        raise ServerConfigError(f"--lease-ttl {config.lease_ttl}: at least 1 second")
    if config.advertise is not None and not re.fullmatch(r"https?://\S+", config.advertise):
        raise ServerConfigError(
            f"--advertise-url {config.advertise!r}: expected http(s)://HOST:PORT"
        )
    node_secret(config)
    token = read_token(config.token_file, "--token-file") if config.token_file else None
    try:
        users = load_users(config.users) if config.users else []
    except UsersFileError as err:
        raise ServerConfigError(str(err)) from None
    try:
        store = open_store(config.store)
    except (ValueError, StoreError) as err:
        raise ServerConfigError(f"--store: {err}") from None
    return Repository(store), Auth(static_token=token, users=users), (host, port)


async def _start_nodes(repo: Repository, config: ServerConfig) -> object:
    # --- HOOK: the node listener (tenant.nodelink, owned by helper H3) starts here. ---
    if config.nodes_listen is None:
        return None
    try:
        nodelink = importlib.import_module("routeflow.tenant.nodelink")
    except ImportError:
        log.error(
            "--nodes-listen %s: routeflow.tenant.nodelink is not available in this build",
            config.nodes_listen,
        )
        return None
    secret = node_secret(config)
    link = await nodelink.serve_nodes(
        repo, config.nodes_listen, secret, gateway_grace=config.gateway_grace
    )
    log.info("node agents connect on %s", config.nodes_listen)
    return link


def _uvicorn(app: Any, host: str, port: int) -> uvicorn.Server:
    return _Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )


async def _serve_ha(config: ServerConfig, store: Any, auth: Auth, host: str, port: int) -> None:
    """A shared (etcd) store: lead or stand by (tenant.standby), one listening socket."""
    from routeflow.rflib.election import LeaderElection
    from routeflow.tenant import standby

    url = config.advertise or f"http://{host}:{port}"
    name = config.name or f"{socket.gethostname()}-{os.getpid()}"
    election = LeaderElection(
        store,
        standby.identity(name, url),
        key=standby.LEADER_KEY,
        ttl=config.lease_ttl,
    )
    proxy = standby.StandbyProxy(url)
    dispatch = standby.Dispatch(proxy)

    async def lead() -> Callable[[], Awaitable[None]]:
        repo = await asyncio.to_thread(Repository, store)  # the model as etcd has it now
        dispatch.app = create_app(repo, auth)
        link = await _start_nodes(repo, config)
        log.info("%s leads at model revision %d", name, repo.snapshot().revision)

        async def undo() -> None:
            close = getattr(link, "close", None)
            if close is not None:
                close()
                await link.wait_closed()  # type: ignore[attr-defined]

        return undo

    server = _uvicorn(dispatch, host, port)
    ha = asyncio.ensure_future(
        standby.run_ha(store=store, election=election, dispatch=dispatch, proxy=proxy, lead=lead)
    )
    ready = asyncio.create_task(_notify_when_serving(server, f"{host}:{port}"))
    try:
        await server.serve()
    finally:
        sdnotify.notify("STOPPING=1")
        ready.cancel()
        ha.cancel()
        await asyncio.gather(ha, return_exceptions=True)
        store.close()


async def serve(config: ServerConfig) -> None:
    repo, auth, (host, port) = build(config)
    if hasattr(repo.store, "fence"):  # a replicated store: run the leader election
        await _serve_ha(config, repo.store, auth, host, port)
        return
    app = create_app(repo, auth)
    server = _uvicorn(app, host, port)
    nodes = asyncio.create_task(_start_nodes(repo, config))
    ready = asyncio.create_task(_notify_when_serving(server, f"{host}:{port}"))
    try:
        await server.serve()
    finally:
        sdnotify.notify("STOPPING=1")
        ready.cancel()
        nodes.cancel()
        repo.store.close()


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGTERM/SIGINT by returning from serve().

    uvicorn re-raises a captured signal once it has shut down, which kills the
    process before serve()'s caller runs: systemd would hear no STOPPING=1 and the
    store would not be closed. Here the signal only asks the server to exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def _notify_when_serving(server: uvicorn.Server, listen: str) -> None:
    """systemd's READY once the API accepts connections, then its watchdog.

    The pings come from the event loop that serves the API: a wedged loop stops them.
    """
    while not server.started:
        await asyncio.sleep(0.05)
    sdnotify.notify("READY=1", f"STATUS=serving the Neutron API on {listen}")
    await sdnotify.watchdog()


def run(config: ServerConfig) -> None:
    asyncio.run(serve(config))

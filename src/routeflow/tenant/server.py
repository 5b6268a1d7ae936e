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
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    link = await nodelink.serve_nodes(repo, config.nodes_listen, secret)
    log.info("node agents connect on %s", config.nodes_listen)
    return link


async def serve(config: ServerConfig) -> None:
    repo, auth, (host, port) = build(config)
    app = create_app(repo, auth)
    server = _Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
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

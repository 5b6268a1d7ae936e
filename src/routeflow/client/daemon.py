"""rfclient: tell rfserver what this VM routes with, and keep telling it.

Every connection starts with the whole state bracketed by Resync begin/end
instead of "whatever changed while we were away": rfserver may have restarted
or dropped us, and reconciling against a full dump is the only answer that
cannot drift. After that, coalesced deltas are streamed as the kernel changes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import socket
import sys

from routeflow.client.netlink import (
    NetlinkWatcher,
    enter_netns,
    get_hwaddr,
    poke,
    send_mapping_packet,
    set_link_state,
)
from routeflow.rflib import auth, daemonconf, ipc, logs, sdnotify, tls
from routeflow.rflib.protocol import (
    AuthChallenge,
    ClientHello,
    Error,
    PortConfig,
    PortOperation,
    Resync,
)
from routeflow.rflib.tuning import tune_gc

__all__ = ["ClientDaemon", "main", "parse_vm_id", "run_client", "vm_id_from_interface"]

log = logging.getLogger("routeflow.client")

DEFAULT_SERVER = "unix:/run/routeflow/rfserver.sock"
#: The first mapping frame may race the switch port coming up: send a few.
MAPPING_SENDS = 3
MAPPING_INTERVAL = 0.2
#: Upper bound of gateways poked per interval.
MAX_POKES = 256


class ClientDaemon:
    """One rfclient: a netlink watcher thread plus a reconnecting server session.

    Raw-socket work (mapping frames, ARP/ND pokes) runs on a one-thread executor
    so it never blocks the event loop; with ``netns`` that thread and the
    watcher's enter the namespace (tests), the daemon itself runs inside it.
    """

    def __init__(
        self,
        vm_id: int,
        server_address: str,
        *,
        poke_interval: float = 1.0,
        batch_delay: float = 0.02,
        netns: str | None = None,
        hostname: str | None = None,
        secret: bytes | None = None,
        ssl=None,
    ):
        self.vm_id = vm_id
        self.secret = secret
        self.ssl = ssl
        self.addresses = ipc.parse_addresses(server_address)
        self.poke_interval = poke_interval
        self.batch_delay = batch_delay
        self.netns = netns
        self.hostname = socket.gethostname() if hostname is None else hostname
        self.watcher: NetlinkWatcher | None = None
        self.mapping_packets_sent = 0
        self.watcher_failed = False
        self._wake = asyncio.Event()
        #: A wake-up is on its way to the event loop and the changes behind it are not
        #: drained yet: the watcher need not send another (see run.on_change).
        self._wake_pending = False
        self._client = ipc.ReconnectingClient(
            self.addresses,
            self._session,
            ssl=self.ssl,
            hello=lambda: ClientHello(vm_id=self.vm_id, hostname=self.hostname),
            secret=self.secret,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._io: concurrent.futures.ThreadPoolExecutor | None = None

    def stop(self) -> None:
        """Make ``run()`` return (safe to call before or during it)."""
        self._client.stop()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def on_change() -> None:  # called from the watcher thread
            # One wake-up per drain, not one per netlink read: under a stream of route
            # changes (a peer going down) the watcher reads a few messages at a time, and
            # a cross-thread wake-up each (a write to the loop's self-pipe) was a fifth
            # of rfclient's CPU. Changes fed while one is pending go with its drain,
            # which clears the flag before it takes them.
            if self._wake_pending:
                return
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._wake.set)

        self._io = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="rfclient-io",
            initializer=enter_netns if self.netns else None,
            initargs=(self.netns,) if self.netns else (),
        )
        watcher = NetlinkWatcher(self.vm_id, on_change=on_change, netns=self.netns)
        self.watcher = watcher
        try:
            await asyncio.to_thread(watcher.start)
            log.info(
                "rfclient vm %#x: watching the kernel, server %s",
                self.vm_id,
                ",".join(map(str, self.addresses)),
            )
            sdnotify.notify("READY=1", f"STATUS=vm {self.vm_id:#x} watching the kernel")
            poker = asyncio.create_task(self._housekeeping())
            try:
                await self._client.run()
            finally:
                poker.cancel()
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(poker, *self._tasks, return_exceptions=True)
        finally:
            await asyncio.to_thread(watcher.stop)
            self._io.shutdown(wait=False, cancel_futures=True)
            log.info("rfclient vm %#x stopped", self.vm_id)
        if self.watcher_failed:
            raise RuntimeError("the netlink watcher failed (see the log above)")

    # --- server session --------------------------------------------------------

    async def _session(self, conn: ipc.Connection) -> None:
        assert self.watcher is not None
        self._wake.clear()  # the snapshot covers everything up to now
        self._wake_pending = False
        snapshot, counts = self.watcher.snapshot()
        await conn.send_many(
            [
                Resync(phase="begin", scope=self.vm_id),
                *snapshot,
                Resync(phase="end", scope=self.vm_id),
            ]
        )
        log.info(
            "connected to %s; resync sent: %d ports, %d routes, %d neighbours "
            "(%d routes wait for a nexthop object)",
            conn.peer,
            counts["ports"],
            counts["routes"],
            counts["neighbours"],
            counts["pending"],
        )
        reader = asyncio.create_task(self._read_loop(conn))
        waiter: asyncio.Task[bool] | None = None
        try:
            while True:
                waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait((reader, waiter), return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    break
                self._wake.clear()
                if self.batch_delay > 0:
                    await asyncio.sleep(self.batch_delay)  # let a burst coalesce
                self._wake_pending = False  # before the drain: later changes wake again
                msgs = self.watcher.drain()
                if msgs:
                    await conn.send_many(msgs)
                    log.debug("sent %d messages to %s", len(msgs), conn.peer)
            await reader  # re-raise what ended the session
        finally:
            for task in (reader, waiter):
                if task is not None and not task.done():
                    task.cancel()
            log.info("disconnected from %s", conn.peer)

    async def _read_loop(self, conn: ipc.Connection) -> None:
        async for msg in conn:
            if isinstance(msg, PortConfig):
                self._on_port_config(msg)
            elif isinstance(msg, Error):
                log.warning("rfserver reports %s: %s", msg.code, msg.detail)
            elif isinstance(msg, AuthChallenge):
                log.error("rfserver requires authentication: start rfclient with --secret-file")
            else:
                log.debug("ignoring %s from rfserver", type(msg).__name__)

    def _on_port_config(self, msg: PortConfig) -> None:
        if msg.vm_id != self.vm_id:
            log.warning("PortConfig for vm %#x, but this is vm %#x; ignored", msg.vm_id, self.vm_id)
            return
        if msg.operation_id == PortOperation.SEND_MAPPING_PACKET:
            self._spawn(self._send_mapping(msg.vm_port))
        elif msg.operation_id == PortOperation.RESET:
            log.info("rfserver reset the association of port %d", msg.vm_port)
        elif msg.operation_id in (PortOperation.LINK_DOWN, PortOperation.LINK_UP):
            up = msg.operation_id == PortOperation.LINK_UP
            self._spawn(self._set_link(msg.vm_port, up))
        else:
            log.warning("unknown PortConfig operation %s", msg.operation_id)

    def _spawn(self, coro) -> None:
        """Run a side task of the session; it is cancelled when the daemon stops."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_link(self, vm_port: int, up: bool) -> None:
        """Mirror the switch port's link state on the VM interface."""
        ifname = f"eth{vm_port}"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._io, set_link_state, ifname, up)
        except (OSError, ValueError) as err:
            log.warning("cannot set %s %s: %s", ifname, "up" if up else "down", err)
            return
        log.info(
            "switch port link %s: %s set %s", "up" if up else "down", ifname, "up" if up else "down"
        )

    async def _send_mapping(self, vm_port: int) -> None:
        ifname = f"eth{vm_port}"
        loop = asyncio.get_running_loop()
        for i in range(MAPPING_SENDS):
            if i:
                await asyncio.sleep(MAPPING_INTERVAL)
            try:
                await loop.run_in_executor(
                    self._io, send_mapping_packet, ifname, self.vm_id, vm_port
                )
            except (OSError, ValueError) as err:
                log.warning("cannot send the mapping packet on %s: %s", ifname, err)
                return
            self.mapping_packets_sent += 1
        log.info("sent the mapping packet on %s (%d times)", ifname, MAPPING_SENDS)

    # --- neighbour resolution ----------------------------------------------------

    async def _housekeeping(self) -> None:
        """Poke unresolved gateways; give up if the watcher thread died."""
        assert self.watcher is not None
        loop = asyncio.get_running_loop()
        interval = self.poke_interval if self.poke_interval > 0 else 1.0
        while True:
            await asyncio.sleep(interval)
            if self.watcher.failed:
                log.error("the netlink watcher died; stopping rather than serving stale routes")
                self.watcher_failed = True
                self.stop()
                return
            if self.poke_interval <= 0:
                continue
            targets = sorted(self.watcher.unresolved_gateways())[:MAX_POKES]
            if targets:
                await loop.run_in_executor(self._io, _poke_all, targets)
                log.debug("poked %d unresolved gateways", len(targets))


def _poke_all(targets: list[tuple[int, str]]) -> None:
    for vm_port, gateway in targets:
        poke(gateway, f"eth{vm_port}")


async def run_client(
    vm_id: int,
    server_address: str,
    *,
    poke_interval: float = 1.0,
    netns: str | None = None,
    secret: bytes | None = None,
    ssl=None,
) -> None:
    """Run rfclient until SIGTERM/SIGINT (or cancellation)."""
    daemon = ClientDaemon(
        vm_id, server_address, poke_interval=poke_interval, netns=netns, secret=secret, ssl=ssl
    )
    loop = asyncio.get_running_loop()
    installed = []

    def on_signal(signum: int) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        daemon.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        installed.append(signum)
    watchdog = asyncio.ensure_future(sdnotify.watchdog())
    try:
        await daemon.run()
    finally:
        watchdog.cancel()
        sdnotify.notify("STOPPING=1")
        for signum in installed:
            loop.remove_signal_handler(signum)


# --- command line ----------------------------------------------------------------


def parse_vm_id(text: str) -> int:
    """Decimal or 0x-hex, 0 .. 2**64-1."""
    try:
        value = int(text, 0)
    except ValueError:
        try:
            value = int(text, 10)  # "010": leading zeros, still decimal
        except ValueError:
            raise ValueError(f"bad --vm-id {text!r}: expected a number like 42 or 0x2a") from None
    if not 0 <= value < 1 << 64:
        raise ValueError(f"bad --vm-id {text!r}: must be between 0 and 2**64-1")
    return value


def vm_id_from_interface(ifname: str) -> int:
    """The original RouteFlow rule: the MAC of the management interface, as a 48-bit number."""
    try:
        mac = get_hwaddr(ifname)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"--mgmt-if {ifname!r}: no such interface ({reason})") from None
    return int(mac.replace(":", ""), 16)


def build_parser() -> argparse.ArgumentParser:
    """rfclient's options; also the schema of its config file (rflib.daemonconf)."""
    parser = argparse.ArgumentParser(
        prog="routeflow client",
        description="rfclient: report this VM's ports, routes and neighbours to rfserver.",
    )
    daemonconf.add_config_file_option(parser)
    parser.add_argument("--vm-id", help="VM id (decimal or 0x hex); default: from --mgmt-if")
    parser.add_argument("--mgmt-if", help="interface whose MAC is the VM id when --vm-id is absent")
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help="rfserver address(es), comma-separated: a leader and its standby are "
        f"tried in turn (default: {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--poke-interval",
        type=float,
        default=1.0,
        help="seconds between ARP/ND pokes of unresolved gateways (0: off)",
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
    logs.setup(args.log_level, args.log_format, "rfclient")
    tune_gc()  # a full table is millions of objects (see rflib.tuning)
    try:
        if args.vm_id is not None:
            vm_id = parse_vm_id(args.vm_id)
        elif args.mgmt_if is not None:
            vm_id = vm_id_from_interface(args.mgmt_if)
        else:
            raise ValueError("give --vm-id, or --mgmt-if to take the VM id from its MAC")
        ipc.parse_addresses(args.server)
        secret, ssl_context = auth.peer_credentials(args, server=False)
    except ValueError as err:
        print(f"rfclient: error: {err}", file=sys.stderr)
        return 2
    logs.setup(args.log_level, args.log_format, "rfclient", vm_id=vm_id)  # on every line
    try:
        asyncio.run(
            run_client(
                vm_id,
                args.server,
                poke_interval=args.poke_interval,
                secret=secret,
                ssl=ssl_context,
            )
        )
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as err:  # netlink unavailable, or the watcher died
        print(f"rfclient: error: cannot watch the kernel: {err}", file=sys.stderr)
        return 1
    return 0

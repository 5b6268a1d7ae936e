"""Tests for routeflow.rflib.ipc over real loopback sockets (unix and TCP)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest

from routeflow.rflib import ipc, protocol
from routeflow.rflib.codec import ProtocolError, encode, encode_many
from routeflow.rflib.ipc import (
    Connection,
    ReconnectingClient,
    TcpAddress,
    UnixAddress,
    open_connection,
    parse_address,
    parse_addresses,
    serve,
    server_address,
)

HELLO = protocol.ClientHello(vm_id=7, hostname="rfvm7")
BATCH = [
    protocol.PortRegister(vm_id=7, vm_port=1, hwaddress="02:00:00:00:07:01"),
    protocol.PortRegister(vm_id=7, vm_port=2, hwaddress="02:00:00:00:07:02"),
    protocol.RouteMod(
        mod=protocol.Mod.ADD,
        vm_id=7,
        routes=[protocol.Route(prefix="10.0.0.0/8", nexthops=[protocol.NextHop(vm_port=1)])],
    ),
    protocol.Resync(phase="end", scope=7),
]


def run(coro: Awaitable, timeout: float = 4.0):
    """asyncio.run with a hard deadline, so a hung test fails instead of blocking."""

    async def main():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(main())


@pytest.fixture
def sock_dir():
    # Short path: unix socket paths are limited to 107 bytes, tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="rf-ipc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["unix", "tcp"])
def address(request, sock_dir) -> str:
    if request.param == "unix":
        return f"unix:{sock_dir}/rf.sock"
    return "tcp:127.0.0.1:0"


async def open_raw(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    addr = parse_address(address)
    if isinstance(addr, UnixAddress):
        return await asyncio.open_unix_connection(addr.path)
    return await asyncio.open_connection(addr.host, addr.port)


async def echo(conn: Connection) -> None:
    async for msg in conn:
        await conn.send(msg)


# --- addresses ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/routeflow/rfserver.sock", UnixAddress("/run/routeflow/rfserver.sock")),
        ("unix:relative.sock", UnixAddress("relative.sock")),
        ("tcp:127.0.0.1:6633", TcpAddress("127.0.0.1", 6633)),
        ("tcp:localhost:0", TcpAddress("localhost", 0)),
        ("tcp:[::1]:7890", TcpAddress("::1", 7890)),
        ("tcp:[fe80::1%eth0]:1", TcpAddress("fe80::1%eth0", 1)),
    ],
)
def test_parse_address(text, expected):
    addr = parse_address(text)
    assert addr == expected
    assert str(addr) == text
    assert parse_address(addr) is addr
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(addr, dataclasses.fields(addr)[0].name, "x")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rfserver.sock",
        "udp:127.0.0.1:53",
        "UNIX:/x.sock",
        "unix:",
        "unix:/tmp/" + "x" * 200,
        "tcp:",
        "tcp:127.0.0.1",
        "tcp:127.0.0.1:",
        "tcp:127.0.0.1:http",
        "tcp:127.0.0.1:-1",
        "tcp:127.0.0.1:65536",
        "tcp:127.0.0.1:\uff16\uff16",  # fullwidth digits
        "tcp::6633",
        "tcp:::1:6633",
        "tcp:[::1:6633",
        "tcp:[]:6633",
        "tcp:[::1]6633",
    ],
)
def test_parse_address_errors(text):
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert repr(text) in str(info.value)


def test_parse_address_type_error():
    with pytest.raises(TypeError):
        parse_address(6633)  # type: ignore[arg-type]


# --- connections ----------------------------------------------------------


def test_round_trip_both_ways(address):
    async def scenario():
        async def handler(conn: Connection) -> None:
            await conn.send_many(BATCH)  # server speaks first
            await echo(conn)

        server = await serve(address, handler)
        async with server:
            conn = await open_connection(server_address(server))
            async with conn:
                assert [await conn.recv() for _ in BATCH] == BATCH
                await conn.send(HELLO)
                await conn.send_many(BATCH)
                await conn.send_many([])
                got = [await conn.recv() for _ in range(1 + len(BATCH))]
                assert got == [HELLO, *BATCH]
            assert conn.closed

    run(scenario())


def test_clean_eof_ends_iteration(address):
    async def scenario():
        async def handler(conn: Connection) -> None:
            await conn.send_many(BATCH)  # then return: the server closes

        server = await serve(address, handler)
        async with server:
            conn = await open_connection(server_address(server))
            assert [msg async for msg in conn] == BATCH
            assert await conn.recv() is None
            await conn.close()
            await conn.close()  # idempotent
            with pytest.raises(ConnectionResetError):
                await conn.send(HELLO)

    run(scenario())


def test_ready_event_and_peer(address):
    async def scenario():
        ready = asyncio.Event()
        peers: list[str] = []

        async def handler(conn: Connection) -> None:
            peers.append(conn.peer)

        server = await serve(address, handler, ready=ready)
        async with server:
            assert ready.is_set()
            conn = await open_connection(server_address(server))
            assert await conn.recv() is None
            assert conn.peer == server_address(server)
            await conn.close()
        assert peers and peers[0].startswith(address.split(":", 1)[0] + ":")

    run(scenario())


def test_server_survives_garbage(address, caplog):
    caplog.set_level(logging.INFO, logger="routeflow.ipc")

    async def scenario():
        received: list = []

        async def handler(conn: Connection) -> None:
            async for msg in conn:
                received.append(msg)
                await conn.send(msg)

        server = await serve(address, handler)
        async with server:
            where = server_address(server)
            # One good frame, then garbage: the good one is still delivered.
            reader, writer = await open_raw(where)
            writer.write(encode(HELLO) + b"GET / HTTP/1.0\r\n\r\n")
            await writer.drain()
            assert await reader.read() == encode(HELLO)  # echoed, then EOF: closed
            writer.close()
            # The server still serves another client.
            conn = await open_connection(where)
            await conn.send_many(BATCH)
            assert [await conn.recv() for _ in BATCH] == BATCH
            await conn.close()
        assert received == [HELLO, *BATCH]

    run(scenario())
    lines = [r.getMessage() for r in caplog.records if "protocol error" in r.getMessage()]
    assert len(lines) == 1 and "bad-magic" in lines[0]


def test_truncated_frame_at_eof_is_a_protocol_error(address, caplog):
    caplog.set_level(logging.INFO, logger="routeflow.ipc")

    async def scenario():
        done = asyncio.Event()
        errors: list[ProtocolError] = []

        async def handler(conn: Connection) -> None:
            try:
                await conn.recv()
            except ProtocolError as err:
                errors.append(err)
            done.set()

        server = await serve(address, handler)
        async with server:
            _, writer = await open_raw(server_address(server))
            writer.write(encode(HELLO)[:-1])
            await writer.drain()
            writer.close()
            await done.wait()
        assert [e.reason for e in errors] == ["truncated"]

    run(scenario())


def test_handler_exception_does_not_kill_server(address, caplog):
    caplog.set_level(logging.INFO, logger="routeflow.ipc")

    async def scenario():
        async def handler(conn: Connection) -> None:
            msg = await conn.recv()
            if msg == HELLO:
                raise RuntimeError("boom")
            await conn.send(msg)

        server = await serve(address, handler)
        async with server:
            where = server_address(server)
            conn = await open_connection(where)
            await conn.send(HELLO)
            assert await conn.recv() is None  # closed by the server
            await conn.close()
            conn = await open_connection(where)
            await conn.send(BATCH[0])
            assert await conn.recv() == BATCH[0]
            await conn.close()

    run(scenario())
    failures = [r for r in caplog.records if r.exc_info and "handler failed" in r.getMessage()]
    assert len(failures) == 1


def test_client_sees_server_garbage_after_good_messages(sock_dir):
    path = f"{sock_dir}/raw.sock"

    async def scenario():
        async def raw_server(reader, writer):
            writer.write(encode_many(BATCH[:2]) + b"\xff" * 8)
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_unix_server(raw_server, path=path)
        async with server:
            conn = await open_connection(f"unix:{path}")
            assert await conn.recv() == BATCH[0]
            assert await conn.recv() == BATCH[1]
            for _ in range(2):  # sticky: the stream is unusable
                with pytest.raises(ProtocolError) as info:
                    await conn.recv()
                assert info.value.reason == "bad-magic"
            await conn.close()

    run(scenario())


def test_stale_unix_socket_is_replaced(sock_dir):
    path = sock_dir / "rf.sock"

    async def scenario():
        first = await serve(f"unix:{path}", echo)
        first.close()
        await first.wait_closed()
        assert path.exists()  # left behind, as after a crash
        second = await serve(f"unix:{path}", echo)
        async with second:
            conn = await open_connection(f"unix:{path}")
            await conn.send(HELLO)
            assert await conn.recv() == HELLO
            await conn.close()

    run(scenario())


def test_serve_refuses_to_remove_a_regular_file(sock_dir):
    path = sock_dir / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        run(serve(f"unix:{path}", echo))
    assert path.read_text() == "precious"


def test_ipv6_loopback():
    async def scenario():
        try:
            server = await serve("tcp:[::1]:0", echo)
        except OSError as err:
            pytest.skip(f"no IPv6 loopback: {err}")
        async with server:
            where = server_address(server)
            assert where.startswith("tcp:[::1]:")
            conn = await open_connection(where)
            await conn.send(HELLO)
            assert await conn.recv() == HELLO
            await conn.close()

    run(scenario())


def test_open_connection_errors(sock_dir):
    with pytest.raises(OSError):
        run(open_connection(f"unix:{sock_dir}/missing.sock"))
    with pytest.raises(ValueError):
        run(open_connection("carrier-pigeon:1"))


# --- reconnecting client --------------------------------------------------


class Hub:
    """A test server whose connections can be dropped all at once."""

    def __init__(self) -> None:
        self.hellos: asyncio.Queue = asyncio.Queue()
        self.conns: set[Connection] = set()

    async def handler(self, conn: Connection) -> None:
        self.conns.add(conn)
        try:
            await self.hellos.put(await conn.recv())
            async for _ in conn:
                pass
        finally:
            self.conns.discard(conn)

    async def stop(self, server: asyncio.AbstractServer) -> None:
        server.close()
        for conn in list(self.conns):
            await conn.close()
        await server.wait_closed()


async def hello_session(conn: Connection) -> None:
    await conn.send(HELLO)
    async for _ in conn:
        pass


def test_reconnects_after_server_restart(address, caplog):
    caplog.set_level(logging.DEBUG, logger="routeflow.ipc")

    async def scenario():
        hub = Hub()
        server = await serve(address, hub.handler)
        where = server_address(server)  # tcp: pins the port chosen by the kernel
        client = ReconnectingClient(where, hello_session, min_backoff=0.01, max_backoff=0.05)
        task = asyncio.create_task(client.run())
        assert await hub.hellos.get() == HELLO
        assert client.reconnects == 0

        await hub.stop(server)
        await asyncio.sleep(0.15)  # several refused attempts
        assert client.reconnects == 0

        server = await serve(where, hub.handler)
        assert await hub.hellos.get() == HELLO
        assert client.reconnects == 1

        await hub.stop(server)
        server = await serve(where, hub.handler)
        assert await hub.hellos.get() == HELLO
        assert client.reconnects == 2

        client.stop()
        await task
        await hub.stop(server)

    run(scenario())


def test_parse_addresses():
    assert parse_addresses("unix:/a.sock, tcp:127.0.0.1:7") == [
        UnixAddress("/a.sock"),
        TcpAddress("127.0.0.1", 7),
    ]
    assert parse_addresses("tcp:[::1]:9") == [TcpAddress("::1", 9)]
    for bad, why in [
        ("unix:/a.sock,", "empty entry"),
        ("unix:/a.sock,unix:/a.sock", "twice"),
        ("unix:/a.sock,udp:x:1", "expected"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_addresses(bad)


def test_client_follows_whichever_server_answers(sock_dir):
    """A leader and a standby: the client stays with the live one and moves on when it dies."""
    first, second = f"unix:{sock_dir}/a.sock", f"unix:{sock_dir}/b.sock"

    async def scenario():
        hub = Hub()
        server = await serve(second, hub.handler)  # the standby answers first: a is not up
        client = ReconnectingClient(
            f"{first},{second}", hello_session, min_backoff=0.01, max_backoff=0.02
        )
        task = asyncio.create_task(client.run())
        assert await hub.hellos.get() == HELLO
        assert str(client.address) == second
        await hub.stop(server)
        server = await serve(first, hub.handler)  # the other one takes over
        assert await hub.hellos.get() == HELLO
        assert str(client.address) == first and client.reconnects == 1
        client.stop()
        await task
        await hub.stop(server)

    run(scenario())


def test_client_waits_for_a_server_that_is_not_up_yet(sock_dir):
    where = f"unix:{sock_dir}/late.sock"

    async def scenario():
        hub = Hub()
        client = ReconnectingClient(where, hello_session, min_backoff=0.01, max_backoff=0.02)
        task = asyncio.create_task(client.run())
        await asyncio.sleep(0.1)
        server = await serve(where, hub.handler)
        assert await hub.hellos.get() == HELLO
        assert client.reconnects == 0 and client.connects == 1
        client.stop()
        await task
        await hub.stop(server)

    run(scenario())


def test_stop_interrupts_backoff(sock_dir):
    async def scenario():
        client = ReconnectingClient(
            f"unix:{sock_dir}/nobody.sock", hello_session, min_backoff=3.0, max_backoff=3.0
        )
        task = asyncio.create_task(client.run())
        await asyncio.sleep(0.05)  # now sleeping in a 1.5-3 s backoff
        start = time.monotonic()
        client.stop()
        await task
        assert time.monotonic() - start < 0.5

    run(scenario())


def test_stop_cancels_a_running_session(address):
    async def scenario():
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def stuck_session(conn: Connection) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        server = await serve(address, echo)
        async with server:
            client = ReconnectingClient(server_address(server), stuck_session)
            task = asyncio.create_task(client.run())
            await started.wait()
            client.stop()
            await task
            assert cancelled.is_set()
            assert client.stopping

    run(scenario())


def test_session_errors_lead_to_reconnect(address, caplog):
    caplog.set_level(logging.INFO, logger="routeflow.ipc")

    async def scenario():
        calls = 0

        async def flaky_session(conn: Connection) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ProtocolError("bad-magic", "test")
            if calls == 2:
                raise KeyError("bug")
            client.stop()

        server = await serve(address, echo)
        async with server:
            client = ReconnectingClient(server_address(server), flaky_session, min_backoff=0.01)
            await client.run()
        assert calls == 3
        assert client.reconnects == 2

    run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert any("protocol error (bad-magic)" in m for m in messages)
    assert any(r.exc_info and "session failed" in r.getMessage() for r in caplog.records)


def test_reconnecting_client_validates_arguments():
    with pytest.raises(ValueError):
        ReconnectingClient("tcp:127.0.0.1:1", hello_session, min_backoff=0)
    with pytest.raises(ValueError):
        ReconnectingClient("tcp:127.0.0.1:1", hello_session, min_backoff=2, max_backoff=1)
    with pytest.raises(ValueError):
        ReconnectingClient("nowhere", hello_session)


def test_module_exports():
    assert set(ipc.__all__) <= set(dir(ipc))
    assert isinstance(parse_address("unix:/x"), ipc.Address)


# --- refusing a peer -----------------------------------------------------------------


def _refusal_seen(address: str, lingering: bool) -> list:
    """A peer sends its hello, then more (50 batches) without waiting for an answer, and
    reads only after a pause; the server refuses it after the hello. What does the peer
    read?"""
    refusal = protocol.Error(code="auth-failed", detail="authentication failed")

    async def handler(conn: Connection) -> None:
        await conn.recv()  # the hello
        # What the peer sends from now on stays in the kernel unread, as what arrives
        # between the server's last read and its close does (rarely: a CI run once).
        conn._writer.transport.pause_reading()
        await asyncio.sleep(0.3)
        if lingering:
            await conn.refuse(refusal)
        else:
            await conn.send(refusal)  # and the handler returns: closed at once

    async def main() -> list:
        server = await serve(address, handler)
        try:
            conn = await open_connection(server_address(server))
            await conn.send(HELLO)
            got: list = []
            try:
                await asyncio.sleep(0.05)  # the server has read the hello, and only it
                for _ in range(50):
                    await conn.send_many(BATCH)
                await asyncio.sleep(0.6)  # the server has answered and closed by now
                while (msg := await conn.recv()) is not None:
                    got.append(msg)
            except ConnectionError:
                pass
            await conn.close()
            return got
        finally:
            server.close()
            await server.wait_closed()

    return run(main())


def test_a_refused_peer_reads_why_even_while_it_was_still_sending(address):
    got = _refusal_seen(address, lingering=True)
    assert [m.code for m in got if isinstance(m, protocol.Error)] == ["auth-failed"], got


def test_closing_right_after_the_refusal_can_lose_it_on_a_unix_socket(sock_dir):
    # Why refuse() lingers: unread data at the server's close makes the peer's kernel
    # report a reset, and asyncio then drops what it had received but not yet read.
    got = _refusal_seen(f"unix:{sock_dir}/rf.sock", lingering=False)
    assert got == []

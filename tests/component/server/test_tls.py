"""RFProtocol over TLS with client certificates, against a real rfserver."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import time

import pytest

from routeflow.proxy.serverlink import ServerLink
from routeflow.rflib import protocol as p
from routeflow.rflib import tls

from .test_rfserver_daemon import Daemon, register_port, vm_ports


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


#: A new P-256 key, unencrypted, for ``openssl req``.
_NEW_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_ca(d, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        *_NEW_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )


def make_cert(d, ca: str, name: str) -> None:
    _openssl(
        "req",
        *_NEW_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        cwd=d,
    )


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d, "ca")
    make_ca(d, "rogue")
    for name in ("server", "client"):
        make_cert(d, "ca", name)
    make_cert(d, "rogue", "intruder")
    return d


@pytest.fixture
def tls_daemon(tmp_path, pki):
    """rfserver with TLS on its unix socket (TLS runs over any stream socket)."""
    d = Daemon(
        tmp_path,
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--tls-ca",
        str(pki / "ca.pem"),
    )
    d.wait_ready()
    yield d, None
    d.stop()


async def _register_tls(path: str, ctx) -> list:
    from routeflow.rflib import ipc

    conn = await ipc.open_connection(f"unix:{path}", ssl=ctx)
    await conn.send(p.ClientHello(vm_id=5))
    await conn.send(p.PortRegister(vm_id=5, vm_port=1, hwaddress="02:00:00:00:00:01"))
    await asyncio.sleep(0.3)
    await conn.close()


def test_client_with_a_certificate_from_the_ca_is_served(tls_daemon, pki):
    d, _port = tls_daemon
    ctx = tls.client_context(str(pki / "client.pem"), str(pki / "client.key"), str(pki / "ca.pem"))
    asyncio.run(_register_tls(d.sock, ctx))
    assert [a["state"] for a in vm_ports(d)] == ["idle client port"]


def test_plain_client_is_refused_and_server_survives(tls_daemon, pki):
    d, _port = tls_daemon
    asyncio.run(register_port(d.sock, 5))
    assert vm_ports(d) == []
    assert d.proc.poll() is None


def test_client_from_another_ca_is_refused(tls_daemon, pki):
    d, _port = tls_daemon
    ctx = tls.client_context(
        str(pki / "intruder.pem"), str(pki / "intruder.key"), str(pki / "ca.pem")
    )
    # With TLS 1.3 the client may only learn of the refusal later (or never,
    # if it only writes); what matters is that the server accepts nothing.
    with contextlib.suppress(ssl.SSLError, ConnectionError, OSError):
        asyncio.run(_register_tls(d.sock, ctx))
    time.sleep(0.3)
    assert vm_ports(d) == []
    assert d.proc.poll() is None


def test_proxy_link_over_tls(tls_daemon, pki):
    d, _port = tls_daemon
    ctx = tls.client_context(str(pki / "client.pem"), str(pki / "client.key"), str(pki / "ca.pem"))
    link = ServerLink(
        f"unix:{d.sock}",
        lambda: [
            p.ControllerRegister(ct_id=1),
            p.DatapathPortRegister(ct_id=1, dp_id=5, dp_port=1),
        ],
        lambda msg: None,
        ssl_context=ctx,
    )
    link.start()
    try:
        deadline = time.monotonic() + 10
        while not any(a["dp_id"] == 5 for a in d.state()["associations"]):
            assert time.monotonic() < deadline, d.log.read_text()
            time.sleep(0.1)
    finally:
        link.stop()

"""Peer authentication for RFProtocol: an HMAC challenge on a shared secret.

After a peer's hello (ClientHello / ControllerRegister), a server that has a
secret sends AuthChallenge with a fresh random nonce; the peer answers with
HMAC-SHA256(secret, context | nonce | identity), where identity is what its
hello claimed ("vm:0x5", "ct:1"). The answer proves the peer knows the secret
and binds it to that identity, so a captured answer is worthless for another
connection or another identity. Everything else on the connection waits until
the answer checks out; a wrong or missing answer closes it.

The HMAC functions and ``ClientHandshake`` are pure, so the server, the
asyncio client and the threaded proxy use the same code; the secret-file and
argument helpers at the end are the daemons' glue. TLS (transport encryption,
client certificates) is orthogonal and not provided here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

from routeflow.rflib.protocol import (
    AuthChallenge,
    AuthResponse,
    ClientHello,
    ControllerRegister,
    Message,
    NodeHello,
)

CONTEXT = b"routeflow-rfprotocol-auth-v1"
MIN_SECRET = 16


class AuthError(Exception):
    pass


def load_secret(path: str) -> bytes:
    """Read a secret file; refuse short secrets and files others can read."""
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            secret = fh.read().strip()
    except OSError as exc:
        raise AuthError(f"cannot read secret file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(f"secret file {path} is readable by others; chmod 600 it")
    if len(secret) < MIN_SECRET:
        raise AuthError(f"secret in {path} is shorter than {MIN_SECRET} bytes")
    return secret


def write_secret(path: str) -> bytes:
    """Create a new random secret file (mode 0600)."""
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret + b"\n")
    return secret


def new_nonce() -> str:
    return secrets.token_hex(32)


def identity(hello: Message) -> str:
    if isinstance(hello, ClientHello):
        return f"vm:{hello.vm_id:#x}"
    if isinstance(hello, ControllerRegister):
        return f"ct:{hello.ct_id}"
    if isinstance(hello, NodeHello):
        return f"node:{hello.name}"
    raise AuthError(f"{type(hello).__name__} is not a hello")


def answer(secret: bytes, nonce: str, who: str) -> str:
    msg = CONTEXT + b"|" + nonce.encode() + b"|" + who.encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def check(secret: bytes, nonce: str, who: str, mac: str) -> bool:
    return hmac.compare_digest(answer(secret, nonce, who), mac)


class ClientHandshake:
    """A peer's side of session setup (sans-IO): the hello, then the challenge if asked.

    ``start()`` gives the frames to send first; with a secret, every message
    received is fed to ``receive()`` until ``done``: the first must be the
    server's AuthChallenge (anything else raises ConnectionError, and the
    shell drops the connection). Without a secret the hello is all there is.
    """

    def __init__(self, hello: Message, secret: bytes | None) -> None:
        self.hello = hello
        self.secret = secret
        self.done = False

    def start(self) -> list[Message]:
        self.done = self.secret is None
        return [self.hello]

    def receive(self, msg: Message) -> list[Message]:
        """The answer to ``msg`` (the server's challenge); afterwards ``done``."""
        if self.done or self.secret is None:
            raise AuthError("the handshake is over: nothing more to answer")
        if not isinstance(msg, AuthChallenge):
            raise ConnectionError(f"expected an authentication challenge, got {msg!r}")
        self.done = True
        return [AuthResponse(mac=answer(self.secret, msg.nonce, identity(self.hello)))]


def peer_credentials(args, server: bool):
    """(secret, TLS context) from a daemon's --secret-file and --tls-* options.

    Raises ValueError with a one-line reason; every daemon reports it the
    same way and exits 2.
    """
    from routeflow.rflib import tls

    secret = None
    if args.secret_file:
        try:
            secret = load_secret(args.secret_file)
        except AuthError as exc:
            raise ValueError(str(exc)) from None
    return secret, tls.from_args(args, server=server)

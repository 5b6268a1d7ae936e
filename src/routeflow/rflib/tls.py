"""Optional TLS for RFProtocol, with client certificates.

Both sides verify the other against the operator's CA: rfserver requires a
client certificate (CERT_REQUIRED), rfclient and rfproxy verify the server's.
Host names are not checked (daemons are addressed by unix socket paths or
loopback addresses); the CA is the trust anchor. This complements the HMAC
challenge of rflib.auth, which binds a peer to the identity it claims.
"""

from __future__ import annotations

import ssl

#: Name sent in SNI when connecting; host names are not verified (see above).
SERVER_NAME = "rfserver"


def _context(purpose: ssl.Purpose, cert: str, key: str, ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cert, key)
    return ctx


def server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    return _context(ssl.Purpose.CLIENT_AUTH, cert, key, ca)


def client_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    return _context(ssl.Purpose.SERVER_AUTH, cert, key, ca)


def from_args(args, server: bool) -> ssl.SSLContext | None:
    """Build a context from --tls-cert/--tls-key/--tls-ca; all three or none."""
    parts = (args.tls_cert, args.tls_key, args.tls_ca)
    if not any(parts):
        return None
    if not all(parts):
        raise ValueError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
    try:
        return (server_context if server else client_context)(*parts)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS files: {exc}") from None


def add_arguments(parser) -> None:
    parser.add_argument("--tls-cert", help="PEM certificate of this daemon (enables TLS)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-ca", help="PEM CA bundle that peers' certificates must chain to")

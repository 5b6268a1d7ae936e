"""The raw baseline of the API rate: an HTTP server that answers a port create and does
nothing else (no validation, no store), so one openstacksdk client against it shows the
client's and HTTP's own ceiling on this machine.

Run as ``python -m routeflow.bench.apistub PORT``; it prints ``ready`` once listening.
Headers and body go out in one write with TCP_NODELAY: the stdlib server writing them
separately costs 40 ms per keep-alive request (Nagle plus delayed ACK, notes §2.3).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSIONS = {
    "versions": [
        {"id": "v2.0", "status": "CURRENT", "links": [{"href": "{url}/v2.0/", "rel": "self"}]}
    ]
}


def port_body(request: dict) -> dict:
    """A minimal Neutron port for a create request (what the SDK needs to build its object)."""
    req = request.get("port", {}) if isinstance(request, dict) else {}
    return {
        "port": {
            "id": str(uuid.uuid4()),
            "name": req.get("name", ""),
            "network_id": req.get("network_id", ""),
            "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [],
            "status": "DOWN",
            "admin_state_up": True,
            "device_id": "",
            "device_owner": "",
        }
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("", "/v2.0"):
            url = f"http://{self.headers.get('Host', '127.0.0.1')}"
            text = json.dumps(VERSIONS).replace("{url}", url)
            self._send(200, json.loads(text))
        else:
            self._send(404, {"NeutronError": {"type": "NotFound", "message": self.path}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            request = {}
        self._send(201, port_body(request))


def main(argv: list[str]) -> int:
    port = int(argv[0]) if argv else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""rfserver with --web: uvicorn in rfserver's own loop, the CLI, reload, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from rich.console import Console

import routeflow.cli
from routeflow.cli import main as cli

from .conftest import TOPOLOGY, feed, free_port, rfserver_argv

TOKEN = "live-token-0123456789"


def _get(url: str, token: str | None = None, method: str = "GET"):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _wait_ready(port: int, sock: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until rfweb accepts and rfserver's own socket exists (it comes second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and os.path.exists(sock):
                return
        time.sleep(0.05)
    raise AssertionError(f"rfserver did not open port {port} and {sock}")


@pytest.fixture
def rfserver(tmp_path):
    """rfserver as the lab starts it, plus a token file; stopped by pid."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    topo = tmp_path / "topology.json"
    topo.write_text(json.dumps(TOPOLOGY))
    sock = tmp_path / "rfserver.sock"
    port = free_port()
    proc = subprocess.Popen(
        rfserver_argv(
            tmp_path,
            f"unix:{sock}",
            "--web",
            f"127.0.0.1:{port}",
            "--web-token-file",
            str(token_file),
            "--topology",
            str(topo),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(port, str(sock), proc)
        yield proc, f"http://127.0.0.1:{port}", f"unix:{sock}", tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_rfserver_serves_rfweb_in_its_loop(rfserver, monkeypatch):
    proc, url, address, tmp_path = rfserver
    # The CLI's console took its width when routeflow.cli was first imported (an xdist
    # worker has COLUMNS=80 then): give it the wide one the table checks below assume.
    monkeypatch.setattr(routeflow.cli, "console", Console(width=200))

    async def session():
        peers = await feed(address)
        # Give the server a moment to take in the last messages, then keep the
        # peers connected while the HTTP side is checked from a thread.
        await asyncio.sleep(0.5)
        try:
            return await asyncio.to_thread(check_http)
        finally:
            for c in peers:
                await c.close()

    def check_http():
        status, summary = _get(f"{url}/api/summary")
        assert status == 200
        assert summary["associations_by_state"]["active"] == 1
        assert summary["lab"] == "webtest" and summary["flow_packets"] == 112

        # routeflow status: the same picture as tables.
        result = CliRunner().invoke(cli, ["status", "--url", url])
        assert result.exit_code == 0, result.output
        for text in (
            "associations",
            "active client-datapath association",
            "s1-eth1",
            "routes",
            "flows",
            "controllers",
            "connected",
            "recent events",
            "vm-A",
        ):
            assert text in result.output, text
        raw = CliRunner().invoke(cli, ["status", "--url", url, "--json"])
        assert json.loads(raw.output)["summary"]["routes"] == 3

        # Changing state: token from the file; reload reads the CSV again.
        assert _get(f"{url}/api/config/reload", method="POST")[0] == 401
        status, body = _get(f"{url}/api/config/reload", token=TOKEN, method="POST")
        assert (status, body) == (200, {"ok": True, "errors": []})
        (tmp_path / "rfserver.csv").write_text("vm_id,vm_port\nnot,a config\n")
        status, body = _get(f"{url}/api/config/reload", token=TOKEN, method="POST")
        assert status == 409 and body["ok"] is False and body["errors"]
        _, events = _get(f"{url}/api/events?kind=config")
        assert "refused" in events[-1]["text"]

        # Metrics come from the same loop.
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'routeflow_associations{state="active"} 1.0' in text
        return True

    assert asyncio.run(session())

    # An open event stream does not hold up shutdown.
    stream = urllib.request.urlopen(f"{url}/api/stream", timeout=5)
    first = stream.readline().decode()
    assert first == "event: snapshot\n"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    stream.close()
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 5, out
    assert "rfweb on http://127.0.0.1:" in out
    assert "Traceback" not in out, out


def _run_server(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        rfserver_argv(tmp_path, f"unix:{tmp_path / 's.sock'}", *args),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--web", "127.0.0.1:99999"], "expected [HOST:]PORT"),
        (["--web", "::1:80"], "brackets"),
        (["--web", "8080", "--web-token", "short"], "at least 8"),
        (["--web-token", "long-enough-token"], "needs --web"),
        (["--web", "8080", "--web-token-file", "/nonexistent/token"], "--web-token-file"),
        (["--web", "8080", "--topology", "/nonexistent/topo.json"], "topology"),
    ],
)
def test_bad_web_options_stop_rfserver(tmp_path, args, message):
    r = _run_server(args, tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_web_port_in_use_stops_rfserver(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = _run_server(["--web", f"127.0.0.1:{port}"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"--web 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr


def test_status_without_a_server(tmp_path):
    port = free_port()
    r = CliRunner().invoke(cli, ["status", "--url", f"http://127.0.0.1:{port}"])
    assert r.exit_code == 1 and "cannot reach rfweb" in r.output
    (tmp_path / "manifest.json").write_text(json.dumps({"web_url": f"http://127.0.0.1:{port}"}))
    r = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path)])
    assert r.exit_code == 1 and f"127.0.0.1:{port}" in r.output
    assert os.path.exists(tmp_path / "manifest.json")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("6680", ("127.0.0.1", 6680)),
        (":6680", ("127.0.0.1", 6680)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:6680", ("::1", 6680)),
    ],
)
def test_web_listen_address(text, want):
    from routeflow.web.options import parse_listen

    assert parse_listen(text) == want


def test_status_run_dir_finds_the_serving_rfserver(tmp_path):
    """A lab with a standby records both web URLs; only the leader answers."""
    import http.server
    import threading

    from routeflow.web.status import url_from_run_dir

    class Summary(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"{}" if self.path == "/api/summary" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    leader = http.server.HTTPServer(("127.0.0.1", 0), Summary)
    threading.Thread(target=leader.serve_forever, daemon=True).start()
    try:
        standby = f"http://127.0.0.1:{free_port()}"  # a standby does not serve rfweb
        serving = f"http://127.0.0.1:{leader.server_port}"
        (tmp_path / "manifest.json").write_text(
            json.dumps(
                {"web_url": standby, "web_urls": {"rfserver-a": standby, "rfserver-b": serving}}
            )
        )
        assert url_from_run_dir(str(tmp_path)) == serving
    finally:
        leader.shutdown()
        leader.server_close()

"""`routeflow show ...` against a real rfserver daemon (--web), fed by real RFProtocol peers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading

import pytest
from click.testing import CliRunner

from routeflow.cli import main as cli
from routeflow.web import show, views

from .conftest import feed, free_port, rfserver_argv
from .test_rfserver_web import _wait_ready

WIDE = {"COLUMNS": "250", "ROUTEFLOW_URL": None}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """rfserver with rfweb, its peers connected (one association per state, see conftest)."""
    tmp = tmp_path_factory.mktemp("show")
    sock, port = tmp / "rfserver.sock", free_port()
    proc = subprocess.Popen(
        rfserver_argv(tmp, f"unix:{sock}", "--web", f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    peers = []
    try:
        _wait_ready(port, str(sock), proc)
        peers = asyncio.run_coroutine_threadsafe(feed(f"unix:{sock}"), loop).result(15)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # until the last message (the switch's stats) is in
            if run("flows", base=base).exit_code == 0:
                break
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(5)
        yield base
    finally:

        async def close():
            for c in peers:
                await c.close()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        proc.kill()
        proc.wait(5)


def run(*args: str, base: str | None = None):
    argv = ["show", *args] + (["--url", base] if base else [])
    return CliRunner().invoke(cli, argv, env=WIDE)


def test_tables(url):
    r = run("associations", base=url)
    assert r.exit_code == 0, r.output
    for text in ("0x5", "eth1", "s1-eth1", "active", "associated", "idle_client", "down"):
        assert text in r.output, text
    r = run("routes", base=url)
    assert r.exit_code == 0 and "10.9.0.0/16" in r.output and "port 1 via 172.31.1.2" in r.output
    r = run("fib", "--dp", "5", base=url)
    assert r.exit_code == 0 and "10.9.0.0/16" in r.output, r.output
    r = run("flows", "--dp", "0x5", "--table", "1", base=url)
    assert r.exit_code == 0 and "ipv4_dst=10.9.0.0/255.255.0.0" in r.output, r.output
    assert "output:1" in r.output and "priority=0" not in r.output
    r = run("controllers", base=url)
    assert r.exit_code == 0 and "connected" in r.output and "0x5" in r.output, r.output
    r = run("events", "--kind", "client", base=url)
    assert r.exit_code == 0 and "client" in r.output, r.output


def test_json_for_scripts(url):
    r = run("associations", "--state", "active", "--json", base=url)
    assert r.exit_code == 0
    (row,) = json.loads(r.stdout)
    assert (row["vm_id"], row["vm_port"], row["dp_id"], row["state_code"]) == (
        "0x5",
        1,
        "0x5",
        "active",
    )
    r = run("routes", "--vm", "0x5", "--limit", "1", "--json", base=url)
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 1
    assert "1 of 3 rows shown" in r.stderr
    assert {e["kind"] for e in json.loads(run("events", "--json", base=url).stdout)} >= {"client"}


def test_exit_codes(url):
    assert run("associations", "--state", "idle_datapath", base=url).exit_code == 0
    # Nothing to show: an unknown switch or VM, no rows.
    r = run("flows", "--dp", "0x99", base=url)
    assert r.exit_code == show.EMPTY and "nothing to show" in r.stderr
    assert run("routes", "--vm", "0x99", base=url).exit_code == show.EMPTY
    assert run("fib", "--dp", "0x99", "--json", base=url).stdout.strip() == "[]"
    # Usage: bad ids and choices (click), or what rfserver itself refuses.
    assert run("routes", "--vm", "zz", base=url).exit_code == show.USAGE
    assert run("associations", "--state", "bogus", base=url).exit_code == show.USAGE
    r = run("events", "--kind", "Bad-Kind", base=url)
    assert r.exit_code == show.USAGE and "kind" in r.stderr
    # Unreachable: nothing listens there.
    r = run("controllers", base=f"http://127.0.0.1:{free_port()}")
    assert r.exit_code == show.UNREACHABLE and "cannot reach" in r.stderr


def test_state_codes_match_the_api():
    assert show.STATE_CODES == views.ALL_STATE_CODES


def test_shell_completion():
    r = CliRunner().invoke(cli, ["completion", "bash"])
    assert r.exit_code == 0 and "_ROUTEFLOW_COMPLETE=bash_complete" in r.output
    env = {
        "_ROUTEFLOW_COMPLETE": "bash_complete",
        "COMP_WORDS": "routeflow show as",
        "COMP_CWORD": "2",
    }
    r = CliRunner().invoke(cli, [], env=env, prog_name="routeflow")
    assert "plain,associations" in r.output
    env["COMP_WORDS"], env["COMP_CWORD"] = "routeflow show associations --state i", "4"
    r = CliRunner().invoke(cli, [], env=env, prog_name="routeflow")
    assert "plain,idle_client" in r.output and "plain,idle_datapath" in r.output

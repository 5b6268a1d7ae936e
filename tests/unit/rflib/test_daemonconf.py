"""Daemon config files: the daemons' own parsers are the schema; errors name file:line: key."""

from __future__ import annotations

import os

import pytest

from routeflow.client.daemon import build_parser as client_parser
from routeflow.proxy.main import build_parser as proxy_parser
from routeflow.rflib import daemonconf
from routeflow.rflib.daemonconf import ConfigFileError
from routeflow.server.main import build_parser as server_parser
from routeflow.tenant.nodemain import build_parser as tenant_node_parser
from routeflow.tenant.servermain import build_parser as tenant_server_parser

ETC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "etc", "routeflow")


PARSERS = [
    ("server", server_parser),
    ("proxy", proxy_parser),
    ("client", client_parser),
    ("tenant-server", tenant_server_parser),
    ("tenant-node", tenant_node_parser),
]


@pytest.mark.parametrize(("name", "parser"), PARSERS)
def test_the_sample_configs_are_valid(name, parser):
    values = daemonconf.load(os.path.join(ETC, f"{name}.yaml"), parser())
    assert values, "a sample config with no settings teaches nothing"


def test_values_are_converted_by_the_options_own_types(tmp_path):
    path = tmp_path / "proxy.yaml"
    path.write_text("ct-id: 0x10\nofp_port: 6633\nstats-interval: 2.5\nlog-level: debug\n")
    values = daemonconf.load(str(path), proxy_parser())
    assert values == {"ct_id": 16, "ofp_port": 6633, "stats_interval": 2.5, "log_level": "DEBUG"}


def test_flags_win_over_the_file(tmp_path):
    path = tmp_path / "server.yaml"
    path.write_text("listen: tcp:127.0.0.1:6634\nclient-grace: 5\n")
    args = daemonconf.parse_args(
        server_parser(), ["--config-file", str(path), "--client-grace", "7"]
    )
    assert args.listen == "tcp:127.0.0.1:6634"
    assert args.client_grace == 7.0


def test_the_old_mapping_flag_still_works():
    args = daemonconf.parse_args(server_parser(), ["--config", "m.csv"])
    assert args.config == "m.csv"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen: x\nlog-levl: INFO\n", "c.yaml:2: unknown key `log-levl` (did you mean `log-le"),
        ("lease-ttl: abc\n", "c.yaml:1: lease-ttl: expected a number, got 'abc'"),
        ("log-level: trace\n", "c.yaml:1: log-level: 'TRACE' is not one of DEBUG, INFO"),
        ("store: [a, b]\n", "c.yaml:1: store: expected a single value, got a list"),
        ("listen: a\nlisten: b\n", "c.yaml:2: `listen` given twice (first on line 1)"),
        ("- listen\n", "c.yaml:1: expected `key: value` lines"),
        ("listen: [\n", "c.yaml:2: not valid YAML"),
        ("listen:\n", "c.yaml:1: listen: no value"),
    ],
)
def test_bad_files_name_the_line_and_the_key(text, message):
    with pytest.raises(ConfigFileError) as err:
        daemonconf.loads(text, server_parser(), "c.yaml")
    assert str(err.value).startswith(message)


def test_a_bad_file_exits_like_a_bad_flag(tmp_path, capsys):
    path = tmp_path / "client.yaml"
    path.write_text("poke-interval: often\n")
    with pytest.raises(SystemExit) as exit_:
        daemonconf.parse_args(client_parser(), ["--config-file", str(path)])
    assert exit_.value.code == 2
    assert f"{path}:1: poke-interval: expected a number" in capsys.readouterr().err


def test_every_option_is_documented_in_the_reference():
    text = daemonconf.reference(server_parser())
    for opt in daemonconf.options(server_parser()):
        assert f"| `{opt.key}` |" in text


def test_tenant_server_flags_win_over_its_config_file(tmp_path):
    path = tmp_path / "tenant-server.yaml"
    path.write_text("listen: 127.0.0.1:9797\nstore: sqlite:/tmp/x.db\n")
    args = daemonconf.parse_args(
        tenant_server_parser(), ["--config-file", str(path), "--listen", "127.0.0.1:9898"]
    )
    assert (args.listen, args.store) == ("127.0.0.1:9898", "sqlite:/tmp/x.db")


def test_a_tenant_server_typo_names_file_line_and_key(tmp_path):
    path = tmp_path / "tenant-server.yaml"
    path.write_text("listen: 127.0.0.1:9696\nnode-listen: tcp:1.2.3.4:6700\n")
    with pytest.raises(ConfigFileError, match=r"tenant-server.yaml:2: unknown key `node-listen`"):
        daemonconf.load(str(path), tenant_server_parser())

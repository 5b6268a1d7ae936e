"""FRR itself accepts every config file the lab generates (vtysh's grammar, then each daemon).

The configs' contents are tested without FRR in tests/unit/lab (test_lab_frr.py,
test_lab_ipv6.py); these need FRR installed and root (see frrcheck.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from routeflow.lab.frr import daemons_for, frr_config, ospf6_config
from routeflow.lab.model import LabPlan, parse_lab, plan

from .frrcheck import check_config, vtysh_dryrun

LABS = Path(__file__).resolve().parents[3] / "labs"
FRR_DIR = Path("/usr/lib/frr")

needs_vtysh = pytest.mark.skipif(shutil.which("vtysh") is None, reason="FRR's vtysh is missing")


def needs_daemon(daemon: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not (FRR_DIR / daemon).exists() or os.geteuid() != 0,
        reason=f"needs FRR's {daemon}, which checks configs only as root",
    )


def rftest2(routing: str) -> LabPlan:
    text = (LABS / "rftest2.yaml").read_text()
    return plan(parse_lab(text.replace("routing: ospf", f"routing: {routing}", 1)))


def rftest2_v6(**changes: Any) -> LabPlan:
    doc = yaml.safe_load((LABS / "rftest2-v6.yaml").read_text())
    doc.update(changes)
    return plan(parse_lab(yaml.safe_dump(doc, sort_keys=False), "rftest2-v6.yaml"))


def assert_daemon_accepts(daemon: str, path: Path, tmp_path: Path) -> None:
    result = check_config(daemon, path, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "No such command" not in output
    assert "Unknown command" not in output
    assert "deprecated" not in output


@needs_vtysh
@pytest.mark.parametrize("routing", ["ospf", "bgp", "static"])
def test_frr_accepts_the_config(routing: str, tmp_path: Path) -> None:
    """vtysh --dryrun parses the file with the real FRR grammar, without touching daemons."""
    p = rftest2(routing)
    for vm in p.vms:
        path = tmp_path / f"{vm.name}.conf"
        path.write_text(frr_config(p, vm.switch))
        result = vtysh_dryrun(path)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_daemon("ospfd")
@pytest.mark.parametrize("routing", ["ospf", "bgp", "static"])
def test_routing_daemon_accepts_every_line(routing: str, tmp_path: Path) -> None:
    """The runner hands frr.conf to the routing daemon itself, which must know every command."""
    p = rftest2(routing)
    for vm in p.vms:
        path = tmp_path / f"{vm.name}.conf"
        path.write_text(frr_config(p, vm.switch))
        assert_daemon_accepts(daemons_for(p, vm.switch)[1], path, tmp_path)


@needs_vtysh
def test_vtysh_accepts_the_ospf6_config(tmp_path: Path) -> None:
    p = rftest2_v6(ospf={"hello": 1, "dead": 4, "bfd": True})
    for vm in p.vms:
        path = tmp_path / f"{vm.name}.conf"
        path.write_text(ospf6_config(p, vm.switch))
        result = vtysh_dryrun(path)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_daemon("ospf6d")
@pytest.mark.parametrize("bfd", [False, True])
def test_ospf6d_accepts_every_line(bfd: bool, tmp_path: Path) -> None:
    """The runner hands ospf6d.conf to ospf6d itself: no unknown or deprecated command."""
    p = rftest2_v6(ospf={"hello": 1, "dead": 4, "bfd": bfd})
    for vm in p.vms:
        path = tmp_path / f"{vm.name}.conf"
        path.write_text(ospf6_config(p, vm.switch))
        assert_daemon_accepts("ospf6d", path, tmp_path)

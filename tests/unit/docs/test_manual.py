"""The manual (mkdocs, docs/) builds with warnings as errors, and its reference is complete.

The reference pages are generated from the code at build time (docs/hooks/generate.py);
these tests check the built pages against the code itself, so that a daemon flag, a
subcommand, a lab file key or an association state cannot be missing from the manual.
Without mkdocs the test skips, which fails in CI (tests/conftest.py): CI has it.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import msgspec
import pytest

from routeflow import cli
from routeflow.lab import model
from routeflow.rflib.daemonconf import options
from routeflow.rflib.types import EntryState

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (requirements.txt)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (requirements.txt)")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def page_text(site: Path, name: str) -> str:
    return html.unescape((site / name).read_text(encoding="utf-8"))


def test_every_daemon_option_is_in_the_config_reference(site: Path) -> None:
    text = page_text(site, "reference/config.html")
    for daemon in cli.DAEMONS:
        assert f"routeflow {daemon}" in text
        for opt in options(cli._daemon_parser(daemon)):
            assert f"<td><code>{opt.key}</code></td>" in text, f"{daemon}: {opt.key} missing"


def test_every_subcommand_is_in_the_cli_reference(site: Path) -> None:
    import click

    text = page_text(site, "reference/cli.html")

    def walk(path: list[str], cmd: click.Command) -> None:
        assert re.search(rf"<h\d[^>]*>{re.escape(' '.join(['routeflow', *path]))}<", text), path
        for name, sub in getattr(cmd, "commands", {}).items():
            walk([*path, name], sub)

    walk([], cli.main)
    assert "--resync-wait" in text  # the daemons' own argparse help is there too


def test_every_lab_file_key_is_in_the_lab_reference(site: Path) -> None:
    text = page_text(site, "reference/lab-file.html")
    seen: set[type] = set()

    def visit(cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for field in msgspec.structs.fields(cls):
            assert f"<td><code>{field.encode_name}</code></td>" in text, (cls, field.name)
            for inner in structs(field.type):
                visit(inner)

    visit(model._LabSpec)
    assert len(seen) > 5


def structs(tp: object) -> list[type]:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return [tp]
    return [s for arg in typing.get_args(tp) for s in structs(arg)]


def test_the_association_states_are_drawn(site: Path) -> None:
    text = page_text(site, "concepts.html")
    for state in EntryState:
        assert state.value in text, f"state {state.value!r} missing from concepts"


def test_pages_load_nothing_from_outside(site: Path) -> None:
    """No fonts, scripts or styles from a CDN: the manual reads offline."""
    for page in site.rglob("*.html"):
        for url in re.findall(r'(?:src|href)="(https?://[^"]+)"', page.read_text("utf-8")):
            assert not url.endswith((".js", ".css", ".woff2")), f"{page}: loads {url}"
        assert "fonts.googleapis" not in page.read_text("utf-8"), page


def test_readme_links_into_the_manual_resolve(site: Path) -> None:
    """README.md points into docs/ (pages and their sections): every such link lands."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", readme)
    for target, anchor in links:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
        if target.endswith(".md") and anchor:
            page = site / (target.removeprefix("docs/").removesuffix(".md") + ".html")
            assert f'id="{anchor}"' in page.read_text("utf-8"), f"README: {target}#{anchor}"


def test_every_shipped_lab_is_in_the_labs_page() -> None:
    text = (ROOT / "docs" / "labs.md").read_text(encoding="utf-8")
    for lab in sorted((ROOT / "labs").glob("*.yaml")):
        assert f"`labs/{lab.name}`" in text, f"labs/{lab.name} is not in docs/labs.md"

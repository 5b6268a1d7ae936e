"""mkdocs hook: the reference parts of the manual are generated from the code at build time.

A page asks for a generated part with a marker line, ``<!-- generate: NAME [ARG] -->``,
which this hook replaces with Markdown before mkdocs renders the page. The option lists
come from the daemons' own argparse parsers (rflib/daemonconf.py), the command reference
from the click commands' --help, the lab file keys from lab/model.py's structs, and the
unit files and sample configs from etc/: nothing in docs/ lists an option by hand, so a new
flag is in the manual the day it is added. An unknown marker fails the build.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
# This checkout's code, not an installed copy. mkdocs restores sys.path once a hook is
# loaded, so the package is imported now: its submodules then load from the same place.
sys.path.insert(0, str(ROOT / "src"))
try:
    import routeflow
finally:
    sys.path.remove(str(ROOT / "src"))
if Path(routeflow.__file__).resolve().parents[1] != ROOT / "src":
    raise PluginError(f"routeflow was imported from {routeflow.__file__}, not {ROOT / 'src'}")

MARKER = re.compile(r"^<!--\s*generate:\s*([a-z-]+)(?:\s+([^\s>]+))?\s*-->$", re.MULTILINE)
WIDTH = "100"  # columns for --help text, so that the pages do not depend on the terminal


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs calls it so
    def replace(match: re.Match[str]) -> str:
        name, arg = match.group(1), match.group(2)
        generator = GENERATORS.get(name)
        if generator is None:
            raise PluginError(f"{page.file.src_path}: unknown generator {name!r}")
        return generator(arg)

    return MARKER.sub(replace, markdown)


# --- daemons: config keys and their flags --------------------------------------------------


def daemon_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every daemon `routeflow config` knows, with its parser (the config file's schema)."""
    from routeflow import cli

    return {name: cli._daemon_parser(name) for name in cli.DAEMONS}


def config_reference(_arg: str | None) -> str:
    from routeflow.rflib.daemonconf import reference

    parts = []
    for name, parser in daemon_parsers().items():
        sample = ROOT / "etc" / "routeflow" / f"{name}.yaml"
        about = " ".join((parser.description or "").split())
        parts.append(f"## routeflow {name}\n\n{about}\n")
        parts.append(
            f"Config file: `routeflow {name} --config-file FILE`; check it with "
            f"`routeflow config check {name} FILE`. Every key is also the flag `--KEY`.\n"
        )
        parts.append(reference(parser).replace("| `` |", "|  |"))
        if sample.is_file():
            parts.append(f"Sample (`etc/routeflow/{name}.yaml`):\n")
            parts.append(fence("yaml", sample.read_text(encoding="utf-8")))
    return "\n".join(parts)


# --- the routeflow command ------------------------------------------------------------------


def commands() -> Iterator[tuple[list[str], object]]:
    """(path, click command) for `routeflow` and every subcommand, depth first."""
    import click

    from routeflow import cli

    def walk(path: list[str], cmd: click.Command) -> Iterator[tuple[list[str], object]]:
        yield path, cmd
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                yield from walk([*path, name], cmd.commands[name])

    yield from walk([], cli.main)


def help_text(path: list[str]) -> str:
    """What `routeflow PATH --help` prints (the daemons' own argparse help included)."""
    from click.testing import CliRunner

    from routeflow import cli

    result = CliRunner(env={"COLUMNS": WIDTH}).invoke(
        cli.main, [*path, "--help"], prog_name="routeflow"
    )
    if result.exit_code != 0:
        raise PluginError(f"routeflow {' '.join(path)} --help failed: {result.output}")
    return result.output


def cli_reference(_arg: str | None) -> str:
    parts = []
    for path, _cmd in commands():
        title = " ".join(["routeflow", *path])
        level = "#" * min(2 + len(path), 4) if path else "##"
        parts.append(f"{level} {title}\n")
        parts.append(fence("text", help_text(path)))
    return "\n".join(parts)


# --- lab files --------------------------------------------------------------------------------


def lab_reference(_arg: str | None) -> str:
    """One table per mapping of a lab file: key, type, default, meaning."""
    import msgspec

    from routeflow.lab import model

    sections: dict[type, str] = {}  # struct -> its path in a lab file, in reading order

    def visit(cls: type, where: str) -> None:
        if cls in sections:
            return
        sections[cls] = where
        for field in msgspec.structs.fields(cls):
            for inner, suffix in structs_in(field.type):
                prefix = "" if where == "top level" else where + "."
                visit(inner, f"{prefix}{field.encode_name}{suffix}")

    visit(model._LabSpec, "top level")
    order = list(sections)

    parts = []
    for cls in order:
        where = sections[cls]
        doc = " ".join((inspect.getdoc(cls) or "").split()) if cls.__doc__ else ""
        title = "The top level" if where == "top level" else f"`{where}`"
        parts.append(f"### {title}\n")
        if doc and not doc.startswith(("Struct", "A base class")):
            parts.append(doc + "\n")
        notes = field_comments(cls)
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        for field in msgspec.structs.fields(cls):
            parts.append(
                f"| `{field.encode_name}` | {type_text(field.type, sections)} | "
                f"{default_text(field)} | {cell(notes.get(field.name, ''))} |"
            )
        parts.append("")
    return "\n".join(parts)


def structs_in(tp: object) -> Iterator[tuple[type, str]]:
    import msgspec

    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        yield tp, ""
    elif origin in (list, tuple):
        for arg in typing.get_args(tp):
            for inner, suffix in structs_in(arg):
                yield inner, "[]" + suffix
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from structs_in(arg)


def type_text(tp: object, sections: dict[type, str]) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in sections:
        where = sections[tp]
        return f"mapping ([`{where}`](#{anchor(where)}))"
    if tp is bool:
        return "`true` or `false`"
    if tp is int:
        return "integer"
    if tp is str:
        return "string"
    if tp is float:
        return "number"
    if tp is type(None):
        return "`null`"
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        return "list of " + type_text(args[0], sections)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a, sections) for a in real)
        return text + (" (optional)" if len(real) < len(args) else "")
    return f"`{getattr(tp, '__name__', tp)}`"


def anchor(where: str) -> str:
    """The id mkdocs' toc extension gives the heading `` `where` ``."""
    from markdown.extensions.toc import slugify

    return slugify(where, "-")


def default_text(field) -> str:
    import msgspec

    if field.required:
        return "required"
    if field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
        if isinstance(value, msgspec.Struct):
            return "(the defaults below)"
        return f"`{value!r}`" if value != [] else "none"
    value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def field_comments(cls: type) -> dict[str, str]:
    """A field's `#:` comment lines above it, or its trailing `# comment`."""
    source = inspect.getsource(inspect.getmodule(cls))
    lines = source.splitlines()
    tree = ast.parse(source)
    node = next(
        n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__
    )
    notes: dict[str, str] = {}
    for stmt in node.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        above = []
        row = stmt.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#:"):
            above.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        text = " ".join(above)
        if not text:
            tail = lines[stmt.end_lineno - 1]
            if "#" in tail:
                text = tail.split("#", 1)[1].strip()
        notes[stmt.target.id] = text
    return notes


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("``", "`")


# --- files shipped in etc/ ------------------------------------------------------------------


def units(_arg: str | None) -> str:
    found = sorted((ROOT / "etc" / "systemd").glob("*.service"))
    if not found:
        return "*(No unit files are shipped in `etc/systemd/` in this version.)*\n"
    return "\n".join(
        f'??? example "etc/systemd/{path.name}"\n\n'
        + indent(fence("ini", path.read_text(encoding="utf-8")))
        for path in found
    )


def sample_configs(_arg: str | None) -> str:
    found = sorted((ROOT / "etc" / "routeflow").glob("*"))
    return "\n".join(
        f"`etc/routeflow/{path.name}`:\n\n"
        + fence("yaml" if path.suffix == ".yaml" else "text", path.read_text(encoding="utf-8"))
        for path in found
        if path.is_file()
    )


def include(arg: str | None) -> str:
    """A file of this checkout, whole, as a code block (the file is what the tests run)."""
    path = ROOT / (arg or "")
    if not arg or not path.is_file():
        raise PluginError(f"generate: include needs a file of the checkout, got {arg!r}")
    lang = {".sh": "sh", ".yaml": "yaml", ".service": "ini", ".py": "python"}.get(path.suffix, "")
    return f"`{arg}`:\n\n" + fence(lang, path.read_text(encoding="utf-8"))


def indent(text: str) -> str:
    """Text as the body of a collapsed block (pymdownx.details)."""
    return "".join(f"    {line}" if line.strip() else line for line in text.splitlines(True))


def fence(lang: str, text: str) -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


GENERATORS: dict[str, Callable[[str | None], str]] = {
    "config-reference": config_reference,
    "cli-reference": cli_reference,
    "lab-reference": lab_reference,
    "units": units,
    "sample-configs": sample_configs,
    "include": include,
}

os.environ.setdefault("COLUMNS", WIDTH)

"""Daemon config files: the same options as the flags, read from YAML, flags win.

The schema of a daemon's file *is* its argparse parser: every long option
`--foo-bar` is the key `foo-bar` (or `foo_bar`), converted and checked by the
option's own `type` and `choices`. Nothing is kept twice, so a new flag is a new
config key the day it is added, and the reference in the manual is generated
from the same parser. Errors name the file, the line and the key.

YAML rather than TOML because lab files are YAML already and PyYAML gives node
positions (tomllib gives none for keys, so it could not name a bad key's line).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

CONFIG_FLAG = "--config-file"


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names file, line and key."""


@dataclass(frozen=True)
class Option:
    """One key of a daemon's config file (from one argparse option)."""

    key: str
    dest: str
    help: str
    default: object
    kind: str  # "flag" (true/false), "value", or "list"
    choices: tuple[object, ...] | None
    action: argparse.Action


def options(parser: argparse.ArgumentParser) -> list[Option]:
    """The config keys of a daemon: its long options, minus help and the file itself."""
    out = []
    for action in parser._actions:  # argparse has no public accessor for its options
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest in ("help", "config_file", "version"):
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            kind = "flag"
        elif isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"):
            kind = "list"
        else:
            kind = "value"
        out.append(
            Option(
                key=longs[0][2:],
                dest=action.dest,
                help=(action.help or "").replace("%%", "%"),
                default=action.default,
                kind=kind,
                choices=tuple(action.choices) if action.choices else None,
                action=action,
            )
        )
    return out


def add_config_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        CONFIG_FLAG,
        metavar="FILE",
        default=None,
        help="YAML file with any of these options as keys (e.g. `log-level: DEBUG`); "
        "flags given on the command line win",
    )


def add_log_level_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="least severe log messages written (to stderr: the journal under systemd)",
    )


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, with the defaults taken from `--config-file` when given.

    A bad file ends the program as a bad flag does (argparse's exit status 2),
    with `FILE:LINE: key: problem`.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument(CONFIG_FLAG, default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config_file:
        try:
            values = load(known.config_file, parser)
        except ConfigFileError as exc:
            parser.exit(2, f"{parser.prog}: bad config file: {exc}\n")
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def load(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read and check a config file against `parser`: {dest: value}."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigFileError(f"{path}: {exc.strerror}") from None
    return loads(text, parser, path)


def loads(text: str, parser: argparse.ArgumentParser, path: str = "<config>") -> dict[str, Any]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(f"{where}: not valid YAML: {problem}") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigFileError(f"{path}:{root.start_mark.line + 1}: expected `key: value` lines")
    by_key: dict[str, Option] = {}
    for opt in options(parser):
        by_key[opt.key] = opt
        by_key[opt.key.replace("-", "_")] = opt
    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in by_key:
            hint = difflib.get_close_matches(str(key), sorted(by_key), n=1)
            also = f" (did you mean `{hint[0]}`?)" if hint else ""
            raise ConfigFileError(f"{path}:{line}: unknown key `{key}`{also}")
        opt = by_key[key]
        if opt.dest in seen:
            raise ConfigFileError(
                f"{path}:{line}: `{key}` given twice (first on line {seen[opt.dest]})"
            )
        seen[opt.dest] = line
        values[opt.dest] = _value(opt, value_node, f"{path}:{line}: {key}")
    return values


def _value(opt: Option, node: yaml.Node, where: str) -> Any:
    data = yaml.SafeLoader("").construct_object(node, deep=True)
    if opt.kind == "flag":
        if not isinstance(data, bool):
            raise ConfigFileError(f"{where}: expected true or false, got {data!r}")
        # store_false options keep "false means the flag was given" semantics of argparse.
        return data if isinstance(opt.action, argparse._StoreTrueAction) else not data
    if opt.kind == "list":
        items = data if isinstance(data, list) else [data]
        return [_scalar(opt, item, where) for item in items]
    if isinstance(data, list | dict):
        raise ConfigFileError(f"{where}: expected a single value, got a {type(data).__name__}")
    return _scalar(opt, data, where)


def _scalar(opt: Option, data: object, where: str) -> object:
    if data is None:
        raise ConfigFileError(f"{where}: no value")
    text = str(data).lower() if isinstance(data, bool) else str(data)
    convert = opt.action.type
    try:
        value = convert(text) if callable(convert) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        if convert in (int, float):  # their own messages quote Python, not the operator
            raise ConfigFileError(f"{where}: expected a number, got {text!r}") from None
        raise ConfigFileError(f"{where}: {exc or 'invalid value'}") from None
    if opt.choices is not None and value not in opt.choices:
        allowed = ", ".join(str(c) for c in opt.choices)
        raise ConfigFileError(f"{where}: {value!r} is not one of {allowed}")
    return value


def reference(parser: argparse.ArgumentParser) -> str:
    """The config file reference of a daemon, in Markdown (for the manual)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for opt in options(parser):
        default = "" if opt.default in (None, argparse.SUPPRESS) else f"`{opt.default}`"
        meaning = " ".join(opt.help.split()).replace("|", "\\|")
        if opt.choices:
            meaning += " (one of: " + ", ".join(f"`{c}`" for c in opt.choices) + ")"
        lines.append(f"| `{opt.key}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"

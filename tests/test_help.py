"""The help audit: every command's --help has an example, shows its defaults and the types of
its numbers, and the README names only options that exist, on the commands it says."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import click
import pytest

from crawler.cli.app import app
from crawler.config import Settings
from tests.conftest import REPO, run_cli

README = (REPO / "README.md").read_text(encoding="utf-8")
NUMERIC_TYPES = ("integer", "float", "integer range", "float range")
# Numbers that are not settings: ports, seeds, fractions, limits, coordinates, ids.
NUMERIC_OPTIONS = {"limit", "port", "latency_ms", "fault_rate", "seed", "shard_size"}
NUMERIC_OPTIONS |= {"val_fraction", "test_fraction", "tier", "x", "y"}
NUMERIC_OPTIONS |= {
    f.name for f in dataclasses.fields(Settings) if str(f.type).startswith(("int", "float"))
}
# What a command works on rather than how: absent means "not this way", no default to show.
INPUTS = {("locate", "image"), ("locate", "x"), ("locate", "y"), ("locate", "data_set")}
INPUTS |= {("locate", "reference")}


def commands(group: click.Group = app, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = app
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def options_of(path: tuple[str, ...]) -> list[click.Option]:
    return [p for p in command_at(path).params if isinstance(p, click.Option)]


ALL = list(commands())


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_command_help_has_an_example_defaults_and_number_types(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, *path, "--help")
    assert result.code == 0, result.err
    text = result.out
    assert re.search(r"^\s+Examples?:$", text, re.M), f"{' '.join(path)}: no example"
    assert re.search(rf"^\s+allen-mirror {' '.join(path)}\b", text, re.M), text
    for option in options_of(path):
        name = option.name or ""
        if option.is_flag or option.multiple or option.required or (path[-1], name) in INPUTS:
            continue
        shown = "[default: " in (option.help or "") or (
            option.show_default and option.default is not None
        )
        assert shown, f"{' '.join(path)} {option.opts[0]}: no default shown"
        if name in NUMERIC_OPTIONS:
            assert option.type.name in NUMERIC_TYPES, f"{option.opts[0]} is {option.type.name}"
            assert re.search(rf"{option.opts[-1]} (INTEGER|FLOAT)", text), option.opts


def readme_options() -> set[str]:
    """Options the README names: table cells and `--spans`, and allen-mirror command lines."""
    names = set(re.findall(r"`(--[a-z][a-z0-9-]*)", README))
    for line in README.splitlines():
        if line.strip().startswith("allen-mirror ") or "bin/allen-mirror " in line:
            names |= set(re.findall(r"\s(--[a-z][a-z0-9-]*)", line))
    return names


def test_every_option_the_readme_names_exists() -> None:
    known = {"--help", "--version"}
    for path in ALL:
        known |= {opt for option in options_of(path) for opt in option.opts}
    missing = sorted(readme_options() - known)
    assert not missing, f"README names options no command has: {missing}"


def test_the_option_table_of_mirror_plan_and_demo_is_true() -> None:
    """Each row names its option; rows whose meaning starts with commands apply to those."""
    table = README.split("`mirror`, `plan` and `demo` take:", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `--")]
    assert len(rows) > 30
    for row in rows:
        option = re.match(r"\| `(--[a-z-]+)", row)
        assert option is not None
        meaning = row.split("|")[2].strip()
        named = re.match(r"((?:`[a-z]+`(?:, | and )?)+):", meaning)
        where = re.findall(r"`([a-z]+)`", named.group(1)) if named else ["mirror", "plan", "demo"]
        for command in where:
            opts = {opt for o in options_of((command,)) for opt in o.opts}
            assert option.group(1) in opts, f"{command} has no {option.group(1)} ({row[:60]})"


def test_demo_lists_only_what_it_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--api-base" not in run_cli(capsys, "demo", "--help").out.split("Options:")[1]
    refused = run_cli(capsys, "demo", "--api-base", "http://example.org")
    assert refused.code == 2 and "No such option: --api-base" in refused.err
    for name in ("mirror", "sync", "plan", "demo"):
        options = " ".join(run_cli(capsys, name, "--help").out.split("Options:")[1].split())
        assert "--image TEXT Image kinds: section, expression, projection; comma-separated or" in (
            options
        )
        assert re.search(r"--ids-file FILE [^-]*\(repeatable\)", options), options

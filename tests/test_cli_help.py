"""Every command's --help renders (rich markup in help texts can break it) and says something."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from ecr_oci.cli import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer vendors its own click classes)
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_the_cli_has_the_documented_commands() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in ("validate", "push", "pull", "inspect", "ls", "tags", "login", "serve", "admin user add",
                     "admin node add", "admin reindex", "repo set-visibility", "repo grant", "stage set", "keygen",
                     "sign", "verify", "provenance show", "profile attach", "profile list", "profile show", "run",
                     "doi mint"):
        assert expected in names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ecr")
def test_help_renders(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output

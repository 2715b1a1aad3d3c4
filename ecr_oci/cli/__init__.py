"""The ``ecr`` command line.

``run`` is the console entry point. The full typer app (``ecr_oci.cli.main.app``)
imports every command module and their libraries (requests, jsonschema, cryptography,
...), about half a second; ``ecr --version`` answers without loading any of it, and a
command runs in an app holding only its own module (``ecr_oci.cli.main.app_for``).
"""

from __future__ import annotations

import sys
from typing import Any

from ecr_oci import __version__


def run() -> None:
    """The ``ecr`` console script."""
    if sys.argv[1:] == ["--version"]:
        print(__version__)
        return
    if sys.argv[1:2] != ["push"]:
        from ecr_oci.cli.main import app_for

        app_for(sys.argv[1:])()
        return
    from ecr_oci.cli import early

    early.start(sys.argv[2:])  # a new model starts going up while the rest loads
    try:
        from ecr_oci.cli.main import app_for

        app_for(sys.argv[1:])()
    finally:
        early.abandon()


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from ecr_oci.cli import app`` (tests, embedding)
        from ecr_oci.cli.main import app

        return app
    raise AttributeError(name)

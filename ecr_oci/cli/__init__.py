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
    from ecr_oci.cli.main import app_for

    app_for(sys.argv[1:])()


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from ecr_oci.cli import app`` (tests, embedding)
        from ecr_oci.cli.main import app

        return app
    raise AttributeError(name)

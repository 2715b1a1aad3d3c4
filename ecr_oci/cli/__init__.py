"""The ``ecr`` command line.

``run`` is the console entry point. The typer app (``ecr_oci.cli.main.app``) imports
every command module and their libraries (requests, jsonschema, cryptography, ...),
about half a second; ``ecr --version`` answers without loading any of it.
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
    from ecr_oci.cli.main import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from ecr_oci.cli import app`` (tests, embedding)
        from ecr_oci.cli.main import app

        return app
    raise AttributeError(name)

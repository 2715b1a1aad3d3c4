"""The ``ecr`` command line.

``console`` is the console script: ``run``, then an exit without the interpreter's
teardown. ``run`` is the command line itself (it ends with SystemExit, like any click
app; tests and ``python -c`` call it). The full typer app (``ecr_oci.cli.main.app``)
imports every command module and their libraries (requests, jsonschema, cryptography,
...), about half a second; ``ecr --version`` answers without loading any of it, and a
command runs in an app holding only its own module (``ecr_oci.cli.main.app_for``).
"""

from __future__ import annotations

import sys
from typing import Any

from ecr_oci import __version__


def console() -> None:
    """The ``ecr`` console script: :func:`run`, then exit at once.

    Tearing down an interpreter that loaded typer, click, pydantic and rich takes
    ~45 ms here (freeing objects the kernel reclaims anyway), a sixth of ``ecr
    inspect``. What an exit must still do is done: atexit handlers (logging, temporary
    directories), flushing stdout and stderr, the exit status SystemExit carries.
    """
    import os

    try:
        run()
        status = 0
    except KeyboardInterrupt:  # Ctrl-C before a command took over (while loading): no traceback
        status = 130
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            status = done.code or 0
        else:
            print(done.code, file=sys.stderr)
            status = 1
    import atexit
    import contextlib

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`ecr ls | head`)
            stream.flush()
    os._exit(status)


def run() -> None:
    """The ``ecr`` command line (raises SystemExit with the exit status)."""
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

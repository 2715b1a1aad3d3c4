"""`ecr --version` answers without loading the CLI's libraries (start-up time)."""

from __future__ import annotations

import subprocess
import sys

from ecr_oci import __version__


def test_version_loads_no_heavy_module() -> None:
    probe = ("import sys; sys.argv = ['ecr', '--version']; from ecr_oci.cli import run; run(); "
             "print(sorted(m for m in ('typer', 'rich', 'requests', 'jsonschema', 'cryptography', 'yaml') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.splitlines() == [__version__, "[]"], proc.stdout


def test_the_app_is_still_there_for_everything_else() -> None:
    proc = subprocess.run(["ecr", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "signing-key" in proc.stdout and "search" in proc.stdout

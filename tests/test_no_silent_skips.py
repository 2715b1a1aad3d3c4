"""The suite's own rule: under CI (``CI=true``) a skip is a failure that names its reason;
locally a skip stays a visible skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = '''
import pytest

def test_needs_a_tool():
    pytest.skip("frobnicator is not installed")

@pytest.mark.skipif(True, reason="marked for a missing engine")
def test_marked():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False

def test_plain():
    pass
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:randomly",
                           "-p", "no:cacheprovider", "-rA", "--rootdir", str(tmp_path), "test_sample.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skip_fails_with_its_reason(tmp_path: Path, ci: str) -> None:
    proc = _run(tmp_path, ci)
    assert proc.returncode == 1, proc.stdout
    assert "skipped under CI=true, which allows no skips (run `make deps`): frobnicator is not installed" \
        in proc.stdout
    assert "marked for a missing engine" in proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert "1 failed" in summary and "1 error" in summary and "1 passed" in summary and "1 xfailed" in summary
    assert "skipped" not in summary


def test_locally_skips_stay_visible_skips(tmp_path: Path) -> None:
    proc = _run(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "SKIPPED" in proc.stdout and "frobnicator is not installed" in proc.stdout
    assert "2 skipped" in proc.stdout.strip().splitlines()[-1]

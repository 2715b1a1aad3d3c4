"""Acceptance: `ecr run` (Virtual Waggle) runs the example bundle here and attaches a vw profile."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import Registry

pytestmark = pytest.mark.slow


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("engine", ["podman", "process"])
def test_vw_run_attaches_profile_with_driven_latency(engine: str, registry: Registry, example_bundle: Path) -> None:
    if engine == "podman" and not (shutil.which("podman") and shutil.which("runc")):
        pytest.skip("podman/runc not installed (make deps installs them)")
    ref = f"{registry.host}/alice/vw-{engine}:1.2.0"
    pinned = ecr("push", "--quiet", str(example_bundle), ref).stdout.strip()
    proc = ecr("run", ref, "--engine", engine, "--duration", "3s", "--interval", "0.5s", "--node", f"vw-{engine}",
               "-e", "FRAMES=0", "-e", "LATENCY_MS=20")
    assert f"started {pinned} with {engine}" in proc.stderr
    assert "attached vw profile sha256:" in proc.stderr
    [doc] = json.loads(ecr("profile", "show", ref, "--node", f"vw-{engine}", "--json").stdout)
    assert doc["stage"] == "vw" and doc["bundle"] == pinned.split("@")[1]
    latency = doc["metrics"]["latency_seconds"]
    # 20 ms per frame falls in the plugin's (10 ms, 25 ms] bucket
    assert 0.010 <= latency["p50"] <= 0.025, latency
    assert doc["metrics"]["sample_count"] >= 50

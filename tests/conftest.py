"""Fixtures that start real components: Distribution, and images built with umoci."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import Registry, build_tiny_layout, start_registry


def pytest_configure(config: pytest.Config) -> None:
    # Tests must never pick up a developer's registry logins.
    os.environ.pop("REGISTRY_AUTH_FILE", None)


def skips_are_failures() -> bool:
    """In CI (``CI=true``) nothing may skip: a missing or broken component fails the run."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under CI a skip (a skip mark, ``pytest.skip``, ``importorskip``) becomes a failure with its reason.

    Locally skips stay skips, listed with their reasons by ``-ra``. An expected failure
    (``xfail``) is not a skip and is left alone.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not skips_are_failures():
        return
    report.outcome = "failed"
    report.longrepr = _no_skip_message(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """The same for a whole module skipped at collection (``allow_module_level``)."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and skips_are_failures():
        report.outcome = "failed"
        report.longrepr = _no_skip_message(report.longrepr)


def _no_skip_message(longrepr: object) -> str:
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    return f"skipped under CI=true, which allows no skips (run `make deps`): {reason}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not shutil.which("docker-registry") and not Path("/usr/bin/docker-registry").exists():
        pytest.fail("docker-registry is not installed: run `make deps`")
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep auth files per test (no leakage of logins between tests).

    The files exist (empty) because podman refuses a REGISTRY_AUTH_FILE that does not.
    """
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"auths": {}}')
    (tmp_path / "auth.json").write_text('{"auths": {}}')
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / ".docker"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    # ecr's cache (upload sessions, where blobs were seen) per test too
    monkeypatch.setenv("ECR_CACHE_DIR", str(tmp_path / "ecr-cache"))


@pytest.fixture(scope="session")
def tiny_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("umoci"):
        pytest.fail("umoci is not installed: run `make deps`")
    work = tmp_path_factory.mktemp("tiny")
    return build_tiny_layout(work / "oci", work)


BASE_METADATA = {
    "name": "tiny-detector",
    "version": "0.1.0",
    "description": "A tiny test bundle.",
    "authors": ["Test Author <test@example.org>"],
    "license": "MIT",
    "source": {"url": "https://example.org/tiny.git", "revision": "abc123"},
    "runtime": {"python": ">=3.11", "torch": "2.1"},
    "hardware": {"camera": True, "memory": "256Mi"},
    "keywords": ["test", "birds"],
    "model": ["model/weights.bin", "model/labels.txt"],
    "source_archive": "src",
    "images": [
        {"platform": "linux/amd64", "from": "oci:images:amd64"},
        {"platform": "linux/arm64", "from": "oci:images:arm64"},
    ],
}


def write_bundle(root: Path, layout: Path, metadata: dict[str, object] | None = None,
                 weights: bytes = b"\x01" * 4096) -> Path:
    """A bundle directory: ecr.yaml, model files, a source dir, and the images layout."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "weights.bin").write_bytes(weights)
    (root / "model" / "labels.txt").write_text("robin\nsparrow\n")
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "main.py").write_text("print('hello from the edge')\n")
    if not (root / "images").exists():
        shutil.copytree(layout, root / "images")
    (root / "ecr.yaml").write_text(yaml.safe_dump(metadata or BASE_METADATA, sort_keys=False))
    return root


@pytest.fixture
def bundle_dir(tmp_path: Path, tiny_layout: Path) -> Path:
    return write_bundle(tmp_path / "bundle", tiny_layout)


EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "bird-detector"


@pytest.fixture(scope="session")
def example_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bird-detector's amd64 + arm64 images, built once per session (Debian debs + umoci)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("example") / "oci"
    cache = os.environ.get("ECR_EXAMPLE_CACHE", str(EXAMPLE_DIR / "build" / "cache"))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE_DIR / "build_images.py"), "--out", str(out), "--cache", cache],
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the example images failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return out


@pytest.fixture
def example_bundle(tmp_path: Path, example_layout: Path) -> Path:
    """A copy of examples/bird-detector whose build/oci is the session's built layout."""
    root = tmp_path / "bird-detector"
    shutil.copytree(EXAMPLE_DIR, root, ignore=shutil.ignore_patterns("build"))
    (root / "build").mkdir()
    (root / "build" / "oci").symlink_to(example_layout)
    return root

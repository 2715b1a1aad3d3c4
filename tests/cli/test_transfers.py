"""Transfers as a user meets them: Ctrl-C stops promptly and tags nothing, an interrupted
push resumes (the figure that matters: bytes sent again), blobs of other repositories are
mounted, `pull -o` never mixes two bundles."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry

GIB = 1 << 30


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def _sent(stderr: str) -> int:
    """Bytes sent, from the push summary ("3 blobs uploaded (512.0 MiB, 1 resumed)")."""
    match = re.search(r"blobs uploaded \(([\d.]+) (B|KiB|MiB|GiB)", stderr)
    assert match, stderr
    return int(float(match[1]) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": GIB}[match[2]])


def _upload_bytes(registry: Registry, repo: str) -> int:
    """Bytes the registry holds of unfinished uploads to ``repo`` (its _uploads data files)."""
    uploads = registry.storage / "docker" / "registry" / "v2" / "repositories" / repo / "_uploads"
    return sum(p.stat().st_size for p in uploads.glob("*/data")) if uploads.is_dir() else 0


def _ctrl_c_enabled() -> None:
    """In the child before exec: Ctrl-C at its default, so Python installs its handler.

    A shell starting a job in the background without job control (`cmd &` in a script,
    as a CI runner may) makes it ignore SIGINT, inherited down to ecr, which then could
    not be interrupted at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(proc: subprocess.Popen[str], reached: object, timeout: float = 120) -> float:
    """Send Ctrl-C once ``reached()`` is true; returns seconds from the signal to the exit."""
    deadline = time.monotonic() + timeout
    while not reached() and time.monotonic() < deadline:  # type: ignore[operator]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    assert reached(), "the transfer never got half-way"  # type: ignore[operator]
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    proc.wait(30)
    return time.monotonic() - start


@pytest.fixture
def big_bundle(tmp_path: Path, tiny_layout: Path) -> Path:
    """A bundle whose model is a 1 GiB file (sparse: no disk used, still 1 GiB to hash and send)."""
    root = write_bundle(tmp_path / "big", tiny_layout)
    with (root / "model" / "weights.bin").open("wb") as fh:
        fh.truncate(GIB)
    return root


@pytest.mark.parametrize("fraction", [0.3, 0.5])  # inside the first 512 MiB chunk, and at its end
def test_ctrl_c_stops_a_push_promptly_tags_nothing_and_the_push_resumes(registry: Registry, big_bundle: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       fraction: float) -> None:
    repo = f"interrupt/big{int(fraction * 100)}"
    ref = f"{registry.host}/{repo}:0.1.0"
    proc = subprocess.Popen(["ecr", "push", "--quiet", str(big_bundle), ref], preexec_fn=_ctrl_c_enabled,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stopped_in = _interrupt_when(proc, lambda: _upload_bytes(registry, repo) >= GIB * fraction)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert stopped_in < 2.0, stopped_in
    assert registry.tags(repo) == []  # nothing tagged: no tag points at a partial bundle
    kept = _upload_bytes(registry, repo)
    assert kept >= GIB * fraction

    again = ecr("push", "--quiet", str(big_bundle), ref)
    assert again.returncode == 0, again.stderr
    assert "1 resumed" in again.stderr, again.stderr
    resent = _sent(again.stderr)
    assert resent <= GIB - kept + (8 << 20), (resent, kept)  # only what the registry did not get
    assert registry.tags(repo) == ["0.1.0"]
    with capsys.disabled():
        print(f"\n[resume figure] Ctrl-C at {fraction:.0%} of a 1 GiB model: stopped in {stopped_in:.2f} s,"
              f" registry kept {kept / (1 << 20):.1f} MiB; the resumed push sent {resent / (1 << 20):.1f} MiB"
              f" (missing: {(GIB - kept) / (1 << 20):.1f} MiB; without resume: 1024 MiB)")


def test_ctrl_c_stops_a_pull_promptly_and_the_pull_resumes(registry: Registry, big_bundle: Path,
                                                           tmp_path: Path) -> None:
    ref = f"{registry.host}/interrupt/pull:0.1.0"
    assert ecr("push", "--quiet", str(big_bundle), ref).returncode == 0
    out = tmp_path / "out"
    part = out / "model" / "weights.bin.part"
    proc = subprocess.Popen(["ecr", "pull", "--quiet", "--model-only", ref, "-o", str(out)], preexec_fn=_ctrl_c_enabled,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped_in = _interrupt_when(proc, lambda: part.exists() and part.stat().st_size >= GIB // 4)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 130 and "interrupted" in stderr, stderr
    assert stopped_in < 2.0, stopped_in
    assert not (out / "model" / "weights.bin").exists()  # nothing unverified at its final name
    kept = part.stat().st_size
    again = ecr("pull", "--quiet", "--model-only", ref, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "model" / "weights.bin").stat().st_size == GIB
    assert kept > 0


def test_local_sources_are_mounted_from_another_repository(registry: Registry, bundle_dir: Path) -> None:
    first = ecr("push", "--quiet", str(bundle_dir), f"{registry.host}/mount/one:0.1.0")
    assert first.returncode == 0, first.stderr
    second = ecr("push", "--quiet", str(bundle_dir), f"{registry.host}/mount/two:0.1.0")
    assert second.returncode == 0, second.stderr
    assert "0 blobs uploaded (0 B)" in second.stderr and "8 mounted" in second.stderr, second.stderr
    assert second.stdout == first.stdout.replace("mount/one", "mount/two")


def test_pull_into_a_non_empty_directory_needs_force_and_never_mixes_bundles(registry: Registry, tmp_path: Path,
                                                                           tiny_layout: Path) -> None:
    old_meta: dict[str, object] = dict(BASE_METADATA, model=["model/weights.bin", "model/labels.txt"])
    old = write_bundle(tmp_path / "old", tiny_layout, old_meta)
    new = write_bundle(tmp_path / "new", tiny_layout, dict(BASE_METADATA, version="0.2.0", model=["model/weights.bin"]))
    for root, tag in ((old, "0.1.0"), (new, "0.2.0")):
        assert ecr("push", "--quiet", str(root), f"{registry.host}/out/tiny:{tag}").returncode == 0
    out = tmp_path / "dir"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = ecr("pull", "--quiet", "--model-only", f"{registry.host}/out/tiny:0.1.0", "-o", str(out))
    assert refused.returncode == 2 and "is not empty" in refused.stderr and "--force" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert ecr("pull", "--quiet", "--model-only", f"{registry.host}/out/tiny:0.1.0", "-o", str(out)).returncode == 0
    # the same bundle again: fine (nothing mixed)
    assert ecr("pull", "--quiet", "--model-only", f"{registry.host}/out/tiny:0.1.0", "-o", str(out)).returncode == 0
    other = ecr("pull", "--quiet", "--model-only", f"{registry.host}/out/tiny:0.2.0", "-o", str(out))
    assert other.returncode == 2 and "holds another bundle" in other.stderr, other.stderr
    forced = ecr("pull", "--quiet", "--model-only", "--force", f"{registry.host}/out/tiny:0.2.0", "-o", str(out))
    assert forced.returncode == 0, forced.stderr
    assert not (out / "model" / "labels.txt").exists()  # the old bundle's file is gone, not mixed in
    record = json.loads((out / "ecr-bundle.json").read_text())
    assert record["metadata"]["version"] == "0.2.0" and "model/labels.txt" not in record["files"]


def test_pull_default_output_is_a_new_directory(registry: Registry, bundle_dir: Path, tmp_path: Path) -> None:
    assert ecr("push", "--quiet", str(bundle_dir), f"{registry.host}/out/default:0.1.0").returncode == 0
    proc = subprocess.run(["ecr", "pull", "--quiet", "--model-only", f"{registry.host}/out/default:0.1.0"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "default-0.1.0" / "model" / "weights.bin").exists()
    assert yaml.safe_load((tmp_path / "default-0.1.0" / "ecr-bundle.json").read_text())["digest"]

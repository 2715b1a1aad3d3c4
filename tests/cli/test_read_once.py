"""A model is read once: a new large file is hashed while it is uploaded, an unchanged one
is not read again (the stat cache), a pull writes and verifies in one pass.

The oracle is the kernel's count of bytes a process read with read()/pread() (``rchar``
in /proc/PID/io: files and pipes; socket receives use recvfrom and are not in it),
taken from inside the real ``ecr`` process at exit.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry

MIB = 1 << 20
SIZE = 48 * MIB  # over the 8 MiB from which a new file is sent while hashed

# `ecr ARGS` in this process, then the bytes it read (rchar) on stderr as the last line.
_MEASURED = """
import atexit, sys
def _report():
    for line in open("/proc/self/io"):
        if line.startswith("rchar:"):
            sys.stderr.write("\\nRCHAR " + line.split()[1] + "\\n")
atexit.register(_report)
sys.argv = ["ecr", *sys.argv[1:]]
from ecr_oci.cli import run
run()
"""


def ecr_measured(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the real `ecr` CLI as its own process; returns it and the bytes it read."""
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    found = re.findall(r"^RCHAR (\d+)$", proc.stderr, re.M)
    assert found, proc.stderr
    return proc, int(found[-1])


def _baseline(registry: Registry, tmp_path: Path, tiny_layout: Path, *args: str) -> int:
    """What the same command reads for a bundle with a 4 KiB model (interpreter, modules, images...)."""
    root = write_bundle(tmp_path / "baseline", tiny_layout, dict(BASE_METADATA, name="baseline"))
    ref = f"{registry.host}/baseline/{len(args)}:1"
    proc, read = ecr_measured("push", str(root), ref)
    assert proc.returncode == 0, proc.stderr
    if args:  # a pull of it
        proc, read = ecr_measured(*args, ref, "-o", str(tmp_path / "baseline-out"))
        assert proc.returncode == 0, proc.stderr
    return read


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _model_digest(registry: Registry, ref_repo: str, tag: str) -> str:
    """The digest the registry's model manifest names for model/weights.bin."""
    accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    index = requests.get(f"{registry.url}/v2/{ref_repo}/manifests/{tag}", headers={"Accept": accept}, timeout=30).json()
    model = next(m for m in index["manifests"] if m["platform"]["os"] == "unknown")
    body = requests.get(f"{registry.url}/v2/{ref_repo}/manifests/{model['digest']}", headers={"Accept": accept},
                        timeout=30).json()
    return next(layer["digest"] for layer in body["layers"]
                if layer["annotations"]["org.opencontainers.image.title"] == "model/weights.bin")


def test_a_new_model_is_read_once_and_an_unchanged_one_not_at_all(registry: Registry, tmp_path: Path,
                                                                   tiny_layout: Path) -> None:
    weights = os.urandom(SIZE)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="once"), weights=weights)
    overhead = _baseline(registry, tmp_path, tiny_layout)

    first, read = ecr_measured("push", "--verbose", str(root), f"{registry.host}/once/a:1")
    assert first.returncode == 0, first.stderr
    assert re.search(r"uploaded\s+" + _sha256(weights) + " model/weights.bin", first.stderr), first.stderr
    # hashed while sent: one pass over the file (two passes would be 2 x 48 MiB)
    assert read - overhead < 1.25 * SIZE, (read, overhead)
    assert _model_digest(registry, "once/a", "1") == _sha256(weights)

    # The stat cache settles only an entry whose file is older than its timestamp tick
    # margin (2 s): a file changed within one tick of being hashed could look unchanged.
    time.sleep(2.1)
    second, read = ecr_measured("push", "--verbose", str(root), f"{registry.host}/once/a:2")
    assert second.returncode == 0, second.stderr  # this push re-hashes the racy entry and settles it
    third, read = ecr_measured("push", "--verbose", str(root), f"{registry.host}/once/b:1")
    assert third.returncode == 0, third.stderr
    assert read - overhead < 0.25 * SIZE, (read, overhead)  # not read at all
    # known digest: mounted from the first repository instead of sent
    assert re.search(r"mounted from once/a\s+" + _sha256(weights), third.stderr), third.stderr


def test_a_changed_file_is_read_again_even_with_size_and_mtime_kept(registry: Registry, tmp_path: Path,
                                                                     tiny_layout: Path) -> None:
    """What tar and rsync -t do: new content, same size, the old mtime put back. ctime
    still moves, so the stat cache does not answer with the old digest."""
    weights = os.urandom(SIZE)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="changed"), weights=weights)
    model = root / "model" / "weights.bin"
    old = os.stat(model)
    os.utime(model, ns=(old.st_atime_ns, old.st_mtime_ns - 10_000_000_000))  # settled once hashed
    time.sleep(2.1)
    assert subprocess.run(["ecr", "push", str(root), f"{registry.host}/changed/a:1"],
                          capture_output=True, timeout=300).returncode == 0
    before = os.stat(model)
    changed = os.urandom(SIZE)
    with model.open("r+b") as fh:
        fh.write(changed)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(model)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    proc, _ = ecr_measured("push", str(root), f"{registry.host}/changed/a:2")
    assert proc.returncode == 0, proc.stderr
    assert _model_digest(registry, "changed/a", "2") == _sha256(changed)


def test_an_invalid_bundle_stops_what_was_started_and_tags_nothing(registry: Registry, tmp_path: Path,
                                                                    tiny_layout: Path) -> None:
    """The upload of a new model starts before ecr.yaml is validated (cli/early.py); a
    refused ecr.yaml stops it at once (no waiting for the whole file), nothing is tagged,
    and the registry keeps the part it got for the next push to resume."""
    meta = {k: v for k, v in BASE_METADATA.items() if k != "description"}
    root = write_bundle(tmp_path / "b", tiny_layout, dict(meta, name="invalid"))
    with (root / "model" / "weights.bin").open("wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB (sparse): a full upload would take seconds
    start = time.monotonic()
    proc = subprocess.run(["ecr", "push", str(root), f"{registry.host}/invalid/a:1"], capture_output=True,
                          text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: ecr.yaml: description: required field is missing", \
        proc.stderr
    assert elapsed < 2.5, elapsed
    tags = requests.get(f"{registry.url}/v2/invalid/a/tags/list", timeout=30)
    assert tags.status_code == 404 or not tags.json().get("tags"), tags.text
    uploads = registry.storage / "docker" / "registry" / "v2" / "repositories" / "invalid" / "a" / "_uploads"
    assert uploads.is_dir() and any(uploads.iterdir()), "the early upload never started"


def test_a_pull_reads_the_model_once(registry: Registry, tmp_path: Path, tiny_layout: Path) -> None:
    """Downloaded bytes are hashed as they are written: the file is never read back."""
    weights = os.urandom(SIZE)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="pulled"), weights=weights)
    assert subprocess.run(["ecr", "push", str(root), f"{registry.host}/pulled/a:1"],
                          capture_output=True, timeout=300).returncode == 0
    overhead = _baseline(registry, tmp_path, tiny_layout, "pull", "--model-only")
    out = tmp_path / "out"
    proc, read = ecr_measured("pull", "--model-only", f"{registry.host}/pulled/a:1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "model" / "weights.bin").read_bytes() == weights
    assert read - overhead < 0.25 * SIZE, (read, overhead)  # the file is never read back


def test_image_blobs_go_up_while_the_model_is_still_uploading(registry: Registry, tmp_path: Path,
                                                              tiny_layout: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The build waits for a new model's digest; the images it has read meanwhile are
    pushed at once, not after the model (a large image layer would otherwise wait)."""
    from typer.testing import CliRunner

    from ecr_oci.cli import app
    from ecr_oci.registry.client import RegistryClient

    events: list[tuple[str, float]] = []
    hashing, blob = RegistryClient.upload_hashing, RegistryClient.upload_blob

    def slow_model_upload(self: RegistryClient, *args: Any, **kwargs: Any) -> tuple[str, int]:
        time.sleep(1.0)  # a model that takes a while to send
        result = hashing(self, *args, **kwargs)
        events.append(("model done", time.monotonic()))
        return result

    def recorded_blob_upload(self: RegistryClient, *args: Any, **kwargs: Any) -> int:
        events.append(("blob started", time.monotonic()))
        return blob(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, "upload_hashing", slow_model_upload)
    monkeypatch.setattr(RegistryClient, "upload_blob", recorded_blob_upload)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="overlap"), weights=os.urandom(SIZE))
    result = CliRunner().invoke(app, ["push", "--quiet", str(root), f"{registry.host}/overlap/a:1"])
    assert result.exit_code == 0, result.output
    model_done = next(t for what, t in events if what == "model done")
    image_blobs = [t for what, t in events if what == "blob started"]
    assert image_blobs and min(image_blobs) < model_done - 0.5, events


def test_a_pulled_model_pushed_again_is_found_not_sent(registry: Registry, tmp_path: Path, tiny_layout: Path) -> None:
    """`ecr pull` remembers the digests it verified: a bundle made in the pulled directory
    (a new version, an ecr.yaml added) mounts the model instead of sending it again."""
    import shutil

    weights = os.urandom(SIZE)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="again"), weights=weights)
    assert subprocess.run(["ecr", "push", str(root), f"{registry.host}/again/a:1"],
                          capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "pulled"
    pulled = subprocess.run(["ecr", "pull", "--model-only", f"{registry.host}/again/a:1", "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    # the pulled directory becomes the next version's bundle
    shutil.copytree(tiny_layout, out / "images")
    (out / "src").mkdir()
    (out / "src" / "main.py").write_text("print('v2')\n")
    (out / "ecr.yaml").write_text(yaml.safe_dump(dict(BASE_METADATA, name="again", version="0.2.0")))
    proc = subprocess.run(["ecr", "push", "--verbose", str(out), f"{registry.host}/again/b:2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"mounted from again/a\s+" + _sha256(weights) + " model/weights.bin", proc.stderr), proc.stderr
    assert "blobs uploaded (" in proc.stderr and "48.0 MiB" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("key", ["training_data", "icon", "model"])
def test_nothing_outside_the_bundle_directory_is_sent_early(registry: Registry, tmp_path: Path, tiny_layout: Path,
                                                             key: str) -> None:
    """The early start reads ecr.yaml before it is validated: a large file outside the
    bundle directory (a path with .., or a symlink) is refused like validation refuses it,
    before any byte goes out."""
    outside = tmp_path / "outside.bin"
    with outside.open("wb") as fh:
        fh.truncate(64 << 20)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="escape"))
    (root / "model" / "link.bin").symlink_to(outside)
    value = {"training_data": ["../outside.bin"], "icon": "../outside.bin", "model": ["model/link.bin"]}[key]
    (root / "ecr.yaml").write_text(yaml.safe_dump(dict(BASE_METADATA, name="escape", **{key: value})))
    proc = subprocess.run(["ecr", "push", str(root), f"{registry.host}/escape/{key}:1"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "leaves the bundle directory" in proc.stderr or "outside the bundle directory" in proc.stderr, proc.stderr
    repository = registry.storage / "docker" / "registry" / "v2" / "repositories" / "escape" / key
    assert not repository.exists(), "something was sent to the registry"

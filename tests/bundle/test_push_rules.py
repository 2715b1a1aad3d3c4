"""Reproducible digests, minimal re-uploads, image sources, and bad input that changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300)


def push(bundle: Path, ref: str) -> tuple[str, str]:
    proc = ecr("push", "--quiet", str(bundle), ref)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), proc.stderr


def test_same_inputs_same_digest_and_nothing_reuploaded(registry: Registry, bundle_dir: Path, tmp_path: Path,
                                                        tiny_layout: Path) -> None:
    ref = f"{registry.host}/repro/tiny:0.1.0"
    first, _log1 = push(bundle_dir, ref)
    second, log2 = push(bundle_dir, ref)
    assert first == second
    assert "0 blobs uploaded" in log2
    # A second, independent copy of the same inputs (new mtimes, new paths) gives the same digest.
    copy = write_bundle(tmp_path / "copy", tiny_layout)
    third, _ = push(copy, f"{registry.host}/repro/tiny:0.1.0")
    assert third == first


def test_changed_model_new_digest_only_that_layer_uploaded(registry: Registry, bundle_dir: Path) -> None:
    ref = f"{registry.host}/repro/changed:0.1.0"
    first, _ = push(bundle_dir, ref)
    (bundle_dir / "model" / "weights.bin").write_bytes(b"\x02" * 4096)
    second, log = push(bundle_dir, f"{registry.host}/repro/changed:0.1.1")
    assert second != first
    # the new weights layer, the model manifest's config is unchanged -> exactly one blob
    assert "1 blobs uploaded (4.0 KiB)" in log, log


def _index(registry: Registry, repo: str, ref: str) -> dict[str, Any]:
    import requests

    resp = requests.get(f"{registry.url}/v2/{repo}/manifests/{ref}",
                        headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def test_docker_registry_source_is_mounted(registry: Registry, bundle_dir: Path, tmp_path: Path,
                                           tiny_layout: Path) -> None:
    _first, _ = push(bundle_dir, f"{registry.host}/src/origin:0.1.0")
    index = _index(registry, "src/origin", "0.1.0")
    amd64 = index["manifests"][0]["digest"]
    meta = dict(BASE_METADATA, name="remote-sourced", images=[
        {"platform": "linux/amd64", "from": f"docker://{registry.host}/src/origin@{amd64}"}])
    other = write_bundle(tmp_path / "other", tiny_layout, meta)
    proc = ecr("push", "--quiet", str(other), f"{registry.host}/dst/remote:0.1.0")
    assert proc.returncode == 0, proc.stderr
    # config + layer of the amd64 image (docker:// source), and the model files and source
    # archive this client pushed to src/origin before (local sources, remembered); only the
    # model config (it holds the bundle name) is new
    assert "1 blobs uploaded" in proc.stderr and "5 mounted" in proc.stderr, proc.stderr
    assert _index(registry, "dst/remote", "0.1.0")["manifests"][0]["digest"] == amd64


@pytest.mark.slow
def test_docker_archive_source_from_a_real_docker_save(registry: Registry, tmp_path: Path,
                                                       tiny_layout: Path) -> None:
    """A tar written by the real dockerd's `docker save` (Debian's engine writes the legacy
    manifest.json layout) is a usable `docker-archive:` image source."""
    import tempfile

    from tests.support import start_dockerd

    source = f"{registry.host}/archive/source:arm64"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{tiny_layout}:arm64", f"docker://{source}"],
                   capture_output=True, text=True, check=True, timeout=120)
    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-dk-", dir="/tmp")), registry.host)
    if isinstance(engine, str):
        pytest.skip(engine)
    try:
        engine.docker("pull", "--platform", "linux/arm64", source)
        engine.docker("save", "-o", str(tmp_path / "saved.tar"), source)
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)
    with tarfile.open(tmp_path / "saved.tar") as tar:
        assert "manifest.json" in tar.getnames()  # what docker save wrote, not a layout we made
    meta = dict(BASE_METADATA, name="from-archive", images=[
        {"platform": "linux/arm64", "from": "docker-archive:saved.tar"}])
    root = write_bundle(tmp_path, tiny_layout, meta)
    pinned, _ = push(root, f"{registry.host}/archive/tiny:0.1.0")
    out = tmp_path / "out"
    proc = ecr("pull", "--quiet", pinned, "--platform", "linux/arm64", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out / 'image'}:0.1.0"],
                                       capture_output=True, text=True, check=True).stdout)
    original = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{tiny_layout}:arm64"],
                                         capture_output=True, text=True, check=True).stdout)
    assert config["architecture"] == "arm64"
    assert config["rootfs"]["diff_ids"] == original["rootfs"]["diff_ids"]  # the same filesystem, byte for byte


def _mutate(meta: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(meta))
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


BAD_INPUTS = {
    "missing-license": (_mutate(BASE_METADATA, license=None), 3, "license: required field is missing"),
    "bad-semver": (_mutate(BASE_METADATA, version="1.2"), 3, "version: '1.2' is not a semantic version"),
    "unknown-platform": (
        _mutate(BASE_METADATA, images=[{"platform": "linux/sparc", "from": "oci:images:amd64"}]),
        3, "images[0].platform: unknown platform 'linux/sparc'"),
    "missing-model-file": (
        _mutate(BASE_METADATA, model=["model/weights.bin", "model/missing.onnx"]),
        3, "model: model/missing.onnx: no such file or directory"),
    "nonexistent-image-source": (
        _mutate(BASE_METADATA, images=[{"platform": "linux/amd64", "from": "oci:nowhere:amd64"}]),
        4, "oci:nowhere:amd64: not an OCI image layout"),
    "nonexistent-tag-in-layout": (
        _mutate(BASE_METADATA, images=[{"platform": "linux/amd64", "from": "oci:images:riscv"}]),
        4, "no image tagged 'riscv'"),
    "platform-mismatch": (
        _mutate(BASE_METADATA, images=[{"platform": "linux/arm64", "from": "oci:images:amd64"}]),
        4, "image is linux/amd64, but ecr.yaml says linux/arm64"),
    "unknown-field": (_mutate(BASE_METADATA, licence="MIT"), 3, "(document): unknown field 'licence'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_error_and_registry_unchanged(case: str, registry: Registry, tmp_path: Path,
                                                        tiny_layout: Path) -> None:
    meta, code, message = BAD_INPUTS[case]
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    before = registry.snapshot()
    for command in (["validate", str(root)], ["push", "--quiet", str(root), f"{registry.host}/bad/{case}:0.1.0"]):
        proc = ecr(*command)
        assert proc.returncode == code, (command, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert message in lines[0], lines[0]
        assert "Traceback" not in proc.stderr
    assert registry.snapshot() == before


def test_nonexistent_registry_source_and_unreachable_registry(registry: Registry, tmp_path: Path,
                                                              tiny_layout: Path) -> None:
    meta = _mutate(BASE_METADATA, images=[
        {"platform": "linux/amd64", "from": f"docker://{registry.host}/nothing/here:1.0"}])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    before = registry.snapshot()
    proc = ecr("push", "--quiet", str(root), f"{registry.host}/bad/remote:0.1.0")
    assert proc.returncode == 4 and "no such image" in proc.stderr, proc.stderr
    assert registry.snapshot() == before
    good = write_bundle(tmp_path / "good", tiny_layout)
    proc = ecr("push", "--quiet", str(good), "127.0.0.1:9/bad/unreachable:0.1.0")
    assert proc.returncode == 5 and "cannot reach registry 127.0.0.1:9" in proc.stderr, proc.stderr


def test_pull_errors_are_one_line(registry: Registry) -> None:
    proc = ecr("pull", f"{registry.host}/no/such:1.0.0", "-o", "/tmp/ecr-never")
    assert proc.returncode == 6
    assert proc.stderr.count("\n") == 1 and "not found" in proc.stderr
    assert not Path("/tmp/ecr-never").exists()


def test_pull_unknown_platform_lists_what_exists(registry: Registry, bundle_dir: Path, tmp_path: Path) -> None:
    pinned, _ = push(bundle_dir, f"{registry.host}/plat/tiny:0.1.0")
    proc = ecr("pull", pinned, "--platform", "linux/riscv64", "-o", str(tmp_path / "o"))
    assert proc.returncode == 6
    assert "has no linux/riscv64 image (it has: linux/amd64, linux/arm64)" in proc.stderr


def test_sage_yaml_without_images_is_explained(tmp_path: Path) -> None:
    (tmp_path / "sage.yaml").write_text(yaml.safe_dump({
        "name": "plugin-x", "version": "0.1.0", "description": "d", "authors": "A <a@b.c>", "license": "MIT",
        "source": {"architectures": ["linux/amd64"], "url": "https://github.com/x/y", "branch": "main"}}))
    proc = ecr("validate", str(tmp_path))
    assert proc.returncode == 3
    assert "images" in proc.stderr


def test_validate_ok_prints_digest(bundle_dir: Path) -> None:
    proc = ecr("validate", str(bundle_dir))
    assert proc.returncode == 0, proc.stderr
    assert "tiny-detector 0.1.0: valid (2 images, digest sha256:" in proc.stdout
    shutil.rmtree(bundle_dir / "images")
    assert ecr("validate", "--no-build", str(bundle_dir)).returncode == 0


def test_arm64_and_arm64_v8_are_one_platform(tmp_path: Path, tiny_layout: Path) -> None:
    meta = _mutate(BASE_METADATA, images=[{"platform": "linux/arm64", "from": "oci:images:arm64"},
                                          {"platform": "linux/arm64/v8", "from": "oci:images:arm64"}])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    proc = ecr("validate", str(root))
    assert proc.returncode == 3 and "images[1].platform: platform linux/arm64/v8 listed twice" in proc.stderr


def _on_a_terminal(*args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run ``ecr ARGS`` with a pseudo-terminal as stdout/stderr (util-linux `script`)."""
    import shlex

    command = f"stty cols {columns}; ecr {' '.join(shlex.quote(a) for a in args)}"
    return subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_progress_bars_only_for_blobs_over_4_mib_and_never_with_quiet(registry: Registry, tmp_path: Path,
                                                                       tiny_layout: Path) -> None:
    """README: bars on a terminal for blobs over 4 MiB; `--quiet` turns them off."""
    import os
    import re

    big = os.urandom(5 << 20)  # 5 MiB: one bar; labels.txt and the tiny images: none
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="progress"), weights=big)
    ref = f"{registry.host}/progress/tiny:0.1.0"
    pushed = _on_a_terminal("push", str(root), ref)
    assert pushed.returncode == 0, pushed.stdout
    bars = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", pushed.stdout).splitlines() if "━" in line]
    assert bars, pushed.stdout
    # one bar (redrawn as it advances), for the one blob over 4 MiB, ending complete
    assert {line.split("━")[0].strip() for line in bars} == {"push model/weights.bin"}, bars
    assert "5.2/5.2 MB" in bars[-1], bars
    out = tmp_path / "out"
    pulled = _on_a_terminal("pull", "--model-only", ref, "-o", str(out))
    assert pulled.returncode == 0, pulled.stdout
    pulled_bars = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", pulled.stdout).splitlines() if "━" in line]
    assert pulled_bars and {line.split("━")[0].strip() for line in pulled_bars} == {"pull model/weights.bin"}, \
        pulled_bars
    quiet = _on_a_terminal("pull", "--quiet", "--model-only", ref, "-o", str(tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stdout
    assert "━" not in quiet.stdout and (tmp_path / "quiet" / "model" / "weights.bin").read_bytes() == big
    # and off a terminal there are none either (the summary line only)
    piped = ecr("pull", "--model-only", ref, "-o", str(tmp_path / "piped"))
    assert piped.returncode == 0 and "━" not in piped.stderr

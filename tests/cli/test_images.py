"""Images for any plugin: the documented podman recipe, layouts holding several images
(annotations-spec §8.3), and the example's image labels from any YAML style."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry, oci_index

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "bird-detector" / "build_images.py"


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_images_under_test", BUILD_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FLOW = """name: bird-detector
version: 1.2.0
description: Counts birds in frames.
authors: ["Alice Example <alice@example.org>", "Bob <bob@example.org>"]
license: Apache-2.0
source: {url: "https://github.com/example/bird-detector", revision: v1.2.0}
"""
BLOCK = """name: bird-detector
version: 1.2.0
description: >
  Counts birds
  in frames.
authors:
  - "Alice Example <alice@example.org>"
  - Bob <bob@example.org>
license: Apache-2.0   # SPDX
source:
  url: https://github.com/example/bird-detector
  revision: v1.2.0
"""


def test_build_images_reads_labels_from_flow_and_block_yaml(tmp_path: Path) -> None:
    build = _build_script()
    expected = {"name": "bird-detector", "version": "1.2.0", "description": "Counts birds in frames.",
                "license": "Apache-2.0", "authors": ["Alice Example <alice@example.org>", "Bob <bob@example.org>"],
                "source_url": "https://github.com/example/bird-detector", "source_revision": "v1.2.0"}
    for style, text in (("flow", FLOW), ("block", BLOCK)):
        path = tmp_path / f"{style}.yaml"
        path.write_text(text)
        assert build.read_metadata(path) == expected, style
        # the stdlib fallback (no PyYAML) reads both styles the same way
        small = build._parse_small_yaml(text)
        assert small["authors"] == expected["authors"] and small["source"]["revision"] == "v1.2.0", style
        assert " ".join(small["description"].split()) == expected["description"], style


def test_a_layout_with_several_untagged_images_gives_each_platform_its_image(tmp_path: Path,
                                                                               tiny_layout: Path) -> None:
    index = oci_index(tiny_layout)
    entries = index["manifests"]
    assert isinstance(entries, list) and len(entries) == 2 and not any("platform" in e for e in entries)
    meta: dict[str, object] = dict(BASE_METADATA, images=[{"platform": "linux/amd64", "from": "oci:images"},
                                       {"platform": "linux/arm64", "from": "oci:images"}])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    proc = ecr("validate", str(root))
    assert proc.returncode == 0, proc.stderr
    tagged = write_bundle(tmp_path / "t", tiny_layout)  # the same images named by :TAG
    assert proc.stdout.split("digest ")[1] == ecr("validate", str(tagged)).stdout.split("digest ")[1]
    riscv = dict(BASE_METADATA, images=[{"platform": "linux/riscv64", "from": "oci:images"}])
    (root / "ecr.yaml").write_text(yaml.safe_dump(riscv))
    refused = ecr("validate", str(root))
    assert refused.returncode == 4, refused.stderr
    assert "2 images in the layout (tags: amd64, arm64), 0 of them linux/riscv64; name one with :TAG" in refused.stderr


def test_podman_build_and_save_recipe_from_the_readme(registry: Registry, tmp_path: Path, tiny_layout: Path,
                                                      request: pytest.FixtureRequest) -> None:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run `make deps`")
    runroot = Path(tempfile.mkdtemp(prefix="ecr-run-"))  # podman wants a runroot under 50 characters
    request.addfinalizer(lambda: shutil.rmtree(runroot, ignore_errors=True))
    podman = ["podman", "--root", str(tmp_path / "storage"), "--runroot", str(runroot),
              "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    context = tmp_path / "context"
    (context / "app").mkdir(parents=True)
    (context / "app" / "main.py").write_text("print('hello from the edge')\n")
    (context / "Containerfile").write_text('FROM scratch\nCOPY app /app\nCMD ["/app/main.py"]\n')
    root = write_bundle(tmp_path / "bundle", tiny_layout, dict(BASE_METADATA, images=[
        {"platform": "linux/amd64", "from": "oci-archive:build/amd64.tar"},
        {"platform": "linux/arm64", "from": "oci-archive:build/arm64.tar"}]))
    (root / "build").mkdir()
    for arch in ("amd64", "arm64"):  # the README's recipe, apart from the storage flags and --no-cache:
        # FROM scratch has no per-platform base image, so podman would reuse the amd64 build for arm64
        subprocess.run([*podman, "build", "--no-cache", "--platform", f"linux/{arch}", "-t",
                        f"localhost/myapp:{arch}", str(context)], check=True, capture_output=True, timeout=300)
        subprocess.run([*podman, "save", "--format", "oci-archive", "-o", str(root / "build" / f"{arch}.tar"),
                        f"localhost/myapp:{arch}"], check=True, capture_output=True, timeout=300)
    pushed = ecr("push", "--quiet", str(root), f"{registry.host}/recipe/myapp:0.1.0")
    assert pushed.returncode == 0, pushed.stderr
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{registry.host}/recipe/myapp:0.1.0"], capture_output=True, text=True, check=True)
    platforms = [m["platform"]["architecture"] for m in json.loads(raw.stdout)["manifests"]]
    assert platforms[:2] == ["amd64", "arm64"]

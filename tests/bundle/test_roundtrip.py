"""Acceptance: the example bundle through a real Distribution and real OCI clients."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import Registry, run

pytestmark = pytest.mark.slow
PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def ecr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"ecr {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def pushed(registry: Registry, example_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """Push the example once for the module; returns (tag ref, pinned ref, bundle dir)."""
    root = tmp_path_factory.mktemp("pushed") / "bird-detector"
    example = Path(__file__).resolve().parents[2] / "examples" / "bird-detector"
    shutil.copytree(example, root, ignore=shutil.ignore_patterns("build"))
    (root / "build").mkdir()
    (root / "build" / "oci").symlink_to(example_layout)
    ref = f"{registry.host}/alice/bird-detector:1.2.0"
    pinned = ecr("push", "--quiet", str(root), ref).stdout.strip()
    return ref, pinned, root


def test_push_prints_digest_pinned_reference(pushed: tuple[str, str, Path], registry: Registry) -> None:
    _ref, pinned, _ = pushed
    assert pinned.startswith(f"{registry.host}/alice/bird-detector@sha256:")
    assert registry.tags("alice/bird-detector") == ["1.2.0"]


def test_skopeo_sees_index_with_both_platforms_and_model(pushed: tuple[str, str, Path]) -> None:
    ref, _pinned, _ = pushed
    raw = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert raw["artifactType"] == "application/vnd.waggle.ecr.bundle.v1+json"
    platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in raw["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64"), ("unknown", "unknown")]
    assert raw["manifests"][2]["artifactType"] == "application/vnd.waggle.ecr.model.v1+json"
    assert raw["annotations"]["org.opencontainers.image.version"] == "1.2.0"


def test_skopeo_override_arch_gets_arm64_image(pushed: tuple[str, str, Path], tmp_path: Path) -> None:
    ref, _, _ = pushed
    run(["skopeo", "copy", "--src-tls-verify=false", "--override-arch", "arm64",
         f"docker://{ref}", f"oci:{tmp_path}/arm:x"])
    config = json.loads(run(["skopeo", "inspect", "--config", f"oci:{tmp_path}/arm:x"]).stdout)
    assert config["architecture"] == "arm64"
    assert config["os"] == "linux"


def test_podman_pulls_amd64_and_runs_plugin(pushed: tuple[str, str, Path], tmp_path: Path) -> None:
    if not shutil.which("podman") or not shutil.which("runc"):
        pytest.skip("podman/runc not installed: cannot run the image (make deps installs them)")
    if os.uname().machine != "x86_64":
        pytest.skip("the runnable check needs an amd64 host")
    import tempfile

    ref, _, root = pushed
    runroot = tempfile.mkdtemp(prefix="ecr-pm-", dir="/tmp")  # podman wants a runroot under 50 chars
    storage = ["--root", str(tmp_path / "root"), "--runroot", runroot]
    try:
        run([*PODMAN, *storage, "pull", "--tls-verify=false", ref])
        arch = run([*PODMAN, *storage, "image", "inspect", "--format", "{{.Architecture}}", ref]).stdout.strip()
        assert arch == "amd64"
        out = run([*PODMAN, *storage, "--runtime", "runc", "run", "--rm", "--network", "none",
                   "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                   "-e", "FRAMES=3", "-v", f"{root / 'model'}:/app/model:ro", ref]).stdout
        assert "frame=0 label=" in out
        assert "summary frames=3" in out
    finally:
        subprocess.run([*PODMAN, *storage, "rmi", "-a", "-f"], capture_output=True, check=False)
        shutil.rmtree(runroot, ignore_errors=True)


def test_oras_pulls_model_file_byte_identical(pushed: tuple[str, str, Path], tmp_path: Path) -> None:
    import oras.client

    ref, _pinned, root = pushed
    index = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]).stdout)
    model_digest = index["manifests"][2]["digest"]
    repo = ref.rsplit(":", 1)[0]
    client = oras.client.OrasClient(insecure=True)
    client.pull(target=f"{repo}@{model_digest}", outdir=str(tmp_path))
    for name in ("model/weights.bin", "model/labels.txt"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes()


def test_ecr_pull_amd64_fetches_no_arm64_layer(pushed: tuple[str, str, Path], tmp_path: Path) -> None:
    ref, pinned, root = pushed
    index = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]).stdout)
    repo = ref.rsplit(":", 1)[0]

    def layers(digest: str) -> dict[str, int]:
        m = json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}@{digest}"]).stdout)
        return {d["digest"]: d["size"] for d in [m["config"], *m["layers"]]}

    amd64, arm64 = layers(index["manifests"][0]["digest"]), layers(index["manifests"][1]["digest"])
    arm_only = set(arm64) - set(amd64)
    assert arm_only, "the two images should differ"
    out = tmp_path / "out"
    proc = ecr("pull", "--quiet", ref, "--platform", "linux/amd64", "-o", str(out))
    assert proc.stdout.strip() == pinned
    blobs = {f"sha256:{p.name}": p.stat().st_size for p in (out / "image" / "blobs" / "sha256").iterdir()}
    assert not arm_only & set(blobs)
    assert set(amd64) <= set(blobs)
    downloaded = sum(amd64.values()) + sum(p.stat().st_size for p in (out / "model").iterdir())
    downloaded += sum(p.stat().st_size for p in out.glob("*-source.tar.gz"))
    # the summary line reports that amount, in binary units with one decimal (read back, not re-computed)
    shown = re.search(r"\((\d+(?:\.\d)?) (B|KiB|MiB|GiB)\)", proc.stderr)
    assert shown, proc.stderr
    unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[shown.group(2)]
    assert downloaded >= 1 << 20 and shown.group(2) == "MiB"  # the example's images weigh megabytes
    assert abs(float(shown.group(1)) * unit - downloaded) <= 0.05 * unit
    assert (out / "model" / "weights.bin").read_bytes() == (root / "model" / "weights.bin").read_bytes()
    # The pulled image layout is usable by a stock tool.
    config = json.loads(run(["skopeo", "inspect", "--config", f"oci:{out / 'image'}:1.2.0"]).stdout)
    assert config["architecture"] == "amd64"


def test_ecr_pull_model_only_and_inspect_json(pushed: tuple[str, str, Path], tmp_path: Path) -> None:
    ref, pinned, _ = pushed
    out = tmp_path / "out"  # tmp_path holds the test's auth files: `ecr pull` refuses a non-empty directory
    ecr("pull", "--quiet", "--model-only", ref, "-o", str(out))
    assert not (out / "image").exists()
    assert (out / "model" / "labels.txt").exists()
    doc = json.loads(ecr("inspect", ref, "--json").stdout)
    assert doc["reference"] == pinned
    assert [p["platform"] for p in doc["platforms"]] == ["linux/amd64", "linux/arm64"]
    assert doc["metadata"]["runtime"]["python"] == ">=3.11"
    assert {f["title"] for f in doc["files"]} >= {"model/weights.bin", "model/labels.txt"}


def test_ls_and_tags(pushed: tuple[str, str, Path], registry: Registry) -> None:
    assert "alice/bird-detector" in ecr("ls", registry.host).stdout.split()
    assert ecr("tags", f"{registry.host}/alice/bird-detector").stdout.split() == ["1.2.0"]


def test_docker_pull_and_run_of_bundle_tag(pushed: tuple[str, str, Path], tmp_path_factory: pytest.TempPathFactory,
                                           registry: Registry) -> None:
    """A real Docker engine picks the amd64 image out of the bundle index and runs the plugin."""
    import tempfile

    from tests.support import start_dockerd

    if os.uname().machine != "x86_64":
        pytest.skip("the runnable check needs an amd64 host")
    ref, _, root = pushed
    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-dk-", dir="/tmp")), registry.host)
    if isinstance(engine, str):
        pytest.skip(engine)
    try:
        engine.docker("pull", ref)
        arch = engine.docker("image", "inspect", "--format", "{{.Architecture}}", ref).stdout.strip()
        assert arch == "amd64"
        out = engine.docker("run", "--rm", "--network", "none", "-e", "FRAMES=2",
                            "-v", f"{root / 'model'}:/app/model:ro", ref).stdout
        assert "summary frames=2" in out
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)

"""The bird-detector example plugin and its two runnable images.

Fast tests run ``app/main.py`` with the host Python and check the committed
model and metadata.  Slow tests (``-m slow``) run ``build_images.py`` and check
the OCI layout it writes, then run the amd64 image for real with podman.

Where the images come from: each session builds a fresh layout in a temporary
directory (so the tests always exercise the current script and never depend
on, or disturb, ``examples/bird-detector/build/oci``), but shares the download
cache ``examples/bird-detector/build/cache`` (override with
``ECR_EXAMPLE_CACHE``), so only the first run ever needs the network.  With a
warm cache a build takes well under 15 s; the slow tests build three times
(fresh, no-op re-run, forced rebuild for reproducibility) and use podman
twice: about 30 s in all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "bird-detector"
MAIN = EXAMPLE / "app" / "main.py"
MODEL = EXAMPLE / "model"
BUILD_SCRIPT = EXAMPLE / "build_images.py"
SCHEMA = REPO / "annotations-spec" / "v1" / "schemas" / "ecr.schema.json"
CACHE = Path(os.environ.get("ECR_EXAMPLE_CACHE", EXAMPLE / "build" / "cache"))

FRAME_LINE = re.compile(r"^frame=(\d+) label=([a-z_]+) score=(0\.\d\d|1\.00)$")
SUMMARY_LINE = re.compile(
    r"^summary frames=(\d+) env\.bird\.count=(\d+) top=([a-z_]+) model=sha256:[0-9a-f]{12} bundle=(\S+)$"
)
BUCKETS = {
    "0.001",
    "0.0025",
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1.0",
    "2.5",
    "5.0",
    "10.0",
    "+Inf",
}
BUNDLE = "sha256:" + "ab" * 32
ELF_MACHINE = {"amd64": 62, "arm64": 183}
TRIPLET = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}

# Podman as it works on these machines (see /work/shared/FIELD-NOTES.md), with
# storage private to the test session.
PODMAN_GLOBAL = [
    "--storage-driver",
    "vfs",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
    "--runtime",
    "runc",
]
PODMAN_RUN = ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

# Runs main.py (path in argv[1], any interpreter) with FRAMES=0 and metrics on a
# free loopback port, scrapes /metrics until 3 frames are counted, stops it
# with SIGTERM and prints what it saw as JSON.  Used on the host and inside
# the image (where prometheus_client comes from /app/vendor).
METRICS_PROBE = r"""
import json, os, re, signal, subprocess, sys, time, urllib.request
from prometheus_client.parser import text_string_to_metric_families
env = dict(os.environ, FRAMES="0", METRICS_PORT="0", METRICS_ADDR="127.0.0.1", LATENCY_MS="20",
           ECR_BUNDLE_DIGEST=sys.argv[2])
p = subprocess.Popen([sys.executable, sys.argv[1]], env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
port = None
for line in p.stderr:
    m = re.search(r"metrics on http://[^ ]+:(\d+)/metrics", line)
    if m:
        port = int(m.group(1))
        break
if port is None:
    p.kill()
    print(json.dumps({"error": "no metrics line", "stderr": p.stderr.read()}))
    sys.exit(0)
families = {}
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    families = {f.name: {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
                for f in text_string_to_metric_families(text)}
    frames = [s for s in families.get("ecr_frames", {}).get("samples", []) if s[0] == "ecr_frames_total"]
    if frames and frames[0][2] >= 3:
        break
    time.sleep(0.1)
p.send_signal(signal.SIGTERM)
out, err = p.communicate(timeout=20)
print(json.dumps({"port": port, "families": families, "rc": p.returncode, "stdout": out, "stderr": err}))
"""


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bird_detector_build_images", BUILD_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plugin_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "FRAMES",
            "FRAME_INTERVAL",
            "FRAME_SEED",
            "LATENCY_MS",
            "METRICS_PORT",
            "METRICS_ADDR",
            "ECR_BUNDLE_DIGEST",
            "ECR_MODEL_DIR",
            "PYTHONPATH",
        }
    }
    env["ECR_MODEL_DIR"] = str(MODEL)
    env.update(extra)
    return env


def run_main(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, str(MAIN)], env=plugin_env(**env), capture_output=True, text=True, timeout=timeout
    )


def check_plugin_output(stdout: str, frames: int, bundle: str = "unknown") -> list[str]:
    lines = stdout.splitlines()
    assert len(lines) == frames + 1, stdout
    for i, line in enumerate(lines[:-1]):
        m = FRAME_LINE.match(line)
        assert m, line
        assert int(m.group(1)) == i
    m = SUMMARY_LINE.match(lines[-1])
    assert m, lines[-1]
    assert int(m.group(1)) == frames
    assert int(m.group(2)) <= frames
    assert m.group(4) == bundle
    return lines


def check_metrics(result: dict[str, Any]) -> None:
    assert "error" not in result, result
    fam = result["families"]
    hist = fam["ecr_inference_seconds"]
    assert hist["type"] == "histogram"
    buckets = {s[1]["le"]: s[2] for s in hist["samples"] if s[0] == "ecr_inference_seconds_bucket"}
    assert set(buckets) == BUCKETS
    assert all(s[1]["bundle"] == BUNDLE for s in hist["samples"])
    count = next(s[2] for s in hist["samples"] if s[0] == "ecr_inference_seconds_count")
    total = next(s[2] for s in hist["samples"] if s[0] == "ecr_inference_seconds_sum")
    assert count >= 3
    assert buckets["+Inf"] == count
    # LATENCY_MS=20: no inference can be faster than 20 ms.
    assert buckets["0.001"] == buckets["0.01"] == 0
    assert total / count >= 0.02
    counter = fam["ecr_frames"]
    assert counter["type"] == "counter"
    frames = next(s for s in counter["samples"] if s[0] == "ecr_frames_total")
    assert frames[1] == {"bundle": BUNDLE}
    assert abs(frames[2] - count) <= 1  # scraped between observe() and inc()
    assert result["rc"] == 0, result["stderr"]
    summary = result["stdout"].splitlines()[-1]
    m = SUMMARY_LINE.match(summary)
    assert m and int(m.group(1)) >= 3 and m.group(4) == BUNDLE, summary


# --------------------------------------------------------------------------- fast: plugin and files


def test_model_files_are_the_generated_ones() -> None:
    spec = importlib.util.spec_from_file_location("bird_detector_make_model", EXAMPLE / "make_model.py")
    assert spec and spec.loader
    make_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_model)
    assert (MODEL / "weights.bin").read_bytes() == make_model.weights_bytes()
    assert (MODEL / "labels.txt").read_text() == make_model.labels_text()
    assert (MODEL / "weights.bin").stat().st_size == 4096


def test_plugin_runs_on_host() -> None:
    proc = run_main()
    assert proc.returncode == 0, proc.stderr
    check_plugin_output(proc.stdout, 5)
    assert "8 labels, 512-byte frames" in proc.stderr
    again = run_main()
    assert again.stdout == proc.stdout  # deterministic
    other = run_main(FRAMES="7", FRAME_SEED="42", ECR_BUNDLE_DIGEST=BUNDLE)
    assert other.returncode == 0
    lines = check_plugin_output(other.stdout, 7, bundle=BUNDLE)
    assert lines[:5] != proc.stdout.splitlines()[:5]


def test_plugin_model_dir_elsewhere(tmp_path: Path) -> None:
    shutil.copytree(MODEL, tmp_path / "elsewhere")
    proc = run_main(ECR_MODEL_DIR=str(tmp_path / "elsewhere"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run_main().stdout


def test_plugin_errors(tmp_path: Path) -> None:
    missing = run_main(ECR_MODEL_DIR=str(tmp_path / "nope"))
    assert missing.returncode == 3 and "cannot read model" in missing.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "weights.bin").write_bytes(b"\x00" * 4097)
    shutil.copy(MODEL / "labels.txt", tmp_path / "bad")
    assert run_main(ECR_MODEL_DIR=str(tmp_path / "bad")).returncode == 3
    assert run_main(FRAMES="lots").returncode == 2
    assert run_main(FRAME_INTERVAL="-1").returncode == 2


def test_plugin_interval_and_latency() -> None:
    t0 = time.monotonic()
    proc = run_main(FRAMES="3", FRAME_INTERVAL="0.1", LATENCY_MS="50")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0
    check_plugin_output(proc.stdout, 3)
    assert elapsed >= 2 * 0.1 + 3 * 0.05


def test_plugin_without_prometheus_client() -> None:
    # -S: no site-packages, so prometheus_client is not importable.
    proc = run_main("-S", FRAMES="2", METRICS_PORT="0")
    assert proc.returncode == 0, proc.stderr
    assert "prometheus_client is not importable" in proc.stderr
    check_plugin_output(proc.stdout, 2)


def test_plugin_metrics_on_host() -> None:
    pytest.importorskip("prometheus_client")
    proc = subprocess.run(
        [sys.executable, "-c", METRICS_PROBE, str(MAIN), BUNDLE],
        env=plugin_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    check_metrics(json.loads(proc.stdout))


def test_metadata_is_consistent() -> None:
    meta = yaml.safe_load((EXAMPLE / "ecr.yaml").read_text())
    if SCHEMA.exists():
        import jsonschema

        schema = json.loads(SCHEMA.read_text())
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(meta)
    for rel in meta["model"]:
        assert (EXAMPLE / rel).is_file(), rel
    assert (EXAMPLE / meta["source_archive"] / "main.py").is_file()
    assert (EXAMPLE / meta["source"]["dockerfile"]).is_file()
    assert {img["platform"] for img in meta["images"]} == {"linux/amd64", "linux/arm64"}
    # The label values build_images.py reads with its stdlib-only parser.
    parsed = load_build_script().read_metadata(EXAMPLE / "ecr.yaml")
    assert parsed["name"] == meta["name"]
    assert parsed["version"] == str(meta["version"])
    assert parsed["description"] == meta["description"]
    assert parsed["license"] == meta["license"]
    assert parsed["authors"] == meta["authors"]
    assert parsed["source_url"] == meta["source"]["url"]
    assert parsed["source_revision"] == meta["source"]["revision"]


def test_dockerfile_matches_build_script() -> None:
    build = load_build_script()
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    assert build.WHEEL_SHA256 in dockerfile
    assert f"prometheus-client=={build.WHEEL_VERSION}" in dockerfile
    assert 'ENTRYPOINT ["/usr/bin/python3", "/app/main.py"]' in dockerfile
    assert list(build.ENTRYPOINT) == ["/usr/bin/python3", "/app/main.py"]


# --------------------------------------------------------------------------- slow: images


def build_layout(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out), "--cache", str(CACHE), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"build_images.py failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("umoci", "skopeo", "apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run `make deps`")
    out = tmp_path_factory.mktemp("bird-detector") / "oci"
    build_layout(out)
    return out


def blob(layout: Path, digest: str) -> Path:
    algo, hexd = digest.split(":", 1)
    return layout / "blobs" / algo / hexd


def skopeo_json(*args: str) -> dict[str, Any]:
    proc = subprocess.run(["skopeo", "inspect", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def resolve(members: dict[str, tarfile.TarInfo], path: str) -> str | None:
    """Resolve an absolute path through the symlinks of a layer; None if it does not exist."""
    parts, done, hops = path.strip("/").split("/"), [], 0
    while parts:
        comp = parts.pop(0)
        if comp in ("", "."):
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        member = members.get("/".join([*done, comp]))
        if member is None:
            return None
        if member.issym():
            hops += 1
            if hops > 40:
                return None
            if member.linkname.startswith("/"):
                done = []
            parts = member.linkname.strip("/").split("/") + parts
            continue
        done.append(comp)
    return "/".join(done)


def elf_interpreter(data: bytes) -> str:
    """PT_INTERP of a 64-bit little-endian ELF executable."""
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        ph = data[phoff + i * phentsize : phoff + (i + 1) * phentsize]
        if int.from_bytes(ph[0:4], "little") == 3:  # PT_INTERP
            offset, size = int.from_bytes(ph[8:16], "little"), int.from_bytes(ph[32:40], "little")
            return data[offset : offset + size].rstrip(b"\0").decode()
    raise AssertionError("no PT_INTERP")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_image_config(layout: Path, arch: str) -> None:
    raw = skopeo_json("--raw", f"oci:{layout}:{arch}")
    assert raw["schemaVersion"] == 2
    assert raw["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert len(raw["layers"]) == 2
    config = skopeo_json("--config", f"oci:{layout}:{arch}")
    assert config["architecture"] == arch
    assert config["os"] == "linux"
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert all(h["created"] == "1970-01-01T00:00:00Z" for h in config["history"])
    cfg = config["config"]
    assert cfg["Entrypoint"] == ["/usr/bin/python3", "/app/main.py"]
    assert "Cmd" not in cfg or not cfg["Cmd"]
    assert cfg["WorkingDir"] == "/app"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PYTHONPATH"] == "/app/vendor"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["ECR_MODEL_DIR"] == "/app/model"
    meta = yaml.safe_load((EXAMPLE / "ecr.yaml").read_text())
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.title"] == meta["name"]
    assert labels["org.opencontainers.image.version"] == str(meta["version"])
    assert labels["org.opencontainers.image.licenses"] == meta["license"]
    assert labels["org.opencontainers.image.source"] == meta["source"]["url"]
    assert raw["annotations"]["org.opencontainers.image.title"] == meta["name"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_image_layers(layout: Path, arch: str) -> None:
    """A real interpreter of the right architecture, its loader and libc; app layer; no model."""
    manifest = skopeo_json("--raw", f"oci:{layout}:{arch}")
    compressed = sum(layer["size"] for layer in manifest["layers"])
    assert compressed < 30_000_000, f"{arch}: {compressed} bytes compressed"
    runtime_blob, app_blob = (blob(layout, layer["digest"]) for layer in manifest["layers"])

    with tarfile.open(runtime_blob, "r:gz") as tf:
        members = {m.name.rstrip("/"): m for m in tf.getmembers()}
        python = resolve(members, "/usr/bin/python3")
        assert python == "usr/bin/python3.11"
        data = tf.extractfile(members[python]).read()  # type: ignore[union-attr]
        libc = resolve(members, f"/lib/{TRIPLET[arch]}/libc.so.6")
        assert libc is not None
        libc_head = tf.extractfile(members[libc]).read(20)  # type: ignore[union-attr]
        status = tf.extractfile(members["var/lib/dpkg/status"]).read().decode()  # type: ignore[union-attr]
    assert data[:4] == b"\x7fELF"
    assert int.from_bytes(data[18:20], "little") == ELF_MACHINE[arch]
    assert int.from_bytes(libc_head[18:20], "little") == ELF_MACHINE[arch]
    interp = elf_interpreter(data)
    assert resolve(members, interp) is not None, f"{arch}: loader {interp} missing"
    for name in ("bin", "lib", "sbin"):
        assert members[name].issym() and members[name].linkname == f"usr/{name}"
    names = set(members)
    assert "usr/lib/python3.11/os.py" in names
    assert "usr/lib/python3.11/encodings/utf_8.py" in names
    assert not any(n.startswith(("usr/share/man/", "usr/share/locale/")) for n in names)
    assert not any(re.search(r"/(test|tests|__pycache__)(/|$)", n) for n in names if n.startswith("usr/lib/python3"))
    assert all(m.mtime == 0 for m in members.values())
    assert "Package: python3.11-minimal\nStatus: install ok installed" in status
    assert f"Architecture: {arch}" in status
    assert "Package: dpkg\n" not in status

    with tarfile.open(app_blob, "r:gz") as tf:
        app = {m.name.rstrip("/"): m for m in tf.getmembers()}
        main_py = tf.extractfile(app["app/main.py"]).read()  # type: ignore[union-attr]
    assert main_py == MAIN.read_bytes()
    assert "app/vendor/prometheus_client/__init__.py" in app
    assert "app/model" in app and app["app/model"].isdir()
    assert not any(n.endswith(("weights.bin", "labels.txt")) for n in names | set(app))


@pytest.mark.slow
def test_build_is_idempotent_and_reproducible(layout: Path, tmp_path: Path) -> None:
    info = json.loads(layout.with_name("oci.build.json").read_text())
    before = (layout / "index.json").stat().st_mtime_ns
    again = build_layout(layout)
    assert "up to date" in again.stderr
    assert (layout / "index.json").stat().st_mtime_ns == before
    assert f"OCI layout: {layout}" in again.stdout
    other = tmp_path / "oci"
    build_layout(other, "--force")
    info2 = json.loads(other.with_name("oci.build.json").read_text())
    assert {t: i["manifest"] for t, i in info2["images"].items()} == {
        t: i["manifest"] for t, i in info["images"].items()
    }
    assert set(info["images"]) == {"amd64", "arm64"}
    assert info["images"]["amd64"]["layers"][1] == info["images"]["arm64"]["layers"][1]  # shared app layer


# --------------------------------------------------------------------------- slow: podman


class Podman:
    def __init__(self, root: Path):
        self.base = [
            "podman",
            "--root",
            str(root / "storage"),
            "--runroot",
            str(root / "run"),
            "--tmpdir",
            str(root / "tmp"),
            *PODMAN_GLOBAL,
        ]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # Only local oci: images, no registry: tests/conftest.py points REGISTRY_AUTH_FILE and
        # DOCKER_CONFIG at paths that do not exist, which `podman run` refuses.
        env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def amd64_image(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not shutil.which("podman"):
        pytest.skip("podman is not installed: cannot run the image (apt-get install podman)")
    if not shutil.which("runc"):
        pytest.skip("runc is not installed: podman's default crun fails here (apt-get install runc)")
    if os.geteuid() != 0:
        pytest.skip("running the image needs root podman here (vfs + cgroupfs + runc)")
    if os.uname().machine not in ("x86_64", "amd64"):
        pytest.skip(f"host is {os.uname().machine}: the amd64 image cannot run here")
    podman = Podman(tmp_path_factory.mktemp("podman"))
    pulled = podman("pull", "-q", f"oci:{layout}:amd64")
    assert pulled.returncode == 0, pulled.stderr
    image_id = pulled.stdout.strip().splitlines()[-1]
    yield podman, image_id
    podman("rmi", "--all", "--force")


@pytest.mark.slow
def test_amd64_image_runs_with_podman(amd64_image: Any, tmp_path: Path) -> None:
    podman, image_id = amd64_image
    host = run_main(FRAMES="6")
    assert host.returncode == 0
    proc = podman(*PODMAN_RUN, "-e", "FRAMES=6", "-v", f"{MODEL}:/app/model:ro", image_id)
    assert proc.returncode == 0, proc.stderr
    check_plugin_output(proc.stdout, 6)
    assert proc.stdout == host.stdout  # same model, same frames: same inferences
    assert "from /app/model" in proc.stderr

    # Model mounted somewhere else, selected with ECR_MODEL_DIR; the image's own /app/model is empty.
    shutil.copytree(MODEL, tmp_path / "m")
    moved = podman(
        *PODMAN_RUN,
        "-e",
        "FRAMES=6",
        "-e",
        "ECR_MODEL_DIR=/models/birds",
        "-v",
        f"{tmp_path / 'm'}:/models/birds:ro",
        image_id,
    )
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == host.stdout
    unmounted = podman(*PODMAN_RUN, image_id)
    assert unmounted.returncode == 3, unmounted.stderr


@pytest.mark.slow
def test_amd64_image_exports_metrics(amd64_image: Any) -> None:
    podman, image_id = amd64_image
    proc = podman(
        *PODMAN_RUN,
        "--entrypoint",
        "/usr/bin/python3",
        "-v",
        f"{MODEL}:/app/model:ro",
        image_id,
        "-c",
        METRICS_PROBE,
        "/app/main.py",
        BUNDLE,
    )
    assert proc.returncode == 0, proc.stderr
    check_metrics(json.loads(proc.stdout))


@pytest.mark.slow
def test_amd64_image_python_stdlib(amd64_image: Any) -> None:
    """Every extension module of the trimmed stdlib loads (no missing shared library)."""
    podman, image_id = amd64_image
    script = (
        "import glob, importlib, os, sys\n"
        "bad = []\n"
        "for f in sorted(glob.glob('/usr/lib/python3.11/lib-dynload/*.so')):\n"
        "    try: importlib.import_module(os.path.basename(f).split('.')[0])\n"
        "    except Exception as e: bad.append(repr(e))\n"
        "import ssl, sqlite3, ctypes, json, http.server, prometheus_client\n"
        "print(sys.version_info[:2], os.getuid(), bad)\n"
    )
    proc = podman(*PODMAN_RUN, "--entrypoint", "/usr/bin/python3", image_id, "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 11) 65534 []"

"""A Virtual Waggle run: the bundle's image for this machine, started locally with its
model files in place, its metrics scraped for a while, and a ``vw`` profile made.

Engines, in order: podman, docker (a daemon must answer), and for images whose
entrypoint is a Python script, the extracted app run as a plain process (said so).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecr_oci.errors import EcrError, SourceError

# The plugin side of the convention (annotations-spec/v1/profile.md).
METRICS_PORT_ENV = "METRICS_PORT"
BUNDLE_ENV = "ECR_BUNDLE_DIGEST"
MODEL_DIR_ENV = "ECR_MODEL_DIR"
PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PluginProcess:
    """A started plugin: how it runs, its metrics URL, and how to stop it."""

    engine: str
    metrics_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    cleanup: list[list[str]] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for cmd in self.cleanup:
            subprocess.run(cmd, capture_output=True, timeout=60, check=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def choose_engine(preferred: str) -> str:
    """``podman``, ``docker`` or ``process`` (what ``auto`` finds usable here)."""
    if preferred != "auto":
        return preferred
    if shutil.which("podman") and shutil.which("runc") and os.geteuid() == 0:
        return "podman"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0:
        return "docker"
    return "process"


def start_plugin(
    pulled: Path, *, engine: str, digest: str, env: dict[str, str], workdir: Path
) -> PluginProcess:
    """Start the pulled bundle (``ecr pull`` output directory) with metrics on a free port.

    Raises:
        SourceError: the image cannot be run with the chosen engine.
    """
    port = free_port()
    model_dir = (pulled / "model").resolve()
    full_env = {METRICS_PORT_ENV: str(port), BUNDLE_ENV: digest, **env}
    log = workdir / "plugin.log"
    layout = pulled / "image"
    tag = json.loads((layout / "index.json").read_text())["manifests"][0]["annotations"][
        "org.opencontainers.image.ref.name"
    ]
    url = f"http://127.0.0.1:{port}/metrics"
    if engine == "podman":
        runroot = Path(os.environ.get("ECR_VW_RUNROOT") or "/tmp") / f"ecr-vw-{port}"
        store = ["--root", str(workdir / "containers"), "--runroot", str(runroot)]
        args = [*PODMAN, *store, "--runtime", "runc", "run", "--rm", "--network", "host",
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        for key, value in full_env.items():
            args += ["-e", f"{key}={value}"]
        if model_dir.is_dir():
            args += ["-v", f"{model_dir}:/app/model:ro"]
        args.append(f"oci:{layout.resolve()}:{tag}")
        cleanup = [[*PODMAN, *store, "rmi", "-a", "-f"], ["rm", "-rf", str(runroot)]]
        proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        return PluginProcess("podman", url, proc, log, cleanup)
    if engine == "docker":
        raise SourceError("docker engine runs need `docker load` of an archive: use podman or the process engine")
    return _start_process(layout, model_dir, full_env, workdir, url, log)


def _start_process(layout: Path, model_dir: Path, env: dict[str, str], workdir: Path, url: str,
                   log: Path) -> PluginProcess:
    """Run a Python entrypoint from the extracted image with the host interpreter."""
    rootfs = workdir / "rootfs"
    config = extract_image(layout, rootfs)
    cfg: dict[str, Any] = config.get("config") or {}
    argv = [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
    script = next((a for a in argv[1:] if a.endswith(".py")), None)
    if not argv or "python" not in Path(argv[0]).name or script is None:
        raise SourceError(f"no container engine here, and the entrypoint {argv} is not a Python script")
    image_env = dict(item.split("=", 1) for item in cfg.get("Env") or [] if "=" in item)
    for key in ("PYTHONPATH",):
        if key in image_env:  # absolute paths inside the image live under rootfs here
            image_env[key] = os.pathsep.join(str(rootfs / p.lstrip("/")) for p in image_env[key].split(":"))
    process_env = {**os.environ, **{k: v for k, v in image_env.items() if k != "PATH"}, **env}
    process_env[MODEL_DIR_ENV] = str(model_dir)
    cwd = rootfs / (cfg.get("WorkingDir") or "/").lstrip("/")
    proc = subprocess.Popen([sys.executable, str(rootfs / script.lstrip("/"))], cwd=cwd, env=process_env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return PluginProcess("process", url, proc, log)


def _skip_unsafe(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tar's data filter, skipping (not failing on) members it refuses, e.g. absolute symlinks."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def extract_image(layout: Path, rootfs: Path) -> dict[str, Any]:
    """Unpack an OCI layout's single image into ``rootfs``; returns its config.

    Whiteouts are honoured and entries escaping ``rootfs`` are refused (tar's data filter).
    """
    index = json.loads((layout / "index.json").read_text())

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_bytes())
    rootfs.mkdir(parents=True, exist_ok=True)
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"]), "r:*") as tar:
            members = []
            for member in tar.getmembers():
                name = Path(member.name)
                if name.name.startswith(".wh."):
                    target = rootfs / name.parent / name.name[4:]
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        target.unlink(missing_ok=True)
                    continue
                if member.isdev():
                    continue
                members.append(member)
            try:
                tar.extractall(rootfs, members=members, filter=_skip_unsafe)
            except (tarfile.TarError, OSError) as exc:
                raise EcrError(f"cannot unpack layer {layer['digest']}: {exc}") from exc
    config: dict[str, Any] = json.loads(blob(manifest["config"]["digest"]).read_bytes())
    return config

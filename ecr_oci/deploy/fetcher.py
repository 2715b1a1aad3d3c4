"""The model-fetcher image: busybox plus ``ecr-fetch-model`` (the init container of a spec).

Built without a Docker engine: a static busybox binary (Debian ``busybox-static``) and
the fetch script are packed into a one-layer OCI image with umoci, then copied to the
ECR with skopeo (``ecr deploy fetcher``). Layers are reproducible for the same inputs
(umoci clamps nothing itself, so the files get a fixed mtime and the config a fixed date).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from ecr_oci.errors import SourceError

SCRIPT_PATH = "/usr/local/bin/ecr-fetch-model"
APPLETS = ("sh", "wget", "sha256sum", "cut", "grep", "mkdir", "mv", "rm", "chmod", "dirname", "base64", "tr",
           "cat", "echo", "printf", "ls", "sleep")
FIXED_TIME = "1970-01-01T00:00:00Z"


def fetch_script() -> str:
    """The shell script the init container runs."""
    return resources.files("ecr_oci.deploy").joinpath("fetch_model.sh").read_text()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SourceError(f"{cmd[0]} {cmd[1]} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")


def build_fetcher_layout(layout: Path, work: Path, *, busybox: Path = Path("/bin/busybox"),
                         architecture: str = "amd64", tag: str = "latest") -> None:
    """Write the fetcher image for ``architecture`` into the OCI layout ``layout`` (tag ``tag``).

    Args:
        busybox: a *static* busybox binary for ``architecture`` (Debian busybox-static).

    Raises:
        SourceError: umoci is missing or failed, or ``busybox`` does not exist.
    """
    if not busybox.is_file():
        raise SourceError(f"{busybox}: no busybox binary (apt-get install busybox-static)")
    if not shutil.which("umoci"):
        raise SourceError("umoci is not installed (apt-get install umoci)")
    image = f"{layout}:{tag}"
    if not (layout / "index.json").exists():
        _run(["umoci", "init", "--layout", str(layout)])
    _run(["umoci", "new", "--image", image])
    bundle = work / "fetcher-bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    _run(["umoci", "unpack", "--image", image, str(bundle)])
    root = bundle / "rootfs"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    script = root / SCRIPT_PATH.lstrip("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(fetch_script())
    script.chmod(0o755)
    for path in [root, *root.rglob("*")]:
        os.utime(path, (0, 0), follow_symlinks=False)
    _run(["umoci", "repack", "--no-history", "--image", image, str(bundle)])
    _run(["umoci", "config", "--no-history", "--image", image, "--architecture", architecture, "--os", "linux",
          "--created", FIXED_TIME, "--config.entrypoint", "/bin/sh", "--config.entrypoint", SCRIPT_PATH,
          "--config.env", "PATH=/bin"])
    _run(["umoci", "gc", "--layout", str(layout)])
    shutil.rmtree(bundle, ignore_errors=True)

"""Real components for tests: a CNCF Distribution on a free loopback port, tiny images."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

REGISTRY_BIN = "/usr/bin/docker-registry"
# Debian's docker client (package docker.io, what `make deps` installs). On the development
# machines /usr/local/bin/docker (another build) comes first on PATH: name the client explicitly.
DOCKER_CLIENT = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for every server a test starts: PR_SET_PDEATHSIG makes the kernel send
    it SIGTERM when the test process dies, so a killed or crashed run leaves nothing behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def as_user_dying_with_parent(uid: int, gid: int) -> Callable[[], None]:
    """``preexec_fn`` that drops to ``uid``/``gid`` first: a credential change clears the
    parent-death signal, so it is set afterwards."""

    def preexec() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        die_with_parent()

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@dataclass
class Registry:
    """A running Distribution registry (filesystem storage, deletes enabled)."""

    host: str
    storage: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def catalog(self) -> list[str]:
        return list(requests.get(f"{self.url}/v2/_catalog", timeout=10).json().get("repositories") or [])

    def tags(self, repo: str) -> list[str]:
        resp = requests.get(f"{self.url}/v2/{repo}/tags/list", timeout=10)
        return list(resp.json().get("tags") or []) if resp.ok else []

    def snapshot(self) -> dict[str, list[str]]:
        """Catalog and tags: what a failed push must leave unchanged."""
        return {repo: sorted(self.tags(repo)) for repo in self.catalog()}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_registry(workdir: Path, extra_config: str = "") -> Registry:
    """Start ``docker-registry serve`` on a free 127.0.0.1 port with storage in ``workdir``."""
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + extra_config
    )
    log = (workdir / "registry.log").open("wb")
    # Distribution reads every REGISTRY_* variable as a configuration override (the
    # tests' REGISTRY_AUTH_FILE, meant for skopeo and podman, would be auth.file).
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent, env=env)
    wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
    return Registry(host=f"127.0.0.1:{port}", storage=storage, proc=proc)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, failing with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc  # type: ignore[no-any-return]


def build_tiny_layout(layout: Path, work: Path, archs: tuple[str, ...] = ("amd64", "arm64"), payload: str = "") -> Path:
    """An OCI layout with one tiny image per architecture, built by umoci (tags = arch names)."""
    run(["umoci", "init", "--layout", str(layout)])
    for arch in archs:
        image = f"{layout}:{arch}"
        bundle = work / f"bundle-{arch}"
        run(["umoci", "new", "--image", image])
        run(["umoci", "unpack", "--image", image, str(bundle)])
        rootfs = bundle / "rootfs"
        (rootfs / "app").mkdir(parents=True, exist_ok=True)
        (rootfs / "app" / "arch.txt").write_text(f"{arch}\n{payload}")
        run(["umoci", "repack", "--no-history", "--image", image, str(bundle)])
        run(["umoci", "config", "--no-history", "--image", image, "--architecture", arch, "--os", "linux",
             "--config.cmd", "/app/run"])
        shutil.rmtree(bundle)
    run(["umoci", "gc", "--layout", str(layout)])
    return layout


def oci_index(layout: Path) -> dict[str, object]:
    return dict(json.loads((layout / "index.json").read_text()))


@dataclass
class DockerEngine:
    """A private dockerd (vfs storage, no bridge/iptables) and the DOCKER_HOST to reach it."""

    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.root}/sock"}

    def docker(self, *args: str, timeout: float = 300, input_text: str | None = None,
               ) -> subprocess.CompletedProcess[str]:
        proc = self.try_docker(*args, timeout=timeout, input_text=input_text)
        if proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def try_docker(self, *args: str, timeout: float = 300, input_text: str | None = None,
                   ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine; the caller checks the outcome."""
        return subprocess.run([DOCKER_CLIENT, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, input=input_text)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["umount", str(self.root / "exec" / "netns" / "default")], capture_output=True, check=False)


def start_dockerd(root: Path, insecure_registry: str) -> DockerEngine | str:
    """Start dockerd with the flags that work on these machines; a reason string when it cannot."""
    if not shutil.which("dockerd") or not shutil.which(DOCKER_CLIENT):
        return "dockerd is not installed (apt-get install docker.io)"
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=vfs",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"),
         "-H", f"unix://{root}/sock", "--insecure-registry", insecure_registry],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )
    engine = DockerEngine(root, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"dockerd exited: {(root / 'dockerd.log').read_text()[-500:]}"
        ok = engine.try_docker("info", timeout=30).returncode == 0
        if ok:
            return engine
        time.sleep(0.5)
    engine.stop()
    return "dockerd did not answer within 60 s"

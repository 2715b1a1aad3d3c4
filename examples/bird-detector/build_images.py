#!/usr/bin/env python3
"""Build the bird-detector runnable images without a Docker engine or Docker Hub.

Produces an OCI image layout (default ``build/oci`` next to this file) with two
tagged images, ``amd64`` and ``arm64``.  Each image has two layers:

1. a Python 3.11 runtime made from Debian bookworm ``.deb`` packages of the
   image's architecture (python3.11-minimal, libpython3.11-minimal,
   libpython3.11-stdlib, base-files and everything they depend on), unpacked
   with ``dpkg-deb`` into a merged-/usr root file system, no maintainer
   scripts run, docs/man pages/locales/test suites removed;
2. the application: ``/app/main.py`` and the pure-Python ``prometheus_client``
   wheel unpacked into ``/app/vendor`` (``PYTHONPATH=/app/vendor``).

The model is *not* in the image: it ships in the bundle's model manifest and is
mounted at ``/app/model`` at run time.

Needs (all from Debian or PyPI, no Docker Hub): python3 >= 3.11, apt-get,
dpkg-deb, GNU tar, umoci, and pip (only on the first run, to fetch the wheel).
Run as root (the layer keeps the root ownership of the unpacked files).

Packages are resolved and fetched by apt-get with a *private* configuration
under ``CACHE/apt/ARCH`` (own sources list, package lists, an empty dpkg status
and ``APT::Architectures=ARCH``): the host's apt state and dpkg architecture
list are not touched, so ``dpkg --add-architecture`` is not needed, and the
dependency closure is what apt would install on an empty system.  Downloaded
``.deb`` files and the wheel stay in the cache, so re-runs need no network;
``--update`` refreshes the package lists (a stale list is refreshed
automatically when a download fails).

Reproducibility: layer tars are written by this script with sorted entries,
mtimes clamped to SOURCE_DATE_EPOCH (default 0 = 1970-01-01T00:00:00Z),
numeric owners and no atime/ctime; umoci gets the same time for the config
``created`` and every history entry.  With the same .deb files and wheel two
builds give the same digests (checked by tests/examples).  What is not pinned:
the Debian package versions (whatever the mirror serves when the lists are
fetched; they are recorded in the build info and in /var/lib/dpkg/status in
the image) and the gzip encoder (umoci's; a different umoci version may
compress differently).

If the inputs (this script, app/main.py, the .deb files, the wheel, the
metadata, the options) are unchanged and the layout still holds what the last
build wrote, nothing is rebuilt.  A JSON build report is written next to the
layout (``OUT.build.json``): digests, sizes, package versions.

Usage:
    python3 build_images.py [--out DIR] [--cache DIR] [--arch amd64 --arch arm64]
                            [--update] [--force]
Then, e.g.:
    skopeo inspect --config oci:build/oci:arm64
    podman run --rm -v $PWD/model:/app/model:ro oci:build/oci:amd64
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_MAIN = HERE / "app" / "main.py"
METADATA = HERE / "ecr.yaml"

# Debian architecture -> facts used to build and check the root file system.
ARCHES = {
    "amd64": {"triplet": "x86_64-linux-gnu", "elf_machine": 62, "lib64": True},
    "arm64": {"triplet": "aarch64-linux-gnu", "elf_machine": 183, "lib64": False},
}
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# What we ask apt for; it adds the recursive Depends/Pre-Depends (no Recommends).
ROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "base-files")
# Packages the resolver is told are already installed, so that they and what
# only they need stay out of the image.  Both are only needed to run
# maintainer scripts / manage packages, which a read-only runtime never does:
#   readline-common Depends "dpkg | install-info"  (dpkg pulls tar, libselinux1, ...)
#   base-files Pre-Depends "awk"
ASSUMED_INSTALLED = (
    {"Package": "dpkg", "Version": "1.21.22"},
    {"Package": "mawk", "Version": "1.3.4.20200120-3.1", "Provides": "awk"},
)

# Pure-Python wheel vendored into /app/vendor, pinned by version and hash.
WHEEL_PROJECT = "prometheus-client"
WHEEL_VERSION = "0.26.0"
WHEEL_FILE = "prometheus_client-0.26.0-py3-none-any.whl"
WHEEL_SHA256 = "fa93d06737aa02bacd05794768508bb97d2fbee28cb3bca04eaae92f0ca953d6"

# Removed from the runtime layer (relative to the root).  /usr/share/doc keeps
# only each package's copyright file.
PRUNE_DIRS = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/share/doc-base",
    "usr/share/binfmts",
    "usr/share/pixmaps",
    "usr/share/applications",
    "usr/share/menu",
    "usr/share/gcc",
    "usr/share/gdb",
    "usr/share/python3",
    "etc/update-motd.d",
    "var/cache",
    "var/log",
)
# Per-architecture dirs: glibc's iconv modules (~8 MiB; CPython does not use iconv).
PRUNE_ARCH_DIRS = ("usr/lib/{triplet}/gconv",)
# Directories with these names under usr/lib/python3.11 are test suites.
PRUNE_PY_DIR_NAMES = {"test", "tests", "idle_test", "__pycache__"}

APP_DIR = "/app"
VENDOR_DIR = "/app/vendor"
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONPATH": VENDOR_DIR,
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "ECR_MODEL_DIR": "/app/model",
}
ENTRYPOINT = ("/usr/bin/python3", "/app/main.py")
USER = "65534:65534"  # nobody:nogroup; the plugin only reads /app and the mounted model

PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
NSSWITCH = "".join(
    f"{db}: {src}\n"
    for db, src in (
        ("passwd", "files"),
        ("group", "files"),
        ("shadow", "files"),
        ("hosts", "files dns"),
        ("networks", "files"),
        ("protocols", "files"),
        ("services", "files"),
    )
)


def log(msg: str) -> None:
    print(f"[build_images] {msg}", file=sys.stderr, flush=True)


class BuildError(Exception):
    pass


def run(cmd: list[str], *, env: dict | None = None, capture: bool = False, quiet: bool = False) -> str:
    """Run a command; raise BuildError with its output on failure."""
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=subprocess.PIPE if (capture or quiet) else sys.stderr,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if proc.returncode != 0:
        out = proc.stdout or ""
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out[-4000:]}")
    return proc.stdout or ""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def need_tools(names: list[str]) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise BuildError(
            "missing tools: " + ", ".join(missing) + " (Debian: apt-get install umoci dpkg tar apt python3-pip)"
        )


# --------------------------------------------------------------------------- metadata


def read_metadata(path: Path) -> dict:
    """The few ecr.yaml fields used for image labels.

    PyYAML (installed with ecr-oci) reads the file when it is importable; otherwise a
    small stdlib parser reads top-level scalars, flow *and* block lists (``authors``),
    flow and block mappings (``source``) and block scalars (``description: >``), so no
    YAML style silently loses a label.
    """
    meta = {
        "name": "bird-detector",
        "version": "0.0.0",
        "description": "",
        "license": "",
        "authors": [],
        "source_url": "",
        "source_revision": "",
    }
    if not path.exists():
        return meta
    text = path.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        document = _parse_small_yaml(text)
    else:
        document = yaml.safe_load(text) or {}
    for key in ("name", "version", "description", "license"):
        if isinstance(document.get(key), str | int | float):
            meta[key] = str(document[key]).strip()
    authors = document.get("authors")
    if isinstance(authors, list):
        meta["authors"] = [str(a) for a in authors]
    source = document.get("source")
    if isinstance(source, dict):
        for sub in ("url", "revision"):
            if source.get(sub) is not None:
                meta[f"source_{sub}"] = str(source[sub])
    return meta


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v.split(" #", 1)[0].strip()


def _parse_small_yaml(text: str) -> dict:
    """Top-level keys of a simple YAML document, without PyYAML (see read_metadata)."""
    out: dict = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*$", lines[i])
        i += 1
        if not m:
            continue
        key, value = m.groups()
        block = []
        while i < len(lines) and (not lines[i].strip() or lines[i][:1] in " \t"):
            if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                block.append(lines[i].strip())
            i += 1
        if value[:1] in ("|", ">"):
            out[key] = ("\n" if value[0] == "|" else " ").join(block)
        elif value.startswith("["):
            out[key] = [_unquote(a) for a in re.findall(r"\"[^\"]*\"|'[^']*'|[^,\[\]\s][^,\[\]]*", value)]
        elif value.startswith("{"):
            pairs = re.findall(r"(\w+):\s*(\"[^\"]*\"|'[^']*'|[^,}]+)", value)
            out[key] = {k: _unquote(v) for k, v in pairs}
        elif value:
            out[key] = _unquote(value)
        elif block and block[0].startswith("- "):
            out[key] = [_unquote(b[2:]) for b in block if b.startswith("- ")]
        elif block:
            out[key] = {k: _unquote(v) for k, v in (b.split(":", 1) for b in block if ":" in b)}
    return out


# --------------------------------------------------------------------------- apt


class Apt:
    """apt-get with a private configuration for one Debian architecture."""

    def __init__(self, cache: Path, arch: str, mirror: str, security_mirror: str, keyring: str):
        self.arch = arch
        self.dir = cache / "apt" / arch
        self.archives = self.dir / "archives"
        self.lists = self.dir / "lists"
        for d in (
            self.archives / "partial",
            self.lists / "partial",
            self.dir / "sources.list.d",
            self.dir / "preferences.d",
            self.dir / "pkgcache",
        ):
            d.mkdir(parents=True, exist_ok=True)
        sources = (
            f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
            f"Architectures: {arch}\nSigned-By: {keyring}\n\n"
            f"Types: deb\nURIs: {security_mirror}\nSuites: {SUITE}-security\nComponents: main\n"
            f"Architectures: {arch}\nSigned-By: {keyring}\n"
        )
        self._write_if_changed(self.dir / "sources.list.d" / "debian.sources", sources)
        stub = "".join(
            f"Package: {p['Package']}\nStatus: install ok installed\nPriority: required\n"
            f"Architecture: {arch}\nVersion: {p['Version']}\n"
            + (f"Provides: {p['Provides']}\n" if "Provides" in p else "")
            + "Maintainer: build_images.py <nobody@example.org>\n"
            "Description: assumed installed (stub, not in the image)\n\n"
            for p in ASSUMED_INSTALLED
        )
        self._write_if_changed(self.dir / "status", stub)
        # apt reads /etc/apt/apt.conf.d first (keeps host proxy settings), then
        # APT_CONFIG, whose settings win.
        conf = f"""\
#clear APT::Architectures;
APT::Architecture "{arch}";
APT::Architectures {{ "{arch}"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::Assume-Yes "true";
Acquire::Languages "none";
Dir::State "{self.dir}";
Dir::State::Lists "{self.lists}";
Dir::State::status "{self.dir / "status"}";
Dir::State::extended_states "{self.dir / "extended_states"}";
Dir::Cache "{self.dir / "pkgcache"}";
Dir::Cache::archives "{self.archives}";
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "{self.dir / "sources.list.d"}";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "{self.dir / "preferences.d"}";
"""
        self.conf = self.dir / "apt.conf"
        self._write_if_changed(self.conf, conf)
        self.env = dict(os.environ, APT_CONFIG=str(self.conf), DEBIAN_FRONTEND="noninteractive", LC_ALL="C")

    @staticmethod
    def _write_if_changed(path: Path, text: str) -> None:
        if not path.exists() or path.read_text() != text:
            path.write_text(text)

    def _sources_id(self) -> str:
        return hashlib.sha256((self.dir / "sources.list.d" / "debian.sources").read_bytes()).hexdigest()

    def have_lists(self) -> bool:
        """Package lists fetched for the current sources (a changed --mirror needs new lists)."""
        stamp = self.dir / "lists.stamp"
        return stamp.exists() and stamp.read_text() == self._sources_id() and any(self.lists.glob("*_Packages*"))

    def update(self) -> None:
        log(f"{self.arch}: apt-get update (private lists in {self.lists})")
        run(["apt-get", "-q", "update", "--error-on=any"], env=self.env, quiet=True)
        (self.dir / "lists.stamp").write_text(self._sources_id())

    def resolve(self) -> list[dict]:
        """Packages apt would install on an empty system: [{name, version, arch, file}]."""
        out = run(["apt-get", "-s", "install", *ROOT_PACKAGES], env=self.env, capture=True)
        pkgs = []
        for line in out.splitlines():
            m = re.match(r"^Inst (\S+) \((\S+) .*\[([a-z0-9]+)\]\)", line)
            if m:
                name, version, arch = m.groups()
                if arch not in (self.arch, "all"):
                    raise BuildError(f"{self.arch}: resolver picked {name}:{arch}")
                fname = f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
                pkgs.append({"name": name, "version": version, "arch": arch, "file": fname})
        if not pkgs:
            raise BuildError(f"{self.arch}: apt resolved no packages:\n{out[-3000:]}")
        return sorted(pkgs, key=lambda p: p["name"])

    def download(self) -> list[dict]:
        """Resolve and fetch into the cache; returns the package list with paths and hashes."""
        if not self.have_lists():
            self.update()
        for attempt in (1, 2):
            try:
                pkgs = self.resolve()
                missing = [p for p in pkgs if not (self.archives / p["file"]).exists()]
                if not missing:
                    break
                log(f"{self.arch}: downloading {len(missing)} of {len(pkgs)} packages into {self.archives}")
                run(["apt-get", "-q", "install", "--download-only", *ROOT_PACKAGES], env=self.env, quiet=True)
                break
            except BuildError as exc:
                if attempt == 2:
                    raise
                # Old versions leave the mirror (security updates): refresh the lists once.
                log(f"{self.arch}: {str(exc).splitlines()[0]}; package lists may be stale, refreshing")
                self.update()
        keep = {p["file"] for p in pkgs}
        for stale in self.archives.glob("*.deb"):
            if stale.name not in keep:
                stale.unlink()
        for p in pkgs:
            path = self.archives / p["file"]
            if not path.exists():
                raise BuildError(f"{self.arch}: {path} missing after download")
            p["path"] = path
            p["sha256"] = sha256_file(path)
        return pkgs


# --------------------------------------------------------------------------- wheel


def fetch_wheel(cache: Path) -> Path:
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = wheels / WHEEL_FILE
    if wheel.exists() and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    log(f"pip download {WHEEL_PROJECT}=={WHEEL_VERSION} into {wheels}")
    with tempfile.TemporaryDirectory() as td:
        req = Path(td) / "requirements.txt"
        req.write_text(f"{WHEEL_PROJECT}=={WHEEL_VERSION} --hash=sha256:{WHEEL_SHA256}\n")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
                "-r",
                str(req),
                "-d",
                str(wheels),
                "--disable-pip-version-check",
            ],
            quiet=True,
        )
    if not wheel.exists() or sha256_file(wheel) != WHEEL_SHA256:
        raise BuildError(f"{wheel}: missing or wrong hash after pip download")
    return wheel


# --------------------------------------------------------------------------- root file systems


def extract_debs(pkgs: list[dict], root: Path, arch: str) -> None:
    """Unpack .debs into a merged-/usr root (bin, sbin, lib[, lib64] -> usr/...)."""
    for d in ("usr/bin", "usr/sbin", "usr/lib"):
        (root / d).mkdir(parents=True, exist_ok=True)
    links = ["bin", "sbin", "lib"] + (["lib64"] if ARCHES[arch]["lib64"] else [])
    for name in links:
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(f"usr/{name}")
    for p in pkgs:
        # `dpkg-deb -x` would replace the /lib -> usr/lib symlink with a
        # directory; GNU tar can keep it.
        deb = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(p["path"])], stdout=subprocess.PIPE)
        tar = subprocess.run(
            ["tar", "-x", "-p", "-C", str(root), "--keep-directory-symlink", "--warning=no-timestamp", "-f", "-"],
            stdin=deb.stdout,
        )
        deb.stdout.close()
        if deb.wait() != 0 or tar.returncode != 0:
            raise BuildError(f"cannot extract {p['path']}")
    for name in links:
        if not (root / name).is_symlink():
            raise BuildError(f"{name} is no longer a symlink after extraction")


def dpkg_status(pkgs: list[dict]) -> str:
    """/var/lib/dpkg/status for the unpacked packages, so image scanners see them."""
    paragraphs = []
    for p in pkgs:
        control = run(["dpkg-deb", "-f", str(p["path"])], capture=True).rstrip("\n")
        lines = control.splitlines()
        lines.insert(1, "Status: install ok installed")
        paragraphs.append("\n".join(lines) + "\n")
    return "\n".join(paragraphs)


def prune(root: Path, arch: str) -> None:
    doc = root / "usr/share/doc"
    if doc.is_dir():
        for pkgdoc in sorted(doc.iterdir()):
            if pkgdoc.is_symlink() or not pkgdoc.is_dir():
                continue
            for entry in pkgdoc.iterdir():
                if entry.name != "copyright":
                    remove(entry)
    for rel in PRUNE_DIRS + tuple(d.format(**ARCHES[arch]) for d in PRUNE_ARCH_DIRS):
        remove(root / rel)
    for pylib in (root / "usr/lib").glob("python3*"):
        for dirpath, dirnames, _ in os.walk(pylib):
            for name in list(dirnames):
                if name in PRUNE_PY_DIR_NAMES:
                    remove(Path(dirpath) / name)
                    dirnames.remove(name)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def check_elf(path: Path, arch: str) -> None:
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise BuildError(f"{path} is not an ELF file")
    machine = int.from_bytes(head[18:20], "little")
    if machine != ARCHES[arch]["elf_machine"]:
        raise BuildError(f"{path}: ELF machine {machine}, expected {ARCHES[arch]['elf_machine']} ({arch})")


def build_runtime_root(pkgs: list[dict], root: Path, arch: str) -> None:
    extract_debs(pkgs, root, arch)
    prune(root, arch)
    (root / "usr/bin/python3").symlink_to("python3.11")
    check_elf(root / "usr/bin/python3.11", arch)
    etc = root / "etc"
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("nsswitch.conf", NSSWITCH)):
        (etc / name).write_text(text)
    status = root / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(dpkg_status(pkgs))
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def build_app_root(wheel: Path, root: Path) -> None:
    app = root / APP_DIR.lstrip("/")
    vendor = root / VENDOR_DIR.lstrip("/")
    (app / "model").mkdir(parents=True)  # mount point for the bundle's model
    vendor.mkdir(parents=True)
    shutil.copyfile(APP_MAIN, app / "main.py")
    (app / "main.py").chmod(0o755)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            target = (vendor / info.filename).resolve()
            if not str(target).startswith(str(vendor.resolve()) + os.sep):
                raise BuildError(f"{wheel}: unsafe path {info.filename}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
            target.chmod(0o644)


def write_layer_tar(root: Path, tar_path: Path, epoch: int) -> None:
    """A reproducible uncompressed layer tar of ``root``'s contents."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            paths.append((full.relative_to(root).as_posix(), full))
    paths.sort(key=lambda item: item[0].encode())
    force_root = os.geteuid() != 0
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
        for arcname, full in paths:
            info = tf.gettarinfo(str(full), arcname)
            info.mtime = min(int(info.mtime), epoch)
            info.uname = info.gname = ""
            if force_root:
                info.uid = info.gid = 0
            if info.isreg():
                with open(full, "rb") as f:
                    tf.addfile(info, f)
            elif info.isdir() or info.issym() or info.islnk():
                tf.addfile(info)
            else:
                raise BuildError(f"unexpected file type in layer: {full}")


# --------------------------------------------------------------------------- umoci


def umoci(*args: str) -> str:
    return run(["umoci", "--log", "error", *args], capture=True)


def build_image(
    layout: Path, tag: str, arch: str, layers: list[tuple[Path, str]], meta: dict, created: str, pkgs: list[dict]
) -> None:
    image = f"{layout}:{tag}"
    umoci("new", "--image", image)
    for tar_path, created_by in layers:
        umoci(
            "raw",
            "add-layer",
            "--image",
            image,
            "--history.created",
            created,
            "--history.created_by",
            created_by,
            "--history.author",
            "build_images.py",
            str(tar_path),
        )
    python = next(p["version"] for p in pkgs if p["name"] == "python3.11-minimal")
    labels = {
        "org.opencontainers.image.title": meta["name"],
        "org.opencontainers.image.description": meta["description"],
        "org.opencontainers.image.version": meta["version"],
        "org.opencontainers.image.authors": ", ".join(meta["authors"]),
        "org.opencontainers.image.licenses": meta["license"],
        "org.opencontainers.image.source": meta["source_url"],
        "org.opencontainers.image.revision": meta["source_revision"],
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.base.name": f"debian:{SUITE} python3.11-minimal={python} (from .deb, no base image)",
    }
    args = [
        "config",
        "--image",
        image,
        "--architecture",
        arch,
        "--os",
        "linux",
        "--created",
        created,
        "--author",
        ", ".join(meta["authors"]) or "unknown",
        "--clear=config.entrypoint",
        "--clear=config.cmd",
        "--clear=config.env",
        "--clear=config.labels",
        "--clear=config.exposedports",
        "--clear=config.volume",
        "--config.user",
        USER,
        "--config.workingdir",
        APP_DIR,
        "--history.created",
        created,
        "--history.created_by",
        "build_images.py: image config",
        "--history.author",
        "build_images.py",
    ]
    for part in ENTRYPOINT:
        args += ["--config.entrypoint", part]
    for key, value in ENV.items():
        args += ["--config.env", f"{key}={value}"]
    for key, value in labels.items():
        if value:
            args += ["--config.label", f"{key}={value}", "--manifest.annotation", f"{key}={value}"]
    umoci(*args)


def layout_summary(layout: Path) -> dict:
    """Per tag: manifest digest and sizes, read back from the layout."""

    def blob(digest: str) -> Path:
        algo, hexd = digest.split(":", 1)
        return layout / "blobs" / algo / hexd

    index = json.loads((layout / "index.json").read_text())
    images = {}
    for desc in index.get("manifests", []):
        tag = desc.get("annotations", {}).get("org.opencontainers.image.ref.name")
        manifest = json.loads(blob(desc["digest"]).read_bytes())
        config = json.loads(blob(manifest["config"]["digest"]).read_bytes())
        images[tag] = {
            "manifest": desc["digest"],
            "config": manifest["config"]["digest"],
            "architecture": config.get("architecture"),
            "os": config.get("os"),
            "layers": [{"digest": lyr["digest"], "size": lyr["size"]} for lyr in manifest["layers"]],
            "compressed_bytes": sum(lyr["size"] for lyr in manifest["layers"]),
        }
    return {"index_sha256": sha256_file(layout / "index.json"), "images": images}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=HERE / "build" / "oci", help="OCI layout to write (default: %(default)s)"
    )
    ap.add_argument(
        "--cache", type=Path, default=HERE / "build" / "cache", help="download cache (default: %(default)s)"
    )
    ap.add_argument(
        "--arch", action="append", choices=sorted(ARCHES), help="architecture to build (repeatable; default: all)"
    )
    ap.add_argument("--update", action="store_true", help="refresh the private apt package lists first")
    ap.add_argument("--force", action="store_true", help="rebuild even if the layout is up to date")
    ap.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror (default: %(default)s)")
    ap.add_argument(
        "--security-mirror", default=DEFAULT_SECURITY_MIRROR, help="Debian security mirror (default: %(default)s)"
    )
    ap.add_argument("--keyring", default=DEFAULT_KEYRING, help="archive keyring (default: %(default)s)")
    ap.add_argument(
        "--source-date-epoch",
        type=int,
        default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
        help="timestamp for files, config and history (default: $SOURCE_DATE_EPOCH or 0)",
    )
    args = ap.parse_args(argv)
    args.arch = sorted(set(args.arch or ARCHES))
    args.out = args.out.resolve()
    args.cache = args.cache.resolve()
    return args


def build(args: argparse.Namespace) -> dict:
    need_tools(["apt-get", "dpkg-deb", "tar", "umoci"])
    os.umask(0o022)
    t0 = time.monotonic()
    epoch = args.source_date_epoch
    created = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = read_metadata(METADATA)
    args.cache.mkdir(parents=True, exist_ok=True)
    info_path = args.out.with_name(args.out.name + ".build.json")

    with open(args.cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wheel = fetch_wheel(args.cache)
        packages = {}
        for arch in args.arch:
            apt = Apt(args.cache, arch, args.mirror, args.security_mirror, args.keyring)
            if args.update:
                apt.update()
            packages[arch] = apt.download()

        inputs = {
            "script": sha256_file(Path(__file__)),
            "app_main": sha256_file(APP_MAIN),
            "wheel": WHEEL_SHA256,
            "metadata": meta,
            "created": created,
            "arches": args.arch,
            "debs": {a: [[p["file"], p["sha256"]] for p in pk] for a, pk in packages.items()},
        }
        fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        if not args.force and info_path.exists() and (args.out / "index.json").exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                old = json.loads(info_path.read_text())
                if old["fingerprint"] == fingerprint and old["index_sha256"] == sha256_file(args.out / "index.json"):
                    log(f"up to date ({time.monotonic() - t0:.1f}s): {args.out}")
                    return old

        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_layout = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
        remove(tmp_layout)
        with tempfile.TemporaryDirectory(prefix="work-", dir=args.cache) as work_s:
            work = Path(work_s)
            umoci("init", "--layout", str(tmp_layout))
            app_root = work / "app-root"
            build_app_root(wheel, app_root)
            app_tar = work / "app.tar"
            write_layer_tar(app_root, app_tar, epoch)
            for arch in args.arch:
                t1 = time.monotonic()
                root = work / f"rootfs-{arch}"
                root.mkdir()
                build_runtime_root(packages[arch], root, arch)
                base_tar = work / f"runtime-{arch}.tar"
                write_layer_tar(root, base_tar, epoch)
                shutil.rmtree(root)
                build_image(
                    tmp_layout,
                    arch,
                    arch,
                    [
                        (
                            base_tar,
                            f"build_images.py: python3.11 runtime from {len(packages[arch])} "
                            f"Debian {SUITE} {arch} packages",
                        ),
                        (app_tar, f"build_images.py: /app/main.py + {WHEEL_FILE} in {VENDOR_DIR}"),
                    ],
                    meta,
                    created,
                    packages[arch],
                )
                base_tar.unlink()
                log(f"{arch}: image built in {time.monotonic() - t1:.1f}s")
            umoci("gc", "--layout", str(tmp_layout))
            # umoci writes blobs and index.json 0600; let non-root users (skopeo, oras) read them.
            for dirpath, _, filenames in os.walk(tmp_layout):
                os.chmod(dirpath, 0o755)
                for name in filenames:
                    os.chmod(os.path.join(dirpath, name), 0o644)

        old_layout = args.out.with_name(f".{args.out.name}.old-{os.getpid()}")
        if args.out.exists():
            args.out.rename(old_layout)
        tmp_layout.rename(args.out)
        remove(old_layout)

        info = {
            "layout": str(args.out),
            "fingerprint": fingerprint,
            "created": created,
            "build_seconds": round(time.monotonic() - t0, 1),
            **layout_summary(args.out),
            "wheel": {"file": WHEEL_FILE, "sha256": WHEEL_SHA256},
            "packages": {
                a: [{k: p[k] for k in ("name", "version", "arch", "sha256")} for p in pk] for a, pk in packages.items()
            },
        }
        info_path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        log(f"built in {info['build_seconds']}s")
        return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        info = build(args)
    except BuildError as exc:
        log(f"error: {exc}")
        return 1
    for tag, img in sorted(info["images"].items()):
        print(
            f"oci:{args.out}:{tag}  {img['os']}/{img['architecture']}  {img['manifest']}  "
            f"{img['compressed_bytes'] / 1e6:.1f} MB compressed"
        )
    print(f"OCI layout: {args.out}")
    print(f"build info: {args.out.with_name(args.out.name + '.build.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build the ECR gateway's OCI image without a Docker engine, reproducibly.

The way ``examples/bird-detector/build_images.py`` builds the example's images (and
with its code: Debian packages fetched by a private apt configuration, unpacked with
``dpkg-deb``, layer tars with sorted entries and clamped mtimes, ``umoci`` for the
image). Two layers:

1. Python 3.11 from Debian bookworm ``.deb`` packages (linux/amd64);
2. ``/app/vendor``: the project's wheel (``pip wheel .``) and its dependencies' wheels,
   pinned in ``requirements.txt`` next to this file (binary wheels only, cp311
   manylinux), unpacked; ``/var/lib/ecr`` owned by the image user (nobody).

Entry point: ``ecr`` (``python3 -c 'from ecr_oci.cli import run; run()'``), so
``IMAGE serve --data-dir /var/lib/ecr --listen 0.0.0.0:5000 ...`` runs the gateway.
The image has no ``docker-registry``: it fronts a registry (``--registry-url``).

With the same .deb files, wheels and SOURCE_DATE_EPOCH two builds give the same
digest. Then ``ecr push`` pushes it like any bundle (``--push REF``; see
deploy/README.md).

    python3 deploy/image/build_gateway_image.py [--out DIR] [--cache DIR] [--push HOST/REPO:VERSION]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLE_BUILDER = ROOT / "examples" / "bird-detector" / "build_images.py"
REQUIREMENTS = HERE / "requirements.txt"
ARCH = "amd64"
PIP_PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64", "linux_x86_64")
VENDOR = "app/vendor"
DATA_DIR = "var/lib/ecr"
USER = "65534:65534"
ENTRYPOINT = ("/usr/bin/python3", "-c", "from ecr_oci.cli import run; run()")
ENV = {"PYTHONPATH": f"/{VENDOR}", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8",
       "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": f"/{DATA_DIR}"}


def example_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_images", EXAMPLE_BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit("pyproject.toml has no version")


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def runtime_closure() -> dict[str, str]:
    """The installed versions of the project's runtime dependencies, transitively (markers for
    this interpreter, requested extras followed): what ``--lock`` pins."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    pinned: dict[str, str] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    # (requirement, the extras its parent was asked for: they decide its marker)
    todo = [(Requirement(r), frozenset({""})) for r in distribution("ecr-oci").requires or []]
    while todo:
        requirement, parent_extras = todo.pop()
        if requirement.marker is not None and not any(requirement.marker.evaluate({"extra": e})
                                                      for e in parent_extras):
            continue
        extras = frozenset(requirement.extras)
        key = (_canonical(requirement.name), extras)
        if key in done:
            continue
        done.add(key)
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            raise SystemExit(f"{requirement.name} is not installed: run `make install` first") from None
        pinned[dist.metadata["Name"]] = dist.version
        todo += [(Requirement(text), extras | {""}) for text in dist.requires or []]
    return pinned


def lock() -> None:
    """Rewrite requirements.txt from the installed (tested) environment."""
    lines = [f"{name}=={version}" for name, version in sorted(runtime_closure().items(), key=lambda i: i[0].lower())]
    header = ("# Pinned runtime dependencies of the gateway image (binary wheels, cp311 manylinux x86_64).\n"
              "# Regenerate: `build_gateway_image.py --lock` (when pyproject.toml's dependencies change).\n")
    REQUIREMENTS.write_text(header + "\n".join(lines) + "\n")


def check_pins() -> None:
    """Every runtime dependency in pyproject.toml is pinned (else the image would lack it)."""
    import tomllib

    from packaging.requirements import Requirement

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {_canonical(line.split("==")[0]) for line in REQUIREMENTS.read_text().splitlines()
              if line and not line.startswith("#")}
    missing = sorted(r.name for r in map(Requirement, declared) if _canonical(r.name) not in pinned)
    if missing:
        raise SystemExit(f"{REQUIREMENTS.name} does not pin {', '.join(missing)}: run with --lock")


def fetch_wheels(cache: Path) -> list[Path]:
    """The project's wheel and the pinned dependency wheels (cached; pip only when missing)."""
    check_pins()
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    own = wheels / "own"
    shutil.rmtree(own, ignore_errors=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "--disable-pip-version-check", "-w", str(own), str(ROOT)], check=True, env=env)
    deps = wheels / "deps"
    stamp = deps / "requirements.stamp"
    if not stamp.exists() or stamp.read_text() != REQUIREMENTS.read_text():
        shutil.rmtree(deps, ignore_errors=True)
        platforms = [arg for p in PIP_PLATFORMS for arg in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary=:all:", *platforms, "--python-version", "3.11", "--implementation", "cp",
                        "--abi", "cp311", "--abi", "abi3", "--abi", "none", "-r", str(REQUIREMENTS),
                        "-d", str(deps)], check=True)
        stamp.write_text(REQUIREMENTS.read_text())
    return sorted(own.glob("*.whl")) + sorted(deps.glob("*.whl"))


def unpack_wheels(wheels: list[Path], root: Path) -> None:
    vendor = root / VENDOR
    vendor.mkdir(parents=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                target = (vendor / info.filename).resolve()
                if not str(target).startswith(str(vendor.resolve()) + os.sep):
                    raise SystemExit(f"{wheel}: unsafe path {info.filename}")
                if info.is_dir():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                target.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
    data = root / DATA_DIR
    data.mkdir(parents=True)
    os.chown(data, 65534, 65534)
    data.chmod(0o700)


def build(out: Path, cache: Path, epoch: int) -> dict[str, str]:
    """Build ``out`` (an OCI layout, tag ``amd64``); returns digests and versions."""
    builder = example_builder()
    for tool in ("umoci", "dpkg-deb", "tar", "apt-get"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed: run `make deps`")
    apt = builder.Apt(cache, ARCH, builder.DEFAULT_MIRROR, builder.DEFAULT_SECURITY_MIRROR, builder.DEFAULT_KEYRING)
    packages = apt.download()
    wheels = fetch_wheels(cache)
    created = f"{datetime.datetime.fromtimestamp(epoch, datetime.UTC):%Y-%m-%dT%H:%M:%SZ}"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="ecr-gw-image-") as tmp:
        work = Path(tmp)
        runtime, app = work / "runtime", work / "app"
        builder.build_runtime_root(packages, runtime, ARCH)
        unpack_wheels(wheels, app)
        layers = []
        for name, root in (("runtime", runtime), ("app", app)):
            tar = work / f"{name}.tar"
            builder.write_layer_tar(root, tar, epoch)
            layers.append(tar)
        image = f"{out}:{ARCH}"
        builder.umoci("init", "--layout", str(out))
        builder.umoci("new", "--image", image)
        for tar, what in zip(layers, ("Debian bookworm python3.11 (.deb)", "ecr-oci wheel and dependencies"),
                             strict=True):
            builder.umoci("raw", "add-layer", "--image", image, "--history.created", created,
                          "--history.created_by", what, "--history.author", "build_gateway_image.py", str(tar))
        version = project_version()
        args = ["config", "--image", image, "--architecture", ARCH, "--os", "linux", "--created", created,
                "--author", "ecr-oci", "--clear=config.entrypoint", "--clear=config.cmd", "--clear=config.env",
                "--clear=config.labels", "--config.user", USER, "--config.workingdir", f"/{DATA_DIR}",
                "--config.exposedports", "5000/tcp", "--history.created", created,
                "--history.created_by", "build_gateway_image.py: image config",
                "--history.author", "build_gateway_image.py"]
        args += [arg for part in ENTRYPOINT for arg in ("--config.entrypoint", part)]
        args += [arg for key, value in ENV.items() for arg in ("--config.env", f"{key}={value}")]
        labels = {"org.opencontainers.image.title": "ecr-gateway", "org.opencontainers.image.version": version,
                  "org.opencontainers.image.created": created, "org.opencontainers.image.licenses": "MIT"}
        args += [arg for key, value in labels.items() for arg in ("--config.label", f"{key}={value}")]
        builder.umoci(*args)
        builder.umoci("gc", "--layout", str(out))
    index = json.loads((out / "index.json").read_text())
    return {"digest": index["manifests"][0]["digest"], "version": version,
            "python": next(p["version"] for p in packages if p["name"] == "python3.11-minimal")}


def bundle_dir(layout: Path, target: Path, version: str) -> Path:
    """An ecr bundle directory holding the image (pushed with ``ecr push`` like any bundle)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "README.md").write_text("The ECR gateway (ecr serve), built by deploy/image/build_gateway_image.py.\n")
    (target / "ecr.yaml").write_text(
        "name: ecr-gateway\n"
        f"version: {version}\n"
        "description: The Edge Code Repository gateway (ecr serve), an OCI registry front end.\n"
        "authors: [\"ecr-oci maintainers <ecr@example.org>\"]\n"
        "license: MIT\n"
        "source: {url: \"https://example.org/ecr-oci.git\", revision: \"main\"}\n"
        "keywords: [registry, gateway]\n"
        "images:\n"
        f"  - {{platform: linux/amd64, from: \"oci:{layout}:{ARCH}\"}}\n"
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "build" / "oci")
    parser.add_argument("--cache", type=Path, default=HERE / "build" / "cache")
    parser.add_argument("--push", metavar="HOST/REPO:VERSION", help="then push it with `ecr push` as a bundle")
    parser.add_argument("--lock", action="store_true", help="first pin requirements.txt to the installed versions")
    args = parser.parse_args(argv)
    if args.lock:
        lock()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    built = build(args.out.resolve(), args.cache.resolve(), epoch)
    print(json.dumps(built))
    if args.push:
        bundle = bundle_dir(args.out.resolve(), args.out.resolve().parent / "bundle", built["version"])
        return subprocess.run(["ecr", "push", str(bundle), args.push], check=False).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Running containers as podman or docker see them: id, name, init PID, image digest, restarts.

Engines are asked through their CLI (``ps`` then one ``inspect``), so no daemon socket or
API version is assumed; podman's global options (storage driver ...) can be given.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    engine: str
    pid: int
    image_digests: tuple[str, ...]  # manifest digests the image was pulled by
    declared_bundle: str | None  # ECR_BUNDLE_DIGEST in its environment (set by `ecr deploy` specs)
    restarts: int


def _json(cmd: list[str], timeout: float = 30) -> Any:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout or "null")
    except ValueError:
        return None


def _declared(env: list[str] | None) -> str | None:
    for item in env or []:
        key, _, value = item.partition("=")
        if key == "ECR_BUNDLE_DIGEST" and _DIGEST.fullmatch(value):
            return value
    return None


def list_containers(engine: list[str]) -> list[Container]:
    """Running containers of ``engine`` (``["podman", ...global options]`` or ``["docker"]``);
    empty when the engine is absent or does not answer."""
    name = "docker" if engine[0].endswith("docker") else "podman"
    proc = subprocess.run([*engine, "ps", "-q", "--no-trunc"], capture_output=True, text=True, timeout=30,
                          check=False) if _which(engine[0]) else None
    ids = proc.stdout.split() if proc is not None and proc.returncode == 0 else []
    if not ids:
        return []
    inspected = _json([*engine, "inspect", *ids]) or []
    image_digests: dict[str, tuple[str, ...]] = {}
    if name == "docker":
        images = sorted({str(c.get("Image")) for c in inspected if c.get("Image")})
        for image in _json([*engine, "image", "inspect", *images]) or []:
            image_digests[str(image.get("Id"))] = tuple(
                m.group(0) for d in image.get("RepoDigests") or [] if (m := _DIGEST.search(str(d))))
    out = []
    for c in inspected:
        state = c.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if pid <= 0:
            continue
        if name == "podman":
            digests = tuple(d for d in [c.get("ImageDigest")] if isinstance(d, str) and _DIGEST.fullmatch(d))
        else:
            digests = image_digests.get(str(c.get("Image")), ())
        out.append(Container(id=str(c.get("Id")), name=str(c.get("Name") or "").lstrip("/"), engine=name, pid=pid,
                             image_digests=digests, declared_bundle=_declared((c.get("Config") or {}).get("Env")),
                             restarts=int(c.get("RestartCount") or 0)))
    return out


def _which(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None

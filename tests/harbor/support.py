"""Helpers for the Harbor tests: real images, and registry content read with plain HTTP."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.harbor import harbor_rules as hr

ACCEPT = ", ".join([hr.OCI_INDEX, hr.OCI_MANIFEST, hr.DOCKER_MANIFEST, hr.DOCKER_LIST])


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG (written from the PNG spec, not by project code)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x20\x80\x40" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def ecr(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "COSIGN_PASSWORD": "pw", **(env or {})}
    proc = subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, input=stdin, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"ecr {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@dataclass
class Http:
    """Plain HTTP reads of a registry (optionally with basic credentials, which the gateway accepts)."""

    base: str
    auth: tuple[str, str] | None = None

    def _get(self, path: str, **kwargs: Any) -> requests.Response:
        resp = requests.get(self.base + path, auth=self.auth, timeout=30, **kwargs)
        if resp.status_code == 401 and self.auth:
            token = self._token(resp.headers.get("WWW-Authenticate", ""))
            resp = requests.get(self.base + path, timeout=30,
                                headers={**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}, **kwargs)
        resp.raise_for_status()
        return resp

    def _token(self, challenge: str) -> str:
        fields = dict(part.split("=", 1) for part in challenge.removeprefix("Bearer ").split(","))
        params = {k: v.strip('"') for k, v in fields.items() if k != "realm"}
        resp = requests.get(fields["realm"].strip('"'), params=params, auth=self.auth, timeout=30)
        resp.raise_for_status()
        return str(resp.json().get("token") or resp.json()["access_token"])

    def manifest(self, repo: str, reference: str) -> tuple[str, bytes, dict[str, Any]]:
        resp = self._get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
        return resp.headers["Content-Type"].split(";")[0], resp.content, json.loads(resp.content)

    def blob(self, repo: str, digest: str) -> bytes:
        return self._get(f"/v2/{repo}/blobs/{digest}").content

    def tags(self, repo: str) -> list[str]:
        return list(self._get(f"/v2/{repo}/tags/list").json().get("tags") or [])

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]]:
        return list(self._get(f"/v2/{repo}/referrers/{digest}", headers={"Accept": hr.OCI_INDEX}).json()
                    .get("manifests") or [])


def write_icon_bundle(root: Path, layout: Path, metadata: dict[str, Any], icon: bytes, name: str = "icon.png") -> Path:
    """A test bundle (tests.conftest.write_bundle) with an icon file next to ecr.yaml."""
    from tests.conftest import write_bundle

    write_bundle(root, layout, {**metadata, "icon": f"art/{name}"})
    (root / "art").mkdir(exist_ok=True)
    (root / "art" / name).write_bytes(icon)
    return root

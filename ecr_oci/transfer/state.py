"""What ``ecr`` remembers between runs, in its cache directory: open upload sessions
(so an interrupted push resumes where the registry stopped) and which repositories of a
registry hold a blob (so a push to a new repository mounts instead of re-sending).

Both are hints: a session the registry forgot, or a blob that moved, costs one request
and the push goes on as if nothing were remembered.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

# Repositories remembered per blob, and blobs per registry: bounded, oldest dropped.
MAX_REPOSITORIES_PER_BLOB = 4
MAX_BLOBS_PER_REGISTRY = 20000


def cache_dir() -> Path:
    """``$ECR_CACHE_DIR``, else ``$XDG_CACHE_HOME/ecr``, else ``~/.cache/ecr``."""
    if env := os.environ.get("ECR_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "ecr"


class _JsonFile:
    """A small JSON document updated read-modify-write under a lock, replaced atomically."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, change: Any) -> None:
        with self._lock:
            data = self.read()
            change(data)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(data, sort_keys=True))
                os.replace(tmp, self.path)
            except OSError:
                pass  # a cache that cannot be written only costs a re-upload


class UploadSessions:
    """Upload session URLs by ``registry/repository@digest``, kept until the blob is complete."""

    def __init__(self, path: Path | None = None) -> None:
        self._file = _JsonFile(path or cache_dir() / "uploads.json")

    @staticmethod
    def _key(registry: str, repository: str, digest: str) -> str:
        return f"{registry}/{repository}@{digest}"

    def get(self, registry: str, repository: str, digest: str) -> str | None:
        value = self._file.read().get(self._key(registry, repository, digest))
        return value if isinstance(value, str) else None

    def put(self, registry: str, repository: str, digest: str, location: str) -> None:
        key = self._key(registry, repository, digest)
        self._file.update(lambda data: data.__setitem__(key, location))

    def forget(self, registry: str, repository: str, digest: str) -> None:
        key = self._key(registry, repository, digest)
        self._file.update(lambda data: data.pop(key, None))


class BlobLocations:
    """Which repositories of a registry were seen holding a blob (pushed, mounted or pulled)."""

    def __init__(self, path: Path | None = None) -> None:
        self._file = _JsonFile(path or cache_dir() / "blob-locations.json")

    def candidates(self, registry: str, digest: str, exclude: str) -> list[str]:
        """Repositories to try mounting ``digest`` from, most recent first."""
        repos = self._file.read().get(registry, {}).get(digest) or []
        return [r for r in reversed(repos) if isinstance(r, str) and r != exclude]

    def record(self, registry: str, repository: str, digests: list[str]) -> None:
        def change(data: dict[str, Any]) -> None:
            blobs: dict[str, list[str]] = data.setdefault(registry, {})
            for digest in digests:
                repos = [r for r in blobs.pop(digest, []) if r != repository] + [repository]
                blobs[digest] = repos[-MAX_REPOSITORIES_PER_BLOB:]  # re-inserted: newest last
            for old in list(blobs)[: max(0, len(blobs) - MAX_BLOBS_PER_REGISTRY)]:
                del blobs[old]

        if digests:
            self._file.update(change)

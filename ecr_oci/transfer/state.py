"""What ``ecr`` remembers between runs, in its cache directory: open upload sessions
(so an interrupted push resumes where the registry stopped), which repositories of a
registry hold a blob (so a push to a new repository mounts instead of re-sending), and
the digests of large files it has read (so an unchanged model is not read again).

All are hints: a session the registry forgot, or a blob that moved, costs one request
and the push goes on as if nothing were remembered; a file whose identity changed is
read again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Repositories remembered per blob, and blobs per registry: bounded, oldest dropped.
MAX_REPOSITORIES_PER_BLOB = 4
MAX_BLOBS_PER_REGISTRY = 20000
# File digests are remembered for files this large (smaller ones cost less to hash than
# to look up), at most this many, oldest dropped.
MIN_REMEMBERED_FILE = 1 << 20
MAX_REMEMBERED_FILES = 5000
# A file whose mtime or ctime is this close to the moment its digest was taken may have
# been changed again within one timestamp tick (coarse clocks, 1-2 s on some filesystems)
# without its stat changing: such an entry is confirmed by hashing (as git's "racily
# clean" index entries are).
RACY_NS = 2_000_000_000


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
    """Upload session URLs by ``registry/repository@KEY``, kept until the blob is complete.

    KEY is the blob's digest, or for bytes hashed as they are sent (digest not known
    yet) the file's identity (:meth:`FileIdentity.key`).
    """

    def __init__(self, path: Path | None = None) -> None:
        self._file = _JsonFile(path or cache_dir() / "uploads.json")

    @staticmethod
    def _key(registry: str, repository: str, key: str) -> str:
        return f"{registry}/{repository}@{key}"

    def get(self, registry: str, repository: str, key: str) -> str | None:
        value = self._file.read().get(self._key(registry, repository, key))
        return value if isinstance(value, str) else None

    def put(self, registry: str, repository: str, key: str, location: str) -> None:
        entry = self._key(registry, repository, key)
        self._file.update(lambda data: data.__setitem__(entry, location))

    def forget(self, registry: str, repository: str, key: str) -> None:
        entry = self._key(registry, repository, key)
        self._file.update(lambda data: data.pop(entry, None))


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


@dataclass(frozen=True)
class FileIdentity:
    """What says a file is unchanged without reading it: path, device, inode, size,
    modification and status-change times (ctime moves on any write, even when mtime
    is set back, as ``tar`` and ``rsync -t`` do)."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """The identity of ``path`` now (raises OSError like ``os.stat``)."""
        st = os.stat(path)
        return cls(str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def key(self) -> str:
        """A string naming exactly this version of the file (upload sessions of unhashed bytes)."""
        return f"file:{self.device}:{self.inode}:{self.size}:{self.mtime_ns}:{self.ctime_ns}"

    def stamp(self) -> list[int]:
        return [self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns]


class FileDigests:
    """The stat cache: digests of large files by :class:`FileIdentity`.

    Read once per instance; :meth:`record` collects, :meth:`save` writes them (one
    read-modify-write of the cache file, merging what other processes wrote).
    """

    def __init__(self, path: Path | None = None) -> None:
        self._file = _JsonFile(path or cache_dir() / "file-digests.json")
        self._entries: dict[str, Any] | None = None
        self._new: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def lookup(self, identity: FileIdentity) -> tuple[str, bool] | None:
        """The digest remembered for this exact file, and whether it is settled.

        An unsettled (racy) entry names the probable digest: confirm it by hashing.
        """
        with self._lock:
            if self._entries is None:
                self._entries = self._file.read()
            entry = self._new.get(identity.path) or self._entries.get(identity.path)
        if not isinstance(entry, list) or len(entry) != 7 or entry[:5] != identity.stamp():
            return None
        digest, seen_at_ns = entry[5], entry[6]
        if not isinstance(digest, str) or not isinstance(seen_at_ns, int):
            return None
        settled = max(identity.mtime_ns, identity.ctime_ns) + RACY_NS <= seen_at_ns
        return digest, settled

    def record(self, identity: FileIdentity, digest: str, seen_at_ns: int) -> None:
        """Remember ``digest`` for ``identity``, whose stat was taken at ``seen_at_ns``
        (``time.time_ns()``) before its bytes were read."""
        if identity.size >= MIN_REMEMBERED_FILE:
            with self._lock:
                self._new[identity.path] = [*identity.stamp(), digest, seen_at_ns]

    def save(self) -> None:
        with self._lock:
            new, self._new = self._new, {}
        if not new:
            return

        def change(data: dict[str, Any]) -> None:
            for path, entry in new.items():
                data.pop(path, None)
                data[path] = entry  # re-inserted: newest last
            for old in list(data)[: max(0, len(data) - MAX_REMEMBERED_FILES)]:
                del data[old]

        self._file.update(change)

    def digest_of(self, path: Path) -> tuple[str, int]:
        """``(digest, size)`` of a file: remembered if unchanged, else read (and remembered).

        Raises:
            OSError: the file cannot be read.
        """
        from ecr_oci.digest import sha256_file

        seen_at = time.time_ns()
        identity = FileIdentity.of(path)
        known = self.lookup(identity)
        if known and known[1]:
            return known[0], identity.size
        digest, size = sha256_file(path)
        if FileIdentity.of(path) == identity and size == identity.size:
            self.record(identity, digest, seen_at)  # not if it changed while being read
        return digest, size

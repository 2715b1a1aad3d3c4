"""Reproducible tar.gz archives: sorted entries, fixed mtimes, no owners, no gzip timestamp.

The same directory always yields the same bytes, so the same digest.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

EPOCH = 0
IGNORED = frozenset({".git", "__pycache__", ".ecr-cache", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


def _entries(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED)
        base = Path(dirpath)
        out += [base / d for d in dirnames]
        out += [base / f for f in sorted(filenames) if not f.endswith(".pyc")]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _tarinfo(path: Path, arcname: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    st = path.lstat()
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_symlink():
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
    elif path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & 0o100 else 0o644
    return info


def write_archive(root: Path, dest: Path, *, prefix: str = "") -> None:
    """Write ``root`` (a directory or one file) as a reproducible tar.gz at ``dest``.

    Args:
        prefix: a directory name every entry is placed under (e.g. ``source``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as raw:
        _write(root, raw, prefix)


def _write(root: Path, raw: BinaryIO, prefix: str) -> None:
    # mtime=0 and no file name keep the gzip header free of build-time facts.
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            base = root if root.is_dir() else root.parent
            for path in _entries(root):
                rel = path.relative_to(base).as_posix()
                arcname = f"{prefix}/{rel}" if prefix else rel
                info = _tarinfo(path, arcname)
                if info.isreg():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)

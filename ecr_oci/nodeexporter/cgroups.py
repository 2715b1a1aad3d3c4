"""Resource counters of one container from its cgroup (v2, or the v1 hierarchies).

The cgroup is found from the container's init process (``/proc/PID/cgroup``), which works
the same for podman, docker and a kubelet's containers. Units: seconds and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupStats:
    cpu_seconds: float
    memory_working_set_bytes: int  # usage minus inactive file cache (what the OOM killer weighs)
    memory_peak_bytes: int | None  # None: the kernel does not track it (cgroup v2 before 5.19)
    io_read_bytes: int
    io_write_bytes: int


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text.split()[0]) if text else None
    except (ValueError, IndexError):
        return None


def _stat_map(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def cgroup_paths(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    """controller (``""`` for the v2 unified hierarchy) -> cgroup path of process ``pid``."""
    out: dict[str, str] = {}
    for line in (_read(proc / str(pid) / "cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def is_unified(root: Path = CGROUP_ROOT) -> bool:
    """True on a pure cgroup v2 host."""
    return (root / "cgroup.controllers").exists()


def read_stats(pid: int, *, root: Path = CGROUP_ROOT, proc: Path = Path("/proc")) -> CgroupStats | None:
    """The counters of the cgroup ``pid`` runs in; None when they cannot be read (gone, no access)."""
    paths = cgroup_paths(pid, proc)
    if is_unified(root):
        return _v2(root / paths.get("", "/").lstrip("/")) if "" in paths else None
    return _v1(root, paths)


def _v2(cgroup: Path) -> CgroupStats | None:
    cpu = _stat_map(cgroup / "cpu.stat")
    current = _int(cgroup / "memory.current")
    if "usage_usec" not in cpu or current is None:
        return None
    memory = _stat_map(cgroup / "memory.stat")
    read = write = 0
    for line in (_read(cgroup / "io.stat") or "").splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        read += int(fields.get("rbytes", 0))
        write += int(fields.get("wbytes", 0))
    return CgroupStats(cpu_seconds=cpu["usage_usec"] / 1e6,
                       memory_working_set_bytes=max(0, current - memory.get("inactive_file", 0)),
                       memory_peak_bytes=_int(cgroup / "memory.peak"), io_read_bytes=read, io_write_bytes=write)


def _v1(root: Path, paths: dict[str, str]) -> CgroupStats | None:
    cpuacct = root / "cpuacct" / paths.get("cpuacct", "/").lstrip("/")
    memory = root / "memory" / paths.get("memory", "/").lstrip("/")
    blkio = root / "blkio" / paths.get("blkio", "/").lstrip("/")
    usage_ns = _int(cpuacct / "cpuacct.usage")
    usage = _int(memory / "memory.usage_in_bytes")
    if usage_ns is None or usage is None or "cpuacct" not in paths or "memory" not in paths:
        return None
    stat = _stat_map(memory / "memory.stat")
    read = write = 0
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
        text = _read(blkio / name)
        if text:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[2].isdigit():
                    read += int(parts[2]) if parts[1] == "Read" else 0
                    write += int(parts[2]) if parts[1] == "Write" else 0
            break
    return CgroupStats(cpu_seconds=usage_ns / 1e9,
                       memory_working_set_bytes=max(0, usage - stat.get("total_inactive_file", 0)),
                       memory_peak_bytes=_int(memory / "memory.max_usage_in_bytes"),
                       io_read_bytes=read, io_write_bytes=write)

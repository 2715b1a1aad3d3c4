"""The node exporter's cgroup readers on both layouts (v2 and the v1 hierarchies)."""

from __future__ import annotations

from pathlib import Path

from ecr_oci.nodeexporter.cgroups import read_stats


def test_cgroup_v2_and_v1_files_are_read(tmp_path: Path) -> None:
    """Parsing both layouts (this machine runs one of them; the real container test covers that one)."""
    proc = tmp_path / "proc" / "42"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/kubepods/pod1/c1\n")
    v2 = tmp_path / "v2"
    group = v2 / "kubepods" / "pod1" / "c1"
    group.mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory io\n")
    (group / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (group / "memory.current").write_text("10485760\n")
    (group / "memory.stat").write_text("anon 8000000\ninactive_file 2097152\n")
    (group / "memory.peak").write_text("20971520\n")
    (group / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n259:0 rbytes=1 wbytes=0\n")
    stats = read_stats(42, root=v2, proc=tmp_path / "proc")
    assert stats is not None
    assert (stats.cpu_seconds, stats.memory_working_set_bytes, stats.memory_peak_bytes,
            stats.io_read_bytes, stats.io_write_bytes) == (2.5, 8388608, 20971520, 4097, 8192)

    (proc / "cgroup").write_text("4:memory:/libpod/c2\n3:cpu,cpuacct:/libpod/c2\n2:blkio:/libpod/c2\n")
    v1 = tmp_path / "v1"
    for controller, files in {
        "cpuacct": {"cpuacct.usage": "1500000000\n"},
        "memory": {"memory.usage_in_bytes": "3000\n", "memory.max_usage_in_bytes": "5000\n",
                   "memory.stat": "cache 100\ntotal_inactive_file 1000\n"},
        "blkio": {"blkio.throttle.io_service_bytes": "8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n"},
    }.items():
        (v1 / controller / "libpod" / "c2").mkdir(parents=True)
        for name, text in files.items():
            (v1 / controller / "libpod" / "c2" / name).write_text(text)
    stats = read_stats(42, root=v1, proc=tmp_path / "proc")
    assert stats is not None
    assert (stats.cpu_seconds, stats.memory_working_set_bytes, stats.memory_peak_bytes,
            stats.io_read_bytes, stats.io_write_bytes) == (1.5, 2000, 5000, 10, 20)
    assert read_stats(43, root=v1, proc=tmp_path / "proc") is None  # no such process

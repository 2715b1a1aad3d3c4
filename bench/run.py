#!/usr/bin/env python3
"""Transfer benchmark: ``ecr push``/``ecr pull`` against skopeo and oras-py.

One run starts a CNCF Distribution on a free 127.0.0.1 port (``tests/support.py``),
writes one file of random bytes (512 MiB; ``ECR_BENCH_MIB`` or ``--mib`` overrides)
and moves those same bytes, as one uncompressed blob, with every tool:

    push  ecr     ``ecr push --quiet``  of a bundle whose model is that file
          skopeo  ``skopeo copy --preserve-digests oci:LAYOUT docker://…`` of an image
                  whose one layer (uncompressed media type) is it: no recompression
          oras    oras-py ``OrasClient(insecure=True).push(files=[file])``
    pull  ecr     ``ecr pull --model-only -o DIR``
          skopeo  ``skopeo copy docker://… oci:DIR`` (uncompressed layers accepted)
          oras    oras-py ``OrasClient(insecure=True).pull(outdir=DIR)``

Every tool runs as its own process (interpreter start-up included, as a user sees
it; ecr's byte code compiled first, as an install has it), with an empty HOME (no
logins), and pushes into a repository of its own named
per round, so nothing is skipped or mounted: ecr's and skopeo's own reports are
checked for that, and the registry for the blob, unchanged. Pulled copies are
checked (size and digest, untimed) and deleted.

Disk and memory: each round gets a fresh registry whose storage is deleted at the end
of the round. The registry stores the blob once whatever the number of repositories,
so a round holds about the payload (hard-linked into the ecr bundle and the skopeo
layout), the stored blob, one upload in flight and one pulled copy: ~4x the payload.
By default all of it lives on /dev/shm (see ``choose_tmp`` for why; ``--tmp DIR``
or ``ECR_BENCH_TMP`` for a disk, where the page cache is then warmed before each step,
see ``warm_page_cache``). ``sync`` runs (untimed) before every timed step.

Rounds: ``ECR_BENCH_REPEAT`` or ``--repeat`` (default 5), tool order rotating per
round; the median round counts. Prints a table and writes ``bench-results/bench.json``.
The target (issue 10): ecr's median time within 5% of the faster of skopeo and oras-py,
i.e. ``ecr / fastest other`` at most 1.05 per operation: PASS or MISS. The best-round
ratio is printed too, and the CPU each step cost the tool, the registry and everything
else on the machine ("other cpu": other jobs; a warning says when it was high, as the
wall times are then inflated).

Selecting cases: ``--only TOKEN[,TOKEN...]``; a token is a conjunction of an op
(push, pull), a tool (ecr, skopeo, oras, ecr-NAME) and ``@endpoint`` (registry), each
optional: ``--only push``, ``--only ecr,skopeo``, ``--only pull:ecr``, ``--only
@registry``. A case runs if any token matches it. A selected pull whose push is not
selected still pushes first (not reported).

Comparing ecr versions: ``--ecr-variant NAME=COMMAND`` (repeatable) times COMMAND as
tool ``ecr-NAME`` in the same rounds, e.g. a patched copy of the package:
``--ecr-variant "big=env PYTHONPATH=/tmp/copy python3 -c 'from ecr_oci.cli import run; run()'"``.
``--py-spy`` records ecr under py-spy (speedscope files in bench-results/profiles/).

Adding an endpoint (the gateway in front of the registry): write a factory
``(processes, registry, workdir, exit_stack) -> Endpoint`` and add it to
``ENDPOINTS`` (see the comment there); every tool then also runs against it
(``--endpoints registry,gateway``), with its server's CPU reported and one verdict
per operation and endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import Registry, build_tiny_layout, start_registry  # noqa: E402

TARGET_RATIO = 1.05
QUIET = 0.10  # a step is "quiet" when other processes used at most this share of the machine
OPS = ("push", "pull")
TOOLS = ("ecr", "skopeo", "oras")
RESULTS_DIR = ROOT / "bench-results"
STEP_TIMEOUT = 900  # seconds for one tool invocation
MIB = 1 << 20
TAG = "bench"
ECR_VERSION = "1.0.0"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"  # uncompressed: nobody recompresses


# --- results model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where the tools send their requests: the registry itself, later the gateway."""

    name: str
    host: str  # host:port, served over plain http on loopback
    pids: tuple[int, ...] = ()  # its own server processes (a gateway), whose CPU is reported with the registry's
    credentials: tuple[str, str] | None = None  # (user, password) when it wants a login

    def ecr_args(self) -> list[str]:
        return ["--username", self.credentials[0]] if self.credentials else []

    def env(self) -> dict[str, str]:
        """Environment for the tools: ecr reads ECR_PASSWORD, bench/oras_tool.py ECR_BENCH_*."""
        if not self.credentials:
            return {}
        user, password = self.credentials
        return {"ECR_PASSWORD": password, "ECR_BENCH_USERNAME": user, "ECR_BENCH_PASSWORD": password}

    def skopeo_args(self, side: str) -> list[str]:
        """``--src-creds``/``--dest-creds`` (side ``src``/``dest``) when it wants a login."""
        return [f"--{side}-creds", ":".join(self.credentials)] if self.credentials else []


@dataclass
class Sample:
    """One timed tool invocation.

    ``tool_cpu_s``: user+system CPU of the tool's process(es); ``server_cpu_s``: the
    registry's CPU over the same interval (both for "where did the time go");
    ``other_cpu_s``: everything else the machine ran meanwhile: other users' jobs, and
    kernel threads (write-back, free page reporting) some of which the step itself caused.
    """

    op: str
    tool: str
    endpoint: str
    round: int
    seconds: float
    nbytes: int
    tool_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # CPU the rest of the machine used meanwhile (other users' jobs)

    @property
    def mib_s(self) -> float:
        return self.nbytes / MIB / self.seconds

    @property
    def quiet(self) -> bool:
        """The rest of the machine used at most QUIET of its CPU during this step."""
        return self.other_cpu_s <= QUIET * self.seconds * (os.cpu_count() or 1)


@dataclass
class Case:
    """All samples of one (op, tool, endpoint)."""

    op: str
    tool: str
    endpoint: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def min_s(self) -> float:
        return min(s.seconds for s in self.samples)

    @property
    def quiet(self) -> list[Sample]:
        return [s for s in self.samples if s.quiet]

    @property
    def quiet_median_s(self) -> float | None:
        quiet = self.quiet
        return statistics.median(s.seconds for s in quiet) if quiet else None

    @property
    def mib_s(self) -> float:
        return self.samples[0].nbytes / MIB / self.median_s

    def as_json(self) -> dict[str, Any]:
        seconds = [s.seconds for s in self.samples]
        return {
            "op": self.op,
            "tool": self.tool,
            "endpoint": self.endpoint,
            "bytes": self.samples[0].nbytes,
            "runs": len(seconds),
            "seconds": [round(s, 4) for s in seconds],
            "median_s": round(self.median_s, 4),
            "min_s": round(min(seconds), 4),
            "max_s": round(max(seconds), 4),
            "median_mib_s": round(self.mib_s, 1),
            "median_tool_cpu_s": round(statistics.median(s.tool_cpu_s for s in self.samples), 3),
            "median_registry_cpu_s": round(statistics.median(s.server_cpu_s for s in self.samples), 3),
            "median_other_cpu_s": round(statistics.median(s.other_cpu_s for s in self.samples), 3),
        }


@dataclass
class Verdict:
    """ecr (or an ecr variant) against the fastest other tool for one op and endpoint."""

    op: str
    endpoint: str
    tool: str
    ecr_s: float | None
    best_tool: str | None
    best_s: float | None
    ecr_min_s: float | None = None  # fastest round of ecr
    best_min_s: float | None = None  # fastest round of any other tool
    ecr_quiet_s: float | None = None  # median of ecr's quiet rounds (see Sample.quiet)
    quiet_tool: str | None = None
    best_quiet_s: float | None = None  # the fastest other tool by median of its quiet rounds
    quiet_counts: tuple[int, int] = (0, 0)

    @property
    def quiet_ratio(self) -> float | None:
        """The ratio over the rounds the rest of the machine left alone (None without any)."""
        if self.ecr_quiet_s is None or self.best_quiet_s is None:
            return None
        return self.ecr_quiet_s / self.best_quiet_s

    @property
    def min_ratio(self) -> float | None:
        """Best round against best round: less sensitive to other load on the machine."""
        if self.ecr_min_s is None or self.best_min_s is None:
            return None
        return self.ecr_min_s / self.best_min_s

    @property
    def ratio(self) -> float | None:
        if self.ecr_s is None or self.best_s is None:
            return None
        return self.ecr_s / self.best_s

    @property
    def status(self) -> str:
        if self.ratio is None:
            return "n/a"
        return "PASS" if self.ratio <= TARGET_RATIO else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "endpoint": self.endpoint,
            "tool": self.tool,
            "ecr_median_s": self.ecr_s,
            "fastest_other": self.best_tool,
            "fastest_other_median_s": self.best_s,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "min_ratio": None if self.min_ratio is None else round(self.min_ratio, 3),
            "quiet_ratio": None if self.quiet_ratio is None else round(self.quiet_ratio, 3),
            "quiet_vs": self.quiet_tool,
            "quiet_rounds": list(self.quiet_counts),
            "target": TARGET_RATIO,
            "status": self.status,
        }


class Results:
    def __init__(self) -> None:
        self.cases: dict[tuple[str, str, str], Case] = {}

    def add(self, sample: Sample) -> None:
        key = (sample.op, sample.tool, sample.endpoint)
        self.cases.setdefault(key, Case(*key)).samples.append(sample)

    def verdicts(self) -> list[Verdict]:
        out = []
        for endpoint in dict.fromkeys(c.endpoint for c in self.cases.values()):
            for op in OPS:
                mine = {c.tool: c for c in self.cases.values() if c.op == op and c.endpoint == endpoint}
                if not mine:
                    continue
                others = [c for t, c in mine.items() if not is_ecr(t)]
                best = min(others, key=lambda c: c.median_s) if others else None
                best_min = min((c.min_s for c in others), default=None)
                quiet_others = [c for c in others if c.quiet_median_s is not None]
                best_quiet = min(quiet_others, key=lambda c: c.quiet_median_s or 0.0) if quiet_others else None
                for tool in [t for t in mine if is_ecr(t)] or ["ecr"]:
                    ecr = mine.get(tool)
                    out.append(Verdict(
                        op, endpoint, tool, ecr.median_s if ecr else None,
                        best.tool if best else None, best.median_s if best else None,
                        ecr.min_s if ecr else None, best_min,
                        ecr.quiet_median_s if ecr else None,
                        best_quiet.tool if best_quiet else None,
                        best_quiet.quiet_median_s if best_quiet else None,
                        (len(ecr.quiet) if ecr else 0, len(best_quiet.quiet) if best_quiet else 0)))
        return out


def is_ecr(tool: str) -> bool:
    """``ecr`` itself, or a variant of it given with ``--ecr-variant NAME=CMD`` (tool ``ecr-NAME``)."""
    return tool == "ecr" or tool.startswith("ecr-")


# --- selection ---------------------------------------------------------------------------


def parse_only(text: str | None, endpoints: list[str], tools: list[str]) -> Callable[[str, str, str], bool]:
    """``--only`` as a predicate on (op, tool, endpoint)."""
    if not text:
        return lambda op, tool, endpoint: True
    tokens = []
    for raw in (t.strip() for t in text.split(",")):
        if not raw:
            continue
        names, _, endpoint = raw.partition("@")
        want: dict[str, str] = {}
        if endpoint:
            if endpoint not in endpoints:
                raise SystemExit(f"--only: unknown endpoint {endpoint!r} (known: {', '.join(endpoints)})")
            want["endpoint"] = endpoint
        for name in filter(None, names.split(":")):
            if name in OPS:
                want["op"] = name
            elif name in tools:
                want["tool"] = name
            else:
                raise SystemExit(f"--only: {name!r} is neither an op ({', '.join(OPS)}) "
                                 f"nor a tool ({', '.join(tools)})")
        tokens.append(want)

    def selected(op: str, tool: str, endpoint: str) -> bool:
        case = {"op": op, "tool": tool, "endpoint": endpoint}
        return any(all(case[k] == v for k, v in want.items()) for want in tokens)

    return selected


# --- processes and clean-up --------------------------------------------------------------


@dataclass
class Timing:
    seconds: float  # wall clock, process start to exit
    cpu_s: float  # user+system CPU of the process (and its children)
    output: str = ""
    server_cpu_s: float = 0.0  # CPU of the watched server processes (registry, gateway) meanwhile
    machine_cpu_s: float = 0.0  # busy CPU of the whole machine meanwhile


def machine_busy_cpu() -> float:
    """CPU seconds all CPUs spent busy since boot (``/proc/stat``; includes steal)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def process_cpu(pid: int) -> float:
    """CPU seconds (user+system) a running process has used so far (0 when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Processes:
    """Every child this script starts, so an exit or Ctrl-C stops them all."""

    def __init__(self) -> None:
        self.live: set[subprocess.Popen[bytes]] = set()
        self.registries: list[Registry] = []
        self.watched: list[int] = []  # server pids whose CPU each timed run reports
        self.env = dict(os.environ)

    def isolate(self, home: Path) -> None:
        """No developer logins or tool configs: an empty HOME and auth files."""
        (home / ".docker").mkdir(parents=True, exist_ok=True)
        (home / ".docker" / "config.json").write_text('{"auths": {}}')
        (home / "auth.json").write_text('{"auths": {}}')
        self.env.update(HOME=str(home), DOCKER_CONFIG=str(home / ".docker"),
                        REGISTRY_AUTH_FILE=str(home / "auth.json"), NO_COLOR="1")
        # As installed: Python reads byte code an install compiled (see compile_ecr), not
        # the sources again in every run (PYTHONDONTWRITEBYTECODE=1 on these machines).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def compile_ecr(self) -> None:
        """Byte-compile the ecr package the timed runs import, as ``pip install`` does:
        without it a fresh checkout's ``ecr`` compiles its modules in every timed run
        (~0.1 s of a push's start). Variants (``--ecr-variant``) write theirs in their
        first run."""
        script = "import compileall, ecr_oci, os; compileall.compile_dir(os.path.dirname(ecr_oci.__file__), quiet=1)"
        subprocess.run([sys.executable, "-c", script], env=self.env, cwd=self.env["HOME"], check=True)

    def run(self, cmd: list[str], what: str, env: dict[str, str] | None = None) -> Timing:
        """Run ``cmd`` (``env`` added to the isolated environment); returns its timing and output.

        Raises:
            RuntimeError: it failed (with the end of its output).
        """
        servers_before = sum(process_cpu(pid) for pid in self.watched)
        machine_before = machine_busy_cpu()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # cwd: the isolated home, not the checkout (a `python -c` variant would import the
        # checkout's ecr_oci before its PYTHONPATH copy: sys.path starts with the cwd)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                                stdin=subprocess.DEVNULL, cwd=self.env.get("HOME"))
        self.live.add(proc)
        try:
            output, _ = proc.communicate(timeout=STEP_TIMEOUT)
        finally:
            self.live.discard(proc)
            if proc.poll() is None:
                _stop(proc)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine = machine_busy_cpu() - machine_before
        servers = sum(process_cpu(pid) for pid in self.watched) - servers_before
        text = output.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return Timing(elapsed, cpu, text, servers, machine)

    def start_registry(self, workdir: Path) -> Registry:
        try:
            reg = start_registry(workdir)
        except BaseException:
            # It did not answer in time, or Ctrl-C came while waiting: stop the process
            # start_registry left running (our child, found by its config path).
            for pid in _children_running(str(workdir / "config.yml")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            raise
        self.registries.append(reg)
        return reg

    def stop_registry(self, reg: Registry) -> None:
        self.registries = [r for r in self.registries if r is not reg]
        reg.stop()

    def start_server(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A long-running helper (the gateway, say), stopped by ``stop_server`` or at exit."""
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **(env or {})})
        self.live.add(proc)
        return proc

    def stop_server(self, proc: subprocess.Popen[bytes]) -> None:
        self.live.discard(proc)
        _stop(proc)

    def stop_all(self) -> None:
        for proc in list(self.live):
            _stop(proc)
        self.live.clear()
        for reg in list(self.registries):
            reg.stop()
        self.registries.clear()


def _children_running(needle: str) -> list[int]:
    """Pids of this process's children whose command line contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and needle in cmdline:
            found.append(int(entry.name))
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- the workload ------------------------------------------------------------------------


@dataclass
class Workload:
    """The same bytes, in the shape each tool pushes."""

    data: Path  # the random file
    size: int
    digest: str
    ecr_bundle: Path  # bundle dir: ecr.yaml, model/weights.bin (hard link), images/
    oci_layout: Path  # OCI layout whose one image's one layer is the file (hard link)


def write_random(path: Path, size: int) -> str:
    """``size`` random bytes; returns their digest.

    The first byte is 0 so no tool can take the start for a gzip/zstd/xz/bzip2 header.
    """
    h = hashlib.sha256()
    left = size
    with path.open("wb") as fh:
        first = True
        while left:
            n = min(left, 16 * MIB)
            chunk = os.urandom(n)
            if first:
                chunk, first = b"\0" + chunk[1:], False
            h.update(chunk)
            fh.write(chunk)
            left -= n
    return "sha256:" + h.hexdigest()


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _put_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_oci_layout(layout: Path, data: Path, digest: str, size: int) -> None:
    """One linux/amd64 image whose only layer is ``data`` (uncompressed layer type)."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    os.link(data, blobs / digest.split(":", 1)[1])
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest]},
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **_put_blob(layout, _canonical(config))}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [{"mediaType": LAYER_TYPE, "digest": digest, "size": size}],
    }
    manifest_desc = {"mediaType": manifest["mediaType"], **_put_blob(layout, _canonical(manifest)),
                     "platform": {"architecture": "amd64", "os": "linux"},
                     "annotations": {"org.opencontainers.image.ref.name": TAG}}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def build_ecr_bundle(root: Path, data: Path, work: Path) -> None:
    """A minimal valid bundle: one tiny linux/amd64 image (umoci) and the model file."""
    (root / "model").mkdir(parents=True)
    os.link(data, root / "model" / "weights.bin")
    build_tiny_layout(root / "images", work, archs=("amd64",))
    (root / "ecr.yaml").write_text(
        "name: bench-model\n"
        f"version: {ECR_VERSION}\n"
        "description: Transfer benchmark bundle (random model bytes).\n"
        "authors: [Bench <bench@example.org>]\n"
        "license: MIT\n"
        "model: [model/weights.bin]\n"
        "images:\n  - platform: linux/amd64\n    from: oci:images:amd64\n"
    )


def prepare(work: Path, size: int) -> Workload:
    data_dir = work / "data"
    data_dir.mkdir()
    data = data_dir / "weights.bin"
    digest = write_random(data, size)
    build_oci_layout(work / "layout", data, digest, size)
    build_ecr_bundle(work / "bundle", data, work / "umoci")
    return Workload(data=data, size=size, digest=digest, ecr_bundle=work / "bundle", oci_layout=work / "layout")


# --- the tools ---------------------------------------------------------------------------


@dataclass
class Context:
    procs: Processes
    work: Workload
    scratch: Path  # per-round directory for pulled copies
    profile_dir: Path | None = None  # wrap ecr in py-spy record (--py-spy)
    warm_factor: float = 2.0  # page cache warmed before each step, in payloads (0: off)
    ecr_commands: dict[str, list[str]] = field(default_factory=dict)  # tool name -> command

    @property
    def tools(self) -> list[str]:
        return [*self.ecr_commands, *(t for t in TOOLS if t != "ecr")]

    def ecr(self, tool: str, *args: str, label: str) -> list[str]:
        cmd = [*self.ecr_commands[tool], *args]
        if self.profile_dir is None:
            return cmd
        out = self.profile_dir / f"{tool}-{label}.speedscope.json"
        return ["py-spy", "record", "--rate", "250", "--format", "speedscope", "-o", str(out), "--", *cmd]


def installed_ecr() -> list[str]:
    """The ``ecr`` script next to this interpreter (no pyenv shim in the timing), else on PATH."""
    ecr_bin = Path(sys.executable).with_name("ecr")
    return [str(ecr_bin) if ecr_bin.exists() else shutil.which("ecr") or "ecr"]


def repository(tool: str, endpoint: Endpoint, rnd: int) -> str:
    """A repository per endpoint, tool and round (registry names are lowercase)."""
    return f"bench/{endpoint.name}-{tool}-r{rnd}".lower()


def bench_push(tool: str, endpoint: Endpoint, ctx: Context, repo: str, rnd: int) -> Timing:
    """Push the workload's bytes with ``tool`` to ``endpoint``/``repo``; returns its timing.

    Raises RuntimeError when the tool fails or reports that it did not upload the blob.
    """
    work = ctx.work
    ref = f"{endpoint.host}/{repo}"
    if is_ecr(tool):
        # A new file each time, as for the other tools: an empty ecr cache (no stat cache
        # entry for the model, no remembered blob locations or sessions) per push.
        cache = ctx.scratch / f"ecr-cache-{tool}"
        shutil.rmtree(cache, ignore_errors=True)
        timing = ctx.procs.run(
            ctx.ecr(tool, "push", "--quiet", *endpoint.ecr_args(), str(work.ecr_bundle), f"{ref}:{ECR_VERSION}",
                    label=f"push-r{rnd}"),
            "ecr push", {**endpoint.env(), "ECR_CACHE_DIR": str(cache)})
        if " 0 mounted, 0 already present" not in timing.output:
            raise RuntimeError(f"ecr push reused blobs, the timing is not an upload:\n{timing.output}")
    elif tool == "skopeo":
        # skopeo remembers where it saw blobs (its blob-info cache) and mounts from there;
        # a fresh registry per round and per-round repositories leave nothing to mount.
        timing = ctx.procs.run(
            ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "--preserve-digests",
             *endpoint.skopeo_args("dest"), f"oci:{work.oci_layout}:{TAG}", f"docker://{ref}:{TAG}"],
            "skopeo push", endpoint.env())
        if "skipped" in timing.output or "already exists" in timing.output:
            raise RuntimeError(f"skopeo reused blobs, the timing is not an upload:\n{timing.output}")
    elif tool == "oras":
        timing = ctx.procs.run(
            [sys.executable, str(ROOT / "bench" / "oras_tool.py"), "push", f"{ref}:{TAG}", str(work.data)],
            "oras-py push", endpoint.env())
    else:
        raise ValueError(tool)
    return timing


def bench_pull(tool: str, endpoint: Endpoint, ctx: Context, repo: str, rnd: int) -> Timing:
    """Pull what ``tool`` pushed to ``endpoint``/``repo``; checks the copy (untimed) and removes it."""
    work = ctx.work
    ref = f"{endpoint.host}/{repo}"
    out = ctx.scratch / f"pull-{endpoint.name}-{tool}"
    try:
        if is_ecr(tool):
            timing = ctx.procs.run(
                ctx.ecr(tool, "pull", "--quiet", "--model-only", *endpoint.ecr_args(), "-o", str(out),
                        f"{ref}:{ECR_VERSION}", label=f"pull-r{rnd}"), "ecr pull", endpoint.env())
            copy = out / "model" / "weights.bin"
        elif tool == "skopeo":
            timing = ctx.procs.run(
                ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--preserve-digests",
                 "--dest-oci-accept-uncompressed-layers", *endpoint.skopeo_args("src"), f"docker://{ref}:{TAG}",
                 f"oci:{out}:{TAG}"], "skopeo pull", endpoint.env())
            copy = out / "blobs" / "sha256" / work.digest.split(":", 1)[1]
        elif tool == "oras":
            timing = ctx.procs.run(
                [sys.executable, str(ROOT / "bench" / "oras_tool.py"), "pull", f"{ref}:{TAG}", str(out)],
                "oras-py pull", endpoint.env())
            copy = out / work.data.name
        else:
            raise ValueError(tool)
        check_copy(copy, work, f"{tool} pull")
        return timing
    finally:
        shutil.rmtree(out, ignore_errors=True)


def check_copy(path: Path, work: Workload, what: str) -> None:
    if not path.is_file() or path.stat().st_size != work.size:
        raise RuntimeError(f"{what}: {path} missing or of the wrong size")
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MIB):
            h.update(chunk)
    if "sha256:" + h.hexdigest() != work.digest:
        raise RuntimeError(f"{what}: {path} does not match the pushed bytes")


def check_uploaded(reg: Registry, repo: str, digest: str, size: int, what: str) -> None:
    """The registry holds the blob, unchanged (no tool recompressed it), in ``repo``."""
    import requests

    resp = requests.head(f"{reg.url}/v2/{repo}/blobs/{digest}", timeout=10, allow_redirects=True)
    if resp.status_code != 200 or int(resp.headers.get("Content-Length", -1)) != size:
        raise RuntimeError(f"{what}: blob {digest} not in {repo} as pushed (HTTP {resp.status_code})")


# --- endpoints ---------------------------------------------------------------------------

# (processes, the round's registry, a directory for the round, clean-ups) -> endpoint
EndpointFactory = Callable[[Processes, Registry, Path, contextlib.ExitStack], Endpoint]


def direct_endpoint(procs: Processes, reg: Registry, workdir: Path, stack: contextlib.ExitStack) -> Endpoint:
    return Endpoint("registry", reg.host)


# The gateway goes here: start it in front of ``reg`` with ``procs.start_server`` (so
# an exit or Ctrl-C stops it; ``stack.callback(procs.stop_server, proc)`` stops it at
# the end of the round), wait for it, and return
# Endpoint("gateway", its host:port, (proc.pid,), (user, password)). Every tool then
# also runs against it (``--endpoints registry,gateway``; ``--only @gateway``).
ENDPOINTS: dict[str, EndpointFactory] = {"registry": direct_endpoint}


def is_tmpfs(path: Path) -> bool:
    """True when ``path`` is on a tmpfs (longest matching mount point in /proc/mounts)."""
    best, fstype = "", ""
    resolved = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, parts[2]
    return fstype == "tmpfs"


def choose_tmp(requested: Path | None, size: int) -> Path:
    """Where to put the run's data: as asked, else /dev/shm when it has room for it.

    The registry (Distribution's filesystem driver) fsyncs every blob it commits, and
    on this VM a 512 MiB fsync took anywhere from 0.5 to 3 s depending on what the
    host's disk was doing, which swamped the differences between the tools (two copies
    of the same ecr code measured 3.5 vs 5.0 s medians in one run). On tmpfs the fsync
    is free and page allocation costs the same every time, so what remains is the
    tools' own work (and the registry's CPU, the same for all). Give a disk directory
    (--tmp / ECR_BENCH_TMP) to include the registry's storage in the numbers.
    """
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        return requested
    shm = Path("/dev/shm")
    # payload + registry blob + one upload in flight + one pulled copy, and headroom
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 6 * size:
        return shm
    return Path(tempfile.gettempdir())


# --- the run -----------------------------------------------------------------------------


def warm_page_cache(directory: Path, nbytes: int) -> None:
    """Write and delete ``nbytes`` of file data in ``directory`` (the file system under test).

    On this VM (Firecracker, virtio-balloon free page reporting) memory that stays free
    for ~2 s is handed back to the host, and the next write into it costs ~2 s/GiB
    extra in page faults the guest sees as a slow memcpy. Whether a timed step got
    such "cold" pages depended on how long the machine had idled before it, which made
    single runs vary by 2x. Freeing just-written page-cache folios right before the
    step gives the step (the tool's output file, the registry's upload file) warm ones.
    """
    if nbytes <= 0:
        return
    path = directory / ".warm"
    block = bytes(8 * MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = nbytes
        while left > 0:
            left -= os.write(fd, block[: min(left, len(block))])
    finally:
        os.close(fd)
        path.unlink()


def measure(op: str, tool: str, endpoint: Endpoint, ctx: Context, rnd: int, step: Callable[[], Timing]) -> Sample:
    """Run one step under the same conditions as every other: flushed, warm, timed."""
    os.sync()  # the previous step's write-back must not land on this one
    warm_page_cache(ctx.scratch, int(ctx.warm_factor * ctx.work.size))
    timing = step()
    other = max(0.0, timing.machine_cpu_s - timing.cpu_s - timing.server_cpu_s)
    return Sample(op, tool, endpoint.name, rnd, timing.seconds, ctx.work.size, timing.cpu_s,
                  timing.server_cpu_s, other)


def run_round(rnd: int, ctx: Context, procs: Processes, tmp: Path, selected: Callable[[str, str, str], bool],
              endpoint_names: list[str], results: Results, log: Callable[[str], None]) -> None:
    """One round: a fresh registry (and endpoints in front of it), every selected push, then every pull."""
    round_dir = tmp / f"round-{rnd}"
    round_dir.mkdir()
    ctx.scratch = round_dir
    reg = procs.start_registry(round_dir / "registry")
    procs.watched = [reg.proc.pid]  # an endpoint factory adds its own server's pid (the gateway)

    def report(sample: Sample) -> None:
        log(f"  round {rnd + 1}  {sample.op:<5} {sample.tool:<7} {sample.endpoint:<9} {sample.seconds:7.2f} s"
            f"  {sample.mib_s:8.1f} MiB/s   cpu: tool {sample.tool_cpu_s:5.2f} s, "
            f"registry {sample.server_cpu_s:5.2f} s, other {sample.other_cpu_s:5.2f} s"
            f"{'' if sample.quiet else '  (busy machine)'}")

    try:
        with contextlib.ExitStack() as stack:
            endpoints = [ENDPOINTS[name](procs, reg, round_dir, stack) for name in endpoint_names]
            procs.watched += [pid for endpoint in endpoints for pid in endpoint.pids]
            # Rotate the tool order per round: no tool always goes first (or last).
            tools = ctx.tools
            order = tools[rnd % len(tools):] + tools[: rnd % len(tools)]
            for endpoint in endpoints:
                tools = [t for t in order if any(selected(op, t, endpoint.name) for op in OPS)]
                for tool in tools:
                    repo = repository(tool, endpoint, rnd)
                    sample = measure("push", tool, endpoint, ctx, rnd,
                                     lambda: bench_push(tool, endpoint, ctx, repo, rnd))  # noqa: B023
                    check_uploaded(reg, repo, ctx.work.digest, ctx.work.size, f"{tool} push")
                    if selected("push", tool, endpoint.name):
                        results.add(sample)
                        report(sample)
                for tool in tools:
                    if selected("pull", tool, endpoint.name):
                        repo = repository(tool, endpoint, rnd)
                        sample = measure("pull", tool, endpoint, ctx, rnd,
                                         lambda: bench_pull(tool, endpoint, ctx, repo, rnd))  # noqa: B023
                        results.add(sample)
                        report(sample)
    finally:
        procs.stop_registry(reg)
        shutil.rmtree(round_dir, ignore_errors=True)


def tool_versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    try:
        import oras

        oras_version = oras.__version__
    except ImportError:
        oras_version = "?"
    from tests.support import REGISTRY_BIN

    return {
        "ecr": _ecr_version(),
        "skopeo": first_line(["skopeo", "--version"]),
        "oras-py": oras_version,
        "registry": first_line([REGISTRY_BIN, "--version"]),
        "python": platform.python_version(),
    }


def _ecr_version() -> str:
    try:
        from ecr_oci import __version__

        return str(__version__)
    except ImportError:
        return "?"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "ecr_oci"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def print_report(results: Results, tools: list[str], size: int, repeat: int,
                 log: Callable[[str], None]) -> list[Verdict]:
    log("")
    log(f"payload {size / MIB:.0f} MiB, {repeat} round(s), median of rounds; ratio = time / fastest tool of the op")
    width = max(7, *(len(t) for t in tools))
    header = (f"{'op':<5} {'tool':<{width}} {'endpoint':<9} {'median s':>9} {'min s':>7} {'max s':>7} {'MiB/s':>8} "
              f"{'ratio':>6} {'tool cpu':>9} {'reg. cpu':>9} {'other cpu':>9}")
    log(header)
    log("-" * len(header))
    for endpoint in dict.fromkeys(c.endpoint for c in results.cases.values()):
        for op in OPS:
            cases = sorted((c for c in results.cases.values() if c.op == op and c.endpoint == endpoint),
                           key=lambda c: tools.index(c.tool))
            if not cases:
                continue
            fastest = min(c.median_s for c in cases)
            for c in cases:
                secs = [s.seconds for s in c.samples]
                tool_cpu = statistics.median(s.tool_cpu_s for s in c.samples)
                reg_cpu = statistics.median(s.server_cpu_s for s in c.samples)
                other_cpu = statistics.median(s.other_cpu_s for s in c.samples)
                log(f"{op:<5} {c.tool:<{width}} {endpoint:<9} {c.median_s:9.2f} {min(secs):7.2f} {max(secs):7.2f} "
                    f"{c.mib_s:8.1f} {c.median_s / fastest:6.2f} {tool_cpu:8.2f}s {reg_cpu:8.2f}s "
                    f"{other_cpu:8.2f}s")
    verdicts = results.verdicts()
    log("")
    for v in verdicts:
        if v.ratio is None:
            log(f"{v.op:<5} @{v.endpoint}: n/a ({v.tool} against at least one of skopeo/oras)")
        else:
            log(f"{v.op:<5} @{v.endpoint}: {v.tool} {v.ecr_s:.2f} s / {v.best_tool} {v.best_s:.2f} s = "
                f"{v.ratio:.3f}  (target <= {TARGET_RATIO:.2f})  {v.status}"
                f"   [best rounds: {v.min_ratio:.3f}]")
            if v.quiet_ratio is not None:
                log(f"{'':<5}   quiet rounds only (other cpu <= {QUIET:.0%}): {v.tool} {v.ecr_quiet_s:.2f} s "
                    f"({v.quiet_counts[0]}) / {v.quiet_tool} {v.best_quiet_s:.2f} s ({v.quiet_counts[1]}) = "
                    f"{v.quiet_ratio:.3f}")
    samples = [s for c in results.cases.values() for s in c.samples]
    other = sum(s.other_cpu_s for s in samples)
    wall = sum(s.seconds for s in samples)
    cpus = os.cpu_count() or 1
    if wall and other / (wall * cpus) > 0.10:
        log(f"warning: {100 * other / (wall * cpus):.0f}% of the machine's CPU went to other processes during "
            "the timed steps (column 'other cpu': other jobs, kernel threads); if `uptime` shows load, the "
            "times are inflated and noisy (a saturated machine makes every tool CPU-bound and hides start-up "
            "and latency costs): trust the quiet-rounds line, or rerun on a quiet machine")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="cases to run, e.g. push | pull:ecr | ecr,skopeo | @registry")
    parser.add_argument("--mib", type=int, default=int(os.environ.get("ECR_BENCH_MIB", "512")),
                        help="payload size in MiB (env ECR_BENCH_MIB, default 512)")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("ECR_BENCH_REPEAT", "5")),
                        help="rounds (env ECR_BENCH_REPEAT, default 5)")
    parser.add_argument("--endpoints", default="registry",
                        help=f"comma-separated, of: {', '.join(ENDPOINTS)} (default: registry)")
    parser.add_argument("--tmp", type=Path, default=os.environ.get("ECR_BENCH_TMP"),
                        help="where the payload, registry storage and pulled copies live (env ECR_BENCH_TMP; "
                             "default /dev/shm when it has room, else the system temp dir)")
    parser.add_argument("--warm", type=float, default=None,
                        help="before each step write+delete this many payloads of file data so the step "
                             "gets warm memory (see warm_page_cache; default 0 on tmpfs, else 2)")
    parser.add_argument("--ecr-variant", action="append", default=[], metavar="NAME=COMMAND",
                        help="also time another ecr command as tool ecr-NAME, interleaved with the others "
                             "(e.g. a patched copy: 'B=env PYTHONPATH=/tmp/copy python3 -m ecr_oci.cli'); "
                             "repeatable")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "bench.json", help="JSON results file")
    parser.add_argument("--py-spy", action="store_true",
                        help="run ecr under `py-spy record` (speedscope files in bench-results/); "
                             "timings then include the sampler and the verdict is only indicative")
    args = parser.parse_args(argv)
    if args.mib < 1 or args.repeat < 1:
        parser.error("--mib and --repeat must be at least 1")
    endpoint_names = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown = [e for e in endpoint_names if e not in ENDPOINTS]
    if unknown:
        parser.error(f"unknown endpoint(s) {', '.join(unknown)}; known: {', '.join(ENDPOINTS)}")
    ecr_commands = {"ecr": installed_ecr()}
    for spec in args.ecr_variant:
        name, _, command = spec.partition("=")
        if not name or not command or not name.replace("_", "").isalnum():
            parser.error(f"--ecr-variant {spec!r}: expected NAME=COMMAND")
        if any(t.lower() == f"ecr-{name}".lower() for t in ecr_commands):
            parser.error(f"--ecr-variant {name!r} given twice")
        ecr_commands[f"ecr-{name}"] = shlex.split(command)
    tools = [*ecr_commands, *(t for t in TOOLS if t != "ecr")]
    selected = parse_only(args.only, endpoint_names, tools)
    missing = [tool for tool in ("skopeo", "py-spy" if args.py_spy else "") if tool and not shutil.which(tool)]
    if missing:
        parser.error(f"not installed: {', '.join(missing)} (see `make deps`)")

    def log(line: str) -> None:
        print(line, flush=True)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    procs = Processes()
    results = Results()
    size = args.mib * MIB
    started = time.perf_counter()
    base = choose_tmp(args.tmp, size)
    warm = args.warm if args.warm is not None else (0.0 if is_tmpfs(base) else 2.0)
    tmp = Path(tempfile.mkdtemp(prefix="ecr-bench-", dir=base))
    try:
        procs.isolate(tmp / "home")
        log(f"preparing {args.mib} MiB of random bytes, the bundle and the OCI layout in {tmp}")
        t0 = time.perf_counter()
        work = prepare(tmp, size)
        procs.compile_ecr()
        log(f"  ready in {time.perf_counter() - t0:.1f} s ({work.digest[:19]}…)")
        profile_dir = None
        if args.py_spy:
            profile_dir = RESULTS_DIR / "profiles"
            profile_dir.mkdir(parents=True, exist_ok=True)
        log(f"  working directory on {'tmpfs' if is_tmpfs(base) else 'disk'}"
            f"{f', page cache warmed with {warm:g}x the payload before each step' if warm else ''}")
        ctx = Context(procs, work, tmp, profile_dir, warm, ecr_commands)
        for rnd in range(args.repeat):
            run_round(rnd, ctx, procs, tmp, selected, endpoint_names, results, log)
    except KeyboardInterrupt:
        log("interrupted: stopping children and removing temporary data")
        return 130
    except RuntimeError as exc:
        log(f"error: {exc}")
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if not results.cases:
        log("nothing selected")
        return 2
    verdicts = print_report(results, tools, size, args.repeat, log)
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "payload_bytes": size,
        "repeat": args.repeat,
        "only": args.only,
        "endpoints": endpoint_names,
        "profiled": bool(args.py_spy),
        "ecr_commands": {name: " ".join(cmd) for name, cmd in ecr_commands.items()},
        "warm_factor": warm,
        "workdir": str(base),
        "workdir_tmpfs": is_tmpfs(base),
        "target_ratio": TARGET_RATIO,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": tool_versions(),
        "git": git_revision(),
        "wall_s": round(time.perf_counter() - started, 1),
        "cases": [c.as_json() for c in results.cases.values()],
        "verdicts": [v.as_json() for v in verdicts],
        "samples": [{**asdict(s), "seconds": round(s.seconds, 4)} for c in results.cases.values()
                    for s in c.samples],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    log(f"\nresults: {args.output} (run took {document['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

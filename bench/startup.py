#!/usr/bin/env python3
"""CLI start-up benchmark: ``ecr --version`` and ``ecr inspect REF`` against ``skopeo inspect --raw``.

One run starts a CNCF Distribution on a free 127.0.0.1 port (``tests/support.py``),
pushes a tiny bundle (two umoci images, a 4 KiB model) with ``ecr push`` and then
times, each as its own process with an empty HOME (no logins) and byte-code caching
on (``PYTHONDONTWRITEBYTECODE`` dropped: an untimed warm-up run writes the ``.pyc``
files an installed package has), interleaved per round:

    ecr --version          the interpreter and the version answer, nothing else
    ecr inspect REF        the whole inspect: index, model manifest, image sizes,
                           referrers, gateway facts, the printed tables
    skopeo inspect --raw   the same reference's index, raw (one Go binary, one request
                           after the ping): the floor for a client

Rounds: ``--repeat`` (default 5), the median counts. The goals (issue 10):
``ecr --version`` under 0.15 s and ``ecr inspect`` under 0.3 s: PASS or MISS.
Prints a table and writes ``bench-results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import build_tiny_layout, start_registry  # noqa: E402

GOALS = {"ecr --version": 0.15, "ecr inspect": 0.3}  # seconds, median


def installed_ecr() -> str:
    """The ``ecr`` script next to this interpreter (no pyenv shim in the timing), else on PATH."""
    ecr_bin = Path(sys.executable).with_name("ecr")
    return str(ecr_bin) if ecr_bin.exists() else shutil.which("ecr") or "ecr"


def write_bundle(root: Path, work: Path) -> None:
    (root / "model").mkdir(parents=True)
    (root / "model" / "weights.bin").write_bytes(b"\x01" * 4096)
    build_tiny_layout(root / "images", work)
    (root / "ecr.yaml").write_text(
        "name: startup-bench\n"
        "version: 0.1.0\n"
        "description: CLI start-up benchmark bundle.\n"
        "authors: [Bench <bench@example.org>]\n"
        "license: MIT\n"
        "model: [model/weights.bin]\n"
        "images:\n"
        "  - platform: linux/amd64\n    from: oci:images:amd64\n"
        "  - platform: linux/arm64\n    from: oci:images:arm64\n"
    )


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median counts; default 5)")
    parser.add_argument("--ecr", default=installed_ecr(), help="the ecr command (default: the installed script)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "startup.json")
    args = parser.parse_args(argv)
    ecr = args.ecr.split()
    with tempfile.TemporaryDirectory(prefix="ecr-startup-") as tmp:
        work = Path(tmp)
        home = work / "home"
        (home / ".docker").mkdir(parents=True)
        (home / ".docker" / "config.json").write_text('{"auths": {}}')
        (home / "auth.json").write_text('{"auths": {}}')
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"),
               "REGISTRY_AUTH_FILE": str(home / "auth.json"), "ECR_CACHE_DIR": str(home / "cache")}
        # As installed: the untimed warm-up writes the byte-code cache an install would hold.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        registry = start_registry(work / "registry")
        try:
            write_bundle(work / "bundle", work / "umoci")
            ref = f"{registry.host}/bench/startup:0.1.0"
            subprocess.run([*ecr, "push", "--quiet", str(work / "bundle"), ref], env=env, check=True,
                           capture_output=True, timeout=300)
            cases = {
                "ecr --version": [*ecr, "--version"],
                "ecr inspect": [*ecr, "inspect", ref],
                "skopeo inspect --raw": ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
            }
            for cmd in cases.values():  # warm the page cache and the registry, untimed
                timed(cmd, env)
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.repeat):
                for name, cmd in cases.items():
                    samples[name].append(timed(cmd, env))
        finally:
            registry.stop()
    medians = {name: statistics.median(times) for name, times in samples.items()}
    skopeo = medians["skopeo inspect --raw"]
    print(f"CLI start-up, median of {args.repeat} ({' '.join(ecr)})")
    print(f"{'command':<22} {'median s':>9} {'min s':>7} {'x skopeo':>9}  goal")
    for name, median in medians.items():
        goal = GOALS.get(name)
        verdict = f"< {goal:.2f} s {'PASS' if median < goal else 'MISS'}" if goal else ""
        print(f"{name:<22} {median:9.3f} {min(samples[name]):7.3f} {median / skopeo:9.2f}  {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeat": args.repeat, "ecr": ecr, "samples": samples, "medians": medians,
                                    "goals": GOALS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

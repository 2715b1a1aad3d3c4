#!/usr/bin/env python3
"""Blob downloads through the replicated setup, with and without the storage redirect.

    python bench/scaleout.py [--mib 256] [--clients 4] [--rounds 3]

One run starts the test suite's replicated setup (``tests/scaleout``: Ceph RGW with
TLS, two Distribution replicas on one bucket, two gateways on PostgreSQL, nginx with
TLS), pushes one blob of random bytes, then pulls it ``--rounds`` x ``--clients`` times
(clients in parallel, through the balancer, ``requests`` streaming 1 MiB chunks and
hashing) in two modes, switching the registries' ``storage.redirect`` in between:

* ``redirect``: the gateways authorize and pass the registry's 307 to a presigned RGW
  URL on; the bytes go from the RGW to the client.
* ``proxied``: the registries stream the blob themselves, through the gateways.

For each mode: throughput (MiB/s, all clients together, median round) and CPU seconds
per GiB pulled of the gateways (both), the registries (both), nginx and Ceph (mon, osd,
rgw), read from ``/proc`` before and after each round. Client and servers share this
machine's cores: the ratios between the modes are what counts. Writes
``bench-results/scaleout.json``; not collected by pytest (file name).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.gateway.pgserver import start_postgres  # noqa: E402
from tests.gateway.support import PASSWORDS  # noqa: E402
from tests.scaleout.ceph import start_ceph  # noqa: E402
from tests.scaleout.stack import ScaleOut, start_scaleout  # noqa: E402
from tests.scaleout.tls import make_pki  # noqa: E402

REPO = "alice/bench"
GIB = 1 << 30


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its reaped children; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def tiers(stack: ScaleOut) -> dict[str, list[int]]:
    """Pids per tier (nginx: master and workers)."""
    nginx = [stack.nginx.pid] if stack.nginx else []
    return {
        "gateways": [g.proc.pid for g in stack.gateways if g.proc],
        "registries": [r.proc.pid for r in stack.registries if r.proc],
        "nginx": nginx + [c for p in nginx for c in children_of(p)],
        "ceph": [p.pid for p in stack.ceph.procs],
    }


def cpu_by_tier(pids: dict[str, list[int]]) -> dict[str, float]:
    return {tier: sum(process_cpu(p) for p in group) for tier, group in pids.items()}


def push_blob(stack: ScaleOut, data: bytes) -> str:
    client = stack.client("alice")
    return client.upload_bytes(REPO, data)


def pull_once(stack: ScaleOut, token: str, digest: str) -> str:
    """One streamed download (following a redirect); its sha256."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(stack.pki.ca)
    hasher = hashlib.sha256()
    with session.get(f"{stack.url}/v2/{REPO}/blobs/{digest}", headers={"Authorization": f"Bearer {token}"},
                     stream=True, timeout=600) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_content(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def measure(stack: ScaleOut, digest: str, size: int, clients: int, rounds: int) -> dict[str, Any]:
    token = stack.gateways[0].token("alice", f"repository:{REPO}:pull")["token"]
    assert pull_once(stack, token, digest) == digest  # warm-up, and the bytes are right
    pids = tiers(stack)
    per_round: list[dict[str, float]] = []
    for _ in range(rounds):
        results: list[str] = []

        def one(into: list[str] = results) -> None:
            into.append(pull_once(stack, token, digest))

        threads = [threading.Thread(target=one) for _ in range(clients)]
        before = cpu_by_tier(pids)
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        after = cpu_by_tier(pids)
        assert results == [digest] * clients, "a download came back wrong"
        gib = size * clients / GIB
        per_round.append({"mib_s": size * clients / (1 << 20) / elapsed,
                          **{f"{tier}_cpu_s_per_gib": (after[tier] - before[tier]) / gib for tier in pids}})
    return {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {"mib": args.mib, "clients": args.clients, "rounds": args.rounds,
                               "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="ecr-so-bench-") as tmp:
        work = Path(tmp)
        pki = make_pki(work / "pki")
        ceph = start_ceph(work / "ceph", tls=(pki.cert, pki.key), host="localhost")
        postgres = start_postgres()
        stack: ScaleOut | None = None
        try:
            stack = start_scaleout(work / "stack", pki, ceph, postgres.create_database("bench"))
            stack.gateways[0].admin().add_user("alice", PASSWORDS["alice"])
            size = args.mib << 20
            digest = push_blob(stack, os.urandom(size))
            for mode, redirect in (("redirect", True), ("proxied", False)):
                for replica in stack.registries:
                    replica.set_redirect(redirect)
                results[mode] = measure(stack, digest, size, args.clients, args.rounds)
        finally:
            if stack is not None:
                stack.stop()
            postgres.stop()
            ceph.stop()
    redirect, proxied = results["redirect"], results["proxied"]
    results["gateway_cpu_ratio_redirect_to_proxied"] = (
        redirect["gateways_cpu_s_per_gib"] / proxied["gateways_cpu_s_per_gib"]
        if proxied["gateways_cpu_s_per_gib"] else None)
    results["throughput_ratio_redirect_to_proxied"] = redirect["mib_s"] / proxied["mib_s"]
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "scaleout.json").write_text(json.dumps(results, indent=2))
    print(f"{'mode':<10}{'MiB/s':>8}" + "".join(f"{t + ' cpu-s/GiB':>22}" for t in ("gateways", "registries",
                                                                                      "nginx", "ceph")))
    for mode in ("redirect", "proxied"):
        row = results[mode]
        print(f"{mode:<10}{row['mib_s']:>8.1f}" + "".join(
            f"{row[f'{t}_cpu_s_per_gib']:>22.2f}" for t in ("gateways", "registries", "nginx", "ceph")))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Scheduler feed polling cost: a deployment of ``--nodes`` nodes and ``--bundles`` approved bundles.

    python bench/feed.py [--nodes 1000] [--bundles 20] [--polls 300] [--clients 16]

Measures, against a real ``ecr serve``: the admin's full feed (every node's fit), a
node's full poll (200), its conditional poll (``If-None-Match`` → 304), its cursor poll
(``?since=`` with nothing new), and the throughput of every node polling once with
``If-None-Match`` at ``--clients`` concurrent clients. Each node authenticates with its
credential (Basic), as a scheduler agent would. Writes ``bench-results/feed.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import requests  # noqa: E402

from tests.conftest import BASE_METADATA, write_bundle  # noqa: E402
from tests.gateway.support import ADMIN_PASSWORD, PASSWORDS, GatewayProcess  # noqa: E402
from tests.support import build_tiny_layout  # noqa: E402

DEPLOYMENT = "bench"


def timed(fn: Any, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2)}


async def all_nodes_poll(url: str, creds: dict[str, str], etags: dict[str, str], clients: int) -> tuple[float, int]:
    limit = asyncio.Semaphore(clients)
    not_modified = 0
    async with httpx.AsyncClient(timeout=60) as client:
        async def one(node: str, secret: str) -> None:
            nonlocal not_modified
            async with limit:
                resp = await client.get(url, auth=(node, secret), headers={"If-None-Match": etags[node]})
                not_modified += resp.status_code == 304

        started = time.perf_counter()
        await asyncio.gather(*(one(n, s) for n, s in creds.items()))
        return time.perf_counter() - started, not_modified


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--bundles", type=int, default=20)
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecr-bench-feed-") as tmp:
        work = Path(tmp)
        gw = GatewayProcess(work / "data")
        gw.start()
        try:
            admin = gw.admin()
            admin.add_user("alice", PASSWORDS["alice"])
            layout = build_tiny_layout(work / "oci", work)
            env = {**os.environ, "ECR_USERNAME": "alice", "ECR_PASSWORD": PASSWORDS["alice"]}
            for i in range(args.bundles):
                root = write_bundle(work / f"b{i}", layout, {**BASE_METADATA, "version": f"1.0.{i}"},
                                    weights=str(i).encode() * 512)
                subprocess.run(["ecr", "push", "--quiet", str(root), f"{gw.host}/alice/b{i}:1.0.{i}"], env=env,
                               check=True, capture_output=True, timeout=300)
                admin.set_stage(f"alice/b{i}", f"1.0.{i}", "approved", DEPLOYMENT)
            creds: dict[str, str] = {}
            platforms = ("linux/arm64", "linux/amd64", "linux/riscv64")
            for i in range(args.nodes):
                node = f"N{i:04d}"
                creds[node] = admin.add_node(node, [DEPLOYMENT])
                admin.set_node_facts(node, {"platform": platforms[i % 3], "memory": "4Gi", "sensors": ["camera"]})
            url = f"{gw.url}/api/v1/deployments/{DEPLOYMENT}/feed"
            full = requests.get(url, auth=("admin", ADMIN_PASSWORD), timeout=300)
            node, secret = next(iter(creds.items()))
            first = requests.get(url, auth=(node, secret), timeout=60)
            etag, cursor = first.headers["ETag"], first.json()["cursor"]
            session = requests.Session()
            session.auth = (node, secret)
            results: dict[str, Any] = {
                "nodes": args.nodes, "bundles": args.bundles,
                "admin_full_feed": {"bytes": len(full.content),
                                    **timed(lambda: requests.get(url, auth=("admin", ADMIN_PASSWORD), timeout=300), 5)},
                "node_full_200": {"bytes": len(first.content), **timed(lambda: session.get(url), args.polls)},
                "node_if_none_match_304": timed(lambda: session.get(url, headers={"If-None-Match": etag}), args.polls),
                "node_since_cursor": {"bytes": len(session.get(url, params={"since": cursor}).content),
                                      **timed(lambda: session.get(url, params={"since": cursor}), args.polls)},
            }
            etags = {n: requests.get(url, auth=(n, s), timeout=60).headers["ETag"] for n, s in creds.items()}
            seconds, not_modified = asyncio.run(all_nodes_poll(url, creds, etags, args.clients))
            results["all_nodes_conditional_poll"] = {
                "seconds": round(seconds, 2), "requests_per_second": round(args.nodes / seconds, 1),
                "not_modified": not_modified,
                "share_of_one_minute": round(seconds / 60, 3),
            }
        finally:
            gw.stop()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "feed.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Gateway overhead: the same requests through ``ecr serve`` and directly at its registry.

    python bench/gateway.py [--mib 512] [--clients 64] [--heads 4000]

* blob push (POST + one streamed monolithic PUT) and pull (streamed GET) of a file of
  random bytes, through the gateway and directly at the embedded Distribution (with a
  token minted by the gateway's upstream key), median of ``--repeat`` rounds;
* manifest HEAD latency and throughput at ``--clients`` concurrent clients (httpx,
  asyncio), p50/p99 and requests/s, through the gateway and directly.

Client and servers share this machine's cores, so absolute figures are pessimistic;
the ratios are what counts (issue targets: ≥ 0.9× direct throughput, HEAD p99 < 20 ms).
Not collected by pytest (file name); writes ``bench-results/gateway.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
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

from ecr_oci.gateway.tokens import SigningKey, TokenIssuer  # noqa: E402
from tests.gateway.support import PASSWORDS, GatewayProcess, push_image  # noqa: E402

REPO = "alice/bench"


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return "sha256:" + digest.hexdigest()


def push(base: str, token: str, path: Path, digest: str, repo: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    resp = requests.post(f"{base}/v2/{repo}/blobs/uploads/", headers=headers, timeout=60)
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    if location.startswith("/"):
        location = base + location
    with path.open("rb") as body:  # a file: requests sends Content-Length, not chunked
        resp = requests.put(location, params={"digest": digest}, data=body, timeout=900,
                            headers={**headers, "Content-Type": "application/octet-stream"})
    assert resp.status_code == 201, resp.text
    return time.perf_counter() - started


def pull(base: str, token: str, digest: str, repo: str) -> float:
    started = time.perf_counter()
    with requests.get(f"{base}/v2/{repo}/blobs/{digest}", headers={"Authorization": f"Bearer {token}"},
                      stream=True, timeout=900) as resp:
        assert resp.status_code == 200
        for _ in resp.iter_content(1 << 20):
            pass
    return time.perf_counter() - started


def delete(base: str, token: str, digest: str, repo: str) -> None:
    requests.delete(f"{base}/v2/{repo}/blobs/{digest}", headers={"Authorization": f"Bearer {token}"}, timeout=60)


async def heads(base: str, token: str, clients: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        await client.head(f"/v2/{REPO}/manifests/1.0.0")  # warm-up

        async def worker(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                resp = await client.head(f"/v2/{REPO}/manifests/1.0.0")
                latencies.append(time.perf_counter() - started)
                assert resp.status_code == 200, resp.status_code

        started = time.perf_counter()
        await asyncio.gather(*(worker(total // clients) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"p50_ms": 1000 * latencies[len(latencies) // 2], "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "req_s": len(latencies) / elapsed}


def ab_heads(base: str, token: str, clients: int, total: int) -> dict[str, float] | None:
    """The same HEAD load from ApacheBench (a C client, so the client is not the bottleneck)."""
    if not shutil.which("ab"):
        return None
    url = f"{base}/v2/{REPO}/manifests/1.0.0"
    cmd = ["ab", "-q", "-k", "-i", "-c", str(clients), "-n", str(total), "-H", f"Authorization: Bearer {token}",
           "-H", "Accept: application/vnd.oci.image.manifest.v1+json", url]
    subprocess.run(cmd, capture_output=True, timeout=300)  # warm-up: connections and caches
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {
        "req_s": float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": float(re.search(r"\s50%\s+(\d+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": float(re.search(r"\s99%\s+(\d+)", out).group(1)),  # type: ignore[union-attr]
        "failed": failed + (int(non2xx.group(1)) if non2xx else 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecr-gw-bench-") as tmp:
        work = Path(tmp)
        gw = GatewayProcess(work / "data")
        gw.start()
        try:
            gw.admin().add_user("alice", PASSWORDS["alice"])
            push_image(gw.client("alice"), REPO, "1.0.0")
            direct = gw.registry_url()
            upstream = TokenIssuer(SigningKey(gw.data_dir / "keys", "upstream"), issuer="ecr-gateway",
                                   audience="ecr-registry", ttl=3600)
            tokens = {
                "gateway": (gw.url, gw.token("alice", f"repository:{REPO}:pull,push,delete")["token"]),
                "direct": (direct, upstream.mint("bench", [{"type": "repository", "name": REPO,
                                                            "actions": ["pull", "push", "delete"]}])[0]),
            }
            blob = work / "blob.bin"
            digest = write_random(blob, args.mib << 20)
            size = args.mib << 20
            results: dict[str, Any] = {"mib": args.mib, "clients": args.clients, "cpus": os.cpu_count()}
            for op in ("push", "pull"):
                for name, (base, token) in tokens.items():
                    times = []
                    for _ in range(args.repeat):
                        if op == "push":
                            delete(*tokens["direct"], digest, REPO)
                            times.append(push(base, token, blob, digest, REPO))
                        else:
                            times.append(pull(base, token, digest, REPO))
                    results[f"{op}_{name}_mib_s"] = size / (1 << 20) / statistics.median(times)
                results[f"{op}_ratio"] = results[f"{op}_gateway_mib_s"] / results[f"{op}_direct_mib_s"]
            for name, (base, token) in tokens.items():
                results[f"head_{name}_httpx"] = asyncio.run(heads(base, token, args.clients, args.heads))
                if (ab := ab_heads(base, token, args.clients, args.heads)) is not None:
                    results[f"head_{name}_ab"] = ab
            for client in ("httpx", "ab"):
                if f"head_gateway_{client}" in results:
                    results[f"head_ratio_req_s_{client}"] = (
                        results[f"head_gateway_{client}"]["req_s"] / results[f"head_direct_{client}"]["req_s"])
        finally:
            gw.stop()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "gateway.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

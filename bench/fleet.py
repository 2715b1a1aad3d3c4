#!/usr/bin/env python3
"""A node fleet pulling one bundle at once, through the gateway and directly at its registry.

    python bench/fleet.py [--clients 200] [--mib 64] [--nodes 20] [--rounds 1]

A bundle (``ecr push``: a ``--mib`` MiB model and a tiny linux/amd64 image) is pushed
twice: ``alice/fleet-pub`` (public) and ``alice/fleet-prot`` (protected, approved for
the deployment ``fleet``). Then ``--clients`` concurrent clients each pull a whole bundle
the way a node does: half of them anonymously from the public repository, half as one
of ``--nodes`` node accounts from the protected one (token request with the node's
credential, index, the amd64 image and the model manifest, their config and layers).
The same pulls are then sent directly to the embedded Distribution with a token minted
by the gateway's upstream key (no token requests: the registry alone has no accounts).

Reported (``bench-results/fleet.json``): bytes/s through the gateway and direct, their
ratio (goal >= 0.9), manifest GET p50/p99 per side, errors (goal 0: any non-2xx answer
or transport error), and the gateway's RSS during the gateway round (peak and end).
Client and servers share this machine's cores (2 on the dev VM), so the client (one
asyncio process) takes part of the CPU the servers would otherwise have; the ratio is
what counts. Layers are counted, not hashed, to keep the client light.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from ecr_oci import mediatypes as mt  # noqa: E402
from ecr_oci.gateway.tokens import SigningKey, TokenIssuer  # noqa: E402
from tests.conftest import BASE_METADATA, write_bundle  # noqa: E402
from tests.gateway.support import PASSWORDS, GatewayProcess  # noqa: E402
from tests.support import build_tiny_layout  # noqa: E402

# One client's pull: repository, extra headers, node credential (or None), whether to ask for an anonymous token.
Plan = list[tuple[str, dict[str, str], tuple[str, str] | None, bool]]
ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST])


@dataclass
class Round:
    """What one side's round measured."""

    bytes: int = 0
    manifest_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def fetch_blob(base: str, path: str, headers: dict[str, str]) -> int:
    """GET a blob over a raw asyncio stream and count its bytes (httpx's reader would be the bottleneck).

    Raises:
        ValueError: an answer other than 200.
    """
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    try:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n{lines}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if status != 200:
            raise ValueError(f"blob GET {status}")
        got = 0
        while chunk := await reader.read(1 << 20):
            got += len(chunk)
        return got
    finally:
        writer.close()


async def pull_bundle(client: httpx.AsyncClient, repo: str, headers: dict[str, str], result: Round,
                      token_auth: tuple[str, str] | None, anonymous_token: bool) -> None:
    """One node's pull: (token,) index, the amd64 image and the model, their blobs."""
    try:
        if token_auth is not None or anonymous_token:
            resp = await client.get("/auth/token", params={"service": "ecr", "scope": f"repository:{repo}:pull"},
                                    auth=token_auth)
            if resp.status_code != 200:
                result.errors.append(f"token {resp.status_code}")
                return
            headers = {**headers, "Authorization": f"Bearer {resp.json()['token']}"}

        async def manifest(reference: str) -> dict[str, Any]:
            started = time.perf_counter()
            resp = await client.get(f"/v2/{repo}/manifests/{reference}", headers={**headers, "Accept": ACCEPT})
            result.manifest_ms.append(1000 * (time.perf_counter() - started))
            resp.raise_for_status()
            doc: dict[str, Any] = resp.json()
            return doc

        index = await manifest("1.0.0")
        wanted = [e["digest"] for e in index["manifests"]
                  if e.get("artifactType") == mt.MODEL_ARTIFACT_TYPE
                  or (e.get("platform") or {}).get("architecture") == "amd64"]
        for digest in wanted:
            doc = await manifest(digest)
            for blob in [doc["config"], *doc.get("layers", [])]:
                got = await fetch_blob(str(client.base_url), f"/v2/{repo}/blobs/{blob['digest']}", headers)
                if got != blob["size"]:
                    result.errors.append(f"blob {blob['digest'][:19]}: {got} of {blob['size']} bytes")
                result.bytes += got
    except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
        result.errors.append(f"{exc.__class__.__name__}: {str(exc)[:120]}")


async def fleet(base: str, clients: int, plan: Plan) -> Round:
    result = Round()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(300, connect=60)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(pull_bundle(client, repo, headers, result, auth, anonymous)
                               for repo, headers, auth, anonymous in plan))
        result.seconds = time.perf_counter() - started
    return result


def probe(base: str, token: str, repo: str, stop: Any, out: Any) -> None:
    """In its own process: one manifest GET after another until ``stop``, latencies (ms) to ``out``.

    The fleet's own client is saturated by blob reads, so its manifest timings measure
    its event loop as much as the server; this single client measures the server.
    """
    import requests

    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    latencies, errors = [], 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ok = session.get(f"{base}/v2/{repo}/manifests/1.0.0", headers=headers, timeout=60).status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(1000 * (time.perf_counter() - started))
        errors += not ok
        time.sleep(0.02)
    out.put((latencies, errors))


def probed(base: str, token: str, repo: str, run: Any) -> tuple[Any, list[float], int]:
    """``run()`` while a probe process times manifest GETs."""
    context = multiprocessing.get_context("spawn")
    stop, out = context.Event(), context.Queue()
    prober = context.Process(target=probe, args=(base, token, repo, stop, out), daemon=True)
    prober.start()
    try:
        result = run()
    finally:
        stop.set()
    latencies, errors = out.get(timeout=120)
    prober.join(30)
    return result, latencies, errors


class RssSampler:
    """The peak resident set of a process while running (sampled every 100 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mib = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mib = max(self.peak_mib, self.rss_mib())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], fraction: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(int(len(ordered) * fraction), len(ordered) - 1)], 1) if ordered else None


def summary(side: Round, probe_ms: list[float], probe_errors: int) -> dict[str, Any]:
    latencies = sorted(side.manifest_ms)
    return {
        "probe_manifest_p50_ms": percentile(probe_ms, 0.5),
        "probe_manifest_p99_ms": percentile(probe_ms, 0.99),
        "probe_manifests": len(probe_ms),
        "probe_errors": probe_errors,
        "seconds": round(side.seconds, 2),
        "mib_s": round(side.bytes / (1 << 20) / side.seconds, 1),
        "gib": round(side.bytes / (1 << 30), 2),
        "fleet_manifest_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "fleet_manifest_p99_ms": percentile(latencies, 0.99),
        "manifests": len(latencies),
        "errors": len(side.errors),
        "first_errors": side.errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of gateway and direct back to back (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecr-fleet-") as tmp:
        work = Path(tmp)
        gw = GatewayProcess(work / "data")
        gw.start()
        try:
            admin = gw.admin()
            admin.add_user("alice", PASSWORDS["alice"])
            layout = build_tiny_layout(work / "oci", work, archs=("amd64",))
            bundle = write_bundle(work / "bundle", layout, dict(BASE_METADATA, name="fleet",
                                                                images=[{"platform": "linux/amd64",
                                                                         "from": "oci:images:amd64"}]),
                                  weights=os.urandom(args.mib << 20))
            env = {**os.environ, "ECR_USERNAME": "alice", "ECR_PASSWORD": PASSWORDS["alice"]}
            for repo in ("alice/fleet-pub", "alice/fleet-prot"):
                subprocess.run(["ecr", "push", "--quiet", str(bundle), f"{gw.host}/{repo}:1.0.0"], check=True,
                               env=env, capture_output=True, timeout=600)
            gw.admin("alice").set_visibility("alice/fleet-prot", "protected")
            admin.set_stage("alice/fleet-prot", "1.0.0", "approved", "fleet")
            nodes = [(f"fleet-node-{i}", admin.add_node(f"fleet-node-{i}", ["fleet"])) for i in range(args.nodes)]

            upstream = TokenIssuer(SigningKey(gw.data_dir / "keys", "upstream"), issuer="ecr-gateway",
                                   audience="ecr-registry", ttl=3600)
            direct_token = upstream.mint("bench", [{"type": "repository", "name": repo, "actions": ["pull"]}
                                                   for repo in ("alice/fleet-pub", "alice/fleet-prot")])[0]
            half = args.clients // 2
            through_gateway: Plan = [("alice/fleet-pub", {}, None, True) for _ in range(half)] + [
                ("alice/fleet-prot", {}, nodes[i % len(nodes)], False) for i in range(args.clients - half)]
            direct: Plan = [(repo, {"Authorization": f"Bearer {direct_token}"}, None, False)
                      for repo, _, _, _ in through_gateway]
            assert gw.proc is not None
            gateway_token = gw.token(None, "repository:alice/fleet-pub:pull")["token"]
            sides: dict[str, list[tuple[Round, list[float], int]]] = {"gateway": [], "direct": []}
            rss_baseline = RssSampler(gw.proc.pid).rss_mib()
            rss_peak, rss_end = 0.0, 0.0
            for i in range(args.rounds):
                for side in ("gateway", "direct") if i % 2 == 0 else ("direct", "gateway"):  # cancel drift
                    if side == "direct":
                        sides["direct"].append(probed(gw.registry_url(), direct_token, "alice/fleet-pub",
                                                      lambda: asyncio.run(fleet(gw.registry_url(), args.clients,
                                                                                direct))))
                        continue
                    with RssSampler(gw.proc.pid) as rss:
                        sides["gateway"].append(probed(gw.url, gateway_token, "alice/fleet-pub", lambda: asyncio.run(
                            fleet(gw.url, args.clients, through_gateway))))
                    rss_peak, rss_end = max(rss_peak, rss.peak_mib), rss.rss_mib()
        finally:
            gw.stop()
    chosen = {name: sorted(rounds, key=lambda r: r[0].seconds)[len(rounds) // 2] for name, rounds in sides.items()}
    results: dict[str, Any] = {
        "clients": args.clients, "bundle_mib": args.mib, "nodes": args.nodes, "rounds": args.rounds,
        "cpus": os.cpu_count(),
        **{name: summary(*side) for name, side in chosen.items()},
        # per round (gateway and direct back to back), then the median: the machine's load drifts
        "round_ratios": [round(g.bytes / g.seconds / (d.bytes / d.seconds), 3)
                         for (g, _, _), (d, _, _) in zip(sides["gateway"], sides["direct"], strict=True)],
        "errors": sum(len(r.errors) + probe_errors for rounds in sides.values() for r, _, probe_errors in rounds),
        "gateway_rss_before_mib": round(rss_baseline, 1),
        "gateway_rss_peak_mib": round(rss_peak, 1),
        "gateway_rss_end_mib": round(rss_end, 1),
    }
    results["throughput_ratio"] = statistics.median(results["round_ratios"])
    results["verdict"] = "PASS" if results["throughput_ratio"] >= 0.9 and results["errors"] == 0 else "MISS"
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

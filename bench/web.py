#!/usr/bin/env python3
"""Web pages and catalog API over a large catalog: p50/p95 per page, one run.

    python bench/web.py [--bundles 1000] [--versions 10] [--requests 200]

Seeds a fresh data directory (``bench/seed_catalog.py``: 1,000 bundles, 10,000
versions in the state store), starts ``ecr serve`` on it, then times sequential
requests (after a warm-up) to the search page (anonymous, a text query, filters, a
signed-in user), a bundle page, and the JSON catalog API (``/api/v1/bundles``) in the
same run. The issue's target: search and bundle pages p95 < 100 ms. Not collected by
pytest (file name); writes ``bench-results/web.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import requests  # noqa: E402
from seed_catalog import seed  # noqa: E402

from tests.gateway.support import GatewayProcess  # noqa: E402

TARGET_MS = 100.0


def timed(session: requests.Session, url: str, count: int) -> dict[str, float]:
    for _ in range(5):
        session.get(url, timeout=60).raise_for_status()
    took = []
    for _ in range(count):
        started = time.perf_counter()
        resp = session.get(url, timeout=60)
        took.append(1000 * (time.perf_counter() - started))
        resp.raise_for_status()
    took.sort()
    return {"p50_ms": round(statistics.median(took), 1), "p95_ms": round(took[int(len(took) * 0.95) - 1], 1),
            "bytes": len(resp.content)}


def sign_in(base: str, user: str, password: str) -> requests.Session:
    session = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{base}/login", timeout=30).text)
    assert token
    resp = session.post(f"{base}/login", data={"csrf": token[1], "username": user, "password": password},
                        timeout=30, allow_redirects=False)
    assert resp.status_code == 303, resp.text
    return session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ecr-bench-web-"))
    started = time.perf_counter()
    info = seed(work / "data", args.bundles, args.versions)
    seeded = time.perf_counter() - started
    gw = GatewayProcess(work / "data")
    gw.start()
    try:
        base = gw.url
        example = str(info["example"])
        anonymous = requests.Session()
        owner = sign_in(base, example.split("/")[0], str(info["password"]))
        cases = {
            "search page (anonymous, all)": (anonymous, f"{base}/"),
            "search page (q=owl)": (anonymous, f"{base}/?q=owl"),
            "search page (platform+hardware+stage, by name)":
                (anonymous, f"{base}/?platform=linux/arm64&hardware=gpu&stage=approved&sort=name"),
            "search page (signed in, page 3)": (owner, f"{base}/?q=bird&page=3"),
            "bundle page (latest)": (anonymous, f"{base}/bundles/{example}"),
            "bundle page (version, signed in)": (owner, f"{base}/bundles/{example}/1.3.0"),
            "API /api/v1/bundles/NAME": (anonymous, f"{base}/api/v1/bundles/{example}"),
            "API /api/v1/bundles?q=owl": (anonymous, f"{base}/api/v1/bundles?q=owl"),
        }
        results: dict[str, object] = {"bundles": info["bundles"], "versions": info["versions"],
                                      "seed_seconds": round(seeded, 1), "requests": args.requests, "pages": {}}
        pages: dict[str, dict[str, float]] = {}
        for label, (session, url) in cases.items():
            count = args.requests if not label.startswith("API /api/v1/bundles?") else max(10, args.requests // 10)
            pages[label] = timed(session, url, count)
        results["pages"] = pages
    finally:
        gw.stop()
    print(f"{info['bundles']} bundles, {info['versions']} versions (seeded in {seeded:.1f}s); "
          f"{args.requests} sequential requests each")
    print(f"{'what':52} {'p50 ms':>8} {'p95 ms':>8}  target")
    for label, figures in pages.items():
        verdict = "" if label.startswith("API") else ("PASS" if figures["p95_ms"] < TARGET_MS else "MISS")
        print(f"{label:52} {figures['p50_ms']:8.1f} {figures['p95_ms']:8.1f}  {verdict}")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "web.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Seed a gateway's state store with a large catalog: N bundles x M versions.

    python bench/seed_catalog.py DATA_DIR [--bundles 1000] [--versions 10]

Writes what ``ecr serve`` keeps about bundles (repository records with visibilities
and grants, users, the catalog index with realistic metadata, platforms and model
files, some stage events) straight into ``DATA_DIR/state.db``, through the same
:class:`~ecr_oci.gateway.stores.state.SqliteStore` and :func:`~ecr_oci.gateway.domain.bundle_index.version_row`
the gateway uses. The registry holds none of it: this measures the pages and the API
over the index, not registry round trips. Deterministic (seeded random).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecr_oci.gateway import passwords  # noqa: E402
from ecr_oci.gateway.domain.bundle_index import version_row  # noqa: E402
from ecr_oci.gateway.stores.state import Account, SqliteStore, StageEvent  # noqa: E402
from ecr_oci.mediatypes import MODEL_LAYER  # noqa: E402

WORDS = ["owl", "bird", "bat", "frog", "insect", "smoke", "fire", "cloud", "snow", "rain", "traffic",
         "pedestrian", "car", "bike", "sound", "noise", "air", "pollen", "dust", "water", "river", "flood",
         "soil", "wind", "solar"]
NAMESPACES = [f"team{i:02d}" for i in range(40)]
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "GPL-3.0-only")
SEED_PASSWORD = "bench-password"


def fake_digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def document(rng: random.Random, name: str, version: str, repository: str) -> dict[str, object]:
    words = rng.sample(WORDS, 3)
    platforms = rng.sample(PLATFORMS, rng.randint(1, 3))
    hardware: dict[str, object] = {"camera": rng.random() < 0.5, "memory": f"{rng.choice((256, 512, 1024))}Mi"}
    if rng.random() < 0.3:
        hardware["gpu"] = True
    return {
        "metadata": {
            "name": name, "version": version, "license": rng.choice(LICENSES),
            "description": f"Detects {words[0]} and {words[1]} near {words[2]} from edge sensors. " * 3,
            "authors": f"Scientist {rng.randint(1, 300)} <s@example.org>", "keywords": words,
            "source": f"https://example.org/{repository}.git", "revision": fake_digest(repository, version)[7:47],
            "hardware": hardware, "runtime": {"python": ">=3.11"},
        },
        "platforms": [{"platform": p, "digest": fake_digest(repository, version, p),
                       "size": rng.randint(1 << 20, 400 << 20)} for p in platforms],
        "model": {"digest": fake_digest(repository, version, "model"), "size": 50 << 20,
                  "files": [{"path": "model/weights.bin", "digest": fake_digest(repository, version, "w"),
                             "size": 50 << 20, "role": "model", "media_type": MODEL_LAYER}]},
        "size": 200 << 20,
        "media_type": "application/vnd.oci.image.index.v1+json",
    }


def seed(data_dir: Path, bundles: int, versions: int) -> dict[str, object]:
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261201)
    store = SqliteStore(data_dir / "state.db")
    try:
        hashed = passwords.hash_password(SEED_PASSWORD)
        for ns in NAMESPACES:
            store.add_account(Account(ns, "user", password_hash=hashed))
        now = time.time()
        repositories = []
        for i in range(bundles):
            ns = NAMESPACES[i % len(NAMESPACES)]
            name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i:04d}"
            repository = f"{ns}/{name}"
            repositories.append(repository)
            roll = rng.random()
            visibility = "public" if roll < 0.8 else "protected" if roll < 0.95 else "private"
            store.set_visibility(repository, visibility)  # type: ignore[arg-type]
            if visibility == "protected":
                store.set_grant(repository, NAMESPACES[(i + 1) % len(NAMESPACES)], "read")
            for v in range(versions):
                tag = f"1.{v}.0"
                pushed = now - (bundles - i) * 3600 - (versions - v) * 60
                doc = document(rng, name, tag, repository)
                row = version_row(repository, tag, fake_digest(repository, tag), doc, pushed)
                store.put_bundle_version(row)
                if v == versions - 1 and rng.random() < 0.3:
                    store.add_stage_event(StageEvent(repository, row.digest, "approved", "neon", "admin", pushed, {}))
        return {"bundles": bundles, "versions": bundles * versions, "example": repositories[0],
                "namespaces": len(NAMESPACES), "password": SEED_PASSWORD}
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    info = seed(args.data_dir, args.bundles, args.versions)
    print(f"seeded {info['bundles']} bundles, {info['versions']} versions in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()

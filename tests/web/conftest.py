"""A real ``ecr serve`` with real bundles, and a real headless Chromium driving its pages.

Population (session fixture ``site``): users alice (owner of ``alice/*``), bob (read grant on
alice/secret-birds), eve; bundles alice/owl-counter 0.1.0 and 0.2.0 (public, 0.2.0
approved for deployment ``neon`` and so countersigned, with two node profiles),
alice/secret-birds 1.0.0 (protected), alice/evil 0.1.0 (public, hostile metadata),
alice/flip 0.1.0 (public; the tests of the owners' forms change it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import PASSWORDS, GatewayProcess, password_of

OWL_DOI = "10.5072/FK2OWL.COUNTER"
BUILDER = "https://ci.example.org/owl-builds"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("ECR_SCREENSHOTS", "")) if os.environ.get("ECR_SCREENSHOTS") else None
# Strings that would become markup if any page, attribute, SVG or JSON block echoed them raw.
HOSTILE = {
    "description": "<script>window.pwned=1</script>\"><img src=x onerror=\"window.pwned=2\"> & more",
    "homepage": "https://example.org/\"><img src=x onerror=window.pwned=3>",
    "author": "Mallory <mallory@example.org>\"><svg onload=window.pwned=5>",
    "science": "</script><script>window.pwned=6</script>",
    "revision": "javascript:window.pwned=7",
    "input": "<img src=x onerror=window.pwned=8>",
    "accelerator": "</text><script>window.pwned=9</script>",
}


@dataclass
class Site:
    gw: GatewayProcess
    digests: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> bundle index digest

    @property
    def url(self) -> str:
        return self.gw.url


def push(gw: GatewayProcess, root: Path, ref: str, user: str = "alice") -> str:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw)}
    proc = subprocess.run(["ecr", "push", "--quiet", str(root), f"{gw.host}/{ref}"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().rsplit("@", 1)[-1]


def attach_profile(gw: GatewayProcess, repository: str, tag: str, node: str, model: str, p95: float) -> None:
    from ecr_oci.bundle.remote import fetch_bundle
    from ecr_oci.profile import Hardware, Latency, MetricsSummary, ProfileSummary, ScrapeSource, Window, Workload
    from ecr_oci.profile.attach import attach_profile as attach
    from ecr_oci.profile.result import ProfileResult
    from ecr_oci.registry.reference import parse_reference

    client = gw.client("alice")
    bundle = fetch_bundle(client, parse_reference(f"{gw.host}/{repository}:{tag}"))
    summary = ProfileSummary(
        bundle=bundle.digest, node=node, stage="node",
        hardware=Hardware(model, "arm64", 8 << 30, "nvidia-volta" if "Xavier" in model else None),
        window=Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 0, 5, tzinfo=UTC)),
        workload=Workload("birds at the feeder"),
        metrics=MetricsSummary(Latency(p95 * 0.6, p95, p95 * 1.2, p95 * 0.7, None, "histogram"), 1 / p95, 0.8,
                               300 << 20, 0, 1200, gpu_utilization=0.4 if "Xavier" in model else None),
        source=ScrapeSource("http://127.0.0.1:1/metrics", 1.0, 300),
    )
    attach(client, bundle, ProfileResult(summary, ()), with_series=False)


def draw_icon(path: Path) -> None:
    """A small PNG icon: an owl's two eyes."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), "#3b5b8c")
    draw = ImageDraw.Draw(image)
    for x in (10, 34):
        draw.ellipse((x, 16, x + 20, 36), fill="#f5f6f8")
        draw.ellipse((x + 6, 22, x + 14, 30), fill="#16263d")
    draw.polygon([(28, 38), (36, 38), (32, 46)], fill="#f0a500")
    image.save(path)


def sign_and_attest(gw: GatewayProcess, repository: str, tag: str) -> None:
    """The author's own signature (a key this ECR does not know) and SLSA provenance."""
    from ecr_oci.bundle.remote import fetch_bundle
    from ecr_oci.registry.reference import parse_reference
    from ecr_oci.trust.keys import generate_key
    from ecr_oci.trust.provenance import attach_provenance, build_statement
    from ecr_oci.trust.sign import sign_native

    client = gw.client("alice")
    ref = parse_reference(f"{gw.host}/{repository}:{tag}")
    key = generate_key()
    sign_native(client, ref, key)
    statement = build_statement(fetch_bundle(client, ref), builder_id=BUILDER,
                                materials=[{"uri": "pkg:deb/debian/python3@3.11", "digest": {"sha256": "ab" * 32}}])
    attach_provenance(client, ref, key, statement)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_layout: Path) -> Iterator[Site]:
    if not shutil.which("docker-registry") and not Path("/usr/bin/docker-registry").exists():
        pytest.fail("docker-registry is not installed: run `make deps`")
    work = tmp_path_factory.mktemp("web")
    gw = GatewayProcess(work / "data")
    gw.start()
    try:
        admin = gw.admin()
        for user, password in PASSWORDS.items():
            admin.add_user(user, password)
        site = Site(gw)
        owl = {**BASE_METADATA, "name": "owl-counter", "keywords": ["owls", "wildlife"], "doi": OWL_DOI,
               "description": "Counts owls at night from a camera stream.\n\nRuns on Jetson and amd64 nodes.",
               "homepage": "https://example.org/owls"}
        site.digests["alice/owl-counter:0.1.0"] = push(gw, write_bundle(work / "owl1", tiny_layout, owl),
                                                       "alice/owl-counter:0.1.0")
        owl2 = write_bundle(work / "owl2", tiny_layout, {**owl, "version": "0.2.0", "icon": "icon.png"},
                            weights=b"\x02" * 8192)
        draw_icon(owl2 / "icon.png")
        site.digests["alice/owl-counter:0.2.0"] = push(gw, owl2, "alice/owl-counter:0.2.0")
        secret = {**BASE_METADATA, "name": "secret-birds", "keywords": ["secret"],
                  "description": "A protected bundle about rare birds."}
        site.digests["alice/secret-birds:1.0.0"] = push(gw, write_bundle(work / "secret", tiny_layout, secret),
                                                        "alice/secret-birds:1.0.0")
        evil = {**BASE_METADATA, "name": "evil", "description": HOSTILE["description"], "keywords": ["evil"],
                "homepage": HOSTILE["homepage"], "authors": [HOSTILE["author"]], "science": HOSTILE["science"],
                "source": {"url": "https://example.org/evil.git", "revision": HOSTILE["revision"]},
                "inputs": [{"name": HOSTILE["input"], "description": HOSTILE["description"]}],
                "hardware": {"camera": True, "accelerator": HOSTILE["accelerator"]}}
        site.digests["alice/evil:0.1.0"] = push(gw, write_bundle(work / "evil", tiny_layout, evil),
                                                "alice/evil:0.1.0")
        site.digests["alice/flip:0.1.0"] = push(
            gw, write_bundle(work / "flip", tiny_layout, {**BASE_METADATA, "name": "flip", "keywords": ["flip"]}),
            "alice/flip:0.1.0")
        owner = gw.admin("alice")
        owner.set_visibility("alice/secret-birds", "protected")
        owner.grant("alice/secret-birds", "bob", "read")
        admin.set_stage("alice/owl-counter", "0.2.0", "approved", "neon")
        attach_profile(gw, "alice/owl-counter", "0.2.0", "W0A1", "NVIDIA Jetson Xavier NX", 0.042)
        attach_profile(gw, "alice/owl-counter", "0.2.0", "W0B7", "Raspberry Pi 4", 0.180)
        attach_profile(gw, "alice/owl-counter", "0.1.0", "W0A1", "NVIDIA Jetson Xavier NX", 0.055)
        sign_and_attest(gw, "alice/owl-counter", "0.2.0")
        yield site
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's) through its chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("chromium and chromium-driver are not installed: run `make deps`")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()

"""Crashes during a series of pushes and pulls: one gateway and one registry replica are killed.

Clients retry a failed command (as a CI job or an operator would); the balancer sends
them to the survivors. Afterwards nothing is lost (every reported push is there, with
the digest it reported), nothing is half-visible (every tag names a complete bundle,
every approval names a bundle that exists), and every pulled copy was intact.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess
from tests.scaleout.stack import ScaleOut
from tests.scaleout.support import ecr, missing_parts

pytestmark = pytest.mark.slow

REPO = "alice/series"
ROUNDS = 5
ATTEMPTS = 5


@dataclass
class Series:
    """What the client side saw."""

    pushed: dict[str, str] = field(default_factory=dict)  # tag -> digest ecr push printed
    pulled: dict[str, bool] = field(default_factory=dict)  # tag -> the copy matched what was pushed
    approved: dict[str, str] = field(default_factory=dict)  # tag -> digest
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    rounds_done: int = 0


def _with_retries(series: Series, what: str, action: list[str], stack: ScaleOut, user: str) -> str | None:
    for attempt in range(ATTEMPTS):
        done = ecr(stack, user, *action, timeout=120)
        if done.returncode == 0:
            return done.stdout
        series.retries += 1
        last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        time.sleep(0.5 * (attempt + 1))
    series.failures.append(f"{what}: {last[0]}")
    return None


def _run_series(stack: ScaleOut, roots: list[Path], weights: list[bytes], out: Path, series: Series) -> None:
    for i, root in enumerate(roots):
        tag = f"0.1.{i}"
        ref = f"{stack.host}/{REPO}:{tag}"
        printed = _with_retries(series, f"push {tag}", ["push", "--quiet", str(root), ref], stack, "alice")
        if printed is not None:
            series.pushed[tag] = printed.strip().rsplit("@", 1)[1]
            approved = _with_retries(series, f"approve {tag}", ["stage", "set", ref, "approved", "--deployment",
                                                                 "edge", "--server", stack.url], stack, "admin")
            if approved is not None:
                series.approved[tag] = series.pushed[tag]
        if i:  # pull the previous one while the next goes in
            previous = f"0.1.{i - 1}"
            target = out / previous
            pulled = _with_retries(series, f"pull {previous}", ["pull", "--quiet", "--platform", "linux/arm64",
                                                                "-o", str(target), f"{stack.host}/{REPO}:{previous}"],
                                   stack, "eve")
            if pulled is not None:
                copy = next(target.rglob("weights.bin"), None)
                series.pulled[previous] = copy is not None and copy.read_bytes() == weights[i - 1]
        series.rounds_done = i + 1


def test_kill_a_gateway_and_a_registry_during_pushes_and_pulls(stack: ScaleOut, tiny_layout: Path,
                                                                tmp_path: Path) -> None:
    weights = [os.urandom(8 << 20) for _ in range(ROUNDS)]
    roots = [write_bundle(tmp_path / f"b{i}", tiny_layout, dict(BASE_METADATA, name="series"), weights=weights[i])
             for i in range(ROUNDS)]
    series = Series()
    worker = threading.Thread(target=_run_series, args=(stack, roots, weights, tmp_path / "out", series))
    gateway, replica = stack.gateways[0], stack.registries[0]
    worker.start()
    try:
        # Kill each while it streams an upload: a gateway's bytes-in counter moving says it is.
        # Which gateway the balancer gives the large PATCH depends on how many requests came
        # before it, so the one seen streaming is killed (the other is what the rest uses).
        _wait_for(lambda: series.rounds_done >= 1 or not worker.is_alive())
        streaming = [_uploading(g) for g in stack.gateways]
        _wait_for(lambda: any(seen() for seen in streaming), timeout=120)
        gateway = next((g for g, seen in zip(stack.gateways, streaming, strict=True) if seen()), gateway)
        survivor = next(g for g in stack.gateways if g is not gateway)
        assert gateway.proc is not None
        gateway.proc.kill()
        _wait_for(lambda: series.rounds_done >= 3 or not worker.is_alive())
        _wait_for(_uploading(survivor), timeout=120)  # to one of the two replicas
        replica.kill()
        worker.join(600)
        assert not worker.is_alive()
    finally:
        gateway.proc and gateway.proc.wait()
        worker.join(600)
        gateway.start()  # back for the other tests (same port, data and database)
        replica.start()

    assert series.failures == [], series.failures
    expected = [f"0.1.{i}" for i in range(ROUNDS)]
    assert sorted(series.pushed) == expected and sorted(series.approved) == expected
    assert series.pulled == {tag: True for tag in expected[:-1]}
    client = stack.client("eve")
    versions = sorted(t for t in client.tags(REPO) if not t.startswith("sha256-"))  # not the referrer tags
    assert versions == expected  # nothing lost, nothing extra
    for tag, digest in series.pushed.items():
        assert client.get_manifest(REPO, tag).digest == digest
        assert missing_parts(client, REPO, digest) == [], f"{tag} is incomplete"
    trail = ecr(stack, "admin", "stage", "list", "--json", f"{stack.host}/{REPO}", "--server", stack.url)
    assert trail.returncode == 0, trail.stderr
    approvals = {e["digest"] for e in json.loads(trail.stdout) if e.get("stage") == "approved"}
    assert approvals == set(series.pushed.values())  # no approval of anything that is not there
    # the kills hit traffic: the balancer saw requests to both fail (and sent them on, or the client resumed)
    hit_gateway, hit_registry = stack.upstream_errors(gateway.port), stack.upstream_errors(replica.port)
    assert hit_gateway and hit_registry
    print(f"\nfailover series: {ROUNDS} pushes, {ROUNDS - 1} pulls, {ROUNDS} approvals; failed requests seen by "
          f"nginx: {len(hit_gateway)} to the killed gateway, {len(hit_registry)} to the killed registry; "
          f"{series.retries} command retries")
    for line in hit_gateway[:3] + hit_registry[:3]:
        print("  ", line.split("] ", 1)[-1][:200])


def _wait_for(condition: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def _uploading(gateway: GatewayProcess) -> Callable[[], bool]:
    """True once the gateway's streamed upload bytes grow past what they were when asked."""
    def bytes_in() -> float:
        try:
            text = requests.get(f"{gateway.url}/metrics", timeout=5).text
        except requests.RequestException:
            return -1.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("ecr_gateway_bytes_total") and 'direction="in"' in line)

    start = bytes_in()
    return lambda: bytes_in() > start + (1 << 20)

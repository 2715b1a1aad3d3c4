#!/usr/bin/env python3
"""bird-detector: the ecr-oci example edge plugin.

A deliberately tiny but real plugin: it loads a model from disk, runs
"inference" over synthetic camera frames and reports what it saw.

Model (``$ECR_MODEL_DIR``, default ``/app/model``; in a bundle it ships in
the model manifest and is mounted there read-only at run time):

* ``weights.bin`` - a linear classifier: one row of signed 8-bit weights per
  label, ``len(labels) * frame_size`` bytes (frame_size = size / labels).
* ``labels.txt``  - one label per line, in row order; the first label is the
  "no bird" class (``background``).

Environment:

* ``FRAMES``            frames to process (default 5); ``0`` = run until SIGTERM/SIGINT
* ``FRAME_INTERVAL``    seconds to wait between frames (default 0)
* ``FRAME_SEED``        seed of the synthetic frames (default ``0``)
* ``LATENCY_MS``        extra per-inference latency in ms (default 0), so a test
                        can drive a known inference latency
* ``METRICS_PORT``      if set and ``prometheus_client`` is importable, serve
                        Prometheus metrics on this port (``0`` = any free port)
* ``METRICS_ADDR``      listen address for the metrics server (default 0.0.0.0)
* ``ECR_BUNDLE_DIGEST`` value of the ``bundle`` metric label (default ``unknown``)

Output (stdout): one line per inference, ``frame=N label=L score=S``, then
``summary frames=N env.bird.count=B top=L model=sha256:H bundle=D``.
Both are deterministic for a given model, FRAME_SEED and FRAMES.
Diagnostics go to stderr.  Exit codes: 0 ok, 2 bad configuration, 3 bad model.

Standard library only; ``prometheus_client`` is optional.
"""

from __future__ import annotations

import hashlib
import math
import operator
import os
import signal
import sys
import threading
import time
from collections import Counter as Tally
from pathlib import Path

DEFAULT_MODEL_DIR = "/app/model"
# Inference latency buckets (seconds): 1 ms .. 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConfigError(Exception):
    """Bad environment configuration (exit code 2)."""


class ModelError(Exception):
    """Missing or malformed model (exit code 3)."""


def log(msg: str) -> None:
    print(f"bird-detector: {msg}", file=sys.stderr, flush=True)


def env_number(name: str, default: float, kind=float, minimum: float = 0):
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{name}={raw!r} must be a finite number >= {minimum}")
    return value


class Model:
    """Linear classifier over ``frame_size`` byte features."""

    def __init__(self, model_dir: Path):
        weights_path = model_dir / "weights.bin"
        labels_path = model_dir / "labels.txt"
        try:
            weights = weights_path.read_bytes()
            text = labels_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelError(f"cannot read model in {model_dir}: {exc}") from None
        labels = [line.strip() for line in text.splitlines()]
        self.labels = [label for label in labels if label and not label.startswith("#")]
        if len(self.labels) < 2:
            raise ModelError(f"{labels_path}: need at least 2 labels, found {len(self.labels)}")
        if not weights or len(weights) % len(self.labels):
            raise ModelError(f"{weights_path}: {len(weights)} bytes is not a multiple of {len(self.labels)} labels")
        self.frame_size = len(weights) // len(self.labels)
        self.digest = "sha256:" + hashlib.sha256(weights).hexdigest()
        signed = [b - 256 if b > 127 else b for b in weights]
        self.rows = [signed[k * self.frame_size : (k + 1) * self.frame_size] for k in range(len(self.labels))]
        # Dot products of uniform int8 vectors have a spread of about
        # sqrt(n) * 74 * 74; scale logits so the softmax is neither flat nor one-hot.
        self.scale = math.sqrt(self.frame_size) * 74.0 * 74.0 / 3.0

    def infer(self, frame: bytes) -> tuple[str, float]:
        x = [b - 128 for b in frame]
        logits = [sum(map(operator.mul, row, x)) / self.scale for row in self.rows]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        best = max(range(len(exps)), key=exps.__getitem__)
        return self.labels[best], exps[best] / sum(exps)


def synthetic_frame(seed: str, index: int, size: int) -> bytes:
    """Deterministic stand-in for a camera frame: ``size`` bytes of features."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"frame:{seed}:{index}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class Metrics:
    """Optional Prometheus exporter (no-op without METRICS_PORT or prometheus_client)."""

    def __init__(self, bundle: str):
        self.bundle = bundle
        self.latency = self.frames = None
        port_raw = os.environ.get("METRICS_PORT", "").strip()
        if not port_raw:
            return
        port = int(env_number("METRICS_PORT", 0, int))
        if port > 65535:
            raise ConfigError(f"METRICS_PORT={port_raw!r} is not a TCP port")
        try:
            import prometheus_client
        except ImportError:
            log("METRICS_PORT is set but prometheus_client is not importable; metrics disabled")
            return
        self.latency = prometheus_client.Histogram(
            "ecr_inference_seconds",
            "Latency of one bird-detector inference, in seconds.",
            ["bundle"],
            buckets=LATENCY_BUCKETS,
        ).labels(bundle=bundle)
        # prometheus_client appends the _total suffix: exposed as ecr_frames_total.
        self.frames = prometheus_client.Counter("ecr_frames", "Frames processed by bird-detector.", ["bundle"]).labels(
            bundle=bundle
        )
        addr = os.environ.get("METRICS_ADDR", "0.0.0.0")
        started = prometheus_client.start_http_server(port, addr=addr)
        if isinstance(started, tuple):  # prometheus_client >= 0.15 returns (server, thread)
            port = started[0].server_address[1]
        log(f"metrics on http://{addr}:{port}/metrics bundle={bundle}")

    def observe(self, seconds: float) -> None:
        if self.latency is not None:
            self.latency.observe(seconds)
            self.frames.inc()


def run() -> int:
    frames = int(env_number("FRAMES", 5, int))
    interval = env_number("FRAME_INTERVAL", 0.0)
    latency = env_number("LATENCY_MS", 0.0) / 1000.0
    seed = os.environ.get("FRAME_SEED", "0")
    bundle = os.environ.get("ECR_BUNDLE_DIGEST", "").strip() or "unknown"
    model_dir = Path(os.environ.get("ECR_MODEL_DIR", "").strip() or DEFAULT_MODEL_DIR)

    model = Model(model_dir)
    log(
        f"model {model.digest} from {model_dir}: {len(model.labels)} labels, "
        f"{model.frame_size}-byte frames; frames={frames or 'infinite'}"
    )
    metrics = Metrics(bundle)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"signal {signum}: stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    seen: Tally[str] = Tally()
    birds = 0
    done = 0
    while not stop.is_set() and (frames == 0 or done < frames):
        frame = synthetic_frame(seed, done, model.frame_size)
        started = time.perf_counter()
        label, score = model.infer(frame)
        if latency:
            time.sleep(latency)
        metrics.observe(time.perf_counter() - started)
        print(f"frame={done} label={label} score={score:.2f}", flush=True)
        if label != model.labels[0]:
            birds += 1
            seen[label] += 1
        done += 1
        if interval and (frames == 0 or done < frames):
            stop.wait(interval)

    # Most frequent bird; ties go to the label listed first in labels.txt.
    order = {label: i for i, label in enumerate(model.labels)}
    top = min(seen, key=lambda lbl: (-seen[lbl], order[lbl])) if seen else "none"
    print(
        f"summary frames={done} env.bird.count={birds} top={top} model={model.digest[:19]} bundle={bundle}",
        flush=True,
    )
    return 0


def main() -> int:
    try:
        return run()
    except ConfigError as exc:
        log(f"configuration error: {exc}")
        return 2
    except ModelError as exc:
        log(f"model error: {exc}")
        return 3


if __name__ == "__main__":
    sys.exit(main())

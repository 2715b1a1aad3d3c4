#!/usr/bin/env python3
"""Regenerate the bird-detector example "model" (deterministic, stdlib only).

The model is a tiny linear classifier: ``weights.bin`` holds one row of
signed 8-bit weights per label (row-major, ``len(labels) * FRAME_SIZE``
bytes); ``labels.txt`` lists the labels, one per line, in row order.
The bytes come from SHA-256 in counter mode over a fixed seed, so running
this script always writes byte-identical files:

    python3 make_model.py [MODEL_DIR]      # default: ./model next to this file
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SEED = b"ecr-oci/examples/bird-detector/weights/v1"
LABELS = (
    "background",  # row 0: no bird in the frame
    "robin",
    "blue_jay",
    "cardinal",
    "sparrow",
    "crow",
    "chickadee",
    "goldfinch",
)
FRAME_SIZE = 512  # bytes of "features" per frame: 8 labels x 512 = 4096 bytes


def weights_bytes(n_labels: int = len(LABELS), frame_size: int = FRAME_SIZE) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n_labels * frame_size:
        out += hashlib.sha256(SEED + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[: n_labels * frame_size])


def labels_text() -> str:
    return "".join(label + "\n" for label in LABELS)


def main(argv: list[str]) -> int:
    model_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "weights.bin").write_bytes(weights_bytes())
    (model_dir / "labels.txt").write_text(labels_text(), encoding="utf-8")
    print(f"wrote {model_dir / 'weights.bin'} and {model_dir / 'labels.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The summary document: schema, spec examples, canonical bytes, raw series layer."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest

from ecr_oci import spec
from ecr_oci.errors import ValidationError
from ecr_oci.profile import (
    Hardware,
    Latency,
    MetricsSummary,
    ProfileSummary,
    ScrapeSource,
    Series,
    Window,
    Workload,
    decode_series,
    detect_hardware,
    encode_series,
    validate_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "examples"
VALID = sorted(p for p in EXAMPLES.glob("profile*.json") if "invalid" not in p.name)
INVALID = sorted(EXAMPLES.glob("profile-invalid-*.json"))
BUNDLE = "sha256:" + "0123456789abcdef" * 4


def summary(**metrics: float) -> ProfileSummary:
    values = {"p50": 0.1 + 0.2, "p95": 0.123456789, "throughput": 12.3456789, "cpu": 1 / 3} | metrics
    return ProfileSummary(
        bundle=BUNDLE,
        node="W0A1",
        stage="node",
        hardware=Hardware("Jetson", "arm64", 8 << 30, "nvidia-volta"),
        window=Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 0, 5, tzinfo=UTC)),
        workload=Workload("test"),
        metrics=MetricsSummary(
            Latency(values["p50"], values["p95"], 0.2, 0.15, None, "histogram"),
            values["throughput"],
            values["cpu"],
            123,
            0,
            10,
        ),
        source=ScrapeSource("http://127.0.0.1:1/metrics", 1.0, 301),
    )


def test_schema_is_valid_draft_2020_12() -> None:
    schema = spec.load_schema("profile")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://waggle.org/ecr/v1/profile.schema.json"


def test_examples_exist() -> None:
    assert len(VALID) >= 2 and len(INVALID) >= 5


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_examples_validate_and_round_trip(path: Path) -> None:
    document = json.loads(path.read_text())
    validate_document(document)
    parsed = ProfileSummary.from_dict(document)
    assert parsed.to_dict() == document
    assert ProfileSummary.from_json(parsed.to_json()) == parsed


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_examples_are_rejected(path: Path) -> None:
    with pytest.raises(ValidationError, match="profile summary"):
        validate_document(json.loads(path.read_text()))


def test_canonical_json_is_sorted_compact_and_rounded() -> None:
    data = summary().to_json()
    assert data == summary().to_json()
    text = data.decode()
    assert " " not in text.replace("test", "") and "\n" not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    metrics = json.loads(text)["metrics"]
    assert metrics["latency_seconds"]["p50"] == 0.3  # not 0.30000000000000004
    assert metrics["latency_seconds"]["p95"] == 0.123457
    assert metrics["throughput_per_second"] == 12.3457
    assert metrics["cpu_cores"] == 0.333333
    assert "gpu_utilization" not in metrics


def test_float_noise_below_six_digits_gives_identical_bytes() -> None:
    assert summary(throughput=12.34567890001).to_json() == summary(throughput=12.3456789).to_json()


def test_window_format_and_checks() -> None:
    start = datetime(2025, 1, 1, 1, 0, 0, 250_400, tzinfo=timezone(timedelta(hours=1)))
    window = Window(start, start + timedelta(seconds=30))
    assert replace(summary(), window=window).to_dict()["window"] == {
        "start": "2025-01-01T00:00:00.250Z",
        "end": "2025-01-01T00:00:30.250Z",
    }
    with pytest.raises(ValidationError, match="after its start"):
        Window(start, start)
    with pytest.raises(ValidationError, match="timezone-aware"):
        Window(datetime(2025, 1, 1), datetime(2025, 1, 2))


def test_bad_identity_is_rejected_early() -> None:
    with pytest.raises(ValidationError, match="bundle"):
        replace(summary(), bundle="sha256:ABC")
    with pytest.raises(ValidationError, match="node"):
        replace(summary(), node="bad node")


def test_schema_violations_surface_from_to_json() -> None:
    empty = MetricsSummary(summary().metrics.latency_seconds, 1, 1, 1, 0, 0)
    with pytest.raises(ValidationError, match=r"metrics\.sample_count"):
        replace(summary(), metrics=empty).to_json()


def test_from_json_rejects_non_json() -> None:
    with pytest.raises(ValidationError, match="not JSON"):
        ProfileSummary.from_json(b"{")


def test_series_layer_is_deterministic_and_round_trips() -> None:
    series = (
        Series("ecr_frames_total", {"bundle": BUNDLE}, ((1.0, 1.0), (2.0004, 3.5))),
        Series("ecr_gpu_power_watts", {"bundle": BUNDLE}, ((1.0, float("nan")), (2.0, float("inf")))),
    )
    window = summary().window
    blob = encode_series(reversed(series), bundle=BUNDLE, node="W0A1", window=window)
    assert blob == encode_series(series, bundle=BUNDLE, node="W0A1", window=window)
    document = json.loads(gzip.decompress(blob))
    assert document["resultType"] == "matrix"
    assert document["result"][0] == {
        "metric": {"__name__": "ecr_frames_total", "bundle": BUNDLE},
        "values": [[1.0, "1"], [2.0, "3.5"]],
    }
    decoded = decode_series(blob)
    assert decoded[0] == Series("ecr_frames_total", {"bundle": BUNDLE}, ((1.0, 1.0), (2.0, 3.5)))
    assert decoded[1].points[1] == (2.0, float("inf"))
    with pytest.raises(ValidationError, match="series layer"):
        decode_series(b"not gzip")


def test_detected_hardware_fits_the_schema() -> None:
    hardware = detect_hardware()
    assert hardware.memory_bytes > 0 and hardware.model
    validate_document(replace(summary(), hardware=hardware).to_dict())

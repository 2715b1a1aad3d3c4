"""Node facts: schema validation, and how a node's facts are matched against a bundle."""

from __future__ import annotations

import pytest

from ecr_oci.deploy.facts import fit, quantity, validate_facts
from ecr_oci.errors import ValidationError

JETSON = {"platform": "linux/arm64", "accelerator": "nvidia-jetson-xavier-nx", "memory": "8Gi",
          "sensors": ["camera", "microphone"]}


def test_valid_facts_pass_unchanged() -> None:
    assert validate_facts(JETSON) == JETSON
    assert validate_facts({"platform": "linux/amd64"}) == {"platform": "linux/amd64"}


@pytest.mark.parametrize(("facts", "field"), [
    ({}, "platform"),
    ({"platform": "linux/sparc"}, None),  # schema-valid shape, unknown architecture
    ({"platform": "linux/arm64", "memory": "lots"}, "memory"),
    ({"platform": "linux/arm64", "sensors": ["Camera!"]}, "sensors[0]"),
    ({"platform": "linux/arm64", "sensors": ["camera", "camera"]}, "sensors"),
    ({"platform": "linux/arm64", "gpu": True}, "(document)"),
    ({"platform": "linux/arm64", "accelerator": "<script>"}, "accelerator"),
    ("linux/arm64", "(document)"),
])
def test_invalid_facts_name_their_field(facts: object, field: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_facts(facts)
    if field:
        assert f"facts: {field}" in str(caught.value)
    else:
        assert "sparc" in str(caught.value)


def test_quantities() -> None:
    assert quantity("8Gi") == 8 * 2**30
    assert quantity("256Mi") < quantity("1G")
    assert quantity("500m") == 0.5
    with pytest.raises(ValidationError):
        quantity("8 GB")


def test_fit_matches_platform_and_hardware_with_every_reason() -> None:
    platforms = ["linux/amd64", "linux/arm64"]
    ok = fit(JETSON, platforms, {"camera": True, "gpu": True, "memory": "256Mi"})
    assert ok.can_run and ok.platform == "linux/arm64" and ok.reasons == ()
    # arm64/v8 on the node and arm64 in the bundle are the same platform
    assert fit({**JETSON, "platform": "linux/arm64/v8"}, platforms, {}).can_run
    laptop = {"platform": "linux/riscv64", "memory": "128Mi"}
    no = fit(laptop, platforms, {"camera": True, "gpu": True, "memory": "256Mi", "devices": ["bme680"]})
    assert not no.can_run
    text = " | ".join(no.reasons)
    for expected in ("platform linux/riscv64 is not among the bundle's images (linux/amd64, linux/arm64)",
                     "needs a camera", "needs a GPU", "needs memory 256Mi; the node has 128Mi",
                     "needs device bme680"):
        assert expected in text
    assert fit(None, platforms, {}).reasons == ("no facts recorded for this node (ecr admin node facts)",)
    unknown_memory = fit({"platform": "linux/amd64"}, platforms, {"memory": "1Gi"})
    assert unknown_memory.reasons == ("needs memory 1Gi; the node's memory is unknown",)

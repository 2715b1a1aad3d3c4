"""Node facts (platform, accelerator, memory, sensors) and whether a node can run a bundle.

Facts are validated against ``annotations-spec/v1/schemas/node-facts.schema.json``;
:func:`fit` is what the scheduler feed reports per node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ecr_oci import spec
from ecr_oci.bundle.config import DEFAULT_VARIANT, Platform
from ecr_oci.errors import ValidationError

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
_FACTORS = {None: 1.0, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "k": 1e3, "M": 1e6,
            "G": 1e9, "T": 1e12, "m": 1e-3}


def validate_facts(facts: Any) -> dict[str, Any]:
    """``facts`` if it satisfies the node-facts schema and names a known platform.

    Raises:
        ValidationError: naming the failing field.
    """
    spec.check("node-facts", facts, what="facts")
    Platform.parse(facts["platform"])
    return dict(facts)


def quantity(text: str) -> float:
    """A Kubernetes quantity (``512Mi``, ``2``, ``500m``) as a number.

    Raises:
        ValidationError: not a quantity.
    """
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValidationError(f"{text!r} is not a quantity (e.g. 512Mi, 2Gi, 500m)")
    return float(match[1]) * _FACTORS[match[2]]


def _same_platform(a: Platform, b: Platform) -> bool:
    """arm64 and arm64/v8 are one platform (what runtimes pick)."""
    def norm(p: Platform) -> tuple[str, str, str | None]:
        return p.os, p.architecture, p.variant or DEFAULT_VARIANT.get(p.architecture)

    return norm(a) == norm(b) or ((a.os, a.architecture) == (b.os, b.architecture) and None in (a.variant, b.variant))


@dataclass(frozen=True)
class Fit:
    """Whether a node can run a bundle, and every reason when it cannot."""

    can_run: bool
    reasons: tuple[str, ...] = ()
    platform: str | None = None  # the bundle platform the node would run

    def to_dict(self) -> dict[str, Any]:
        return {"can_run": self.can_run, "reasons": list(self.reasons), "platform": self.platform}


def fit(facts: dict[str, Any] | None, platforms: list[str], hardware: dict[str, Any]) -> Fit:
    """Match a node's facts against a bundle's image platforms and hardware requirements."""
    if not facts:
        return Fit(False, ("no facts recorded for this node (ecr admin node facts)",))
    reasons: list[str] = []
    node_platform = Platform.parse(facts["platform"])
    chosen = next((p for p in platforms if _same_platform(Platform.parse(p), node_platform)), None)
    if chosen is None:
        reasons.append(f"platform {node_platform} is not among the bundle's images ({', '.join(platforms) or 'none'})")
    sensors = set(facts.get("sensors") or [])
    accelerator = str(facts.get("accelerator") or "")
    for sensor in ("camera", "microphone"):
        if hardware.get(sensor) is True and sensor not in sensors:
            reasons.append(f"needs a {sensor}; the node has none")
    for device in hardware.get("devices") or []:
        if device not in sensors:
            reasons.append(f"needs device {device}; not among the node's sensors")
    gpu = hardware.get("gpu")
    if gpu and not accelerator:
        reasons.append("needs a GPU; the node has no accelerator")
    elif isinstance(gpu, str) and gpu.lower() not in accelerator:
        reasons.append(f"needs a {gpu} GPU; the node has {accelerator}")
    wanted = hardware.get("accelerator")
    if wanted and wanted != accelerator:
        reasons.append(f"needs accelerator {wanted}; the node has {accelerator or 'none'}")
    for key in ("memory", "cpu"):
        if not (required := hardware.get(key)):
            continue
        have = facts.get(key)
        if have is None:
            reasons.append(f"needs {key} {required}; the node's {key} is unknown")
        elif quantity(str(have)) < quantity(str(required)):
            reasons.append(f"needs {key} {required}; the node has {have}")
    return Fit(not reasons, tuple(reasons), chosen)

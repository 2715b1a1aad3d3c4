"""The metric and label convention plugins follow (spec: annotations-spec/v1/profile.md).

Only names live here, plus the checks and escaping every query builder needs, so
the exposition parser and the PromQL builder can never disagree on a name.
"""

from __future__ import annotations

import re

from ecr_oci.errors import ValidationError

# Plugin metrics: they carry the BUNDLE_LABEL label.
LATENCY = "ecr_inference_seconds"  # histogram (preferred) or summary, seconds per item
FRAMES = "ecr_frames_total"  # counter, items (frames, samples) processed
ERRORS = "ecr_errors_total"  # counter, items that failed
GPU_UTILIZATION = "ecr_gpu_utilization_ratio"  # gauge, 0..1
GPU_POWER = "ecr_gpu_power_watts"  # gauge, watts

# `ecr node-exporter`: per container of a bundle (labels bundle, container, node, engine), any plugin.
CONTAINER_CPU_SECONDS = "ecr_container_cpu_seconds_total"  # counter
CONTAINER_MEMORY_WORKING_SET = "ecr_container_memory_working_set_bytes"  # gauge
CONTAINER_MEMORY_PEAK = "ecr_container_memory_peak_bytes"  # gauge (max since start)
CONTAINER_IO_READ = "ecr_container_io_read_bytes_total"  # counter
CONTAINER_IO_WRITE = "ecr_container_io_write_bytes_total"  # counter
CONTAINER_RESTARTS = "ecr_container_restarts_total"  # counter
NODE_GPU_UTILIZATION = "ecr_node_gpu_utilization_ratio"  # gauge per gpu (nvidia-smi)
NODE_GPU_POWER = "ecr_node_gpu_power_watts"  # gauge per gpu (nvidia-smi)

# prometheus_client's default process collector: no bundle label, matched by target.
CPU_SECONDS = "process_cpu_seconds_total"
RSS_BYTES = "process_resident_memory_bytes"

PLUGIN_PREFIX = "ecr_"
BUNDLE_LABEL = "bundle"
NODE_LABEL = "node"
# Labels naming one scrape target in Prometheus; process metrics are matched on them.
TARGET_LABELS = ("job", "instance")

QUANTILES = (0.5, 0.95, 0.99)

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_bundle(bundle: str) -> str:
    """Return *bundle* if it is a ``sha256:<64 hex>`` digest.

    Args:
        bundle: digest of the bundle image index.

    Raises:
        ValidationError: not a lowercase sha256 digest.
    """
    if not _DIGEST.match(bundle):
        raise ValidationError(f"not a sha256 digest: {bundle!r}", field="bundle")
    return bundle


def check_node(node: str) -> str:
    """Return *node* if it is a usable node id (VSN such as ``W0A1`` or a host name).

    Args:
        node: node identity as found in the ``node`` target label.

    Raises:
        ValidationError: empty, too long or with characters outside ``[A-Za-z0-9._-]``.
    """
    if not _NODE.match(node):
        raise ValidationError(f"not a node id: {node!r}", field="node")
    return node


def escape_label_value(value: str) -> str:
    """Escape *value* for a double-quoted PromQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

"""Describe the local machine for a profile's ``hardware`` field."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from ecr_oci.profile.summary import Hardware

# platform.machine() names to OCI architecture (and variant) names.
_OCI_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm/v7"}
# Where Linux names the board: device tree on Jetson/Raspberry Pi, DMI on PCs.
_MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/class/dmi/id/product_name"))


def detect_hardware(accelerator: str | None = None) -> Hardware:
    """Return model, OCI architecture and memory of this machine.

    Args:
        accelerator: the accelerator the profile used (not detected: a GPU
            present is not necessarily a GPU used); None for CPU only.
    """
    model = next((text for path in _MODEL_FILES if (text := _read(path))), "") or platform.node() or "unknown"
    machine = platform.machine().lower()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Hardware(model=model, arch=_OCI_ARCH.get(machine, machine), memory_bytes=memory, accelerator=accelerator)


def _read(path: Path) -> str:
    try:
        # Device-tree strings end in NUL.
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return ""

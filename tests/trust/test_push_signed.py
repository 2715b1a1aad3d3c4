"""`ecr push --key`: the pushed bundle is signed and carries signed SLSA provenance."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import Registry
from tests.trust.helpers import ecr


def test_push_with_key_signs_and_attests(registry: Registry, bundle_dir: Path, tmp_path: Path) -> None:
    ecr("keygen", "--output-prefix", str(tmp_path / "k"))
    ref = f"{registry.host}/signed/tiny:0.1.0"
    proc = ecr("push", "--quiet", "--key", str(tmp_path / "k.key"), str(bundle_dir), ref)
    pinned = proc.stdout.strip()
    assert "signed (" in proc.stderr and "attached provenance" in proc.stderr
    verified = ecr("verify", ref, "--key", str(tmp_path / "k.pub"), "--provenance")
    assert verified.returncode == 0
    shown = json.loads(ecr("provenance", "show", ref, "--json").stdout)
    text = json.dumps(shown)
    assert pinned.split("@")[1].split(":")[1] in text  # the subject digest
    assert "oci:images:amd64" in text  # the image sources are recorded as materials


def test_push_with_wrong_key_password_uploads_nothing(registry: Registry, bundle_dir: Path, tmp_path: Path) -> None:
    ecr("keygen", "--output-prefix", str(tmp_path / "k"))
    before = registry.snapshot()
    proc = ecr("push", "--quiet", "--key", str(tmp_path / "k.key"), str(bundle_dir),
               f"{registry.host}/signed/wrongpw:0.1.0", password="nope", check=False)
    assert proc.returncode == 2, proc.stderr  # a wrong key password is a usage error
    assert registry.snapshot() == before

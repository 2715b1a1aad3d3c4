"""What users of docker, oras and Harbor expect to read: --json everywhere it matters,
signature tags hidden from `ecr tags`, labelled referrers and real sizes in `ecr inspect`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COSIGN_PASSWORD": "pw"}
    proc = subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc


def test_push_json_and_verbose_say_what_happened_to_each_blob(registry: Registry, bundle_dir: Path) -> None:
    first: dict[str, Any] = json.loads(ecr("push", "--json", str(bundle_dir), f"{registry.host}/out/a:0.1.0").stdout)
    assert first["reference"] == f"{registry.host}/out/a@{first['digest']}" and first["tag"] == "0.1.0"
    assert {b["action"] for b in first["blobs"]} == {"uploaded"}
    assert {"model/weights.bin", "model/labels.txt"} <= {b["title"] for b in first["blobs"]}
    second = json.loads(ecr("push", "--json", str(bundle_dir), f"{registry.host}/out/b:0.1.0").stdout)
    assert {b["action"] for b in second["blobs"]} == {"mounted from out/a"} and second["bytesUploaded"] == 0
    verbose = ecr("push", "--verbose", "--quiet", str(bundle_dir), f"{registry.host}/out/b:0.1.0")
    assert verbose.stderr.count("already present") == len(second["blobs"]) + 1, verbose.stderr  # + summary


def test_tags_hide_signature_tags_unless_all_and_ls_json(registry: Registry, bundle_dir: Path,
                                                         tmp_path: Path) -> None:
    ref = f"{registry.host}/out/signed:0.1.0"
    ecr("push", "--quiet", str(bundle_dir), ref)
    ecr("keygen", "--output-prefix", str(tmp_path / "k"))
    ecr("sign", ref, "--key", str(tmp_path / "k.key"))
    assert ecr("tags", f"{registry.host}/out/signed").stdout.split() == ["0.1.0"]
    every = json.loads(ecr("tags", "--all", "--json", f"{registry.host}/out/signed").stdout)
    assert "0.1.0" in every and any(t.startswith("sha256-") and t.endswith(".sig") for t in every)
    assert "out/signed" in json.loads(ecr("ls", "--json", registry.host).stdout)


def test_inspect_labels_referrers_sums_image_sizes_and_shows_full_digests(registry: Registry, tmp_path: Path,
                                                                         tiny_layout: Path) -> None:
    meta: dict[str, object] = dict(BASE_METADATA, homepage="https://example.org/tiny",
                inputs=[{"name": "camera", "type": "image"}], outputs=[{"name": "env.count", "type": "int"}])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    ref = f"{registry.host}/out/inspected:0.1.0"
    ecr("push", "--quiet", str(root), ref)
    ecr("keygen", "--output-prefix", str(tmp_path / "k"))
    ecr("sign", ref, "--key", str(tmp_path / "k.key"))
    doc = json.loads(ecr("inspect", "--json", ref).stdout)
    assert doc["gateway"] is None  # a plain registry
    assert [r["label"] for r in doc["referrers"]] == ["signature (cosign; check the key with `ecr verify --key`)"]
    manifests = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                                          capture_output=True, text=True, check=True).stdout)["manifests"]
    for platform, entry in zip(doc["platforms"], manifests, strict=False):
        assert platform["size"] > entry["size"]  # the whole image, not the manifest's own bytes
    text = ecr("inspect", ref).stdout
    for expected in ("https://example.org/tiny", "env.count", "signature (cosign", doc["files"][0]["digest"]):
        assert expected in text, (expected, text)


def test_pull_require_signature_says_what_it_verified(registry: Registry, bundle_dir: Path, tmp_path: Path) -> None:
    ref = f"{registry.host}/out/verified:0.1.0"
    pinned = ecr("push", "--quiet", str(bundle_dir), ref).stdout.strip()
    ecr("keygen", "--output-prefix", str(tmp_path / "k"))
    ecr("sign", ref, "--key", str(tmp_path / "k.key"))
    pulled = ecr("pull", "--quiet", "--model-only", "--require-signature", str(tmp_path / "k.pub"), ref,
                 "-o", str(tmp_path / "out"))
    assert f"verified: {pinned} is signed by k.pub (sha256:" in pulled.stderr, pulled.stderr

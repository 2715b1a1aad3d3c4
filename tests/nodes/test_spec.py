"""The Pod spec generator on bundle documents: pinned images, model placement, refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform
from ecr_oci.deploy import spec
from ecr_oci.errors import NotFoundError, ValidationError

D = {name: "sha256:" + ch * 64 for name, ch in (("index", "1"), ("amd64", "2"), ("arm64", "3"), ("model", "4"),
                                                 ("w", "5"), ("l", "6"), ("src", "7"))}


def index(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "schemaVersion": 2, "mediaType": mt.OCI_INDEX, "artifactType": mt.BUNDLE_ARTIFACT_TYPE,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": D["amd64"], "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": mt.OCI_MANIFEST, "digest": D["arm64"], "size": 1,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": mt.OCI_MANIFEST, "digest": D["model"], "size": 1, "artifactType": mt.MODEL_ARTIFACT_TYPE,
             "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
        "annotations": {mt.ECR_NAME: "Bird_Detector", mt.OCI_VERSION: "1.2.0",
                        mt.ECR_HARDWARE: '{"cpu":"500m","memory":"256Mi"}', **(annotations or {})},
    }


def model(*titles: tuple[str, str, str]) -> dict[str, Any]:
    return {"layers": [{"mediaType": media, "digest": digest, "size": 1,
                        "annotations": {mt.OCI_TITLE: title, mt.ECR_LAYER_ROLE: "model" if media == mt.MODEL_LAYER
                                        else "source"}} for media, digest, title in titles]}


MODEL = model((mt.MODEL_LAYER, D["w"], "model/weights.bin"), (mt.MODEL_LAYER, D["l"], "model/labels.txt"),
              (mt.SOURCE_LAYER, D["src"], "bird-1.2.0-source.tar.gz"))


def test_kubernetes_pod_pins_the_node_platform_and_mounts_the_model_read_only() -> None:
    target = spec.plan(index(), D["index"], MODEL, Platform.parse("linux/arm64"), registry="ecr.example.org",
                       repository="alice/bird")
    assert target.image_ref == f"ecr.example.org/alice/bird@{D['arm64']}"
    assert [(f.digest, f.path) for f in target.model_files] == [(D["w"], "weights.bin"), (D["l"], "labels.txt")]
    pod = spec.pod(target, fetcher_image="ecr.example.org/ecr/model-fetcher@" + D["src"], node="W0A1")
    text = spec.render(pod, header=spec.kubernetes_header(target, "W0A1"))
    assert yaml.safe_load(text) == pod and "CREDENTIAL" in text and "ecr_" not in text
    assert pod["metadata"]["name"] == "bird-detector-" + "1" * 12
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "w0a1"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "ecr-pull"}]
    [plugin] = pod["spec"]["containers"]
    assert plugin["resources"] == {"requests": {"memory": "256Mi", "cpu": "500m"}, "limits": {"memory": "256Mi"}}
    assert plugin["ports"] == [{"name": "metrics", "containerPort": 9090}]
    assert {"name": "ECR_MODEL_DIR", "value": "/app/model"} in plugin["env"]
    [init] = pod["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env["ECR_MODEL_FILES"] == f"{D['w']} weights.bin\n{D['l']} labels.txt\n"
    assert env["ECR_MODEL_MANIFEST"] == D["model"] and env["ECR_REGISTRY_SCHEME"] == "https"
    assert pod["metadata"]["annotations"][spec.BUNDLE_ANNOTATION] == D["index"]


def test_declared_model_path_and_code_only_bundles() -> None:
    target = spec.plan(index({mt.ECR_MODEL_PATH: "/opt/weights"}), D["index"], MODEL, Platform.parse("linux/amd64"),
                       registry="h:5000", repository="a/b", scheme="http")
    pod = spec.pod(target, fetcher_image="f", kubernetes=False)
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/opt/weights"
    assert "nodeSelector" not in pod["spec"] and "ports" not in pod["spec"]["containers"][0]
    code_only = spec.plan(index(), D["index"], None, Platform.parse("linux/amd64"), registry="h", repository="a/b")
    assert "initContainers" not in spec.pod(code_only, fetcher_image="f")["spec"]


@pytest.mark.parametrize("title", ["../etc/passwd", "/abs", "model/../x", "a b", "model/$(id)", ""])
def test_unsafe_model_titles_refuse_the_spec(title: str) -> None:
    with pytest.raises(ValidationError, match="not a plain relative path"):
        spec.model_files(model((mt.MODEL_LAYER, D["w"], title)))


def test_missing_platform_and_non_bundles_are_refused() -> None:
    with pytest.raises(NotFoundError, match=r"no linux/riscv64 image \(it has: linux/amd64, linux/arm64/v8\)"):
        spec.plan(index(), D["index"], MODEL, Platform.parse("linux/riscv64"), registry="h", repository="a/b")
    with pytest.raises(ValidationError):
        spec.plan({"manifests": []}, D["index"], None, Platform.parse("linux/amd64"), registry="h", repository="a/b")


def test_header_lines_stay_comments() -> None:
    target = spec.plan(index(), D["index"], MODEL, Platform.parse("linux/amd64"), registry="h", repository="a/b")
    pod = spec.pod(target, fetcher_image="f")
    text = spec.render(pod, header=["one\nkind: Secret", "two"])
    assert text.startswith("# one kind: Secret\n# two\n") and yaml.safe_load(text) == pod


def test_docker_script_quotes_every_value() -> None:
    target = spec.plan(index(), D["index"], MODEL, Platform.parse("linux/amd64"), registry="h:5000", repository="a/b")
    pod = spec.pod(target, fetcher_image="h:5000/ecr/model-fetcher@" + D["src"], kubernetes=False)
    pod["spec"]["containers"][0]["env"].append({"name": "NOTE", "value": "$(id); `id` 'x'"})
    script = spec.docker_script(pod, target, network="host")
    assert "'NOTE=$(id); `id` '\"'\"'x'\"'\"''" in script
    assert f"-v bird-detector-{'1' * 12}-model:/app/model:ro" in script and "--memory 268435456" in script
    assert "ECR_PASSWORD=" not in script and "-e ECR_PASSWORD " in script

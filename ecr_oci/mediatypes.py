"""Media types, artifact types and annotation keys of the ECR bundle format (spec v1).

The published description of each value is `annotations-spec/v1/README.md`; this
module is its machine-readable twin, so code never spells a media type twice.
"""

from __future__ import annotations

# --- OCI and Docker standard types -------------------------------------------------
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_BLOB = b"{}"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES

# --- ECR bundle ---------------------------------------------------------------------
BUNDLE_ARTIFACT_TYPE = "application/vnd.waggle.ecr.bundle.v1+json"
MODEL_ARTIFACT_TYPE = "application/vnd.waggle.ecr.model.v1+json"
# Harbor names unknown artifacts after a config type of the form
# application/vnd.<vendor>.<type>.config.<version>+json, hence "ECRMODEL" in its UI.
MODEL_CONFIG = "application/vnd.waggle.ecrmodel.config.v1+json"
MODEL_LAYER = "application/vnd.waggle.ecr.model.layer.v1"
SOURCE_LAYER = "application/vnd.waggle.ecr.source.layer.v1.tar+gzip"
DATA_LAYER = "application/vnd.waggle.ecr.data.layer.v1"
DATA_LAYER_TAR_GZIP = "application/vnd.waggle.ecr.data.layer.v1.tar+gzip"

# --- referrer artifact types (attached to a bundle index as OCI 1.1 referrers) -------
PROFILE_ARTIFACT_TYPE = "application/vnd.waggle.ecr.profile.v1+json"
PROFILE_SUMMARY_LAYER = "application/vnd.waggle.ecr.profile.summary.v1+json"
PROFILE_SERIES_LAYER = "application/vnd.waggle.ecr.profile.series.v1+json+gzip"
STAGE_ARTIFACT_TYPE = "application/vnd.waggle.ecr.stage.v1+json"
DOI_ARTIFACT_TYPE = "application/vnd.waggle.ecr.doi.v1+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"

# --- annotation keys ----------------------------------------------------------------
OCI_TITLE = "org.opencontainers.image.title"
OCI_VERSION = "org.opencontainers.image.version"
OCI_DESCRIPTION = "org.opencontainers.image.description"
OCI_AUTHORS = "org.opencontainers.image.authors"
OCI_LICENSES = "org.opencontainers.image.licenses"
OCI_SOURCE = "org.opencontainers.image.source"
OCI_REVISION = "org.opencontainers.image.revision"
OCI_CREATED = "org.opencontainers.image.created"
OCI_URL = "org.opencontainers.image.url"
OCI_DOCUMENTATION = "org.opencontainers.image.documentation"
OCI_REF_NAME = "org.opencontainers.image.ref.name"

ECR_PREFIX = "org.waggle.ecr."
ECR_SPEC_VERSION = ECR_PREFIX + "spec.version"
ECR_NAME = ECR_PREFIX + "name"
ECR_RUNTIME = ECR_PREFIX + "runtime"
ECR_HARDWARE = ECR_PREFIX + "hardware"
ECR_INPUTS = ECR_PREFIX + "inputs"
ECR_OUTPUTS = ECR_PREFIX + "outputs"
ECR_KEYWORDS = ECR_PREFIX + "keywords"
ECR_SCIENCE = ECR_PREFIX + "science"
ECR_MODEL_PATH = ECR_PREFIX + "model.path"  # where the image expects its model (default /app/model)
ECR_SOURCE_DIRECTORY = ECR_PREFIX + "source.directory"
ECR_SOURCE_DOCKERFILE = ECR_PREFIX + "source.dockerfile"
ECR_BUILD_TOOLCHAIN = ECR_PREFIX + "build.toolchain"
ECR_BUILD_ARGS = ECR_PREFIX + "build.args"
ECR_BUILD_RECIPE = ECR_PREFIX + "build.recipe"
ECR_DOI = ECR_PREFIX + "doi"
ECR_ROLE = ECR_PREFIX + "role"  # on the index entry of the model manifest: "model"
ECR_LAYER_ROLE = ECR_PREFIX + "layer.role"  # on model-manifest layers: model, source, data, icon

# Harbor's own annotation keys (goharbor/harbor src/controller/artifact/annotation):
# the first layer of an image manifest carrying HARBOR_ICON is the artifact's icon;
# HARBOR_SKIP_LIST on the config descriptor names config keys Harbor does not show.
HARBOR_ICON = "io.goharbor.artifact.v1alpha1.icon"
HARBOR_SKIP_LIST = "io.goharbor.artifact.v1alpha1.skip-list"

SPEC_VERSION = "1"

# Annotations whose value is a JSON document (annotations are strings by OCI rule).
JSON_ANNOTATIONS = frozenset(
    {ECR_RUNTIME, ECR_HARDWARE, ECR_INPUTS, ECR_OUTPUTS, ECR_BUILD_TOOLCHAIN, ECR_BUILD_ARGS}
)

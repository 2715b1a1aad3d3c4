"""``mint``: from a bundle reference to a registered DOI recorded on the bundle.

Order matters: everything that can refuse without talking to the DOI provider
(configuration, an existing DOI, anonymous access, metadata validation) is checked
first, so an invalid request is never sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.remote import RemoteBundle, fetch_bundle
from ecr_oci.digest import sha256_bytes
from ecr_oci.doi.config import DoiConfig
from ecr_oci.doi.datacite import DataCiteProvider
from ecr_oci.doi.errors import DoiConfigError, NotPublicError
from ecr_oci.doi.ezid import EzidProvider
from ecr_oci.doi.metadata import build_attributes, validate_attributes
from ecr_oci.doi.provider import DoiProvider
from ecr_oci.doi.record import DoiRecord, attach_record, find_records, metadata_bytes
from ecr_oci.errors import AuthError, EcrError, NotFoundError, RegistryError
from ecr_oci.registry.auth import TokenAuth
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference

ProviderFactory = Callable[[DoiConfig], DoiProvider]


@dataclass(frozen=True)
class MintOutcome:
    """The DOI of a bundle after ``mint``.

    Attributes:
        record: the DOI record (new, or the existing one when nothing was done).
        created: True when a DOI was registered by this call.
        referrer: digest of the new DOI referrer (None when nothing was done).
        reference: the bundle, pinned by digest.
    """

    record: DoiRecord
    created: bool
    referrer: str | None
    reference: Reference


def make_provider(config: DoiConfig) -> DoiProvider:
    """The provider the configuration names, with its credentials.

    Raises:
        DoiConfigError: credentials or prefix missing, or a provider not implemented.
    """
    _, user, password = config.require_account()
    if config.provider == "ezid":
        return EzidProvider(config.api, user, password, shoulder=config.prefix or "", test=config.test)
    return DataCiteProvider(config.api, user, password, test=config.test)


def is_public(client: RegistryClient, repository: str, digest: str) -> bool:
    """True when the index can be fetched without credentials (anonymous token flow included).

    Raises:
        RegistryError: the registry cannot be reached or fails otherwise.
    """
    anonymous = RegistryClient(client.registry, plain_http=client.base_url.startswith("http://"),
                               verify_tls=bool(client.session.verify))
    anonymous.auth = TokenAuth(lambda: anonymous.session, None)
    try:
        anonymous.get_manifest(repository, digest)
    except (AuthError, NotFoundError):
        return False
    return True


def landing_url(template: str | None, client: RegistryClient, bundle: RemoteBundle) -> str:
    """The landing page: ``template`` filled in, else the index's registry URL.

    Placeholders: ``{registry}``, ``{repository}``, ``{digest}``, ``{tag}``, ``{name}``,
    ``{version}``, ``{registry_url}``.

    Raises:
        DoiConfigError: the template names an unknown placeholder.
    """
    ref = bundle.reference
    if not template:
        return f"{client.base_url}/v2/{ref.repository}/manifests/{bundle.digest}"
    notes = bundle.annotations
    try:
        return template.format(
            registry=ref.registry, repository=ref.repository, digest=bundle.digest, tag=ref.tag or "",
            name=notes.get(mt.ECR_NAME, ""), version=notes.get(mt.OCI_VERSION, ""), registry_url=client.base_url,
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise DoiConfigError(f"landing URL template {template!r}: unknown placeholder {exc}") from None


def prepare(client: RegistryClient, bundle: RemoteBundle, config: DoiConfig, *, draft: bool,
            now: datetime | None = None) -> dict[str, Any]:
    """Build and validate the DataCite attributes for ``bundle`` (no provider request).

    A DOI reserved in the bundle's annotations (``org.waggle.ecr.doi``) under the
    configured prefix is the one registered; otherwise the provider makes the suffix.

    Raises:
        DoiConfigError: no prefix configured.
        ValidationError: the metadata is incomplete or invalid.
    """
    prefix = config.doi_prefix
    if not prefix:
        raise DoiConfigError("no DOI prefix: pass --prefix or set ECR_DOI_PREFIX (e.g. 10.5072)")
    reserved = bundle.annotations.get(mt.ECR_DOI)
    doi = reserved if reserved and reserved.lower().startswith(prefix.lower() + "/") else None
    attributes = build_attributes(
        bundle, registry_url=client.base_url, landing_url=landing_url(config.url, client, bundle),
        publisher=config.publisher, prefix=prefix, doi=doi, draft=draft, now=now,
    )
    validate_attributes(attributes)
    return attributes


def mint_doi(
    client: RegistryClient,
    ref: Reference,
    config: DoiConfig,
    *,
    draft: bool = False,
    force: bool = False,
    provider_factory: ProviderFactory = make_provider,
    now: datetime | None = None,
) -> MintOutcome:
    """Register a DOI for the bundle ``ref`` names and record it as a referrer.

    Without ``force``: a bundle that already has a DOI record is left alone (the
    newest record is returned), and a bundle that cannot be pulled anonymously is
    refused.

    Raises:
        DoiConfigError: prefix or credentials missing.
        NotPublicError: the bundle is not anonymously readable (and not forced).
        ValidationError: the metadata is invalid (nothing was sent).
        AuthError: the provider refused the credentials.
        DoiProviderError: the provider refused the DOI.
        RegistryError: the registry failed, or recording the registered DOI failed
            (the message names the DOI).
    """
    bundle = fetch_bundle(client, ref)
    existing = find_records(client, ref.repository, bundle.digest)
    if existing and not force:
        return MintOutcome(existing[0], created=False, referrer=None, reference=bundle.reference)
    config.require_account()
    if not force and not is_public(client, ref.repository, bundle.digest):
        raise NotPublicError(
            f"{bundle.reference.pinned()} is not public (an anonymous pull is refused): only public bundles "
            "get DOIs; make the repository public or pass --force"
        )
    attributes = prepare(client, bundle, config, draft=draft, now=now)
    provider = provider_factory(config)
    registration = provider.register(attributes)
    registered = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = DoiRecord(
        doi=registration.doi, url=registration.url or attributes["url"], provider=registration.provider,
        registered=registered, bundle=bundle.digest, metadata_digest=sha256_bytes(metadata_bytes(attributes)),
        state=registration.state if registration.state in ("draft", "registered", "findable") else
        ("draft" if draft else "findable"),
        endpoint=registration.endpoint, test=registration.test,
    )
    try:
        referrer = attach_record(client, bundle, record, attributes)
    except EcrError as exc:
        raise RegistryError(
            f"DOI {record.doi} was registered but recording it on {bundle.reference.pinned()} failed: {exc}"
        ) from exc
    return MintOutcome(record, created=True, referrer=referrer, reference=bundle.reference)

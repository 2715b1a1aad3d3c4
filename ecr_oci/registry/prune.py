"""Removing bundle versions so that the registry's garbage collection can free their bytes.

Distribution's ``garbage-collect`` keeps every blob that any manifest *revision* of a
repository references. Deleting a bundle's index (``DELETE /v2/<name>/manifests/<digest>``)
therefore frees nothing by itself: its platform and model manifests, its signatures
(``sha256-<hex>.sig``), its referrers (profiles, provenance, stage records, DOIs) and
the referrers fallback index (``sha256-<hex>``) are manifests of their own, still
holding the weights and image layers. And ``garbage-collect --delete-untagged`` in 2.8
is not an answer: it deletes the untagged platform manifests of *kept* bundles too.

:func:`plan` computes what to delete instead: everything reachable from the versions
being removed (children, referrers, signature and fallback tags, recursively), minus
everything reachable from the versions that stay, so a manifest or blob shared with a
kept bundle survives. :func:`remove` deletes that set through the gateway (as an admin:
release tags are immutable for everyone else). Then garbage collection frees exactly
the bytes nothing else uses (operator procedure: deploy/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ecr_oci.errors import NotFoundError
from ecr_oci.registry.client import RegistryClient

_DERIVED_TAG = re.compile(r"^sha256-([a-f0-9]{64})(\.[a-z]+)?$")  # referrers fallback, cosign .sig/.att


@dataclass
class Removal:
    """What removing some versions of a repository deletes and keeps."""

    repository: str
    versions: dict[str, str]  # tag -> digest being removed
    delete: list[str] = field(default_factory=list)  # manifest digests, referrers before their subjects
    kept: set[str] = field(default_factory=set)  # manifests still reachable from the other versions


def _closure(client: RegistryClient, repository: str, roots: list[str], derived: dict[str, list[str]]) -> list[str]:
    """Manifests reachable from ``roots``: index children, referrers, derived tags; subjects first."""
    seen: list[str] = []
    stack = list(roots)
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        try:
            document = client.get_manifest(repository, digest).json()
        except NotFoundError:
            continue
        seen.append(digest)
        stack += [child["digest"] for child in document.get("manifests", [])]
        stack += [ref["digest"] for ref in client.referrers(repository, digest)]
        stack += derived.get(digest, [])
    return seen


def plan(client: RegistryClient, repository: str, tags: list[str]) -> Removal:
    """What deleting the versions ``tags`` of ``repository`` must delete (nothing is changed).

    Raises:
        NotFoundError: a tag does not exist.
        RegistryError: the registry failed.
    """
    all_tags = client.tags(repository)
    missing = [t for t in tags if t not in all_tags]
    if missing:
        raise NotFoundError(f"{repository}: no tag {', '.join(missing)}")
    derived: dict[str, list[str]] = {}  # subject digest -> digests its sha256-<hex>[.sig] tags name
    versions: dict[str, str] = {}
    for tag in all_tags:
        match = _DERIVED_TAG.match(tag)
        if match:
            if (digest := client.head_manifest(repository, tag)) is not None:
                derived.setdefault(f"sha256:{match[1]}", []).append(digest)
        elif (digest := client.head_manifest(repository, tag)) is not None:
            versions[tag] = digest
    removed = {tag: versions[tag] for tag in tags if tag in versions}
    kept_roots = [digest for tag, digest in versions.items() if tag not in removed]
    kept = set(_closure(client, repository, kept_roots, derived))
    doomed = [d for d in _closure(client, repository, list(removed.values()), derived) if d not in kept]
    return Removal(repository, removed, delete=list(reversed(doomed)), kept=kept)


def remove(client: RegistryClient, removal: Removal) -> int:
    """Delete the planned manifests (already gone ones are skipped); how many were deleted."""
    deleted = 0
    for digest in removal.delete:
        try:
            client.delete_manifest(removal.repository, digest)
            deleted += 1
        except NotFoundError:
            continue
    return deleted


def main(argv: list[str] | None = None) -> int:
    """``python3 -m ecr_oci.registry.prune REGISTRY REPOSITORY TAG... [--yes]`` (admin credentials
    from ``ECR_USERNAME``/``ECR_PASSWORD``, ``ECR_PLAIN_HTTP`` as for ``ecr``): print the plan;
    delete only with ``--yes``."""
    import argparse
    import os
    import sys

    from ecr_oci.errors import EcrError
    from ecr_oci.registry.auth import Credentials

    parser = argparse.ArgumentParser(prog="python3 -m ecr_oci.registry.prune", description=main.__doc__)
    parser.add_argument("registry", help="HOST[:PORT] of the gateway")
    parser.add_argument("repository")
    parser.add_argument("tags", nargs="+", help="versions to remove")
    parser.add_argument("--yes", action="store_true", help="delete (default: only print the plan)")
    args = parser.parse_args(argv)
    user, password = os.environ.get("ECR_USERNAME"), os.environ.get("ECR_PASSWORD")
    plain = os.environ.get("ECR_PLAIN_HTTP")  # as for `ecr`: http only for loopback unless set
    client = RegistryClient(args.registry, credentials=Credentials(user, password) if user and password else None,
                            plain_http=None if plain is None else plain.lower() in ("1", "true", "yes"))
    try:
        removal = plan(client, args.repository, args.tags)
        for digest in removal.delete:
            print(f"delete {args.repository}@{digest}")
        print(f"{len(removal.delete)} manifests to delete, {len(removal.kept)} kept by the other versions")
        if args.yes:
            print(f"deleted {remove(client, removal)}")
    except EcrError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

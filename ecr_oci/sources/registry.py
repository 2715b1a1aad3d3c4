"""``docker://HOST/REPO:TAG``: an image already in a registry (copied, or mounted when
the bundle goes to the same registry)."""

from __future__ import annotations

from collections.abc import Iterator

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform
from ecr_oci.errors import NotFoundError, RegistryError, SourceError
from ecr_oci.oci import Blob, Reader
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import parse_reference
from ecr_oci.sources import ImageSource, manifest_blob, parse_json, select_from_index


def _reader(client: RegistryClient, repository: str, digest: str) -> Reader:
    def read(start: int) -> Iterator[bytes]:
        with client.open_blob(repository, digest, start) as resp:
            yield from resp.iter_content(1 << 20)

    return read


def open_remote(text: str, platform: Platform) -> ImageSource:
    """Resolve a registry image (selecting ``platform`` from an index).

    Raises:
        SourceError: the image does not exist or is unreachable.
    """
    ref = parse_reference(text)
    where = f"docker://{text}"
    client = RegistryClient(ref.registry)
    try:
        top = client.get_manifest(ref.repository, ref.reference)
        manifest = top
        if top.media_type in mt.INDEX_TYPES:
            entry = select_from_index(top.json(), platform, where)
            manifest = client.get_manifest(ref.repository, entry["digest"])
        body = manifest.json()
        config_desc = body["config"]
        config = parse_json(client.get_blob(ref.repository, config_desc["digest"]), where)
    except NotFoundError:
        raise SourceError(f"{where}: no such image") from None
    except RegistryError as exc:
        raise SourceError(f"{where}: {exc}") from None
    except (KeyError, TypeError):
        raise SourceError(f"{where}: not an image manifest") from None
    blobs = tuple(
        Blob(
            media_type=d["mediaType"],
            digest=d["digest"],
            size=d["size"],
            read=_reader(client, ref.repository, d["digest"]),
            origin=(ref.registry, ref.repository),
        )
        for d in [config_desc, *body.get("layers", [])]
    )
    return ImageSource(manifest=manifest_blob(manifest.data, manifest.media_type, blobs), config=config)

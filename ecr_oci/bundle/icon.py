"""The optional bundle icon: a small PNG, JPEG or GIF that Harbor shows for the model manifest.

Harbor takes an artifact's icon from the first layer of an image manifest annotated
``io.goharbor.artifact.v1alpha1.icon``; it reads at most 1 MiB of it and accepts it
only when Go's ``http.DetectContentType`` calls it ``image/gif``, ``image/png`` or
``image/jpeg``, which it decides from the leading bytes alone. The same rule is
checked here, before anything is pushed, so an icon Harbor would drop is an error
naming the field instead.
"""

from __future__ import annotations

from pathlib import Path

from ecr_oci.errors import ValidationError

MAX_ICON_BYTES = 1 << 20  # what Harbor reads of an icon layer

# Leading bytes -> media type, as the WHATWG MIME sniffing table (and Go) define them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
ICON_MEDIA_TYPES = frozenset(media_type for _, media_type in _SIGNATURES)


def sniff_image(data: bytes) -> str | None:
    """The image media type the leading bytes announce, or None."""
    for signature, media_type in _SIGNATURES:
        if data.startswith(signature):
            return media_type
    return None


def check_icon(path: Path, shown: str) -> str:
    """Validate the icon file; returns its media type.

    Args:
        shown: the path as the author wrote it, for messages.

    Raises:
        ValidationError: not a file, too large, or not PNG/JPEG/GIF (field ``icon``).
    """
    if not path.is_file():
        raise ValidationError(f"{shown} is not a file", field="icon")
    size = path.stat().st_size
    if size > MAX_ICON_BYTES:
        raise ValidationError(
            f"{shown} is {size} bytes; an icon may be at most {MAX_ICON_BYTES} bytes (1 MiB, what Harbor reads)",
            field="icon",
        )
    with path.open("rb") as fh:
        head = fh.read(16)
    media_type = sniff_image(head)
    if media_type is None:
        raise ValidationError(f"{shown} is not a PNG, JPEG or GIF image (by its leading bytes)", field="icon")
    return media_type

"""Names derived from a bundle's metadata: its default tag and generated file titles.

One place, so the limits checked by ``ecr validate`` (bundle.config.limit_problems)
are checked on exactly the names a push and a pull will use.
"""

from __future__ import annotations


def version_tag(version: str) -> str:
    """The default tag for a version: OCI tags cannot hold ``+``, so build metadata
    (``1.2.0+b.7``) becomes ``1.2.0_b.7``, the convention Helm uses too."""
    return version.replace("+", "_")


def source_archive_title(name: str, version: str) -> str:
    """The file name of the generated source archive (``source_archive:``)."""
    return f"{name}-{version}-source.tar.gz"


def data_archive_title(relative: str) -> str:
    """The title of a training-data directory archived into the bundle."""
    return f"{relative}.tar.gz"

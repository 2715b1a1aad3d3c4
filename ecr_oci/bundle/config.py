"""``ecr.yaml``: the one metadata file a scientist writes for a bundle.

Loading checks the file against ``annotations-spec/v1/schemas/ecr.schema.json`` and
then the facts a schema cannot see (files exist, platforms are known and unique).
A Waggle/Sage ``sage.yaml`` is accepted too and converted (see :mod:`.sage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecr_oci import spec
from ecr_oci.errors import ValidationError

CONFIG_NAMES = ("ecr.yaml", "ecr.yml", "sage.yaml", "sage.yml")

# os/architecture/variant triples that OCI runtimes and registries know (image-spec
# "platform" values, the GOOS/GOARCH set Waggle nodes and VWs can actually run).
KNOWN_OS = frozenset({"linux"})
KNOWN_ARCH_VARIANTS: dict[str, frozenset[str]] = {
    "amd64": frozenset({"v2", "v3", "v4"}),
    "arm64": frozenset({"v8"}),
    "arm": frozenset({"v5", "v6", "v7"}),
    "386": frozenset(),
    "ppc64le": frozenset(),
    "s390x": frozenset(),
    "riscv64": frozenset(),
}
DEFAULT_VARIANT = {"arm64": "v8"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]``.

        Raises:
            ValidationError: unknown os, architecture or variant.
        """
        parts = text.split("/")
        if len(parts) not in (2, 3):
            raise ValidationError(f"{text!r} is not an os/arch[/variant] platform")
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else None
        if os_ not in KNOWN_OS:
            raise ValidationError(f"unknown platform {text!r}: os must be one of {sorted(KNOWN_OS)}")
        if arch not in KNOWN_ARCH_VARIANTS:
            raise ValidationError(
                f"unknown platform {text!r}: architecture must be one of {sorted(KNOWN_ARCH_VARIANTS)}"
            )
        if variant and variant not in KNOWN_ARCH_VARIANTS[arch]:
            raise ValidationError(f"unknown platform {text!r}: no variant {variant!r} for {arch}")
        return cls(os_, arch, variant)

    def to_oci(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: dict[str, Any]) -> bool:
        """True when an OCI platform object names this platform (variant optional there)."""
        if other.get("os") != self.os or other.get("architecture") != self.architecture:
            return False
        return not (self.variant and other.get("variant") not in (None, self.variant))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class ImageEntry:
    platform: Platform
    source: str


@dataclass(frozen=True)
class BundleConfig:
    """A validated ``ecr.yaml``.

    Attributes:
        root: the bundle directory; relative paths resolve against it.
        data: the document as loaded (after sage.yaml conversion), schema-valid.
    """

    root: Path
    data: dict[str, Any]
    images: tuple[ImageEntry, ...] = field(default=())

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def version(self) -> str:
        return str(self.data["version"])

    def paths(self, key: str) -> list[Path]:
        value = self.data.get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [self.root / item for item in items]


def find_config(path: Path) -> Path:
    """The metadata file for a bundle directory (or the file itself).

    Raises:
        ValidationError: no ecr.yaml/sage.yaml there.
    """
    if path.is_file():
        return path
    if not path.is_dir():
        raise ValidationError(f"{path}: no such bundle directory")
    for name in CONFIG_NAMES:
        if (path / name).is_file():
            return path / name
    raise ValidationError(f"{path}: no ecr.yaml found (nor sage.yaml)")


def load_config(path: Path) -> BundleConfig:
    """Load and fully validate a bundle's metadata.

    Args:
        path: a bundle directory or its ecr.yaml / sage.yaml.

    Raises:
        ValidationError: one message naming the first problem found.
    """
    file = find_config(path)
    try:
        document = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ValidationError(f"{file.name}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    except OSError as exc:
        raise ValidationError(f"{file}: {exc.strerror}") from exc
    if not isinstance(document, dict):
        raise ValidationError(f"{file.name}: expected a mapping of fields at the top level")
    if file.name.startswith("sage."):
        from ecr_oci.bundle.sage import convert_sage

        document = convert_sage(document)
    document = _normalise(document)
    spec.check("ecr", document, what=file.name)
    root = file.parent
    images = _check_images(document, file.name)
    config = BundleConfig(root=root, data=document, images=images)
    _check_files(config, file.name)
    return config


def _normalise(document: dict[str, Any]) -> dict[str, Any]:
    """YAML turns ``version: 1.0`` into a float and dates into datetimes; undo what is safe."""
    out = dict(document)
    if isinstance(out.get("version"), int | float):
        out["version"] = str(out["version"])  # `version: 1.0` -> "1.0", then the semver check explains
    created = out.get("created")
    if created is not None and not isinstance(created, str):
        out["created"] = created.isoformat().replace("+00:00", "Z")
    return out


def _check_images(document: dict[str, Any], what: str) -> tuple[ImageEntry, ...]:
    seen: set[tuple[str, str, str | None]] = set()
    entries = []
    for i, item in enumerate(document["images"]):
        try:
            platform = Platform.parse(item["platform"])
        except ValidationError as exc:
            raise ValidationError(str(exc), field=f"{what}: images[{i}].platform") from None
        # linux/arm64 and linux/arm64/v8 are one platform (v8 is arm64's only variant)
        key = (platform.os, platform.architecture, platform.variant or DEFAULT_VARIANT.get(platform.architecture))
        if key in seen:
            raise ValidationError(f"platform {platform} listed twice", field=f"{what}: images[{i}].platform")
        seen.add(key)
        entries.append(ImageEntry(platform=platform, source=item["from"]))
    return tuple(entries)


def _check_files(config: BundleConfig, what: str) -> None:
    for key in ("model", "training_data", "source_archive", "icon"):
        for path in config.paths(key):
            if not path.exists():
                rel = path.relative_to(config.root)
                raise ValidationError(f"{rel}: no such file or directory", field=f"{what}: {key}")
            if path.resolve() != config.root.resolve() and config.root.resolve() not in path.resolve().parents:
                raise ValidationError(f"{path} leaves the bundle directory", field=f"{what}: {key}")

"""``ecr.yaml``: the one metadata file a scientist writes for a bundle.

Loading checks the file against ``annotations-spec/v1/schemas/ecr.schema.json`` and
then the facts a schema cannot see (files exist, platforms are known and unique).
A Waggle/Sage ``sage.yaml`` is accepted too and converted (see :mod:`.sage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecr_oci import spec
from ecr_oci.bundle.names import data_archive_title, source_archive_title, version_tag
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


# Here rather than in bundle.model: the early start of `ecr push` (cli/early.py) needs
# them before anything heavier is imported.
def expand_files(config: BundleConfig, key: str) -> list[Path]:
    """Files named by ``key``; a directory stands for every file below it, sorted."""
    files: list[Path] = []
    for path in config.paths(key):
        if path.is_dir():
            files += sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.as_posix())
        else:
            files.append(path)
    root = config.root.resolve()
    for file in files:
        if root not in file.resolve().parents:
            raise ValidationError(f"{file.relative_to(config.root)} points outside the bundle directory", field=key)
    return files


def input_files(config: BundleConfig) -> list[Path]:
    """The files of the bundle directory that become layers as they are (model files,
    training data files, the icon); generated archives are not among them.

    Safe on an ecr.yaml not validated yet (a push starts sending these early).

    Raises:
        ValidationError: a path leaves the bundle directory (also through a symlink).
    """
    model = expand_files(config, "model")  # checked there
    others = [path for path in config.paths("training_data") if not path.is_dir()]
    if icon := config.data.get("icon"):
        others.append(config.root / icon)
    root = config.root.resolve()
    for file in others:
        if root not in file.resolve().parents:
            raise ValidationError(f"{file} leaves the bundle directory")
    return model + others


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
    import yaml  # here: `ecr inspect` imports this module for Platform only (start-up time)

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
    found = spec.problems("ecr", document, what=file.name)
    images = _check_images(document, file.name, found)
    config = BundleConfig(root=file.parent, data=document, images=images)
    _check_files(config, file.name, found)
    found += limit_problems(document, file.name)
    if found:
        raise ValidationError.of(found)
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


def _check_images(document: dict[str, Any], what: str, found: list[tuple[str, str]]) -> tuple[ImageEntry, ...]:
    """The image entries; problems (unknown or repeated platforms) are appended to ``found``."""
    seen: set[tuple[str, str, str | None]] = set()
    entries = []
    items = document.get("images")
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or not isinstance(item.get("platform"), str):
            continue  # the schema check has said what is wrong
        field = f"{what}: images[{i}].platform"
        if any(known == field for known, _ in found):
            continue  # the schema check has said what is wrong with it
        try:
            platform = Platform.parse(item["platform"])
        except ValidationError as exc:
            found.append((field, str(exc)))
            continue
        # linux/arm64 and linux/arm64/v8 are one platform (v8 is arm64's only variant)
        key = (platform.os, platform.architecture, platform.variant or DEFAULT_VARIANT.get(platform.architecture))
        if key in seen:
            found.append((field, f"platform {platform} listed twice"))
        seen.add(key)
        if isinstance(item.get("from"), str):
            entries.append(ImageEntry(platform=platform, source=item["from"]))
    return tuple(entries)


def _check_files(config: BundleConfig, what: str, found: list[tuple[str, str]]) -> None:
    for key in ("model", "training_data", "source_archive", "icon"):
        value = config.data.get(key)
        items = value if isinstance(value, list) else [value] if value is not None else []
        for item in items:
            if not isinstance(item, str):
                continue  # the schema check has said what is wrong
            path = config.root / item
            if path.resolve() != config.root.resolve() and config.root.resolve() not in path.resolve().parents:
                found.append((f"{what}: {key}", f"{item} leaves the bundle directory"))
            elif not path.exists():
                found.append((f"{what}: {key}", f"{item}: no such file or directory"))


# Limits of the registry and of the file systems a bundle is pulled onto: checked by
# load_config, so `ecr validate` finds them before a push moves any byte.
MAX_TAG_LENGTH = 128  # OCI distribution-spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
MAX_FILE_NAME_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs: one path component
MAX_TITLE_BYTES = 1024  # a pulled file's relative path; leaves room under PATH_MAX (4096) for -o DIR


def limit_problems(document: dict[str, Any], what: str) -> list[tuple[str, str]]:
    """Problems with limits a schema does not express: tag length, file name lengths."""
    found: list[tuple[str, str]] = []
    name, version = document.get("name"), document.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return found
    tag = version_tag(version)
    if len(tag) > MAX_TAG_LENGTH:
        found.append((f"{what}: version", f"{len(tag)} characters, but a registry tag (the version) holds at"
                                           f" most {MAX_TAG_LENGTH}"))
    titles: list[tuple[str, str]] = []
    if isinstance(document.get("source_archive"), str):
        titles.append(("source_archive", source_archive_title(name, version)))
    for item in document.get("training_data") or []:
        if isinstance(item, str):
            titles.append(("training_data", data_archive_title(item)))
    for item in document.get("model") or []:
        if isinstance(item, str):
            titles.append(("model", item))
    for key, title in titles:
        longest = max(title.split("/"), key=lambda part: len(part.encode()))
        if len(longest.encode()) > MAX_FILE_NAME_BYTES:
            found.append((f"{what}: {key}", f"file name {longest[:40]!r}... is {len(longest.encode())} bytes;"
                          f" file systems hold at most {MAX_FILE_NAME_BYTES} (shorten the name or the version)"))
        elif len(title.encode()) > MAX_TITLE_BYTES:
            found.append((f"{what}: {key}", f"path {title[:40]!r}... is longer than {MAX_TITLE_BYTES} bytes"))
    return found

"""Errors as a newcomer meets them: literal text (no rich markup), every problem of an
ecr.yaml at once, limits found by `ecr validate`, exit codes as documented."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_oci.cli.common import EXIT_CODES
from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry

README = Path(__file__).resolve().parents[2] / "README.md"


def ecr(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, **kwargs)


def assert_clean(proc: subprocess.CompletedProcess[str], code: int, *literal: str) -> None:
    """The exit code, no traceback, and each literal text shown exactly as given."""
    shown = proc.stdout + proc.stderr
    assert proc.returncode == code, (proc.returncode, shown)
    assert "Traceback" not in shown and "MarkupError" not in shown, shown
    for text in literal:
        assert text in shown, (text, shown)


def _meta(**changes: Any) -> dict[str, Any]:
    out = dict(BASE_METADATA)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# Markup-like user text on the error paths that print it: option values, references,
# ecr.yaml values and file names, gateway names.
MARKUP_CASES: dict[str, tuple[list[str], int, str]] = {
    "platform-without-os": (["pull", "127.0.0.1:9/a/b:1", "--platform", "arm64"], 3, "os/arch[/variant]"),
    "platform-capitalised": (["pull", "127.0.0.1:9/a/b:1", "--platform", "Linux/arm64"], 3,
                             "unknown platform 'Linux/arm64': os must be one of ['linux']"),
    "platform-closing-tag": (["pull", "127.0.0.1:9/a/b:1", "--platform", "linux/[/bold]"], 3, "[/bold]"),
    "reference": (["pull", "x[/]y"], 3, "'x[/]y'"),
    "repository": (["tags", "127.0.0.1:9/[red]x[/red]"], 3, "[red]x[/red]"),
    "inspect-reference": (["inspect", "127.0.0.1:9/a/b:[link=x]"], 3, "[link=x]"),
}


@pytest.mark.parametrize("case", sorted(MARKUP_CASES))
def test_markup_like_arguments_are_printed_literally(case: str) -> None:
    args, code, literal = MARKUP_CASES[case]
    assert_clean(ecr(*args), code, literal)


def test_markup_like_ecr_yaml_values_and_file_names_are_printed_literally(tmp_path: Path, tiny_layout: Path) -> None:
    meta = _meta(images=[{"platform": "linux/arm64 ", "from": "oci:images:arm64"}],
                 model=["model/weights.bin", "model/[bold]w[/bold].bin", "model/[/]"])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    proc = ecr("validate", str(root))
    assert_clean(proc, 3, "'linux/arm64 '", "model/[bold]w[/bold].bin: no such file", "model/[/]: no such file")


def test_markup_in_metadata_and_file_names_survives_push_inspect_pull(registry: Registry, tmp_path: Path,
                                                                     tiny_layout: Path) -> None:
    description = "[bold]Counts[/bold] birds [/] [link=https://x]here[/link]"
    meta = _meta(description=description, model=["model/weights.bin", "model/[v2].bin"])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    (root / "model" / "[v2].bin").write_bytes(b"bracketed")
    assert_clean(ecr("validate", str(root)), 0, "tiny-detector 0.1.0: valid")
    ref = f"{registry.host}/markup/tiny:0.1.0"
    assert_clean(ecr("push", "--quiet", str(root), ref), 0)
    assert_clean(ecr("inspect", ref), 0, description, "model/[v2].bin")
    out = tmp_path / "[out]"
    assert_clean(ecr("pull", "--quiet", "--model-only", ref, "-o", str(out)), 0, f"into {out}")
    assert (out / "model" / "[v2].bin").read_bytes() == b"bracketed"


def test_every_problem_of_an_ecr_yaml_at_once_with_did_you_mean(tmp_path: Path, tiny_layout: Path) -> None:
    meta = _meta(description=None, descripton="typo'd", license="not a licence (", keywords=["ok", "bad!"])
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    proc = ecr("validate", "--no-build", str(root))
    assert_clean(proc, 3, "unknown field 'descripton' (did you mean 'description'?)",
                 "license: 'not a licence (' is not an SPDX license expression",
                 "keywords[1]: 'bad!' is not a keyword (a letter or digit first")
    assert "description: required field is missing" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 3, proc.stderr


LIMITS = {
    "tag-length": (_meta(version="1.0.0-" + "a" * 130), "a registry tag (the version) holds at most 128"),
    "source-archive-name": (_meta(name="n" * 125, version="1.0.0-" + "b" * 120),
                            "source_archive: file name 'nnnnnnnn"),
}


@pytest.mark.parametrize("case", sorted(LIMITS))
def test_limits_are_found_by_validate_before_any_byte_moves(case: str, registry: Registry, tmp_path: Path,
                                                            tiny_layout: Path) -> None:
    meta, message = LIMITS[case]
    root = write_bundle(tmp_path / "b", tiny_layout, meta)
    assert_clean(ecr("validate", "--no-build", str(root)), 3, message)
    before = registry.snapshot()
    assert_clean(ecr("push", "--quiet", str(root), f"{registry.host}/limits/{case}"), 3, message)
    assert registry.snapshot() == before


def test_training_data_directory_name_too_long_once_archived(tmp_path: Path, tiny_layout: Path) -> None:
    root = write_bundle(tmp_path / "b", tiny_layout)
    name = "d" * 250  # fits the file system; "<name>.tar.gz" as a pulled file name does not
    (root / name).mkdir()
    (root / name / "x.csv").write_text("1\n")
    meta = _meta(training_data=[name])
    (root / "ecr.yaml").write_text(yaml.safe_dump(meta))
    assert_clean(ecr("validate", "--no-build", str(root)), 3, "training_data: file name", "257 bytes")


def test_exit_codes_in_help_match_the_readme_table() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README.read_text(), re.MULTILINE))
    assert {int(code): meaning for code, meaning in table.items()} == EXIT_CODES
    shown = " ".join(ecr("--help").stdout.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in shown.replace("│", " ").replace("  ", " "), (code, shown)


def test_file_system_errors_are_one_line_without_traceback(registry: Registry, bundle_dir: Path,
                                                          tmp_path: Path) -> None:
    ref = f"{registry.host}/oserror/tiny:0.1.0"
    assert_clean(ecr("push", "--quiet", str(bundle_dir), ref), 0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = ecr("pull", "--quiet", "--model-only", ref, "-o", str(blocker / "sub"))
    assert_clean(proc, 1, "Not a directory")
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_missing_tag_lists_nearest_tags_and_digests_print_with_at(registry: Registry, bundle_dir: Path,
                                                                  tmp_path: Path) -> None:
    for tag in ("0.1.0", "0.1.1", "2.0.0"):
        assert_clean(ecr("push", "--quiet", str(bundle_dir), f"{registry.host}/near/tiny:{tag}"), 0)
    proc = ecr("pull", f"{registry.host}/near/tiny:0.1.2", "-o", str(tmp_path / "o"))
    assert_clean(proc, 6, "near/tiny:0.1.2 not found", "nearest tags: 0.1.1, 0.1.0")
    assert "sha256-" not in proc.stderr  # signature/attestation tags are not suggested
    missing = "sha256:" + "0" * 64
    proc = ecr("inspect", f"{registry.host}/near/tiny@{missing}")
    assert_clean(proc, 6, f"near/tiny@{missing} not found")
    assert f":{missing}" not in proc.stderr.replace(f"@{missing}", "")


"""``ecr push`` starts sending a new model before the command line is parsed.

Building the typer app and parsing the command line costs Python about 0.15 s
(typer, click, pydantic, rich); a local registry takes some 50 MiB in that time, and
the registry's own hashing, not ecr, is what bounds a large push. So :func:`start`
runs first (from ``ecr_oci.cli.run``, for ``ecr push`` only): it reads the command line
conservatively, reads ecr.yaml without validating it and starts the uploads of its new
large files (:class:`~ecr_oci.transfer.push.UploadsAhead`). The push command, once its
arguments are parsed and the bundle validated, :func:`claim`\\ s those uploads only if
they were started for the same bundle directory, registry, repository and client
settings; otherwise they are stopped and the push goes on as if nothing had started.

Best effort by design: any command line it does not fully understand (credentials,
``--key``, ``--insecure``, an option it does not know), an ecr.yaml it cannot read,
or any error at all means no early start, never an error of its own. What is sent
early is what the push would send anyway, and nothing is tagged before validation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecr_oci.transfer.push import UploadsAhead

# Flags of `ecr push` that change nothing about where and how bytes are sent.
_FLAGS = {"--quiet", "-q", "--verbose", "-v", "--json"}
_QUIET = {"--quiet", "-q", "--json"}
# Environment that changes who pushes or adds work before the upload (--key reads and
# checks the signing key first, so a wrong password fails before anything is sent).
_ENVIRONMENT = ("ECR_USERNAME", "ECR_SIGNING_KEY")


@dataclass(frozen=True)
class _Request:
    """What an early start was made for; the parsed command must ask for exactly this."""

    bundle_dir: Path
    registry: str
    repository: str
    plain_http: bool | None
    parallel: int


_started: tuple[_Request, UploadsAhead] | None = None


def _parse(args: list[str]) -> tuple[_Request, bool] | None:
    """(request, quiet) from ``push`` arguments, or None for anything unusual."""
    from ecr_oci.registry.reference import parse_reference

    positional: list[str] = []
    plain_http: bool | None = None
    parallel, quiet = 4, False
    rest = iter(args)
    for arg in rest:
        if arg in _FLAGS:
            quiet = quiet or arg in _QUIET
        elif arg in ("--plain-http", "--tls"):
            plain_http = arg == "--plain-http"
        elif arg == "--parallel" or arg.startswith("--parallel="):
            value = arg.partition("=")[2] if "=" in arg else next(rest, "")
            if not value.isdigit() or not 1 <= int(value) <= 16:
                return None
            parallel = int(value)
        elif arg.startswith("-"):
            return None  # credentials, --key, --insecure, --help, "--", anything new
        else:
            positional.append(arg)
    if len(positional) != 2:
        return None
    path, reference = positional
    target = parse_reference(reference, default_tag=None)
    if target.digest:
        return None
    bundle_dir = Path(path).resolve()
    if bundle_dir.is_file():
        bundle_dir = bundle_dir.parent
    return _Request(bundle_dir, target.registry, target.repository, plain_http, parallel), quiet


def start(args: list[str]) -> None:
    """Start the uploads of ``ecr push ARGS``'s new large files, if that is surely safe."""
    global _started
    if any(os.environ.get(name) for name in _ENVIRONMENT):
        return
    try:
        parsed = _parse(args)
        if parsed is None:
            return
        request, quiet = parsed
        import yaml

        from ecr_oci.bundle.config import BundleConfig, find_config, input_files

        file = find_config(request.bundle_dir)
        document = yaml.safe_load(file.read_text())
        if not isinstance(document, dict) or file.name != "ecr.yaml":
            return  # sage.yaml is converted first: leave it to the command
        request = replace(request, bundle_dir=file.parent.resolve())
        files = input_files(BundleConfig(root=file.parent, data=document, images=()))
        from ecr_oci.registry.client import RegistryClient
        from ecr_oci.transfer.progress import TransferProgress
        from ecr_oci.transfer.push import UploadsAhead

        client = RegistryClient(request.registry, plain_http=request.plain_http)
        ahead = UploadsAhead(client, request.repository, TransferProgress(not quiet), parallel=request.parallel)
        _started = (request, ahead)
        ahead.start(files, file.parent)
    except Exception:  # best effort: the command itself does everything properly
        return


def claim(bundle_dir: Path, registry: str, repository: str, *, plain_http: bool | None, insecure: bool,
          username: str | None, parallel: int) -> UploadsAhead | None:
    """The uploads :func:`start` began, if they were for exactly this push; else stop them.

    Args:
        bundle_dir: the directory of the validated bundle's ecr.yaml.
    """
    global _started
    if _started is None:
        return None
    request, ahead = _started
    _started = None
    wanted = _Request(bundle_dir.resolve(), registry, repository, plain_http, parallel)
    if request == wanted and not insecure and not username:
        return ahead
    ahead.close()
    return None


def abandon() -> None:
    """Stop uploads no command claimed (the command line was refused, or Ctrl-C came first)."""
    global _started
    if _started is not None:
        _started[1].close()
        _started = None

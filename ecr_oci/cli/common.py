"""Shared CLI plumbing: one readable error line, stable exit codes, client options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ecr_oci.errors import EcrError
from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference, parse_reference

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

EXIT_CODES_HELP = """Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 invalid metadata,
4 unreadable image source, 5 registry error, 6 not found, 7 access denied,
8 digest mismatch, 9 signature invalid."""


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EcrError as exc:
            raise fail(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__, exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]


PlainHttp = Annotated[
    bool | None,
    typer.Option(
        "--plain-http/--tls",
        help="Talk http or https to the registry (default: http only for localhost/127.0.0.1).",
        envvar="ECR_PLAIN_HTTP",
    ),
]
Insecure = Annotated[bool, typer.Option("--insecure", help="Do not verify the registry's TLS certificate.")]
Username = Annotated[
    str | None, typer.Option("--username", "-u", envvar="ECR_USERNAME", help="Registry user (else stored logins).")
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password (or token) from standard input.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def read_password(password_stdin: bool) -> str | None:
    import os

    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get("ECR_PASSWORD")


def make_client(
    registry: str,
    *,
    plain_http: bool | None,
    insecure: bool,
    username: str | None = None,
    password_stdin: bool = False,
) -> RegistryClient:
    creds = None
    if username:
        password = read_password(password_stdin)
        if password is None:
            raise fail("--username needs --password-stdin or ECR_PASSWORD", 2)
        creds = Credentials(username, password)
    return RegistryClient(registry, credentials=creds, plain_http=plain_http, verify_tls=not insecure)


def connect(
    reference: str,
    *,
    plain_http: bool | None,
    insecure: bool,
    username: str | None = None,
    password_stdin: bool = False,
) -> tuple[Reference, RegistryClient]:
    """Parse a command's REFERENCE argument and open a client for its registry.

    Raises:
        ValidationError: the reference is malformed.
    """
    ref = parse_reference(reference)
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure,
                         username=username, password_stdin=password_stdin)
    return ref, client


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"

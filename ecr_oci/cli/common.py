"""Shared CLI plumbing: one readable error line, stable exit codes, client options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ecr_oci.errors import EcrError
from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference, parse_reference

F = TypeVar("F", bound=Callable[..., Any])
# Markup is off on both consoles: everything printed may hold user-controlled text
# (bundle metadata, file names, registry messages) in which "[...]" is not markup.
# Styled output is built from rich Text objects instead.
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False,
              width=None if sys.stdout.isatty() else 200)

# Keep in step with the README table (tests/cli/test_errors.py compares them).
EXIT_CODES = {
    0: "ok",
    1: "unexpected error",
    2: "usage (bad option or argument, weak password, key password missing or wrong)",
    3: "invalid metadata",
    4: "unreadable image source",
    5: "registry error",
    6: "not found",
    7: "access denied (not logged in, wrong password, not allowed)",
    8: "digest mismatch",
    9: "signature invalid",
    10: "profile error",
    11: "Prometheus error",
    130: "interrupted (Ctrl-C)",
}
EXIT_CODES_HELP = "Exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line of literal text with optional styled parts: ``styled(("error:", "bold red"), " ", message)``."""
    return Text.assemble(*parts)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: MESSAGE`` (each further line of MESSAGE indented) and return the Exit to raise."""
    first, *rest = message.splitlines() or [""]
    err.print(styled(("error:", "bold red"), " ", first))
    for line in rest:
        err.print(Text("  " + line))
    return typer.Exit(code)


def error_text(exc: EcrError) -> str:
    """An error's message; a ValidationError carrying several problems lists them all."""
    problems = getattr(exc, "problems", None)
    if problems and len(problems) > 1:
        return "\n".join(problems)
    text = str(exc)
    return text.splitlines()[0] if text else exc.__class__.__name__


def handle_errors(fn: F) -> F:
    """Turn errors into readable lines on stderr and a stable exit code, never a traceback.

    Library errors carry their exit code; file-system errors (a name too long, a full
    disk) and anything unexpected become one line with exit code 1. ``ECR_DEBUG=1``
    adds the traceback (of any error: where an expected one came from helps a bug report).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exceptions()):
            raise
        except EcrError as exc:
            if os.environ.get("ECR_DEBUG"):
                import traceback

                traceback.print_exc()  # where an expected error came from, for a bug report
            raise fail(error_text(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted (a push tags nothing half-done; the same push or pull run again resumes it)",
                       130) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise fail(f"{exc.strerror or exc}{where}", 1) from None
        except Exception as exc:
            if os.environ.get("ECR_DEBUG"):
                raise
            raise fail(f"unexpected {exc.__class__.__name__}: {exc} (ECR_DEBUG=1 shows the traceback)", 1) from None

    return wrapper  # type: ignore[return-value]


def click_exceptions() -> type[Exception]:
    import click

    return click.exceptions.ClickException


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

"""One error hierarchy for the whole package.

Every error the library raises on purpose derives from :class:`EcrError`, so the
CLI can turn it into one readable line and a stable exit code.
"""

from __future__ import annotations


class EcrError(Exception):
    """Base class of every error raised on purpose by ecr_oci.

    Attributes:
        exit_code: the process exit code the CLI uses for this kind of error.
    """

    exit_code: int = 1


class UsageError(EcrError):
    """The command was given something it cannot use: a bad option value, a weak
    password, an unknown grant level, a key it cannot unlock."""

    exit_code = 2

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ValidationError(EcrError):
    """Input (ecr.yaml, annotations, a manifest) does not satisfy the spec.

    Attributes:
        problems: every problem found, one readable line each (the message is the first),
            so a user fixes a file in one round instead of one error per run.
    """

    exit_code = 3

    def __init__(self, message: str, *, field: str | None = None, problems: list[str] | None = None) -> None:
        self.field = field
        text = f"{field}: {message}" if field else message
        self.problems = list(problems) if problems else [text]
        super().__init__(text)

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ValidationError:
        """One error standing for several ``(field, message)`` problems; the first gives its
        message and ``field``."""
        field, message = problems[0]
        return cls(message, field=field, problems=[f"{f}: {m}" for f, m in problems])


class SourceError(EcrError):
    """An image or file source named in ecr.yaml cannot be read."""

    exit_code = 4


class RegistryError(EcrError):
    """The registry answered with an error (carries the OCI error code when known)."""

    exit_code = 5

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class NotFoundError(RegistryError):
    """A repository, tag, manifest or blob does not exist (or is not visible)."""

    exit_code = 6


class AuthError(RegistryError):
    """Credentials are missing or were refused."""

    exit_code = 7


class DigestMismatchError(EcrError):
    """Downloaded content does not hash to the digest that named it."""

    exit_code = 8


class SignatureError(EcrError):
    """A signature or attestation is missing, malformed or does not verify."""

    exit_code = 9


class Interrupted(EcrError):
    """The user interrupted a transfer (Ctrl-C); what was sent or fetched is kept for a resume."""

    exit_code = 130

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


class ValidationError(EcrError):
    """Input (ecr.yaml, annotations, a manifest) does not satisfy the spec."""

    exit_code = 3

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


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

"""Errors of DOI minting, in the package hierarchy (stable CLI exit codes).

Refused credentials are :class:`ecr_oci.errors.AuthError` (exit 7) and metadata that
does not satisfy the DataCite schema is :class:`ecr_oci.errors.ValidationError`
(exit 3); these add what has no counterpart there.
"""

from __future__ import annotations

from ecr_oci.errors import EcrError, RegistryError


class DoiConfigError(EcrError):
    """The DOI configuration is incomplete (no prefix, no credentials, bad endpoint)."""

    exit_code = 2


class DoiProviderError(RegistryError):
    """The DOI provider refused or failed a request (other than refusing credentials)."""

    exit_code = 5


class NotPublicError(EcrError):
    """The bundle cannot be pulled anonymously, so it gets no DOI unless forced."""

    exit_code = 7

"""The DOI provider interface: DataCite's REST API, or EZID, behind one protocol.

A provider registers DataCite metadata (the REST API JSON attributes built by
:mod:`ecr_oci.doi.metadata`) and answers with the DOI it registered. Implementations:

* :class:`ecr_oci.doi.datacite.DataCiteProvider`: DataCite REST API (JSON:API,
  ``POST /dois``, ``PUT /dois/{doi}``, HTTP Basic auth with the repository id).
* :class:`ecr_oci.doi.ezid.EzidProvider`: EZID (California Digital Library, the
  service the Sage ``sage-doi`` tool used): the attributes become DataCite XML
  (kernel 4), sent in an ANVL body to ``POST /shoulder/doi:{shoulder}`` ("mint") or
  ``POST /id/doi:{doi}`` ("update").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Registration:
    """What a provider answered for a registered DOI.

    Attributes:
        doi: the DOI name (10.PREFIX/SUFFIX) as the provider returned it.
        url: the landing page it resolves to.
        state: ``draft``, ``registered`` or ``findable``.
        provider: ``datacite`` or ``ezid``.
        endpoint: the API base URL used.
        test: registered with a test system (the DOI does not resolve).
    """

    doi: str
    url: str
    state: str
    provider: str
    endpoint: str
    test: bool


class DoiProvider(Protocol):
    """Registers DataCite metadata with a DOI registration agency."""

    name: str
    endpoint: str

    def register(self, attributes: dict[str, Any]) -> Registration:
        """Create a DOI: under ``attributes["prefix"]`` with a provider-made suffix, or
        the given ``attributes["doi"]`` (a reserved DOI is published).

        Raises:
            AuthError: the credentials were refused.
            DoiProviderError: the provider refused the metadata or failed.
        """
        ...

    def update(self, doi: str, attributes: dict[str, Any]) -> Registration:
        """Replace the metadata (and landing URL) of an existing DOI.

        Raises:
            AuthError: the credentials were refused.
            DoiProviderError: no such DOI, or the provider refused the metadata.
        """
        ...

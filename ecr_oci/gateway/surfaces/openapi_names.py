"""The name grammars of :mod:`ecr_oci.gateway.domain.names` as JSON Schema, for the OpenAPI documents.

With them a request valid by the document is one the API accepts (schemathesis checks
exactly that in tests/gateway/test_fuzz.py). ``format: ecr-repository`` only helps
generators: the pattern's nested repetition is slow to generate from.
"""

from __future__ import annotations

from typing import Any

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY: dict[str, Any] = {"type": "string", "format": "ecr-repository",
                              "pattern": rf"^{_COMPONENT}(?:/{_COMPONENT})*$", "maxLength": 255}
USER: dict[str, Any] = {"type": "string", "pattern": rf"^{_COMPONENT}$", "maxLength": 64}
LABEL: dict[str, Any] = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}  # accounts, deployments
DIGEST: dict[str, Any] = {"type": "string", "pattern": r"^sha256:[a-f0-9]{64}$"}
REFERENCE: dict[str, Any] = {"type": "string",
                             "pattern": r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[a-f0-9]{64})$"}

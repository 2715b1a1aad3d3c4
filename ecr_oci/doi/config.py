"""DOI provider configuration: a TOML file, overridden by environment, overridden by options.

File: ``$ECR_DOI_CONFIG``, else ``$XDG_CONFIG_HOME/ecr/doi.toml`` (``~/.config/ecr/doi.toml``)::

    provider = "datacite"                       # or "ezid"
    endpoint = "https://api.test.datacite.org"  # default: production, or the test API with test = true
    test = true
    prefix = "10.5072"                          # EZID: a shoulder, e.g. "10.5072/FK2"
    user = "ORG.REPO"                           # DataCite repository id
    password = "..."
    publisher = "Edge Code Repository"
    url = "https://ecr.example.org/{repository}@{digest}"   # landing page template

Environment: ``ECR_DOI_PROVIDER``, ``ECR_DOI_ENDPOINT``, ``ECR_DOI_TEST`` (1/true),
``ECR_DOI_PREFIX``, ``ECR_DOI_USER``, ``ECR_DOI_PASSWORD``, ``ECR_DOI_PUBLISHER``,
``ECR_DOI_URL``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ecr_oci.doi.errors import DoiConfigError

DATACITE_ENDPOINT = "https://api.datacite.org"
DATACITE_TEST_ENDPOINT = "https://api.test.datacite.org"
EZID_ENDPOINT = "https://ezid.cdlib.org"
DEFAULT_PUBLISHER = "Edge Code Repository"
PREFIX_RE = re.compile(r"^10\.[0-9]{4,9}$")
SHOULDER_RE = re.compile(r"^10\.[0-9]{4,9}(/[A-Za-z0-9._-]+)?$")  # EZID: prefix plus an optional shoulder
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DoiConfig:
    """Where and as whom DOIs are registered.

    Attributes:
        provider: ``datacite`` (REST API) or ``ezid``.
        endpoint: API base URL; None means the provider's default (test or production).
        test: use the provider's test system.
        prefix: DOI prefix (``10.NNNN``) the account may register under; for EZID
            a shoulder (``10.5072/FK2``) may follow.
        user: DataCite repository id (or EZID user).
        password: its password.
        publisher: DataCite ``publisher``.
        url: landing-page URL or template (``{registry}``, ``{repository}``, ``{digest}``,
            ``{tag}``, ``{name}``, ``{version}``); None means the registry URL of the index.
    """

    provider: str = "datacite"
    endpoint: str | None = None
    test: bool = False
    prefix: str | None = None
    user: str | None = None
    password: str | None = None
    publisher: str = DEFAULT_PUBLISHER
    url: str | None = None

    @property
    def api(self) -> str:
        """The endpoint to use, without a trailing slash."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.provider == "ezid":
            return EZID_ENDPOINT
        return DATACITE_TEST_ENDPOINT if self.test else DATACITE_ENDPOINT

    @property
    def doi_prefix(self) -> str | None:
        """The DOI prefix proper (an EZID shoulder removed)."""
        return self.prefix.split("/", 1)[0] if self.prefix else None

    def require_account(self) -> tuple[str, str, str]:
        """(prefix, user, password), checked.

        Raises:
            DoiConfigError: one is missing or the prefix is malformed.
        """
        if not self.prefix:
            raise DoiConfigError("no DOI prefix: pass --prefix or set ECR_DOI_PREFIX (e.g. 10.5072)")
        if self.provider == "ezid" and not SHOULDER_RE.match(self.prefix):
            raise DoiConfigError(f"EZID shoulder {self.prefix!r} is not of the form 10.NNNN[/SHOULDER]")
        if self.provider != "ezid" and not PREFIX_RE.match(self.prefix):
            raise DoiConfigError(f"DOI prefix {self.prefix!r} is not of the form 10.NNNN")
        if not self.user or self.password is None:
            raise DoiConfigError("no DOI provider credentials: set ECR_DOI_USER (repository id) and ECR_DOI_PASSWORD")
        if not self.api.startswith(("https://", "http://")):
            raise DoiConfigError(f"DOI endpoint {self.api!r} is not an http(s) URL")
        return self.prefix, self.user, self.password


def config_path() -> Path:
    """The configuration file looked at (it need not exist)."""
    if env := os.environ.get("ECR_DOI_CONFIG"):
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ecr" / "doi.toml"


def _coerce(name: str, value: Any) -> Any:
    if name == "test":
        return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE
    return str(value)


def load_config(**overrides: Any) -> DoiConfig:
    """File, then ``ECR_DOI_*`` variables, then ``overrides`` that are not None.

    Raises:
        DoiConfigError: the file is not valid TOML or names an unknown key.
    """
    known = {f.name for f in fields(DoiConfig)}
    values: dict[str, Any] = {}
    path = config_path()
    if path.is_file():
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DoiConfigError(f"{path}: {exc}") from None
        unknown = sorted(set(document) - known)
        if unknown:
            raise DoiConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
        values |= {k: _coerce(k, v) for k, v in document.items()}
    for name in known:
        env = os.environ.get(f"ECR_DOI_{name.upper()}")
        if env is not None and env != "":
            values[name] = _coerce(name, env)
    values |= {k: _coerce(k, v) for k, v in overrides.items() if v is not None}
    config = replace(DoiConfig(), **values)
    if config.provider not in ("datacite", "ezid"):
        raise DoiConfigError(f"unknown DOI provider {config.provider!r} (datacite or ezid)")
    return config

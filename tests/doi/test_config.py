"""DOI configuration: file < environment < options; test-mode endpoint; incomplete accounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_oci.doi.config import DATACITE_ENDPOINT, DATACITE_TEST_ENDPOINT, load_config
from ecr_oci.doi.errors import DoiConfigError

VARIABLES = ("PROVIDER", "ENDPOINT", "TEST", "PREFIX", "USER", "PASSWORD", "PUBLISHER", "URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in VARIABLES:
        monkeypatch.delenv(f"ECR_DOI_{name}", raising=False)
    path = tmp_path / "doi.toml"
    monkeypatch.setenv("ECR_DOI_CONFIG", str(path))
    return path


def test_precedence_and_test_endpoint(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().api == DATACITE_ENDPOINT
    clean_env.write_text('prefix = "10.1111"\nuser = "A.B"\npassword = "p"\ntest = true\npublisher = "F"\n')
    config = load_config()
    assert (config.prefix, config.user, config.publisher, config.api) == ("10.1111", "A.B", "F", DATACITE_TEST_ENDPOINT)
    monkeypatch.setenv("ECR_DOI_PREFIX", "10.2222")
    monkeypatch.setenv("ECR_DOI_TEST", "0")
    assert (load_config().prefix, load_config().api) == ("10.2222", DATACITE_ENDPOINT)
    config = load_config(prefix="10.3333", endpoint="http://127.0.0.1:1/")
    assert (config.prefix, config.api) == ("10.3333", "http://127.0.0.1:1")
    assert config.require_account() == ("10.3333", "A.B", "p")


def test_bad_configuration_is_reported(clean_env: Path) -> None:
    clean_env.write_text('prefx = "10.1111"\n')
    with pytest.raises(DoiConfigError, match="unknown key"):
        load_config()
    clean_env.write_text("")
    with pytest.raises(DoiConfigError, match="not of the form"):
        load_config(prefix="10.5072/FK2", user="u", password="p").require_account()
    assert load_config(provider="ezid", prefix="10.5072/FK2", user="u", password="p").doi_prefix == "10.5072"
    with pytest.raises(DoiConfigError, match="ECR_DOI_USER"):
        load_config(prefix="10.5072").require_account()
    with pytest.raises(DoiConfigError, match="unknown DOI provider"):
        load_config(provider="crossref")

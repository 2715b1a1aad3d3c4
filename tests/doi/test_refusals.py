"""``ecr doi mint --test`` and the providers' refusals, through the CLI against a real registry.

``--test`` without ``--endpoint`` must talk to DataCite's test system. There is no network
here, so the request goes to a local HTTPS proxy (``HTTPS_PROXY``, which requests honours)
that records the host of the ``CONNECT`` it is asked for and refuses it: where the request
was going is observed on the wire, not read from the code's configuration.

Refusals (annotations-spec/v1/doi.md §1 "Order of checks", §5): refused credentials are
exit 7, any other refusal exit 5 with the provider's reasons; each is one readable line on
stderr and leaves no DOI record. Some are provoked through the fakes' own rules (a prefix
the repository does not own, a shoulder the account cannot mint on); the rest (a DOI
already taken, 403, 5xx) are answers the fakes are told to give.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.doi.conftest import Pushed, doi_env
from tests.doi.fake_datacite import JSON_API, FakeDataCite
from tests.doi.fake_ezid import FakeEzid
from tests.doi.test_mint import doi_referrers, doi_referrers_or_empty
from tests.trust.helpers import ecr


class RefusingProxy:
    """An HTTP proxy that records each ``CONNECT host:port`` and answers 403."""

    def __init__(self) -> None:
        self.connects: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_CONNECT(self) -> None:
                proxy.connects.append(self.path)
                self.send_response(403, "Forbidden by the test proxy")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy() -> Iterator[RefusingProxy]:
    server = RefusingProxy()
    yield server
    server.stop()


@pytest.fixture
def ezid() -> Iterator[FakeEzid]:
    fake = FakeEzid().start()
    yield fake
    fake.stop()


def proxied_env(proxy: RefusingProxy) -> dict[str, str]:
    """DataCite credentials and prefix, no endpoint: HTTPS goes through the proxy, the registry (HTTP) does not."""
    return {"ECR_DOI_PREFIX": "10.5072", "ECR_DOI_USER": "ECR.TEST", "ECR_DOI_PASSWORD": "secret",
            "ECR_DOI_ENDPOINT": "", "ECR_DOI_TEST": "", "ECR_DOI_CONFIG": "/nonexistent/doi.toml",
            "HTTPS_PROXY": proxy.url, "https_proxy": proxy.url, "NO_PROXY": "", "no_proxy": "",
            "HTTP_PROXY": "", "http_proxy": "", "ALL_PROXY": "", "all_proxy": ""}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def assert_nothing_recorded(pushed: Pushed) -> None:
    assert doi_referrers_or_empty(pushed) == []
    shown = ecr("doi", "show", pushed.ref, check=False)
    assert shown.returncode == 6, shown.stderr


@pytest.mark.parametrize(("options", "host"), [(["--test"], "api.test.datacite.org:443"),
                                               ([], "api.datacite.org:443")], ids=["test", "production"])
def test_test_flag_without_endpoint_goes_to_datacites_test_system(
    pushed: Pushed, proxy: RefusingProxy, options: list[str], host: str
) -> None:
    proc = ecr("doi", "mint", pushed.ref, *options, env=proxied_env(proxy), check=False)
    assert proxy.connects == [host], (proxy.connects, proc.stderr)
    assert proc.returncode == 5, proc.stderr
    line = one_error_line(proc.stderr)
    assert f"cannot reach DataCite at https://{host.removesuffix(':443')}" in line, line
    assert_nothing_recorded(pushed)


def test_test_variable_without_endpoint_goes_to_datacites_test_system(pushed: Pushed, proxy: RefusingProxy) -> None:
    env = {**proxied_env(proxy), "ECR_DOI_TEST": "true"}
    proc = ecr("doi", "mint", pushed.ref, env=env, check=False)
    assert proxy.connects == ["api.test.datacite.org:443"], proc.stderr
    assert proc.returncode == 5, proc.stderr


def test_test_flag_with_endpoint_uses_the_endpoint_and_records_a_test_doi(
    pushed: Pushed, datacite: FakeDataCite, proxy: RefusingProxy
) -> None:
    env = {**doi_env(datacite), "ECR_DOI_ENDPOINT": "", "HTTPS_PROXY": proxy.url, "https_proxy": proxy.url,
           "NO_PROXY": "", "no_proxy": ""}
    proc = ecr("doi", "mint", pushed.ref, "--test", "--endpoint", datacite.url, env=env)
    doi = proc.stdout.strip()
    assert proxy.connects == []  # nothing went to DataCite itself
    assert [(r.method, r.path, r.status) for r in datacite.requests] == [("POST", "/dois", 201)]
    assert doi in datacite.dois
    assert "(test system)" in proc.stderr
    shown = json.loads(ecr("doi", "show", "--json", pushed.ref).stdout)
    [record] = shown["records"]
    assert record["test"] is True and record["endpoint"] == datacite.url and record["doi"] == doi
    assert "findable, datacite test system" in ecr("doi", "show", pushed.ref).stderr


def test_without_test_flag_the_record_says_production(pushed: Pushed, datacite: FakeDataCite) -> None:
    doi = ecr("doi", "mint", pushed.ref, env=doi_env(datacite)).stdout.strip()
    [record] = json.loads(ecr("doi", "show", "--json", pushed.ref).stdout)["records"]
    assert record["doi"] == doi and record["test"] is False


def test_a_prefix_the_repository_does_not_own_is_refused_with_datacites_reason(
    pushed: Pushed, datacite: FakeDataCite
) -> None:
    env = {**doi_env(datacite), "ECR_DOI_PREFIX": "10.9999"}
    proc = ecr("doi", "mint", pushed.ref, env=env, check=False)
    assert proc.returncode == 5, proc.stderr
    line = one_error_line(proc.stderr)
    assert "DataCite refused the DOI (POST /dois -> 422)" in line
    assert "prefix: prefix 10.9999 is not associated with repository ECR.TEST" in line
    assert [r.status for r in datacite.requests] == [422]
    assert_nothing_recorded(pushed)


def _errors(status: int, title: str, source: str | None = None) -> str:
    error: dict[str, str] = {"status": str(status), "title": title}
    if source:
        error["source"] = source
    return json.dumps({"errors": [error]})


@pytest.mark.parametrize(
    ("status", "content_type", "body", "code", "words"),
    [
        (422, JSON_API, _errors(422, "This DOI has already been taken", "doi"), 5,
         "DataCite refused the DOI (POST /dois -> 422): doi: This DOI has already been taken"),
        (409, JSON_API, _errors(409, "This DOI has already been taken", "doi"), 5,
         "DataCite refused the DOI (POST /dois -> 409): doi: This DOI has already been taken"),
        (403, JSON_API, _errors(403, "You are not authorized to access this resource."), 7,
         "refused the credentials of repository ECR.TEST: You are not authorized to access this resource."),
        (500, JSON_API, _errors(500, "An internal server error occurred"), 5,
         "DataCite refused the DOI (POST /dois -> 500): An internal server error occurred"),
        (503, "text/html", "<html><body><h1>503 Service Unavailable</h1></body></html>", 5,
         "DataCite refused the DOI (POST /dois -> 503): HTTP 503 Service Unavailable"),
    ],
    ids=["422-taken", "409-taken", "403", "500", "503-html"],
)
def test_datacite_refusals_are_one_line_with_the_documented_exit_code_and_record_nothing(
    pushed: Pushed, datacite: FakeDataCite, status: int, content_type: str, body: str, code: int, words: str
) -> None:
    datacite.refusals.append((status, content_type, body))
    proc = ecr("doi", "mint", pushed.ref, env=doi_env(datacite), check=False)
    assert proc.returncode == code, proc.stderr
    assert words in one_error_line(proc.stderr)
    assert [r.status for r in datacite.requests] == [status]
    assert proc.stdout == ""
    assert_nothing_recorded(pushed)
    # the same bundle mints once the provider accepts (the refusal left nothing half-done)
    doi = ecr("doi", "mint", pushed.ref, env=doi_env(datacite)).stdout.strip()
    assert [e["annotations"]["org.waggle.ecr.doi"] for e in doi_referrers(pushed)] == [doi]


def ezid_env(fake: FakeEzid, **changes: str) -> dict[str, str]:
    return {"ECR_DOI_PROVIDER": "ezid", "ECR_DOI_ENDPOINT": fake.url, "ECR_DOI_PREFIX": fake.shoulder,
            "ECR_DOI_USER": fake.user, "ECR_DOI_PASSWORD": fake.password, "ECR_DOI_CONFIG": "/nonexistent",
            **changes}


@pytest.mark.parametrize(
    ("env_changes", "refusal", "code", "words"),
    [
        ({"ECR_DOI_PASSWORD": "wrong"}, None, 7,
         "EZID at {url} refused the credentials of apitest: error: unauthorized"),
        ({"ECR_DOI_PREFIX": "10.5072/XX9"}, None, 5,
         "EZID refused the DOI (POST /shoulder/doi:10.5072/XX9 -> 400): error: bad request - no such identifier"),
        ({}, (403, "error: forbidden"), 7, "refused the credentials of apitest: error: forbidden"),
        ({}, (500, "error: internal server error"), 5,
         "EZID refused the DOI (POST /shoulder/doi:10.5072/FK2 -> 500): error: internal server error"),
    ],
    ids=["401", "unknown-shoulder", "403", "500"],
)
def test_ezid_refusals_are_one_line_with_the_documented_exit_code_and_record_nothing(
    pushed: Pushed, ezid: FakeEzid, env_changes: dict[str, str], refusal: tuple[int, str] | None, code: int,
    words: str,
) -> None:
    if refusal:
        ezid.refusals.append(refusal)
    proc = ecr("doi", "mint", pushed.ref, env=ezid_env(ezid, **env_changes), check=False)
    assert proc.returncode == code, proc.stderr
    assert words.format(url=ezid.url) in one_error_line(proc.stderr)
    assert len(ezid.requests) == 1 and ezid.ids == {}
    assert_nothing_recorded(pushed)

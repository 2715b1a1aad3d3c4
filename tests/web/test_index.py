"""The catalog index behind the pages and the catalog API: kept at push and delete, rebuilt by reindex."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import password_of
from tests.web.conftest import Site, push


def test_push_and_delete_keep_the_index(site: Site, tmp_path: Path, tiny_layout: Path) -> None:
    gw = site.gw
    root = write_bundle(tmp_path / "b", tiny_layout, {**BASE_METADATA, "name": "short-lived",
                                                       "keywords": ["ephemeral"]})
    digest = push(gw, root, "alice/short-lived:0.1.0")
    assert requests.get(f"{site.url}/bundles/alice/short-lived", timeout=30).status_code == 200
    assert "short-lived" in requests.get(f"{site.url}/?keyword=ephemeral", timeout=30).text
    api = requests.get(f"{site.url}/api/v1/bundles/alice/short-lived", timeout=30).json()
    assert [v["digest"] for v in api["versions"]] == [digest]
    # a released version: only an admin may delete it
    deleted = gw.call("admin", "DELETE", f"/v2/alice/short-lived/manifests/{digest}",
                      "repository:alice/short-lived:delete")
    assert deleted.status_code == 202, deleted.text
    assert requests.get(f"{site.url}/bundles/alice/short-lived", timeout=30).status_code == 404
    assert "short-lived" not in requests.get(f"{site.url}/?keyword=ephemeral", timeout=30).text
    assert requests.get(f"{site.url}/api/v1/bundles/alice/short-lived", timeout=30).status_code == 404


def test_reindex_rebuilds_the_index_from_the_registry(site: Site) -> None:
    gw = site.gw
    before = requests.get(f"{site.url}/api/v1/bundles", auth=("alice", password_of("alice", gw)), timeout=60).json()
    page = requests.get(f"{site.url}/bundles/alice/owl-counter/0.1.0", timeout=30).text
    from ecr_oci.gateway.stores.state import SqliteStore

    store = SqliteStore(gw.data_dir / "state.db")  # another process writing the same store: like a reset
    try:
        store.clear_bundle_versions()
    finally:
        store.close()
    assert requests.get(f"{site.url}/bundles/alice/owl-counter", timeout=30).status_code == 404
    answer = requests.post(f"{site.url}/api/v1/admin/reindex", auth=("admin", password_of("admin", gw)), timeout=120)
    assert answer.status_code == 200 and answer.json()["bundle_versions"] >= 5
    after = requests.get(f"{site.url}/api/v1/bundles", auth=("alice", password_of("alice", gw)), timeout=60).json()
    assert after == before
    again = requests.get(f"{site.url}/bundles/alice/owl-counter/0.1.0", timeout=30).text
    # the same page (push times survive only within the index: a rebuild stamps them anew)
    strip = lambda text: "\n".join(line for line in text.splitlines() if "UTC" not in line)  # noqa: E731
    assert strip(again) == strip(page)


def _signed_in(site: Site, user: str) -> requests.Session:
    session = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{site.url}/login", timeout=30).text)
    assert token
    resp = session.post(f"{site.url}/login", timeout=30, allow_redirects=False,
                        data={"csrf": token[1], "username": user, "password": password_of(user, site.gw)})
    assert resp.status_code == 303, resp.text
    return session


def _page_results(site: Site, query: str, browser: requests.Session) -> set[str]:
    """Repositories the search page lists for ``query`` (every page)."""
    found: set[str] = set()
    for page in range(1, 20):
        html = browser.get(f"{site.url}/", params={"q": query, "page": str(page)}, timeout=30).text
        listed = set(re.findall(r'<h2><a href="/bundles/([^"]+)">', html))
        if not listed or listed <= found:
            return found
        found |= listed
    raise AssertionError("more pages than expected")


@pytest.mark.parametrize("query", ["owl", "OWLS", "alice", "alice/owl", "Test Author", "counts owls", "owls night",
                                   "night owls", "wildlife camera", "rare birds", "no-such-word", "a"])
def test_the_api_and_the_search_page_find_the_same_bundles(site: Site, query: str) -> None:
    """One text rule for both: every word of ``q`` in the repository name, name, description,
    authors, science or keywords. (The API once matched ``q`` as one phrase over fewer fields:
    "alice", "Test Author" or "owls night" found bundles on the page and none through the API.)
    Anonymous and as bob, who may pull the protected alice/secret-birds."""
    for browser, auth in ((requests.Session(), None), (_signed_in(site, "bob"), ("bob", password_of("bob", site.gw)))):
        api = requests.get(f"{site.url}/api/v1/bundles", params={"q": query}, auth=auth, timeout=30).json()
        page = _page_results(site, query, browser)
        assert {b["repository"] for b in api["bundles"]} == page, (query, auth)
        if query == "rare birds":
            assert ("alice/secret-birds" in page) == (auth is not None)

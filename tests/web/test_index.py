"""The catalog index behind the pages and the catalog API: kept at push and delete, rebuilt by reindex."""

from __future__ import annotations

from pathlib import Path

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

"""The web surface's small parts: URL filter, citation escaping, sessions, the login brake, escaping."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ecr_oci.gateway.surfaces.web import render
from ecr_oci.gateway.surfaces.web.session import LoginBrake, Session, SessionCodec


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "vbscript:x", "//evil.example/x",
                                 "https://user:pw@evil.example/", "https://a.example/\"><img src=x>", "", None, 42,
                                 "https:///nohost", "http://a.example/\nx"])
def test_only_plain_http_urls_become_links(url: object) -> None:
    assert render.safe_url(url) is None


def test_plain_urls_pass() -> None:
    assert render.safe_url("https://example.org/a?b=c#d") == "https://example.org/a?b=c#d"


def test_citation_cannot_break_out_of_bibtex_fields() -> None:
    meta = {"name": "x}, title={pwned", "version": "1.0.0", "authors": "A {B} <a@b.c>, C\\D <c@d.e>"}
    cited = render.citation(meta, "10.1234/abc}", "ecr.example", 0.0)
    body = cited["bibtex"]
    bare = body.replace("\\{", "").replace("\\}", "")
    assert bare.count("{") == bare.count("}") == 8  # braces in values are escaped: the 8 fields stay closed
    assert "title = {x\\}, title=\\{pwned}" in body
    assert cited["text"].startswith("A {B}; C\\D (1970). x}, title={pwned (version 1.0.0) [Software].")


def test_templates_escape_in_html_and_svg() -> None:
    env = render.environment()
    hostile = '<script>x</script>"><img src=x onerror=y>'
    badge = env.get_template("badge.svg").render(b=render.badge("ecr", hostile, "approved"))
    assert "<script>" not in badge and "<img" not in badge and "&lt;script&gt;" in badge
    chart = render.chart([{"version": hostile, "node": hostile, "hardware": "h", "p50": 0.1, "p95": 0.2}])
    assert chart is not None and chart["bars"][0]["label"].startswith("<script>")  # escaped by the template


def test_session_cookie_is_signed_and_expires(tmp_path: Path) -> None:
    codec = SessionCodec(tmp_path / "keys")
    session = codec.new("alice")
    value = codec.encode(session)
    assert codec.decode(value) == Session(session.sid, "alice", float(int(session.expires)))
    _, _, mac = value.partition(".")
    forged = codec.encode(Session(session.sid, "admin", session.expires)).partition(".")[0] + "." + mac
    assert codec.decode(forged) is None
    assert codec.decode(value[:-2] + "xx") is None
    assert codec.decode(codec.encode(Session("s", "alice", time.time() - 1))) is None
    assert codec.decode("not a cookie") is None and codec.decode(None) is None
    other = SessionCodec(tmp_path / "other-keys")
    assert other.decode(value) is None  # another gateway's key
    assert SessionCodec(tmp_path / "keys").decode(value) is not None  # the key persists
    assert codec.csrf_valid(session, codec.csrf_token(session))
    assert not codec.csrf_valid(codec.new("alice"), codec.csrf_token(session))
    assert not codec.csrf_valid(session, None) and not codec.csrf_valid(None, "x")
    assert (tmp_path / "keys" / "web-session.key").stat().st_mode & 0o777 == 0o600


def test_login_brake() -> None:
    brake = LoginBrake()
    assert brake.delay("1.2.3.4", "alice") == 0
    for _ in range(3):
        brake.failed("1.2.3.4", "alice")
    assert brake.delay("1.2.3.4", "alice") == 1.0
    assert brake.delay("5.6.7.8", "alice") == 1.0  # per user name, from anywhere
    assert brake.delay("1.2.3.4", "bob") == 0  # an address shared by many gets more room
    for _ in range(10):
        brake.failed("1.2.3.4", "alice")
    assert brake.delay("1.2.3.4", "alice") == 16.0
    brake.succeeded("alice")
    assert brake.delay("5.6.7.8", "alice") == 0
    for i in range(20):
        brake.failed("9.9.9.9", f"user{i}")  # a spray of names from one address
    assert brake.delay("9.9.9.9", "someone") == 1.0


def test_search_sees_writes_of_another_gateway_on_the_same_store(tmp_path: Path) -> None:
    """Each gateway searches its in-memory copy of the index; a write through another
    gateway's store moves the catalog generation, so the copy is reloaded."""
    from ecr_oci.gateway.core import Gateway, GatewayConfig
    from ecr_oci.gateway.domain import storefront
    from ecr_oci.gateway.domain.bundle_index import version_row
    from ecr_oci.gateway.domain.policy import ANONYMOUS

    def gateway() -> Gateway:
        return Gateway(GatewayConfig(data_dir=tmp_path, registry_url="http://127.0.0.1:9"))

    writer, reader = gateway(), gateway()
    try:
        def put(repository: str, tag: str, description: str, pushed: float) -> None:
            document = {"metadata": {"name": repository.split("/")[1], "description": description},
                        "platforms": [{"platform": "linux/arm64", "digest": "sha256:" + "a" * 64, "size": 1}],
                        "model": None, "size": 1}
            writer.store.set_visibility(repository, "public")
            writer.store.put_bundle_version(version_row(repository, tag, "sha256:" + tag[0] * 64, document, pushed))

        put("alice/owls", "1.0.0", "night owls", 1.0)
        assert [v.repository for v in storefront.search(reader, ANONYMOUS, storefront.SearchQuery(q="owls")).results] \
            == ["alice/owls"]
        put("alice/owls", "2.0.0", "day birds", 2.0)  # the newest version no longer matches "night"
        put("bob/bats", "1.0.0", "bats", 3.0)
        found = storefront.search(reader, ANONYMOUS, storefront.SearchQuery(q="night"))
        assert [(v.repository, v.tag) for v in found.results] == [("alice/owls", "1.0.0")]
        everything = storefront.search(reader, ANONYMOUS, storefront.SearchQuery())
        assert [(v.repository, v.tag) for v in everything.results] == [("bob/bats", "1.0.0"), ("alice/owls", "2.0.0")]
        writer.store.set_visibility("bob/bats", "private")  # policy is asked on every search
        assert [v.repository for v in storefront.search(reader, ANONYMOUS, storefront.SearchQuery()).results] \
            == ["alice/owls"]
        writer.store.remove_bundle_versions("alice/owls", tag="1.0.0")
        assert storefront.search(reader, ANONYMOUS, storefront.SearchQuery(q="night")).results == []
    finally:
        for gw in (writer, reader):
            gw.store.close()
            gw.audit.close()


def test_search_pages_and_sorts(tmp_path: Path) -> None:
    from ecr_oci.gateway.core import Gateway, GatewayConfig
    from ecr_oci.gateway.domain import storefront
    from ecr_oci.gateway.domain.bundle_index import version_row
    from ecr_oci.gateway.domain.policy import ANONYMOUS

    gw = Gateway(GatewayConfig(data_dir=tmp_path, registry_url="http://127.0.0.1:9"))
    try:
        for i in range(45):
            repository = f"ns{i % 3}/bundle-{i:02d}"
            gw.store.set_visibility(repository, "public" if i % 5 else "protected")  # 9 protected
            document = {"metadata": {"name": f"bundle-{i:02d}"}, "platforms": [], "model": None, "size": 0}
            gw.store.put_bundle_version(version_row(repository, "1.0.0", "sha256:" + "b" * 64, document, float(i)))
        pages = [storefront.search(gw, ANONYMOUS, storefront.SearchQuery(page=n)) for n in (1, 2, 3)]
        assert [p.total for p in pages] == [36, 36, 36] and [p.pages for p in pages] == [2, 2, 2]
        assert [len(p.results) for p in pages] == [20, 16, 16]  # past the last page: the last page
        assert pages[0].results[0].repository == "ns2/bundle-44"  # newest first
        by_name = storefront.search(gw, ANONYMOUS, storefront.SearchQuery(sort="name"))
        names = [v.repository for v in by_name.results]
        assert names == sorted(names) and names[0] == "ns0/bundle-03"
        ns1 = storefront.search(gw, ANONYMOUS, storefront.SearchQuery(namespace="ns1"))
        assert ns1.total == 12 and all(v.namespace == "ns1" for v in ns1.results)
        assert storefront.SearchQuery.from_params({"page": "x", "sort": "evil", "stage": "nope"}) == \
            storefront.SearchQuery()
    finally:
        gw.store.close()
        gw.audit.close()

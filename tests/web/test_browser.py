"""The web app store in a real headless Chromium, against a real ``ecr serve``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.gateway.support import password_of
from tests.support import start_dockerd
from tests.web.conftest import BUILDER, HOSTILE, OWL_DOI, SCREENSHOTS, Site

Driver = Any


def sign_in(driver: Driver, site: Site, user: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{site.url}/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password_of(user, site.gw))
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "form[action='/logout']")))


def sign_out(driver: Driver, site: Site) -> None:
    driver.get(site.url + "/")
    driver.delete_all_cookies()


def result_names(driver: Driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "li.result h2 a")]


def search_for(driver: Driver, site: Site, text: str) -> None:
    driver.get(site.url + "/")
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text, Keys.ENTER)  # the keyboard submits the form
    WebDriverWait(driver, 30).until(ec.url_contains("q="))


def shot(driver: Driver, name: str, width: int = 1100, element: str | None = None) -> Path:
    """Save a full-page (or one element's) screenshot, as a small palette PNG, under
    ECR_SCREENSHOTS when set (``make screenshots``), else a temporary directory."""
    from PIL import Image

    out = SCREENSHOTS or Path(tempfile.gettempdir()) / "ecr-web-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(width, 900)
    chrome = 900 - int(driver.execute_script("return window.innerHeight"))  # the window's own frame
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(int(height), 600), 4000) + chrome)
    path = out / f"{name}.png"
    if element:
        driver.find_element(By.CSS_SELECTOR, element).screenshot(str(path))
    else:
        driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=96)
    small.save(path, optimize=True)
    return path


def test_anonymous_search_finds_public_not_protected(site: Site, browser: Driver) -> None:
    sign_out(browser, site)
    browser.get(site.url + "/")
    listed = result_names(browser)
    assert ("owl-counter" in listed and "flip" in listed) or "owl-counter" in listed
    assert "secret-birds" not in listed and "secret-birds" not in browser.page_source
    search_for(browser, site, "owls")
    assert result_names(browser) == ["owl-counter"]
    search_for(browser, site, "rare birds")
    assert result_names(browser) == []
    assert "0 bundles" in browser.find_element(By.CSS_SELECTOR, "p.count").text
    # filters: platform and stage (approved for neon: only owl-counter 0.2.0)
    browser.get(f"{site.url}/?platform=linux/arm64&stage=approved&deployment=neon")
    assert result_names(browser) == ["owl-counter"]
    browser.get(f"{site.url}/?platform=linux/riscv64")
    assert result_names(browser) == []


def _identity(resp: requests.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k.lower(): v for k, v in resp.headers.items() if k.lower() != "date"}
    return resp.status_code, resp.content, headers


@pytest.mark.parametrize("who", [None, "eve"])
def test_protected_bundle_answers_exactly_like_a_missing_one(site: Site, who: str | None) -> None:
    session = requests.Session()
    if who:
        form = session.get(f"{site.url}/login", timeout=30)
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        login = session.post(f"{site.url}/login", data={"csrf": csrf[1], "username": who,
                                                        "password": password_of(who, site.gw), "next": "/"},
                             timeout=30, allow_redirects=False)
        assert login.status_code == 303
    pairs = [("/bundles/alice/secret-birds", "/bundles/alice/secret-birdz"),
             ("/bundles/alice/secret-birds/1.0.0", "/bundles/alice/secret-birdz/1.0.0"),
             ("/bundles/alice/secret-birds/badge.svg", "/bundles/alice/secret-birdz/badge.svg"),
             ("/bundles/alice/secret-birds/-/compare?a=1.0.0&b=1.0.0",
              "/bundles/alice/secret-birdz/-/compare?a=1.0.0&b=1.0.0"),
             ("/bundles/alice/secret-birds", "/bundles/alice/Not..Valid"),
             ("/bundles/alice/secret-birds/1.0.0", "/bundles/alice/owl-counter/9.9.9"),
             ("/bundles/alice/secret-birds", "/bundles/alice/owl-counter/0.2.0/more/parts"),
             ("/bundles/alice/secret-birds", "/namespaces/nobody-here"),
             ("/bundles/alice/secret-birds/-/icon/1.0.0", "/bundles/alice/secret-birdz/-/icon/1.0.0"),
             ("/bundles/alice/secret-birds/-/icon/1.0.0", "/bundles/alice/flip/-/icon/0.1.0")]
    for hidden, missing in pairs:
        a = session.get(site.url + hidden, timeout=30)
        b = session.get(site.url + missing, timeout=30)
        assert a.status_code == 404, hidden
        assert _identity(a) == _identity(b), (hidden, missing)
    assert "secret" not in session.get(f"{site.url}/?q=secret", timeout=30).text.split('<ol class="results">')[1]


def test_grantee_signs_in_finds_opens_and_pulls_with_the_shown_command(site: Site, browser: Driver,
                                                                         tmp_path: Path) -> None:
    sign_in(browser, site, "bob")
    search_for(browser, site, "rare birds")
    assert result_names(browser) == ["secret-birds"]
    browser.find_element(By.LINK_TEXT, "secret-birds").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "cmd-docker")))
    command = browser.find_element(By.ID, "cmd-docker").text.strip()
    images = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "code")[0]
              .get_attribute("title") for r in browser.find_elements(By.CSS_SELECTOR, "section#get tbody tr")
              if r.find_elements(By.TAG_NAME, "code")}
    match = re.fullmatch(rf"docker pull ({re.escape(site.gw.host)}/alice/secret-birds@(sha256:[a-f0-9]{{64}}))",
                         command)
    assert match, command
    assert match[2] == images["linux/amd64"]
    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-web-dk-", dir="/tmp")), site.gw.host)
    if isinstance(engine, str):
        # No Docker engine here: pull the same digest with podman instead, and say so.
        podman = ["podman", "--storage-driver", "vfs", "--root", str(tmp_path / "root"), "--runroot",
                  str(tmp_path / "run"), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        subprocess.run([*podman, "login", "--tls-verify=false", "-u", "bob", "--password-stdin", site.gw.host],
                       input=password_of("bob", site.gw), text=True, check=True, capture_output=True, timeout=60)
        pulled = subprocess.run([*podman, "pull", "--tls-verify=false", match[1]], capture_output=True, text=True,
                                timeout=300)
        assert pulled.returncode == 0, f"{engine}; podman: {pulled.stderr}"
        return
    try:
        anonymous = subprocess.run(command.split(), capture_output=True, text=True, env=engine.env, timeout=120)
        assert anonymous.returncode != 0  # the command needs bob's login: it is a protected bundle
        engine.docker("login", "-u", "bob", "--password-stdin", site.gw.host, input_text=password_of("bob", site.gw))
        engine.docker(*command.split()[1:])
        arch = engine.docker("image", "inspect", "--format", "{{.Architecture}}", match[1]).stdout.strip()
        assert arch == "amd64"
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)


def test_owner_changes_visibility_and_grants_through_the_forms(site: Site, browser: Driver) -> None:
    assert requests.get(f"{site.url}/bundles/alice/flip", timeout=30).status_code == 200
    sign_in(browser, site, "alice")
    browser.get(f"{site.url}/bundles/alice/flip")
    Select(browser.find_element(By.ID, "visibility")).select_by_visible_text("protected")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/-/visibility'] button").click()
    WebDriverWait(browser, 30).until(ec.url_contains("done=visibility"))
    assert browser.find_element(By.CSS_SELECTOR, "p.notice").text == "Visibility changed."
    assert Select(browser.find_element(By.ID, "visibility")).first_selected_option.text == "protected"
    assert requests.get(f"{site.url}/bundles/alice/flip", timeout=30).status_code == 404
    api = requests.get(f"{site.url}/api/v1/bundles/alice/flip", timeout=30)
    assert api.status_code == 404  # the same rule everywhere
    # grant eve read through the form: she then finds it; revoke: she does not
    browser.find_element(By.ID, "grant-account").send_keys("eve")
    Select(browser.find_element(By.ID, "grant-level")).select_by_visible_text("read")
    browser.find_element(By.CSS_SELECTOR, "form.row[action$='/-/grants'] button").click()
    WebDriverWait(browser, 30).until(ec.url_contains("done=grant"))
    assert "eve: read" in browser.find_element(By.ID, "manage").text
    eve = requests.get(f"{site.url}/api/v1/bundles/alice/flip", auth=("eve", password_of("eve", site.gw)), timeout=30)
    assert eve.status_code == 200
    # eve's own revoke button (other tests may have left other grants listed, in any order)
    revoke = browser.find_element(By.XPATH,
                                  "//*[@id='manage']//li[contains(normalize-space(.), 'eve: read')]//form//button")
    revoke.click()
    # the URL already says done=grant (the grant before): wait for the new page itself
    WebDriverWait(browser, 30).until(ec.staleness_of(revoke))
    assert "eve: read" not in browser.find_element(By.ID, "manage").text
    audit = [json.loads(line) for line in (site.gw.data_dir / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "repo.visibility" and e["actor"] == "alice" and e["repository"] == "alice/flip"
               and e["visibility"] == "protected" for e in audit)
    assert any(e["event"] == "repo.grant" and e["account"] == "eve" and e["level"] is None for e in audit)
    # a user who may not manage it is refused, with the API's rule and answer
    sign_in(browser, site, "eve")
    browser.get(f"{site.url}/bundles/alice/owl-counter")
    assert not browser.find_elements(By.ID, "manage")
    browser.get(f"{site.url}/login")  # restore for other tests: public again, through the API
    site.gw.admin("alice").set_visibility("alice/flip", "public")


def test_forms_without_their_csrf_token_are_refused(site: Site, browser: Driver) -> None:
    sign_in(browser, site, "alice")
    browser.get(f"{site.url}/bundles/alice/flip")
    browser.execute_script("for (const e of document.querySelectorAll(\"input[name=csrf]\")) e.remove();")
    Select(browser.find_element(By.ID, "visibility")).select_by_visible_text("private")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/-/visibility'] button").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "section[role=alert]")))
    assert "expired or did not come from this site" in browser.page_source
    assert requests.get(f"{site.url}/bundles/alice/flip", timeout=30).status_code == 200  # unchanged
    # the same with the session cookie but a token from another session, and with none at all
    cookie = browser.get_cookie("ecr_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    jar = {"ecr_session": cookie["value"]}
    for data in ({"visibility": "private"}, {"visibility": "private", "csrf": "forged"}):
        refused = requests.post(f"{site.url}/bundles/alice/flip/-/visibility", data=data, cookies=jar, timeout=30,
                                allow_redirects=False)
        assert refused.status_code == 403
    logout = requests.post(f"{site.url}/logout", data={}, cookies=jar, timeout=30, allow_redirects=False)
    assert logout.status_code == 403
    assert requests.get(f"{site.url}/bundles/alice/flip", timeout=30).status_code == 200


def test_hostile_metadata_stays_text(site: Site, browser: Driver) -> None:
    sign_out(browser, site)
    for path in ("/bundles/alice/evil", "/?q=evil", "/namespaces/alice", "/bundles/alice/evil/badge.svg"):
        browser.get(site.url + path)
        assert browser.execute_script("return window.pwned === undefined")
        assert not browser.find_elements(By.CSS_SELECTOR, "img[src=x], svg[onload], [onerror], [onload]")
        handlers = browser.execute_script(
            "return [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
            ".filter(n => n.startsWith('on'))")
        assert handlers == []
        scripts = browser.execute_script(
            "return [...document.querySelectorAll('script')].map(s => s.src || s.type)")
        assert all(s.endswith("/static/app.js") or s == "application/ld+json" for s in scripts), scripts
        links = browser.execute_script("return [...document.querySelectorAll('[href]')].map(a => a.href)")
        assert not [u for u in links if not u.startswith(("http://", "https://"))], links
    browser.get(f"{site.url}/bundles/alice/evil")
    text = browser.find_element(By.TAG_NAME, "body").text
    for value in ("<script>window.pwned=1</script>", HOSTILE["science"], HOSTILE["revision"], HOSTILE["input"],
                  HOSTILE["accelerator"], "Mallory <mallory@example.org>\"><svg onload=window.pwned=5>"):
        assert value in text  # shown, as text
    # the homepage is not a valid link (quotes, spaces): shown as text, never an href
    assert not browser.find_elements(By.CSS_SELECTOR, "a[href*='onerror']")
    assert HOSTILE["homepage"] in text
    blocks = browser.find_elements(By.CSS_SELECTOR, "script[type='application/ld+json']")
    assert len(blocks) == 1
    embedded = json.loads(blocks[0].get_attribute("textContent"))
    assert embedded["description"] == HOSTILE["description"] and embedded["author"] == HOSTILE["author"]
    assert browser.find_element(By.TAG_NAME, "title").get_attribute("textContent").startswith("evil 0.1.0")
    csp = requests.get(f"{site.url}/bundles/alice/evil", timeout=30).headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp


def test_query_parameters_are_echoed_as_text(site: Site, browser: Driver) -> None:
    sign_out(browser, site)
    hostile = '"><script>window.pwned=1</script><img src=x onerror=window.pwned=2>'
    browser.get(f"{site.url}/?{urlencode({'q': hostile, 'platform': hostile, 'license': hostile, 'page': hostile})}")
    assert browser.execute_script("return window.pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "img[src=x], [onerror]")
    assert browser.find_element(By.ID, "q").get_attribute("value") == hostile
    browser.get(f"{site.url}/bundles/alice/owl-counter?{urlencode({'platform': hostile})}")
    assert browser.execute_script("return window.pwned === undefined")
    assert "docker pull" in browser.find_element(By.ID, "cmd-docker").text  # the default platform instead


@pytest.mark.parametrize("target", ["//evil.example/", "/\t/evil.example/", "https://evil.example/",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_sign_in_never_redirects_to_another_site(site: Site, target: str) -> None:
    session = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{site.url}/login", timeout=30).text)
    assert csrf
    resp = session.post(f"{site.url}/login", data={"csrf": csrf[1], "username": "eve",
                                                   "password": password_of("eve", site.gw), "next": target},
                        timeout=30, allow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/"


def test_bundle_page_shows_trust_lifecycle_performance_and_versions(site: Site, browser: Driver) -> None:
    sign_out(browser, site)
    browser.get(f"{site.url}/bundles/alice/owl-counter")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "owl-counter 0.2.0" in page
    approved = browser.find_element(By.CSS_SELECTOR, "#trust li").text  # approvals are listed first
    assert "Approved by this ECR for neon" in approved and "verified with this ECR's key sha256:" in approved
    key_pem = requests.get(f"{site.url}/api/v1/signing-key", timeout=30).content
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from ecr_oci.trust.keys import key_id
    public = load_pem_public_key(key_pem)
    assert key_id(public) in approved  # type: ignore[arg-type]
    assert "approved" in browser.find_element(By.CSS_SELECTOR, "#lifecycle ol").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#performance tbody tr")
    assert len(rows) == 3
    bars = browser.find_elements(By.CSS_SELECTOR, "#performance svg rect.bar")
    assert len(bars) == 3
    assert "180.0 ms" in browser.find_element(By.CSS_SELECTOR, "#performance svg").text
    versions = [r.find_element(By.TAG_NAME, "a").text for r in browser.find_elements(By.CSS_SELECTOR,
                                                                                      "#versions tbody tr")]
    assert versions == ["0.2.0", "0.1.0"]
    files = browser.find_element(By.CSS_SELECTOR, "#get").text
    assert "model/weights.bin" in files and "8.0 KiB" in files
    digest = site.digests["alice/owl-counter:0.2.0"]
    assert browser.find_element(By.ID, "cmd-ecr").text.endswith(f"/alice/owl-counter@{digest}")
    browser.find_element(By.CSS_SELECTOR, "#versions form button").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/-/compare"))
    compared = browser.find_element(By.TAG_NAME, "main").text
    assert "0.1.0 → 0.2.0" in compared
    assert re.search(r"model/weights.bin changed", compared)
    assert re.search(r"model/labels.txt same", compared)
    browser.get(f"{site.url}/bundles/alice/owl-counter")
    trust = browser.find_element(By.ID, "trust").text
    assert "Signature: signed with a key this ECR does not hold" in trust  # the author's own key
    assert f"Builder\n{BUILDER}" in trust and "pkg:deb/debian/python3@3.11" in trust
    assert browser.find_element(By.ID, "cite-text").text.endswith(f"https://doi.org/{OWL_DOI}")
    bibtex = browser.find_element(By.ID, "cite-bib").text
    assert bibtex.startswith("@software{owl_counter_0_2_0,") and f"doi = {{{OWL_DOI}}}" in bibtex
    icon = browser.find_element(By.CSS_SELECTOR, ".bundle-head img.icon")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", icon) == 64
    served = requests.get(icon.get_attribute("src"), timeout=30)
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
    assert served.content.startswith(b"\x89PNG")
    badge = requests.get(f"{site.url}/bundles/alice/owl-counter/badge.svg", timeout=30)
    assert badge.headers["content-type"].startswith("image/svg+xml") and "0.2.0 · approved" in badge.text


def test_admin_records_stages_through_the_form(site: Site, browser: Driver) -> None:
    sign_in(browser, site, "alice")  # the owner may record submitted/deprecated, not approve
    browser.get(f"{site.url}/bundles/alice/flip")
    Select(browser.find_element(By.ID, "stage-name")).select_by_visible_text("approved")
    browser.find_element(By.ID, "stage-deployment").send_keys("web-dep")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/-/stage'] button").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "section[role=alert]")))
    assert "not allowed to set stage approved" in browser.page_source
    sign_in(browser, site, "admin")
    browser.get(f"{site.url}/bundles/alice/flip")
    Select(browser.find_element(By.ID, "stage-name")).select_by_visible_text("approved")
    browser.find_element(By.ID, "stage-deployment").send_keys("web-dep")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/-/stage'] button").click()
    WebDriverWait(browser, 60).until(ec.url_contains("done=stage"))
    timeline = browser.find_element(By.ID, "lifecycle").text
    assert "approved for web-dep by admin" in timeline
    assert "Approved by this ECR for web-dep" in browser.find_element(By.ID, "trust").text  # countersigned
    events = requests.get(f"{site.url}/api/v1/repositories/alice/flip/stages", timeout=30,
                          auth=("admin", password_of("admin", site.gw))).json()["events"]
    assert ("approved", "web-dep", "admin") in [(e["stage"], e["deployment"], e["actor"]) for e in events]
    audit = [json.loads(line) for line in (site.gw.data_dir / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "stage.set" and e["decision"] == "deny" and e["actor"] == "alice" for e in audit)
    assert any(e["event"] == "stage.countersign" and e["repository"] == "alice/flip" for e in audit)


def test_sign_in_with_an_api_token(site: Site) -> None:
    token = requests.post(f"{site.url}/api/v1/users/eve/tokens", json={"label": "web"}, timeout=30,
                          auth=("eve", password_of("eve", site.gw))).json()["token"]
    session = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{site.url}/login", timeout=30).text)
    assert csrf
    resp = session.post(f"{site.url}/login", data={"csrf": csrf[1], "username": "eve", "password": token},
                        timeout=30, allow_redirects=False)
    assert resp.status_code == 303
    assert ">eve</a>" in session.get(f"{site.url}/", timeout=30).text


def test_failed_sign_ins_are_slowed_down(site: Site) -> None:
    session = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{site.url}/login", timeout=30).text)
    assert csrf
    took = []
    for _ in range(4):
        started = time.monotonic()
        resp = session.post(f"{site.url}/login", data={"csrf": csrf[1], "username": "carol", "password": "wrong"},
                            timeout=60)
        took.append(time.monotonic() - started)
        assert resp.status_code == 401 and "Wrong user name or password." in resp.text
    assert took[3] >= 1.0 > took[0], took


def test_phone_width_and_keyboard(site: Site, browser: Driver) -> None:
    sign_out(browser, site)
    browser.set_window_size(390, 844)
    try:
        for path in ("/", "/bundles/alice/owl-counter", "/login"):
            browser.get(site.url + path)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            wide = browser.execute_script(
                "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >"
                " document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.' + e.className)")
            assert overflow <= 0, (path, overflow, wide)
            unlabeled = browser.execute_script(
                "return [...document.querySelectorAll('input:not([type=hidden]), select')]"
                ".filter(e => !(e.id && document.querySelector(`label[for='${e.id}']`)) && !e.labels.length)"
                ".map(e => e.name)")
            assert unlabeled == [], (path, unlabeled)
        browser.get(site.url + "/")
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert browser.switch_to.active_element.get_attribute("class") == "skip"
    finally:
        browser.set_window_size(1280, 900)


def test_screenshots(site: Site, browser: Driver) -> None:
    """The README's screenshots (``make screenshots`` writes them to docs/screenshots/)."""
    sign_in(browser, site, "bob")
    browser.get(site.url + "/")
    saved = [shot(browser, "search")]
    browser.get(f"{site.url}/bundles/alice/owl-counter")
    saved.append(shot(browser, "bundle"))
    browser.get(f"{site.url}/bundles/alice/owl-counter/-/compare?a=0.1.0&b=0.2.0")
    saved.append(shot(browser, "compare"))
    browser.get(f"{site.url}/bundles/alice/owl-counter")
    saved.append(shot(browser, "bundle-phone", width=390))
    sign_in(browser, site, "alice")
    browser.get(f"{site.url}/bundles/alice/flip")
    saved.append(shot(browser, "manage", element="#manage"))
    browser.delete_all_cookies()
    browser.get(f"{site.url}/login")
    saved.append(shot(browser, "login", width=800))
    for path in saved:
        assert path.stat().st_size > 3000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

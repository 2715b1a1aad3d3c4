"""The web pages: search, bundle, namespace, sign-in, badges, and the owners' forms.

Every handler parses its path parameters with :mod:`ecr_oci.gateway.domain.names` first
(an invalid name is the same 404 page as a missing bundle), asks
:mod:`ecr_oci.gateway.domain.storefront` / :mod:`ecr_oci.gateway.domain.catalog` for what the viewer
may see, and changes state only through the functions the JSON API uses
(:func:`ecr_oci.gateway.surfaces.api.apply_visibility` ...), so the rules and the audit
records are the API's.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from ecr_oci.gateway.core import Gateway, Throttled
from ecr_oci.gateway.domain import names, storefront
from ecr_oci.gateway.domain.policy import ANONYMOUS, Caller, can_manage
from ecr_oci.gateway.domain.stages import STAGES
from ecr_oci.gateway.stores.state import GRANT_LEVELS, VISIBILITIES
from ecr_oci.gateway.surfaces import api
from ecr_oci.gateway.surfaces.web import render
from ecr_oci.gateway.surfaces.web.session import COOKIE, LIFETIME, LoginBrake, Session, SessionCodec

MAX_FORM_BYTES = 16 << 10
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}
NOTICES = {"visibility": "Visibility changed.", "grant": "Access updated.", "stage": "Stage recorded."}


class NotFound(Exception):
    """Answer with the one not-found page (missing, invisible and invalid look alike)."""


class FormError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class Web:
    """Per-process state of the web surface: templates, session keys, the login brake."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.templates = render.environment()
        self.sessions = SessionCodec(gateway.config.data_dir / "keys")
        self.brake = LoginBrake()


def _web(request: Request) -> Web:
    gateway: Gateway = request.app.state.gateway
    web: Web | None = getattr(request.app.state, "web", None)
    if web is None:
        web = request.app.state.web = Web(gateway)
    return web


class Page:
    """One request's context: the viewer and how to answer."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.web = _web(request)
        self.gateway = self.web.gateway
        self.session = self.web.sessions.decode(request.cookies.get(COOKIE))
        self.caller: Caller = ANONYMOUS
        if self.session is not None and self.session.user:
            self.caller = self.gateway.caller_from_claims({"sub": self.session.user})
        self.new_cookie: Session | None = None

    @property
    def host(self) -> str:
        return self.gateway.public_base(self.request).split("://", 1)[-1]

    @property
    def secure(self) -> bool:
        return self.gateway.public_base(self.request).startswith("https://")

    def csrf(self) -> str:
        if self.session is None:
            self.session = self.new_cookie = self.web.sessions.new(None)
        return self.web.sessions.csrf_token(self.session)

    def render(self, template: str, status: int = 200, media_type: str = "text/html; charset=utf-8",
               **context: Any) -> Response:
        body = self.web.templates.get_template(template).render(
            viewer=self.caller, csrf=self.csrf() if self.caller.name or template == "login.html" else "",
            host=self.host, base=self.gateway.public_base(self.request), stages=STAGES, **context)
        response = Response(body, status_code=status, media_type=media_type, headers=render.SECURITY_HEADERS)
        if self.new_cookie is not None:
            self.set_cookie(response, self.new_cookie)
        return response

    def set_cookie(self, response: Response, session: Session | None) -> None:
        if session is None:
            response.delete_cookie(COOKIE, path="/", secure=self.secure, httponly=True, samesite="lax")
            return
        response.set_cookie(COOKIE, self.web.sessions.encode(session), max_age=LIFETIME, path="/",
                            secure=self.secure, httponly=True, samesite="lax")

    def not_found(self) -> Response:
        return self.render("notfound.html", status=404)

    async def form(self) -> dict[str, str]:
        """The urlencoded body (first value per key), after its CSRF token was checked."""
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise FormError("form too large", 413)
        raw = b""
        async for chunk in self.request.stream():
            raw += chunk
            if len(raw) > MAX_FORM_BYTES:
                raise FormError("form too large", 413)
        try:
            fields = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=50).items()}
        except (UnicodeDecodeError, ValueError):
            raise FormError("malformed form") from None
        if not self.web.sessions.csrf_valid(self.session, fields.get("csrf")):
            raise FormError("this form has expired or did not come from this site: reload the page and try again",
                            403)
        return fields


def _handler(fn: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        page = Page(request)
        try:
            return await fn(page)  # type: ignore[no-any-return]
        except NotFound:
            return page.not_found()
        except FormError as exc:
            page.gateway.audit.record(f"web.{fn.__name__}", actor=page.caller.label, decision="deny",
                                      status=exc.status, reason=str(exc))
            return page.render("message.html", status=exc.status, title="Not done", message=str(exc))

    wrapped.__name__ = fn.__name__
    return wrapped


def _repository(page: Page) -> str:
    params = page.request.path_params
    try:
        return names.repository(f"{names.repository(params['ns'])}/{params['name']}")
    except names.InvalidName:
        raise NotFound() from None


# --- pages ---------------------------------------------------------------------------
@_handler
async def home(page: Page) -> Response:
    query = storefront.SearchQuery.from_params(page.request.query_params)
    found = storefront.search(page.gateway, page.caller, query)
    base = {k: v for k, v in page.request.query_params.items() if k != "page" and v}
    link = {p: "/?" + urlencode({**base, "page": str(p)}) for p in (found.page - 1, found.page + 1)}
    return page.render("search.html", query=query, found=found, prev_link=link[found.page - 1],
                       next_link=link[found.page + 1])


@_handler
async def namespace(page: Page) -> Response:
    try:
        ns = names.user(page.request.path_params["ns"])
    except names.InvalidName:
        raise NotFound() from None
    query = storefront.SearchQuery(namespace=ns, sort="name", page=_page_number(page))
    found = storefront.search(page.gateway, page.caller, query, per_page=50)
    if not found.results and page.caller.name != ns:
        raise NotFound()
    return page.render("namespace.html", namespace=ns, found=found)


def _page_number(page: Page) -> int:
    text = page.request.query_params.get("page", "1")
    return int(text) if text.isdigit() and 0 < int(text) < 100000 else 1


def _versions(page: Page, repository: str) -> list[storefront.Version]:
    found = storefront.versions(page.gateway, page.caller, repository)
    if not found:
        raise NotFound()
    return found


@_handler
async def bundle(page: Page) -> Response:
    repository = _repository(page)
    versions = _versions(page, repository)
    tag = page.request.path_params.get("version")
    if tag is None:
        version = versions[0]
    else:
        try:
            names.tag(tag)
        except names.InvalidName:
            raise NotFound() from None
        chosen = [v for v in versions if v.tag == tag]
        if not chosen:
            raise NotFound()
        version = chosen[0]
    gateway, caller = page.gateway, page.caller
    platform = page.request.query_params.get("platform", "")
    image = next((p for p in version.platforms if p["platform"] == platform), None) or (
        next((p for p in version.platforms if p["platform"] == "linux/amd64"), None)
        or (version.platforms[0] if version.platforms else None))
    trust = await storefront.trust(gateway, caller, version)
    doi = storefront.doi_of(gateway, caller, version)
    profiles = await storefront.profiles(gateway, caller, versions[:10])
    facts = gateway.facts(repository, caller)
    manage = can_manage(caller, facts)
    notice = NOTICES.get(page.request.query_params.get("done", ""))
    return page.render(
        "bundle.html", repository=repository, version=version, versions=versions, image=image,
        trust=trust, doi=doi, citation=render.citation(version.metadata, doi, page.host, version.pushed) if doi
        else None, timeline=storefront.timeline(gateway, caller, repository, version.digest),
        profiles=profiles, chart=render.chart(profiles), manage=manage,
        visibility=facts.visibility if manage else None, grants=sorted(facts.grants.items()) if manage else [],
        visibilities=VISIBILITIES, grant_levels=GRANT_LEVELS, notice=notice,
        may_stage=caller.kind == "user" and (caller.admin or repository.split("/", 1)[0] == caller.name),
        jsonld=_jsonld(page, repository, version, doi))


def _jsonld(page: Page, repository: str, version: storefront.Version, doi: str | None) -> dict[str, Any]:
    meta = version.metadata
    out: dict[str, Any] = {"@context": "https://schema.org", "@type": "SoftwareSourceCode",
                           "name": str(meta.get("name") or repository), "version": version.tag,
                           "description": str(meta.get("description") or ""),
                           "license": str(meta.get("license") or ""), "author": str(meta.get("authors") or ""),
                           "keywords": [str(k) for k in meta.get("keywords") or []]}
    if url := render.safe_url(meta.get("source")):
        out["codeRepository"] = url
    if doi:
        out["identifier"] = f"https://doi.org/{doi}"
    return out


@_handler
async def compare(page: Page) -> Response:
    repository = _repository(page)
    versions = {v.tag: v for v in _versions(page, repository)}
    a, b = page.request.query_params.get("a", ""), page.request.query_params.get("b", "")
    if a not in versions or b not in versions:
        raise NotFound()
    return page.render("compare.html", repository=repository, a=versions[a], b=versions[b],
                       diff=storefront.compare(versions[a], versions[b]))


@_handler
async def badge(page: Page) -> Response:
    repository = _repository(page)
    latest = _versions(page, repository)[0]
    stage = next(iter(sorted(set(latest.stages.values()), key=STAGES.index, reverse=True)), "")
    value = f"{latest.tag} · {stage}" if stage else latest.tag
    return page.render("badge.svg", media_type="image/svg+xml", b=render.badge("ecr", value[:60], stage))


@_handler
async def icon(page: Page) -> Response:
    repository = _repository(page)
    tag = page.request.path_params["version"]
    chosen = [v for v in _versions(page, repository) if v.tag == tag]
    found = await storefront.icon(page.gateway, chosen[0]) if chosen else None
    if found is None:
        raise NotFound()
    data, media_type = found
    return Response(data, media_type=media_type, headers={**render.SECURITY_HEADERS,
                                                          "Cache-Control": "private, max-age=3600"})


# --- sign-in -------------------------------------------------------------------------
def _next(value: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if (value and value.startswith("/") and not value.startswith("//") and "\\" not in value and len(value) < 500
            and all(c.isprintable() and not c.isspace() for c in value)):  # browsers drop tabs: "/\t/x" is "//x"
        return value
    return "/"


@_handler
async def login_form(page: Page) -> Response:
    return page.render("login.html", next=_next(page.request.query_params.get("next")), error=None)


@_handler
async def login(page: Page) -> Response:
    fields = await page.form()
    user, password = fields.get("username", "").strip()[:64], fields.get("password", "")
    target = _next(fields.get("next"))
    client = page.gateway.client_address(page.request)
    address = client or "?"
    delay = page.web.brake.delay(address, user)
    if delay:
        await asyncio.sleep(delay)
    caller = None
    if user and password:
        header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            caller = await page.gateway.authenticate_basic(header, client)
        except Throttled as exc:
            page.gateway.audit.record("web.login", actor=user, decision="deny", address=address,
                                      reason="throttled")
            return page.render("login.html", status=429, next=target,
                               error=f"Too many failed sign-ins: try again in {exc.retry_after} s.")
    if caller is None or caller.name is None:
        page.web.brake.failed(address, user)
        page.gateway.audit.record("web.login", actor=user or "?", decision="deny", address=address,
                                  reason="wrong credentials")
        return page.render("login.html", status=401, next=target, error="Wrong user name or password.")
    page.web.brake.succeeded(user)
    page.gateway.audit.record("web.login", actor=caller.label, decision="allow", address=address)
    response = RedirectResponse(target, status_code=303, headers=render.SECURITY_HEADERS)
    page.set_cookie(response, page.web.sessions.new(caller.name))  # a fresh session id: no fixation
    return response


@_handler
async def logout(page: Page) -> Response:
    await page.form()
    response = RedirectResponse("/", status_code=303, headers=render.SECURITY_HEADERS)
    page.set_cookie(response, None)
    return response


# --- owners' and admins' forms -----------------------------------------------------------
async def _act(page: Page, action: str, repository: str, fn: Any, version: str | None = None) -> Response:
    if page.caller.name is None:
        raise FormError("sign in first", 401)
    try:
        await fn()
    except api.ApiError as exc:
        page.gateway.audit.record(f"web.{action}", actor=page.caller.label, decision="deny",
                                  repository=repository, status=exc.status, reason=str(exc))
        if exc.status == 404:
            raise NotFound() from None
        raise FormError(str(exc), exc.status) from None
    where = f"/bundles/{repository}" + (f"/{version}" if version else "")
    return RedirectResponse(f"{where}?done={action}#manage", status_code=303, headers=render.SECURITY_HEADERS)


@_handler
async def set_visibility(page: Page) -> Response:
    repository = _repository(page)
    fields = await page.form()

    async def run() -> None:
        api.apply_visibility(page.gateway, page.caller, repository, fields.get("visibility"))

    return await _act(page, "visibility", repository, run)


@_handler
async def set_grant(page: Page) -> Response:
    repository = _repository(page)
    fields = await page.form()
    try:
        account = names.account(fields.get("account", "").strip())
    except names.InvalidName as exc:
        raise FormError(f"account: {exc}") from None
    level = fields.get("level") or None
    if level == "none":
        level = None

    async def run() -> None:
        api.apply_grant(page.gateway, page.caller, repository, account, level)

    return await _act(page, "grant", repository, run)


@_handler
async def set_stage(page: Page) -> Response:
    repository = _repository(page)
    fields = await page.form()
    try:
        tag = names.tag(fields.get("version", ""))
    except names.InvalidName as exc:
        raise FormError(f"version: {exc}") from None

    async def run() -> None:
        await api.apply_stage(page.gateway, page.caller, repository, tag, fields.get("stage"),
                              fields.get("deployment", "").strip(), {})

    return await _act(page, "stage", repository, run, version=tag)


@_handler
async def not_found(page: Page) -> Response:
    raise NotFound()


# --- static files ----------------------------------------------------------------------
async def static(request: Request) -> Response:
    name = request.path_params["file"]
    path = render.STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain", headers=render.SECURITY_HEADERS)
    return FileResponse(path, media_type=_STATIC_TYPES[path.suffix],
                        headers={**render.SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"})

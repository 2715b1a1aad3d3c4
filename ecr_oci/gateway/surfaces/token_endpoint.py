"""``/auth/token``: the Docker Registry v2 token endpoint.

``GET /auth/token?service=ecr&scope=repository:alice/x:pull,push`` with Basic
credentials (or none, for anonymous access) answers ``{"token", "access_token",
"expires_in", "issued_at"}``. The token's ``access`` claim holds, for each requested
scope, the subset of actions policy allows: a partly denied scope is never an error
(Distribution and its clients expect the subset), and a fully denied one is simply
absent, so a protected repository and a missing one get the same token.
``POST`` with an OAuth2 password grant form is accepted too.
"""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ecr_oci.gateway.core import SERVICE, Gateway, Throttled, oci_error
from ecr_oci.gateway.domain import names
from ecr_oci.gateway.domain.policy import ANONYMOUS, Caller
from ecr_oci.gateway.tokens import Access, Scope, parse_scopes

MAX_SCOPES = 32
MAX_FORM_BYTES = 64 << 10
MAX_QUERY_BYTES = 16 << 10


def grant(gateway: Gateway, caller: Caller, scopes: list[Scope]) -> tuple[Access, list[Scope]]:
    """The access claim for ``scopes`` (each cut down to what policy allows), and the scopes denied.

    A repository scope whose name is outside the distribution grammar is denied before
    any policy decision.
    """
    access: Access = []
    denied: list[Scope] = []
    for scope in scopes:
        actions: frozenset[str] = frozenset()
        if scope.type == "repository" and names.is_repository(scope.name):
            allowed = gateway.allowed(caller, scope.name)
            actions = allowed if "*" in scope.actions else scope.actions & allowed
        elif scope.type == "registry" and scope.name == "catalog":
            # Everyone may list; the listing is filtered per caller.
            actions = frozenset({"*"}) & scope.actions
        if actions:
            access.append({"type": scope.type, "name": scope.name, "actions": sorted(actions)})
        if not actions or ("*" not in scope.actions and actions != scope.actions):
            denied.append(scope)
    return access, denied


async def _form(request: Request) -> dict[str, list[str]] | Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        return oci_error(413, "SIZE_INVALID", f"request body larger than {MAX_FORM_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            return oci_error(413, "SIZE_INVALID", f"request body larger than {MAX_FORM_BYTES} bytes")
    return parse_qs(raw.decode(errors="replace"))


async def token_endpoint(request: Request) -> Response:
    """Issue a token (see the module docstring)."""
    gateway: Gateway = request.app.state.gateway
    if len(request.url.query) > MAX_QUERY_BYTES:
        return oci_error(414, "DENIED", f"query string larger than {MAX_QUERY_BYTES} bytes")
    scope_values = request.query_params.getlist("scope")
    service = request.query_params.get("service", SERVICE)
    caller: Caller | None = ANONYMOUS
    header = request.headers.get("authorization", "")
    if request.method == "POST":
        form = await _form(request)
        if isinstance(form, Response):
            return form
        scope_values += form.get("scope", [])
        service = (form.get("service") or [service])[0]
        if (form.get("grant_type") or [""])[0] == "password":
            user = (form.get("username") or [""])[0]
            password = (form.get("password") or [""])[0]
            header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    requested = list(dict.fromkeys(parse_scopes(scope_values)))
    if len(requested) > MAX_SCOPES:
        return oci_error(400, "DENIED", f"at most {MAX_SCOPES} scopes per token request")
    if header.lower().startswith("basic "):
        try:
            caller = await gateway.authenticate_basic(header, gateway.client_address(request))
        except Throttled as exc:
            gateway.metrics.denials.labels("throttled").inc()
            gateway.audit.record("token", actor="?", decision="deny", reason=str(exc),
                                 address=gateway.client_address(request))
            return oci_error(429, "TOOMANYREQUESTS", str(exc), {"Retry-After": str(exc.retry_after)})
    if caller is None:
        gateway.metrics.denials.labels("bad_credentials").inc()
        gateway.audit.record("token", actor="?", decision="deny", reason="bad credentials",
                             address=gateway.client_address(request))
        return oci_error(401, "UNAUTHORIZED", "invalid username or password",
                         {"WWW-Authenticate": f'Basic realm="{SERVICE}"'})
    if service != SERVICE:
        return oci_error(400, "DENIED", f"unknown service {service!r}")
    access, denied = grant(gateway, caller, requested)
    if denied:
        gateway.audit.record("token", actor=caller.label, decision="deny", scopes=[str(d) for d in denied],
                             granted=[f"{a['name']}:{','.join(a['actions'])}" for a in access])
    token, iat = gateway.client_tokens.mint(caller.name or "", access)
    gateway.metrics.tokens.labels(caller.kind).inc()
    body = {
        "token": token,
        "access_token": token,
        "expires_in": gateway.client_tokens.ttl,
        "issued_at": dt.datetime.fromtimestamp(iat, dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    if request.method == "POST":
        body["scope"] = " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access)
    return JSONResponse(body)

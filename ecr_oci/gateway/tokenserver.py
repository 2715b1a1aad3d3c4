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

from ecr_oci.gateway.core import SERVICE, Gateway, oci_error
from ecr_oci.gateway.policy import ANONYMOUS, Caller
from ecr_oci.gateway.tokens import Access, Scope, parse_scopes


def grant(gateway: Gateway, caller: Caller, scopes: list[Scope]) -> Access:
    """The access claim for ``scopes``: each one cut down to what policy allows."""
    access: Access = []
    for scope in scopes:
        if scope.type == "repository":
            actions = scope.actions & gateway.allowed(caller, scope.name)
            if "*" in scope.actions:
                actions = gateway.allowed(caller, scope.name)
        elif scope.type == "registry" and scope.name == "catalog":
            # Everyone may list; the listing is filtered per caller.
            actions = frozenset({"*"}) & scope.actions
        else:
            actions = frozenset()
        if actions:
            access.append({"type": scope.type, "name": scope.name, "actions": sorted(actions)})
    return access


async def token_endpoint(request: Request) -> Response:
    """Issue a token (see the module docstring)."""
    gateway: Gateway = request.app.state.gateway
    scope_values = request.query_params.getlist("scope")
    service = request.query_params.get("service", SERVICE)
    caller: Caller | None = ANONYMOUS
    header = request.headers.get("authorization", "")
    if request.method == "POST":
        form = parse_qs((await request.body()).decode(errors="replace"))
        scope_values += form.get("scope", [])
        service = (form.get("service") or [service])[0]
        if (form.get("grant_type") or [""])[0] == "password":
            user = (form.get("username") or [""])[0]
            password = (form.get("password") or [""])[0]
            header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if header.lower().startswith("basic "):
        caller = await gateway.authenticate_basic(header)
    if caller is None:
        gateway.metrics.denials.labels("bad_credentials").inc()
        gateway.audit.record("token", actor="?", decision="deny", reason="bad credentials")
        return oci_error(401, "UNAUTHORIZED", "invalid username or password",
                         {"WWW-Authenticate": f'Basic realm="{SERVICE}"'})
    if service != SERVICE:
        return oci_error(400, "DENIED", f"unknown service {service!r}")
    requested = parse_scopes(scope_values)
    access = grant(gateway, caller, requested)
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

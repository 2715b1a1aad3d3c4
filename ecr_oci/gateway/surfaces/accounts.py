"""``/api/v1`` routes for the account lifecycle and repository facts.

List, show and remove users and nodes; list and revoke API tokens; show a
repository's visibility and grants. Access decisions use the policy engine
(:func:`~ecr_oci.gateway.domain.policy.can_manage`, :meth:`Gateway.allowed`); a repository
the caller may not see is answered like a missing one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import catalog, names
from ecr_oci.gateway.domain.policy import can_manage
from ecr_oci.gateway.stores.state import Account
from ecr_oci.gateway.surfaces.api import ApiError, _caller, _handler, _parsed, _require_admin

TOKEN_ID_LENGTH = 12  # hex characters of the secret's digest that name a token


def _token_id(secret_digest: str) -> str:
    return secret_digest.split(":", 1)[-1][:TOKEN_ID_LENGTH]


def _secrets(gateway: Gateway, name: str) -> list[dict[str, Any]]:
    return [{"id": _token_id(digest), "label": label, "created": created}
            for digest, label, created in gateway.store.list_secrets(name)]


def _grants(gateway: Gateway, name: str) -> list[dict[str, str]]:
    return [{"repository": repo.name, "level": repo.grants[name]}
            for repo in gateway.store.list_repositories() if name in repo.grants]


def _account(gateway: Gateway, name: str, kind: str) -> Account:
    account = gateway.store.get_account(name)
    if account is None or account.kind != kind:
        raise ApiError(f"no {kind} {name}", 404)
    return account


def _describe(gateway: Gateway, account: Account) -> dict[str, Any]:
    out: dict[str, Any] = {"name": account.name, "kind": account.kind, "tokens": _secrets(gateway, account.name)}
    if account.kind == "user":
        out |= {"admin": account.admin, "grants": _grants(gateway, account.name)}
    else:
        out["deployments"] = sorted(account.deployments)
    return out


async def list_accounts(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    _require_admin(caller)
    kind = "user" if request.url.path.endswith("/users") else "node"
    accounts = [_describe(gateway, a) for a in gateway.store.list_accounts() if a.kind == kind]
    return JSONResponse({f"{kind}s": accounts})


async def show_account(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    name = _parsed(names.account, request.path_params["name"], "name")
    kind = "user" if "/users/" in request.url.path else "node"
    if not (kind == "user" and caller.kind == "user" and caller.name == name):
        _require_admin(caller)
    return JSONResponse(_describe(gateway, _account(gateway, name, kind)))


async def remove_account(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    _require_admin(caller)
    name = _parsed(names.account, request.path_params["name"], "name")
    kind = "user" if "/users/" in request.url.path else "node"
    _account(gateway, name, kind)
    if name == caller.name:
        raise ApiError("you cannot remove your own account (ask another admin)", 409)
    gateway.store.remove_account(name)
    gateway.audit.record(f"{kind}.remove", actor=caller.label, decision="allow", account=name)
    return JSONResponse({"name": name, "removed": True})


async def revoke_token(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    name = _parsed(names.account, request.path_params["name"], "name")
    token_id = str(request.path_params["token_id"]).lower()
    if caller.name != name:
        _require_admin(caller)
    matches = [d for d, _, _ in gateway.store.list_secrets(name) if _token_id(d).startswith(token_id)]
    if len(token_id) < 6 or len(matches) != 1:
        raise ApiError(f"no token {token_id} of {name} (give at least 6 characters of its id)", 404)
    gateway.store.remove_secret(matches[0])
    gateway.audit.record("token.revoke", actor=caller.label, decision="allow", account=name, token=token_id)
    return JSONResponse({"name": name, "revoked": _token_id(matches[0])})


async def show_repository(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request, required=False)
    name = _parsed(names.repository, request.path_params["name"], "repository")
    facts = gateway.facts(name, caller)
    if not catalog.may_pull(gateway, caller, name) or facts.visibility is None:
        raise ApiError(f"repository {name} not found", 404, repository=name)
    answer: dict[str, Any] = {"repository": name, "visibility": facts.visibility,
                              "may": sorted(gateway.allowed(caller, name))}
    if can_manage(caller, facts):  # grants are for those who manage them to see
        answer["grants"] = dict(sorted(facts.grants.items()))
    return JSONResponse(answer)


routes = [
    Route("/api/v1/users", _handler(list_accounts), methods=["GET"]),
    Route("/api/v1/nodes", _handler(list_accounts), methods=["GET"]),
    Route("/api/v1/users/{name}", _handler(show_account), methods=["GET"]),
    Route("/api/v1/nodes/{name}", _handler(show_account), methods=["GET"]),
    Route("/api/v1/users/{name}", _handler(remove_account), methods=["DELETE"]),
    Route("/api/v1/nodes/{name}", _handler(remove_account), methods=["DELETE"]),
    Route("/api/v1/users/{name}/tokens/{token_id}", _handler(revoke_token), methods=["DELETE"]),
    Route("/api/v1/repositories/{name:path}", _handler(show_repository), methods=["GET"]),
]

"""``/api/v1``: the JSON admin API and the catalog/search API.

Authentication: HTTP Basic (password or API token) or a bearer token from
``/auth/token``. Errors are ``{"error": message}`` with a 4xx status. The
catalog/search answers are always filtered by what the caller may pull; a
repository the caller may not see is answered like one that does not exist.
The OpenAPI description is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ecr_oci import jsontext
from ecr_oci.errors import EcrError
from ecr_oci.gateway import passwords
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import bundle_index, catalog, names, referrers
from ecr_oci.gateway.domain.policy import Caller, can_manage
from ecr_oci.gateway.domain.stages import StageError, StagePolicy, content_closure, set_stage
from ecr_oci.gateway.domain.system import SYSTEM_USER, countersign
from ecr_oci.gateway.stores.state import GRANT_LEVELS, VISIBILITIES, Account
from ecr_oci.gateway.surfaces.openapi import OPENAPI
from ecr_oci.registry.client import MANIFEST_ACCEPT, at

MAX_BODY_BYTES = 1 << 20
MIN_PASSWORD_LENGTH = 8  # the password rule (README, deploy/README.md)


class ApiError(Exception):
    """A refusal: ``{"error": message}`` with ``status``; ``repository`` goes to the audit record."""

    def __init__(self, message: str, status: int = 400, repository: str | None = None) -> None:
        self.status = status
        self.repository = repository
        super().__init__(message)


async def _caller(request: Request, *, required: bool = True) -> Caller:
    gateway: Gateway = request.app.state.gateway
    caller, _claims, bad = await gateway.identify(request)
    request.state.caller = caller
    if bad or (required and caller.name is None):
        raise ApiError("authentication required", 401)
    return caller


async def _body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(f"body: larger than {MAX_BODY_BYTES} bytes", 413)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(f"body: larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        data = jsontext.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(f"body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError("body: must be a JSON object")
    return data


def _parsed(parse: Callable[[str], str], value: Any, what: str) -> str:
    """``value`` through a :mod:`names` parser, as a 400 naming ``what`` when it does not parse."""
    try:
        return parse(value if isinstance(value, str) else "")
    except names.InvalidName as exc:
        raise ApiError(f"{what}: {exc}") from None


def _require_admin(caller: Caller) -> None:
    if not (caller.kind == "user" and caller.admin):
        raise ApiError("admin only", 403)


def _handler(fn: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            return await fn(request, gateway)  # type: ignore[no-any-return]
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="ecr"'} if exc.status == 401 else None
            if exc.status in (401, 403, 404):
                gateway.metrics.denials.labels("api").inc()
                caller: Caller | None = getattr(request.state, "caller", None)
                gateway.audit.record(f"api.{fn.__name__}", actor=caller.label if caller else "?", decision="deny",
                                     repository=exc.repository, status=exc.status, reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    return wrapped


# --- accounts -------------------------------------------------------------------------
async def whoami(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    return JSONResponse({"name": caller.name, "kind": caller.kind, "admin": caller.admin,
                         "deployments": sorted(caller.deployments)})


async def add_user(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    _require_admin(caller)
    body = await _body(request)
    name = _parsed(names.user, body.get("name"), "name")
    password = str(body.get("password") or "")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ApiError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    existing = gateway.store.get_account(name)
    if existing is not None and existing.kind != "user":
        raise ApiError(f"name: {name} is a {existing.kind}", 409)
    if existing is not None and not body.get("reset_password"):
        raise ApiError(f"user {name} exists: to set a new password, pass --reset-password", 409)
    admin = bool(body.get("admin")) or bool(existing and existing.admin)
    gateway.store.add_account(Account(name=name, kind="user", admin=admin,
                                      password_hash=passwords.hash_password(password)))
    gateway.audit.record("user.reset" if existing else "user.add", actor=caller.label, decision="allow", user=name,
                         admin=admin)
    return JSONResponse({"name": name, "kind": "user", "admin": admin}, status_code=200 if existing else 201)


async def add_token(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    name = _parsed(names.account, request.path_params["name"], "name")
    if caller.name != name:
        _require_admin(caller)
    if gateway.store.get_account(name) is None:
        raise ApiError(f"no account {name}", 404)
    body = await _body(request)
    secret = passwords.new_secret()
    gateway.store.add_secret(name, passwords.secret_digest(secret), str(body.get("label") or ""))
    gateway.audit.record("token.add", actor=caller.label, decision="allow", account=name)
    return JSONResponse({"name": name, "token": secret}, status_code=201)


async def add_node(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    _require_admin(caller)
    body = await _body(request)
    name = _parsed(names.account, body.get("name"), "name")
    deployments = body.get("deployments") or []
    if not isinstance(deployments, list):
        raise ApiError("deployments: a list of names")
    deployments = [_parsed(names.deployment, d, "deployments") for d in deployments]
    if (existing := gateway.store.get_account(name)) is not None and existing.kind != "node":
        raise ApiError(f"name: {name} is a {existing.kind}", 409)
    gateway.store.add_account(Account(name=name, kind="node", deployments=frozenset(deployments)))
    # A second `node add` rotates: the old credential stops working now, and the
    # deployments are the ones just given.
    revoked = gateway.store.remove_secrets(name, "node credential") if existing else 0
    gateway.store.set_deployments(name, deployments)
    secret = passwords.new_secret()
    gateway.store.add_secret(name, passwords.secret_digest(secret), "node credential")
    gateway.audit.record("node.rotate" if existing else "node.add", actor=caller.label, decision="allow", node=name,
                         deployments=deployments, revoked=revoked)
    return JSONResponse({"name": name, "deployments": sorted(deployments), "credential": secret}, status_code=201)


# --- repositories ---------------------------------------------------------------------
def _managed(gateway: Gateway, caller: Caller, name: str) -> None:
    facts = gateway.facts(name, caller)
    if not can_manage(caller, facts):
        # Same answer whether the repository exists or not.
        raise ApiError(f"not allowed to manage {name}", 403, repository=name)


def apply_visibility(gateway: Gateway, caller: Caller, name: str, visibility: Any) -> None:
    """Set a repository's visibility as ``caller`` (API and web forms); ``name`` already parsed.

    Raises:
        ApiError: not allowed (403, the same whether the repository exists or not), bad value.
    """
    _managed(gateway, caller, name)
    if visibility not in VISIBILITIES:
        raise ApiError(f"visibility: one of {', '.join(VISIBILITIES)}")
    gateway.store.set_visibility(name, visibility)
    gateway.audit.record("repo.visibility", actor=caller.label, decision="allow", repository=name,
                         visibility=visibility)


async def set_visibility(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    name = _parsed(names.repository, request.path_params["name"], "repository")
    _managed(gateway, caller, name)
    visibility = (await _body(request)).get("visibility")
    apply_visibility(gateway, caller, name, visibility)
    return JSONResponse({"repository": name, "visibility": visibility})


def apply_grant(gateway: Gateway, caller: Caller, name: str, account: str, level: Any) -> None:
    """Grant ``level`` (None: revoke) on a repository to ``account`` as ``caller`` (API and web).

    Raises:
        ApiError: not allowed, bad level, unknown account.
    """
    _managed(gateway, caller, name)
    if level is not None:
        if level not in GRANT_LEVELS:
            raise ApiError(f"level: one of {', '.join(GRANT_LEVELS)}")
        if gateway.store.get_account(account) is None:
            raise ApiError(f"no account {account}", 404)
    if gateway.store.get_repository(name) is None:
        gateway.store.ensure_repository(name, "private")
    gateway.store.set_grant(name, account, level)
    gateway.audit.record("repo.grant", actor=caller.label, decision="allow", repository=name, account=account,
                         level=level)


async def set_grant(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    name = _parsed(names.repository, request.path_params["name"], "repository")
    account = _parsed(names.account, request.path_params["account"], "account")
    _managed(gateway, caller, name)
    level = (await _body(request)).get("level") if request.method == "PUT" else None
    if request.method == "PUT" and level is None:
        raise ApiError(f"level: one of {', '.join(GRANT_LEVELS)}")
    apply_grant(gateway, caller, name, account, level)
    return JSONResponse({"repository": name, "account": account, "level": level})


# --- stages ---------------------------------------------------------------------------
async def _resolve(gateway: Gateway, repository: str, reference: str) -> str:
    resp = await gateway.upstream.head(f"/v2/{repository}/manifests/{reference}", repository, MANIFEST_ACCEPT)
    digest = resp.headers.get("docker-content-digest")
    if resp.status_code != 200 or not digest:
        raise ApiError(f"{repository}{at(reference)} not found", 404, repository=repository)
    return str(digest)


async def post_stage(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    body = await _body(request)
    repository = _parsed(names.repository, body.get("repository"), "repository")
    reference = _parsed(names.reference, body.get("reference"), "reference")
    answer = await apply_stage(gateway, caller, repository, reference, body.get("stage"), body.get("deployment"),
                               body.get("evidence"))
    return JSONResponse(answer, status_code=201)


async def apply_stage(gateway: Gateway, caller: Caller, repository: str, reference: str, stage: Any,
                      deployment: Any, evidence: Any) -> dict[str, Any]:
    """Record a stage transition as ``caller`` (API and web forms); names already parsed.

    Raises:
        ApiError: not visible (404), refused by the stage policy, bad values.
    """
    if not catalog.may_pull(gateway, caller, repository):
        raise ApiError(f"{repository}{at(reference)} not found", 404, repository=repository)
    digest = await _resolve(gateway, repository, reference)
    if not catalog.may_see(gateway, caller, repository, digest):
        raise ApiError(f"{repository}{at(reference)} not found", 404, repository=repository)
    deployment = deployment or ""
    if deployment:
        deployment = _parsed(names.deployment, deployment, "deployment")
    evidence = evidence or {}
    if not isinstance(evidence, dict):
        raise ApiError("evidence: must be an object")
    policy = StagePolicy.load(gateway.config.data_dir / "stage-policy.json")
    try:
        event = await set_stage(gateway.upstream, gateway.store, policy, caller, repository, digest,
                                str(stage or ""), deployment, evidence)
    except StageError as exc:
        gateway.audit.record("stage.set", actor=caller.label, decision="deny", repository=repository,
                             digest=digest, reason=str(exc))
        raise ApiError(str(exc), exc.status) from None
    gateway.audit.record("stage.set", actor=caller.label, decision="allow", repository=repository, digest=digest,
                         stage=event.stage, deployment=event.deployment, evidence=evidence)
    answer = _event(event)
    if event.stage == "approved" and gateway.system is not None:
        answer["countersignature"] = await _countersign(gateway, repository, digest, event.deployment)
    return answer


async def _countersign(gateway: Gateway, repository: str, digest: str, deployment: str) -> str | None:
    """Sign an approved bundle with the gateway's key, then widen the approved content
    to the signature so the deployment's nodes can verify it."""
    assert gateway.system is not None
    try:
        referrer = await run_in_threadpool(countersign, gateway.system, gateway.countersign_key, repository,
                                           digest, deployment)
    except EcrError as exc:
        gateway.audit.record("stage.countersign", actor=SYSTEM_USER, decision="error", repository=repository,
                             digest=digest, reason=str(exc))
        return None
    closure = await content_closure(gateway.upstream, gateway.store, repository, digest)
    signatures = await _resolve(gateway, repository, f"sha256-{digest[7:]}.sig")  # cosign's tag scheme
    closure |= await content_closure(gateway.upstream, gateway.store, repository, signatures)
    gateway.store.approve_content(repository, deployment, digest, closure)
    gateway.audit.record("stage.countersign", actor=SYSTEM_USER, decision="allow", repository=repository,
                         digest=digest, deployment=deployment, signature=referrer)
    return referrer


async def signing_key(request: Request, gateway: Gateway) -> Response:
    """The gateway's countersigning public key (PEM): what nodes verify approvals with."""
    return Response(gateway.countersign_key.public_pem(), media_type="application/x-pem-file")


def _event(event: Any) -> dict[str, Any]:
    return {"repository": event.repository, "digest": event.digest, "stage": event.stage,
            "deployment": event.deployment, "actor": event.actor, "at": event.at, "evidence": event.evidence}


async def get_stages(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request, required=False)
    name = _parsed(names.repository, request.path_params["name"], "repository")
    digest = request.query_params.get("digest")
    if digest is not None:
        digest = _parsed(names.digest, digest, "digest")
    events = catalog.stage_events(gateway, caller, name, digest)
    if events is None:
        raise ApiError(f"repository {name} not found", 404, repository=name)
    return JSONResponse({"repository": name, "events": [_event(e) for e in events]})


async def reindex(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    _require_admin(caller)
    count = await referrers.reindex(gateway.upstream, gateway.store)
    bundles = await bundle_index.rebuild(gateway)
    gateway.audit.record("reindex", actor=caller.label, decision="allow", referrers=count, bundle_versions=bundles)
    return JSONResponse({"referrers": count, "bundle_versions": bundles})


# --- catalog and search ---------------------------------------------------------------
async def search(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request, required=False)
    return JSONResponse({"bundles": await catalog.search(gateway, caller, request.query_params)})


async def bundle_detail(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request, required=False)
    name = _parsed(names.repository, request.path_params["name"], "repository")
    found = await catalog.bundle(gateway, caller, name)
    if found is None:
        raise ApiError(f"repository {name} not found", 404, repository=name)
    return JSONResponse(found)


async def openapi(request: Request, gateway: Gateway) -> Response:
    return JSONResponse(OPENAPI)


routes = [
    Route("/api/v1/openapi.json", _handler(openapi)),
    Route("/api/v1/whoami", _handler(whoami)),
    Route("/api/v1/users", _handler(add_user), methods=["POST"]),
    Route("/api/v1/users/{name}/tokens", _handler(add_token), methods=["POST"]),
    Route("/api/v1/nodes", _handler(add_node), methods=["POST"]),
    Route("/api/v1/repositories/{name:path}/visibility", _handler(set_visibility), methods=["PUT"]),
    Route("/api/v1/repositories/{name:path}/grants/{account}", _handler(set_grant), methods=["PUT", "DELETE"]),
    Route("/api/v1/repositories/{name:path}/stages", _handler(get_stages)),
    Route("/api/v1/stages", _handler(post_stage), methods=["POST"]),
    Route("/api/v1/signing-key", _handler(signing_key)),
    Route("/api/v1/admin/reindex", _handler(reindex), methods=["POST"]),
    Route("/api/v1/bundles", _handler(search)),
    Route("/api/v1/bundles/{name:path}", _handler(bundle_detail)),
]

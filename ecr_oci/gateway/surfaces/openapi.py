"""The OpenAPI 3.1 description of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Names carry the grammar of :mod:`ecr_oci.gateway.domain.names` as patterns, so a request valid
by this document is one the API accepts (tests/gateway/test_fuzz.py drives every
operation from it with schemathesis and checks exactly that).
"""

from __future__ import annotations

from typing import Any

from ecr_oci.gateway.surfaces.openapi_names import DIGEST, LABEL, REFERENCE, REPOSITORY, USER

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": REPOSITORY,
         "description": "Repository name, e.g. alice/bird-detector (slashes allowed)."}
_ACCOUNT = {"name": "account", "in": "path", "required": True, "schema": LABEL,
            "description": "A user or node name."}


def _password_reset_answers(op: dict[str, Any]) -> dict[str, Any]:
    """POST /users answers 200 when it set a new password (reset_password) instead of creating."""
    op["responses"]["200"] = {"description": "Password reset (reset_password: true)"}
    return op


def _op(summary: str, *, body: str | None = None, params: list[dict[str, Any]] | None = None,
        ok: str = "200", auth: str = "any") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "OK"}, "4XX": _ERROR},
                          "x-ecr-auth": auth}
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if params:
        op["parameters"] = params
    return op


_QUERY = [
    {"name": k, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
    for k, d in (
        ("q", "Words that must each occur in the repository name, name, description, authors, science text"
              " or keywords (as on the search page; case-insensitive, the first 8 count)."),
        ("name", "Substring of the repository name."),
        ("keyword", "Exact keyword."),
        ("platform", "os/arch[/variant] the bundle has an image for."),
        ("runtime", "A runtime requirement key (e.g. torch)."),
        ("hardware", "A hardware requirement key (e.g. camera)."),
        ("stage", "A current stage (approved, tested-node, ...)."),
    )
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "ECR gateway API", "version": "1",
             "description": "Admin and catalog API of the Edge Code Repository gateway. Authenticate with HTTP "
                            "Basic (password or API token) or a bearer token from /auth/token. Catalog answers "
                            "are filtered by what the caller may pull."},
    "paths": {
        "/api/v1/whoami": {"get": _op("The authenticated identity", auth="user or node")},
        "/api/v1/users": {
            "post": _password_reset_answers(_op(
                "Create a user (201), or set a new password with reset_password (200; else 409 for an"
                " existing user)", body="NewUser", ok="201", auth="admin")),
            "get": _op("Users with their token ids/labels and grants", auth="admin")},
        "/api/v1/users/{account}": {
            "get": _op("A user: admin flag, API tokens (id, label, created), grants", params=[_ACCOUNT],
                       auth="admin, or the user"),
            "delete": _op("Remove a user, their tokens and grants", params=[_ACCOUNT], auth="admin")},
        "/api/v1/users/{account}/tokens/{token_id}": {"delete": _op(
            "Revoke an API token (its id, or a prefix of at least 6 characters)",
            params=[_ACCOUNT, {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            auth="admin, or the user")},
        "/api/v1/nodes/{account}": {
            "get": _op("A node: deployments, credentials (id, created)", params=[_ACCOUNT], auth="admin"),
            "delete": _op("Remove a node (its credential stops working)", params=[_ACCOUNT], auth="admin")},
        "/api/v1/repositories/{name}": {"get": _op(
            "Visibility, what the caller may do, and grants (to those who manage the repository)",
            params=[_NAME], auth="pull")},
        "/api/v1/users/{account}/tokens": {"post": _op(
            "Create an API token (usable as a password)", ok="201", auth="the account itself or admin",
            body="NewToken", params=[_ACCOUNT])},
        "/api/v1/nodes": {
            "get": _op("Nodes with their deployments", auth="admin"),
            "post": _op("Register a node bound to deployments; answers its credential (again: rotates it, the old"
                        " credential revoked)", body="NewNode", ok="201", auth="admin")},
        "/api/v1/repositories/{name}/visibility": {"put": _op(
            "Set visibility", body="Visibility", params=[_NAME], auth="namespace owner, admin grantee or admin")},
        "/api/v1/repositories/{name}/grants/{account}": {
            "put": _op("Grant read, write or admin", body="Grant", params=[_NAME, _ACCOUNT], auth="as visibility"),
            "delete": _op("Revoke a grant", params=[_NAME, _ACCOUNT], auth="as visibility")},
        "/api/v1/repositories/{name}/stages": {"get": _op(
            "Stage audit trail", auth="pull",
            params=[_NAME, {"name": "digest", "in": "query", "required": False, "schema": DIGEST,
                            "description": "Only this manifest's events."}])},
        "/api/v1/stages": {"post": _op("Record a stage transition", body="StageSet", ok="201",
                                       auth="admin (owners: submitted, deprecated)")},
        "/api/v1/admin/reindex": {"post": _op("Rebuild the referrers and catalog indexes from the registry",
                                              auth="admin")},
        "/api/v1/signing-key": {"get": {
            "summary": "The gateway's countersigning public key (PEM)", "x-ecr-auth": "anonymous allowed",
            "responses": {"200": {"description": "OK", "content": {"application/x-pem-file": {
                "schema": {"type": "string"}}}}}}},
        "/api/v1/bundles": {"get": _op("Search bundles", params=_QUERY, auth="anonymous allowed")},
        "/api/v1/bundles/{name}": {"get": _op("Bundle versions, stages and referrers", params=[_NAME],
                                              auth="pull")},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "NewUser": {"type": "object", "required": ["name", "password"], "properties": {
            "name": USER, "password": {"type": "string", "minLength": 8},
            "admin": {"type": "boolean"}, "reset_password": {"type": "boolean"}}},
        "NewToken": {"type": "object", "properties": {"label": {"type": "string"}}},
        "NewNode": {"type": "object", "required": ["name", "deployments"], "properties": {
            "name": LABEL, "deployments": {"type": "array", "items": LABEL}}},
        "Visibility": {"type": "object", "required": ["visibility"], "properties": {
            "visibility": {"enum": ["public", "protected", "private"]}}},
        "Grant": {"type": "object", "required": ["level"], "properties": {
            "level": {"enum": ["read", "write", "admin"]}}},
        "StageSet": {"type": "object", "required": ["repository", "reference", "stage"], "properties": {
            "repository": REPOSITORY, "reference": {**REFERENCE, "description": "tag or digest"},
            "stage": {"enum": ["submitted", "tested-vw", "tested-node", "approved", "deprecated"]},
            "deployment": LABEL,
            "evidence": {"type": "object", "additionalProperties": {"type": "string"}}}},
    },
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic", "description": "password or API token"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "a token from /auth/token"}}},
    "security": [{"basic": []}, {"bearer": []}, {}],
}

# Node facts and the scheduler feed (issue 12), described in their own module.
from ecr_oci.gateway.surfaces.openapi_nodes import PATHS as _NODE_PATHS  # noqa: E402
from ecr_oci.gateway.surfaces.openapi_nodes import SCHEMAS as _NODE_SCHEMAS  # noqa: E402

OPENAPI["paths"].update(_NODE_PATHS)
OPENAPI["components"]["schemas"].update(_NODE_SCHEMAS)

"""``/api/v1/nodes/{node}/facts``: a node's facts, read and updated by the node itself or an admin.

An admin sets them when adding a node (``ecr admin node add --platform ...``); a node
updates its own with its credential. Validation and matching: :mod:`ecr_oci.deploy.facts`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ecr_oci.deploy.facts import validate_facts
from ecr_oci.errors import ValidationError
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import names
from ecr_oci.gateway.domain.policy import can_access_node
from ecr_oci.gateway.surfaces.api import ApiError, _body, _caller, _handler, _parsed


# --- API: GET/PUT /api/v1/nodes/{node}/facts -----------------------------------------
async def get_facts(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    node = _parsed(names.account, request.path_params["node"], "node")
    account = gateway.store.get_account(node)
    if not can_access_node(caller, node) or account is None or account.kind != "node":
        raise ApiError(f"no node {node}", 404)
    facts = gateway.store.node_facts([node]).get(node)
    return JSONResponse({"node": node, "deployments": sorted(account.deployments), "facts": facts})


async def put_facts(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    node = _parsed(names.account, request.path_params["node"], "node")
    account = gateway.store.get_account(node)
    if not can_access_node(caller, node) or account is None or account.kind != "node":
        raise ApiError(f"no node {node}", 404)
    try:
        facts = validate_facts(await _body(request))
    except ValidationError as exc:
        raise ApiError(str(exc)) from None
    gateway.store.set_node_facts(node, facts)
    gateway.audit.record("node.facts", actor=caller.label, decision="allow", node=node, facts=facts)
    return JSONResponse({"node": node, "deployments": sorted(account.deployments), "facts": facts})


routes = [
    Route("/api/v1/nodes/{node}/facts", _handler(get_facts), methods=["GET"]),
    Route("/api/v1/nodes/{node}/facts", _handler(put_facts), methods=["PUT"]),
]

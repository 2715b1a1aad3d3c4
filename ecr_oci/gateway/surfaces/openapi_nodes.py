"""OpenAPI description of the node facts and scheduler feed routes (merged into ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from ecr_oci.gateway.surfaces.openapi_names import DIGEST, LABEL, REPOSITORY
from ecr_oci.spec import load_schema

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_NODE = {"name": "node", "in": "path", "required": True, "schema": LABEL}
_FACTS_BODY = {"required": True,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NodeFacts"}}}}
_FACTS_OK = {"description": "The node's facts",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NodeFactsAnswer"}}}}
_NULLABLE_STR = {"type": ["string", "null"]}

PATHS: dict[str, Any] = {
    "/api/v1/nodes/{node}/facts": {
        "get": {"summary": "A node's facts", "parameters": [_NODE], "x-ecr-auth": "admin or the node itself",
                "responses": {"200": _FACTS_OK, "4XX": _ERROR}},
        "put": {"summary": "Replace a node's facts (validated: node-facts.schema.json)", "parameters": [_NODE],
                "x-ecr-auth": "admin or the node itself", "requestBody": _FACTS_BODY,
                "responses": {"200": _FACTS_OK, "4XX": _ERROR}},
    },
    "/api/v1/deployments/{deployment}/feed": {
        "get": {
            "summary": "Scheduler feed: bundle versions approved for a deployment, and which nodes can run them",
            "description": "Poll with If-None-Match (304 when unchanged) or ?since=<cursor> (only bundles whose "
                           "approval changed: granted ones in bundles, revoked ones in removed). Anyone but "
                           "admins and the deployment's nodes gets 404, as for a deployment that does not exist.",
            "x-ecr-auth": "admin or a node of the deployment",
            "parameters": [
                {"name": "deployment", "in": "path", "required": True, "schema": LABEL},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                 "description": "The cursor of an earlier answer."},
                {"name": "node", "in": "query", "required": False, "schema": LABEL,
                 "description": "Only this node's fit (a node always gets its own only)."},
                {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "The ETag of an earlier answer."},
            ],
            "responses": {
                "200": {"description": "The feed", "headers": {"ETag": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feed"}}}},
                "304": {"description": "Unchanged since If-None-Match"},
                "4XX": _ERROR,
            },
        },
    },
}

PATHS["/api/v1/deployments/{deployment}/spec"] = {"get": {
    "summary": "Kubernetes (or podman kube play) Pod running an approved bundle on one node of the deployment",
    "x-ecr-auth": "admin or a node of the deployment",
    "parameters": [{"name": "deployment", "in": "path", "required": True, "schema": LABEL},
                   *({"name": k, "in": "query", "required": k != "format", "schema": schema}
                     for k, schema in (("repository", REPOSITORY), ("digest", DIGEST), ("node", LABEL),
                                       ("format", {"enum": ["k8s", "podman"]})))],
    "responses": {"200": {"description": "The Pod", "content": {"application/yaml": {}}}, "4XX": _ERROR},
}}

SCHEMAS: dict[str, Any] = {
    # Inlined: a $ref to the schema's $id URL does not resolve offline (OpenAPI tools, schemathesis).
    "NodeFacts": {"description": "https://waggle.org/ecr/v1/node-facts.schema.json",
                  **{k: v for k, v in load_schema("node-facts").items() if k not in ("$schema", "$id")}},
    "NodeFactsAnswer": {"type": "object", "required": ["node", "deployments", "facts"], "properties": {
        "node": {"type": "string"}, "deployments": {"type": "array", "items": {"type": "string"}},
        "facts": {"oneOf": [{"$ref": "#/components/schemas/NodeFacts"}, {"type": "null"}]}}},
    "Feed": {"type": "object", "required": ["deployment", "cursor", "nodes", "bundles", "removed", "signing_key"],
             "properties": {
                 "deployment": {"type": "string"},
                 "cursor": {"type": "string", "description": "Pass as ?since= to get only later changes."},
                 "since": _NULLABLE_STR,
                 "node": _NULLABLE_STR,
                 "nodes": {"type": "array", "items": {"type": "object", "properties": {
                     "node": {"type": "string"}, "facts": {"type": ["object", "null"]}}}},
                 "bundles": {"type": "array", "items": {"$ref": "#/components/schemas/FeedBundle"}},
                 "removed": {"type": "array", "items": {"type": "object", "properties": {
                     "repository": {"type": "string"}, "digest": {"type": "string"}}}},
                 "signing_key": {"type": "string", "format": "uri"}}},
    "FeedBundle": {"type": "object", "properties": {
        "repository": {"type": "string"}, "digest": {"type": "string", "description": "Bundle index digest."},
        "name": _NULLABLE_STR, "version": _NULLABLE_STR, "tags": {"type": "array", "items": {"type": "string"}},
        "platforms": {"type": "array", "items": {"type": "object", "properties": {
            "platform": {"type": "string"}, "digest": {"type": "string"}, "size": {"type": "integer"}}}},
        "model": {"type": ["object", "null"], "properties": {
            "digest": {"type": "string"}, "size": {"type": "integer"}, "files": {"type": "integer"},
            "bytes": {"type": "integer"}, "path": {"type": "string"}}},
        "requirements": {"type": "object", "properties": {"runtime": {"type": "object"},
                                                          "hardware": {"type": "object"}}},
        "approved": {"type": ["object", "null"], "properties": {"at": {"type": "number"}, "by": {"type": "string"}}},
        "signatures": {"type": "object", "properties": {
            "signed": {"type": "boolean", "description": "A signature other than the gateway's exists (unverified)."},
            "countersigned": {"type": "boolean", "description": "The gateway's approval signature verifies."},
            "key_url": {"type": "string"}}},
        "performance": {"type": "array", "items": {"$ref": "#/components/schemas/FeedProfile"},
                        "description": "Latest profile per hardware (arch, accelerator)."},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "node": {"type": "string"}, "can_run": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"type": "string"}}, "platform": _NULLABLE_STR,
            "performance": {"oneOf": [{"$ref": "#/components/schemas/FeedProfile"}, {"type": "null"}]},
            "spec": {"type": ["string", "null"], "description": "URL of this node's Pod spec (if it can run)."}}}},
    }},
    "FeedProfile": {"type": "object", "properties": {
        "profile": {"type": "string"}, "node": {"type": "string"}, "stage": {"type": "string"},
        "window": {"type": "object"}, "hardware": {"type": "object"}, "latency_seconds": {"type": "object"},
        "throughput_per_second": {"type": "number"}, "cpu_cores": {"type": "number"},
        "peak_rss_bytes": {"type": "number"}}},
}

"""A small client of the gateway's admin API (``/api/v1``), used by ``ecr admin|repo|stage``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from ecr_oci.errors import AuthError, NotFoundError, RegistryError, UsageError
from ecr_oci.registry import tls
from ecr_oci.registry.auth import Credentials, not_logged_in, wrong_password
from ecr_oci.registry.client import is_loopback


class GatewayAdmin:
    """Talks JSON to one gateway.

    Args:
        server: ``host[:port]`` or a full ``http(s)://`` URL.
        credentials: Basic credentials (password or API token).
        verify_tls: check the server certificate over https.
    """

    def __init__(self, server: str, credentials: Credentials | None, *, verify_tls: bool = True) -> None:
        if "://" not in server:
            server = f"{'http' if is_loopback(server) else 'https'}://{server}"
        self.base = server.rstrip("/")
        self.host = self.base.split("://", 1)[1]
        self.username = credentials.username if credentials else None
        self._session = tls.session(verify_tls)
        if credentials:
            self._session.auth = (credentials.username, credentials.password)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self._session.request(method, self.base + path, json=body, timeout=120)
        except requests.RequestException as exc:
            raise RegistryError(f"cannot reach {self.base}: {exc.__class__.__name__}") from exc
        try:
            data: dict[str, Any] = resp.json()
        except ValueError:
            data = {"error": f"HTTP {resp.status_code}"}
        if resp.ok:
            return data
        message = str(data.get("error") or f"HTTP {resp.status_code}")
        if resp.status_code == 401:
            if self.username is None:
                raise AuthError(not_logged_in(self.host), status=401)
            raise AuthError(wrong_password(self.host, self.username), status=401)
        if resp.status_code == 403:
            if message == "admin only":
                message = f"admins only: user {self.username!r} is not an administrator of {self.host}"
            raise AuthError(message, status=403)
        if resp.status_code == 404:
            raise NotFoundError(message, status=404)
        if resp.status_code in (400, 409, 422):
            raise UsageError(message, status=resp.status_code)
        raise RegistryError(message, status=resp.status_code)

    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/whoami")

    def add_user(self, name: str, password: str, admin: bool = False, reset_password: bool = False) -> dict[str, Any]:
        return self._call("POST", "/api/v1/users", {"name": name, "password": password, "admin": admin,
                                                    "reset_password": reset_password})

    def accounts(self, kind: str) -> list[dict[str, Any]]:
        """Users (``kind="user"``) or nodes, with their tokens' ids and labels (admins only)."""
        return list(self._call("GET", f"/api/v1/{kind}s")[f"{kind}s"])

    def account(self, kind: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/{kind}s/{quote(name)}")

    def remove_account(self, kind: str, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/{kind}s/{quote(name)}")

    def revoke_token(self, name: str, token_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/users/{quote(name)}/tokens/{quote(token_id)}")

    def repository(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/repositories/{name}")

    def signing_key(self) -> bytes:
        try:
            resp = self._session.get(self.base + "/api/v1/signing-key", timeout=60)
        except requests.RequestException as exc:
            raise RegistryError(f"cannot reach {self.base}: {exc.__class__.__name__}") from exc
        if not resp.ok:
            raise RegistryError(f"{self.host} has no signing key (HTTP {resp.status_code})", status=resp.status_code)
        return resp.content

    def add_token(self, name: str, label: str = "") -> str:
        return str(self._call("POST", f"/api/v1/users/{quote(name)}/tokens", {"label": label})["token"])

    def add_node(self, name: str, deployments: list[str]) -> str:
        return str(self._call("POST", "/api/v1/nodes", {"name": name, "deployments": deployments})["credential"])

    def set_visibility(self, repository: str, visibility: str) -> dict[str, Any]:
        return self._call("PUT", f"/api/v1/repositories/{repository}/visibility", {"visibility": visibility})

    def grant(self, repository: str, account: str, level: str | None) -> dict[str, Any]:
        path = f"/api/v1/repositories/{repository}/grants/{quote(account)}"
        return self._call("DELETE", path) if level is None else self._call("PUT", path, {"level": level})

    def set_stage(self, repository: str, reference: str, stage: str, deployment: str = "",
                  evidence: dict[str, str] | None = None) -> dict[str, Any]:
        return self._call("POST", "/api/v1/stages", {"repository": repository, "reference": reference,
                                                     "stage": stage, "deployment": deployment,
                                                     "evidence": evidence or {}})

    def stages(self, repository: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/repositories/{repository}/stages")

    def reindex(self) -> int:
        return int(self._call("POST", "/api/v1/admin/reindex")["referrers"])

    def search(self, **params: str) -> dict[str, Any]:
        query = "&".join(f"{k}={quote(v)}" for k, v in params.items() if v)
        return self._call("GET", "/api/v1/bundles" + (f"?{query}" if query else ""))

    def node_facts(self, node: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/nodes/{quote(node)}/facts")

    def set_node_facts(self, node: str, facts: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/api/v1/nodes/{quote(node)}/facts", facts)

    def feed(self, deployment: str, since: str | None = None) -> dict[str, Any]:
        query = f"?since={quote(since)}" if since else ""
        return self._call("GET", f"/api/v1/deployments/{quote(deployment)}/feed{query}")

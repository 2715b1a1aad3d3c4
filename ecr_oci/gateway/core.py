"""The gateway's shared parts: configuration, identities, and OCI error responses."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ecr_oci.digest import sha256_bytes
from ecr_oci.gateway import passwords
from ecr_oci.gateway.audit import AuditLog
from ecr_oci.gateway.domain import policy
from ecr_oci.gateway.domain.policy import ANONYMOUS, Caller, RepoFacts, Rule
from ecr_oci.gateway.domain.system import CountersignKey, SystemIdentity
from ecr_oci.gateway.metrics import Metrics
from ecr_oci.gateway.stores.blobs import LocalBlobs
from ecr_oci.gateway.stores.cache import CachedManifest, ManifestCache
from ecr_oci.gateway.stores.state import Account, StateStore, Visibility, open_store
from ecr_oci.gateway.tokens import SigningKey, TokenIssuer, granted
from ecr_oci.gateway.upstream import UPSTREAM_SERVICE, Upstream
from ecr_oci.registry.client import MANIFEST_ACCEPT

SERVICE = "ecr"
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")
ISSUER = "ecr-gateway"
ADMIN_USER = "admin"


@dataclass(frozen=True)
class GatewayConfig:
    """Settings of one gateway.

    Attributes:
        data_dir: state database, keys, audit log (and the embedded registry's storage).
        registry_url: the registry behind the gateway (set once it is running).
        default_visibility: visibility of a repository created by its first push.
        token_ttl: lifetime of client tokens, seconds.
        max_manifest_bytes: larger manifest PUTs are refused (SIZE_INVALID).
        public_url: the address clients use (``https://ecr.example.org``); None: the
            ``X-Forwarded-Proto``/``-Host`` of a trusted proxy, else the address it listens on.
        storage_dir: the registry's filesystem storage when this gateway owns it
            (embedded mode): blob reads are then served from the files.
        state_url: the state store (:func:`~ecr_oci.gateway.stores.state.open_store`); None:
            SQLite in ``data_dir``. Gateways sharing one ``postgresql://`` store scale out.
        trusted_proxies: addresses of reverse proxies (say ``127.0.0.1`` for an nginx on the
            same host) whose ``X-Forwarded-*`` headers are believed; nobody else's are.
    """

    data_dir: Path
    registry_url: str
    default_visibility: Visibility = "public"
    token_ttl: int = 300
    max_manifest_bytes: int = 4 << 20
    public_url: str | None = None
    storage_dir: Path | None = None
    self_host: str | None = None  # HOST:PORT it listens on: enables countersigning and collection
    state_url: str | None = None
    trusted_proxies: frozenset[str] = frozenset()  # peers whose X-Forwarded-* headers are believed


def oci_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """An OCI distribution error response (``{"errors": [...]}``)."""
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class Throttled(Exception):
    """Too many failed logins for an account or from an address: retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins: retry in {retry_after} s")


class LoginThrottle:
    """Counts failed logins per account and per client address.

    After ``account_limit`` failures for one account (or ``address_limit`` from one
    address, which many honest users may share behind NAT) within ``window`` seconds,
    further logins there are refused without a password check until the window has
    passed: guessing is slowed to a few tries a minute, and refused tries cost no scrypt time.
    """

    def __init__(self, account_limit: int = 10, address_limit: int = 100, window: float = 60.0) -> None:
        self._limits = {"account": account_limit, "address": address_limit}
        self._window = window
        self._failures: dict[tuple[str, str], list[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if t > now - self._window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def check(self, account: str, address: str | None) -> None:
        """Raises :class:`Throttled` when the account or the address has used up its failures."""
        now = time.monotonic()
        for key in self._keys(account, address):
            times = self._recent(key, now)
            if len(times) >= self._limits[key[0]]:
                raise Throttled(max(1, int(times[0] + self._window - now) + 1))

    def failed(self, account: str, address: str | None) -> None:
        now = time.monotonic()
        if len(self._failures) > 100_000:  # bounded memory under a spray of names
            self._failures.clear()
        for key in self._keys(account, address):
            self._failures.setdefault(key, []).append(now)

    @staticmethod
    def _keys(account: str, address: str | None) -> list[tuple[str, str]]:
        return [("account", account), *([("address", address)] if address else [])]


class Gateway:
    """Everything a request handler needs, built once per process.

    Args:
        config: the settings.
        store: the state store (default: from ``config.state_url``, else SQLite in the data directory).
        rules: the repository policy (default: :data:`policy.DEFAULT_POLICY`).
    """

    def __init__(self, config: GatewayConfig, store: StateStore | None = None, rules: Rule | None = None) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store: StateStore = store or open_store(config.data_dir, config.state_url)
        self._owns_store = store is None  # a store handed in is closed by whoever opened it
        keys = config.data_dir / "keys"
        self.client_tokens = TokenIssuer(SigningKey(keys, "client"), issuer=ISSUER, audience=SERVICE,
                                         ttl=config.token_ttl)
        self.upstream_tokens = TokenIssuer(SigningKey(keys, "upstream"), issuer=ISSUER, audience=UPSTREAM_SERVICE)
        self.upstream = Upstream(config.registry_url, self.upstream_tokens)
        self.rules: Rule = rules or policy.DEFAULT_POLICY
        self.node_content = policy.NodeContentRule(self.store)
        self.audit = AuditLog(config.data_dir / "audit.log")
        self.metrics = Metrics()
        self.manifests = ManifestCache()
        self.local_blobs = LocalBlobs(config.storage_dir) if config.storage_dir else None
        self.system = SystemIdentity(self.store, config.self_host) if config.self_host else None
        self.countersign_key = CountersignKey(keys)
        # Verified tokens: a client sends the same token for many requests, and an RSA
        # verification per request would dominate the gateway's own cost.
        self._verified: dict[str, dict[str, Any]] = {}
        self.logins = LoginThrottle()

    async def close(self) -> None:
        await self.upstream.close()
        self.audit.close()
        if self.system is not None:
            self.system.close()
        if self._owns_store:
            self.store.close()  # a PostgreSQL pool's connections are released at once

    # --- bootstrap ------------------------------------------------------------------
    def bootstrap_admin(self) -> str | None:
        """Create the ``admin`` user on first start; returns where its password was written.

        The password is ``ECR_ADMIN_PASSWORD`` when set, else generated and written to
        ``<data-dir>/admin-password`` with mode 0600.
        """
        if self.store.get_account(ADMIN_USER) is not None:
            return None
        password = os.environ.get("ECR_ADMIN_PASSWORD")
        where = "ECR_ADMIN_PASSWORD"
        if not password:
            password = secrets.token_urlsafe(18)
            path = self.config.data_dir / "admin-password"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            where = str(path)
        self.store.add_account(
            Account(name=ADMIN_USER, kind="user", admin=True, password_hash=passwords.hash_password(password))
        )
        return where

    # --- identities -----------------------------------------------------------------
    def _check_password(self, username: str, password: str) -> Caller | None:
        account = None
        if password.startswith(passwords.SECRET_PREFIX):
            account = self.store.account_for_secret(passwords.secret_digest(password))
            if account is not None and account.name != username:
                account = None
        if account is None:
            candidate = self.store.get_account(username)
            if candidate and candidate.password_hash:
                if passwords.verify_password(password, candidate.password_hash):
                    account = candidate
            else:
                # The same scrypt work for a name that has no password: no timing oracle.
                passwords.verify_password(password, passwords.dummy_hash())
        if account is None:
            return None
        return Caller(name=account.name, kind=account.kind, admin=account.admin, deployments=account.deployments)

    async def authenticate_basic(self, header: str, client: str | None = None) -> Caller | None:
        """The caller a ``Basic`` header names, or None when the credentials are wrong.

        Raises:
            Throttled: too many recent failures for that account or from ``client``.
        """
        try:
            raw = base64.b64decode(header.split(" ", 1)[1], validate=True).decode()
        except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = raw.partition(":")
        if not sep or len(username) > 256 or len(password) > 1024:
            return None
        self.logins.check(username, client)
        # scrypt takes tens of milliseconds: keep it off the event loop.
        caller = await run_in_threadpool(self._check_password, username, password)
        if caller is None:
            self.logins.failed(username, client)
        return caller

    def caller_from_claims(self, claims: dict[str, Any]) -> Caller:
        """Rebuild the caller from a verified token (accounts may have changed since)."""
        sub = claims.get("sub") or ""
        if not sub:
            return ANONYMOUS
        account = self.store.get_account(sub)
        if account is None:
            return ANONYMOUS
        return Caller(name=account.name, kind=account.kind, admin=account.admin, deployments=account.deployments)

    async def identify(self, request: Request) -> tuple[Caller, dict[str, Any] | None, bool]:
        """Who sent ``request``: (caller, token claims or None, credentials-were-bad).

        Bearer tokens are verified here; Basic credentials are accepted too (the admin
        API and simple scripts use them).
        """
        header = request.headers.get("authorization", "")
        scheme = header.split(" ", 1)[0].lower()
        if scheme == "bearer":
            claims = self._verify_cached(header.split(" ", 1)[1].strip() if " " in header else "")
            if claims is None:
                return ANONYMOUS, None, True
            return self.caller_from_claims(claims), claims, False
        if scheme == "basic":
            try:
                caller = await self.authenticate_basic(header, self.client_address(request))
            except Throttled:
                caller = None
            return (caller or ANONYMOUS), None, caller is None
        return ANONYMOUS, None, False

    def _verify_cached(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid client token (cached until it expires), else None."""
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] > time.time():
                return claims
            del self._verified[token]
        try:
            claims = self.client_tokens.verify(token)
        except jwt.InvalidTokenError:
            return None
        if len(self._verified) > 10000:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    # --- content ----------------------------------------------------------------------
    async def manifest(self, repository: str, reference: str) -> CachedManifest | None:
        """A manifest from the cache, else fetched from the registry (and cached); None if absent.

        Callers check authorization first: the cache knows nothing of policy.
        """
        cached = self.manifests.get(repository, reference)
        if cached is not None:
            return cached
        resp = await self.upstream.get_manifest(repository, reference, MANIFEST_ACCEPT)
        if resp.status_code != 200 or len(resp.content) > self.config.max_manifest_bytes:
            return None
        digest = sha256_bytes(resp.content)
        if reference.startswith("sha256:") and digest != reference:
            return None
        media_type = resp.headers.get("content-type", "").split(";")[0]
        cached = CachedManifest(digest=digest, media_type=media_type, data=resp.content)
        self.manifests.put(repository, reference, cached)
        return cached

    # --- policy ---------------------------------------------------------------------
    def facts(self, repository: str, caller: Caller) -> RepoFacts:
        return policy.facts(self.store, repository, caller)

    def allowed(self, caller: Caller, repository: str) -> frozenset[str]:
        """What ``caller`` may do to ``repository`` now."""
        return self.rules.allowed(caller, self.facts(repository, caller))

    def permits(self, caller: Caller, claims: dict[str, Any] | None, repository: str, action: str) -> bool:
        """Whether a request may do ``action``: the token must grant it, and policy still allow it.

        Re-checking policy means a revoked grant takes effect before the token expires.
        """
        if claims is not None and not granted(claims, "repository", repository, action):
            return False
        return action in self.allowed(caller, repository)

    def challenge(self, request: Request, scope: str | None = None, error: str | None = None) -> dict[str, str]:
        """The ``WWW-Authenticate`` header pointing clients at our token endpoint."""
        value = f'Bearer realm="{self.public_base(request)}/auth/token",service="{SERVICE}"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return {"WWW-Authenticate": value, "Docker-Distribution-API-Version": "registry/2.0"}

    def unauthorized(self, request: Request, scope: str | None, has_token: bool) -> Response:
        """The one answer for 'not allowed' on a read: the same whether the repository exists or not."""
        error = "insufficient_scope" if has_token else None
        message = "authentication required" if not has_token else "insufficient scope"
        return oci_error(401, "UNAUTHORIZED", message, self.challenge(request, scope, error))

    def _via_trusted_proxy(self, request: Request) -> bool:
        return request.client is not None and request.client.host in self.config.trusted_proxies

    def client_address(self, request: Request) -> str | None:
        """The client's address: the peer, or the nearest hop a trusted proxy reports."""
        if self._via_trusted_proxy(request) and (forwarded := request.headers.get("x-forwarded-for")):
            return forwarded.split(",")[-1].strip() or None
        return request.client.host if request.client else None

    def public_base(self, request: Request) -> str:
        """The gateway's own address as clients see it, for token realms and ``Location`` headers.

        ``--public-url`` when set; else what a trusted reverse proxy says
        (``X-Forwarded-Proto``/``-Host``); else the address the gateway listens on. A
        client's own ``Host`` or ``X-Forwarded-*`` headers never choose where other
        clients are sent for tokens.
        """
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        if self._via_trusted_proxy(request):
            proto = request.headers.get("x-forwarded-proto") or request.url.scheme
            host = request.headers.get("x-forwarded-host") or request.headers.get("host") or request.url.netloc
            if proto in ("http", "https") and _HOST.match(host):
                return f"{proto}://{host}"
        if self.config.self_host and not self.config.self_host.startswith(("0.0.0.0:", "[::]:")):
            return f"{request.url.scheme}://{self.config.self_host}"
        host = request.headers.get("host", "")
        return f"{request.url.scheme}://{host if _HOST.match(host) else request.url.netloc}"

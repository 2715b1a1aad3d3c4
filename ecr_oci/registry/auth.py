"""Registry credentials and the Docker registry token flow.

Credentials are read from the files other clients write: containers ``auth.json``
(podman, skopeo, buildah) and docker ``config.json`` (docker, oras), including
``credHelpers``/``credsStore`` helpers. Tokens follow the Docker Registry v2 token
authentication spec: a 401 carries ``WWW-Authenticate: Bearer realm=...,service=...``
and the token endpoint is asked for the scopes a request needs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ecr_oci.errors import AuthError

if TYPE_CHECKING:
    import requests


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _auth_files() -> list[Path]:
    """Auth files in the order podman/skopeo and docker look at them."""
    files: list[Path] = []
    if env := os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env))
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(runtime) / "containers" / "auth.json")
    files.append(Path.home() / ".config" / "containers" / "auth.json")
    files.append(docker_config_path())
    return files


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _host_keys(registry: str) -> list[str]:
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def _from_helper(helper: str, registry: str) -> Credentials | None:
    try:
        out = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=registry.encode(),
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        data = json.loads(out)
        return Credentials(data["Username"], data["Secret"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return None


def lookup_credentials(registry: str) -> Credentials | None:
    """Find stored credentials for ``registry`` (host[:port]); None when there are none."""
    for path in _auth_files():
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = config.get("auths", {})
        for key in _host_keys(registry):
            entry = auths.get(key)
            if entry and entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return Credentials(user, password)
        helper = config.get("credHelpers", {}).get(registry) or config.get("credsStore")
        if helper and (creds := _from_helper(helper, registry)):
            return creds
    return None


def stored_registries() -> list[str]:
    """Registries with credentials in docker's ``config.json`` (where ``ecr login`` writes)."""
    try:
        config = json.loads(docker_config_path().read_text())
    except (OSError, ValueError):
        return []
    return sorted(key.split("://", 1)[-1].rstrip("/") for key in config.get("auths", {}))


def store_credentials(registry: str, creds: Credentials, path: Path | None = None) -> Path:
    """Save credentials in docker's ``config.json`` (mode 0600) the way ``docker login`` does."""
    path = path or docker_config_path()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    config.setdefault("auths", {})[registry] = {"auth": token}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh, indent=2)
    os.replace(tmp, path)
    return path


def remove_credentials(registry: str, path: Path | None = None) -> bool:
    """Forget stored credentials for ``registry``; True if there were any."""
    path = path or docker_config_path()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    removed = config.get("auths", {}).pop(registry, None) is not None
    if removed:
        path.write_text(json.dumps(config, indent=2))
    return removed


def login_hint(registry: str) -> str:
    where = f" {registry}" if registry else ""
    return f"run `ecr login{where}`, or set ECR_USERNAME and ECR_PASSWORD (or --username with --password-stdin)"


def not_logged_in(registry: str) -> str:
    return f"not logged in to {registry or 'the registry'}: {login_hint(registry)}"


def wrong_password(registry: str, username: str) -> str:
    return (f"wrong user name or password for {registry or 'the registry'} (user {username!r});"
            f" {login_hint(registry)}")


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="..",service=".."`` into the scheme and its parameters."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class TokenAuth:
    """Answers registry challenges, caching one bearer token per scope set.

    Args:
        session: the HTTP session used to reach the token endpoint (called when a
            token is needed: requests is loaded only then).
        credentials: username/password, or None for anonymous access.
    """

    def __init__(self, session: Callable[[], requests.Session], credentials: Credentials | None,
                 registry: str = "") -> None:
        self._session = session
        self.credentials = credentials
        self.registry = registry
        self._tokens: dict[tuple[str, ...], str] = {}
        # Once the token service refused the credentials, every other request of this
        # client fails the same way without asking again: a parallel push must not spend
        # the gateway's failed-login allowance (it throttles the account after a few).
        self._refused: str | None = None
        self._fetch_lock = threading.Lock()
        self._basic = False
        self._lock = threading.Lock()

    def header_for(self, scopes: tuple[str, ...]) -> dict[str, str]:
        """The Authorization header to send first for a request needing ``scopes``."""
        with self._lock:
            token = self._tokens.get(scopes)
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credentials:
            return {"Authorization": self._basic_value()}
        return {}

    def _basic_value(self) -> str:
        assert self.credentials
        raw = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def answer(self, challenge: str, scopes: tuple[str, ...]) -> dict[str, str]:
        """Obtain the header that answers ``challenge`` for ``scopes``.

        Raises:
            AuthError: the token endpoint refused or is unusable.
        """
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self.credentials:
                raise AuthError(not_logged_in(self.registry))
            self._basic = True
            return {"Authorization": self._basic_value()}
        if scheme != "bearer" or "realm" not in params:
            raise AuthError(f"unsupported authentication challenge: {challenge!r}")
        wanted = list(scopes)
        if extra := params.get("scope"):
            wanted += [s for s in extra.split(" ") if s not in wanted]
        query: list[tuple[str, str]] = [("scope", s) for s in wanted]
        if service := params.get("service"):
            query.append(("service", service))
        auth = None
        if self.credentials:
            auth = (self.credentials.username, self.credentials.password)
        with self._lock:
            rejected = self._tokens.get(scopes)  # the token this challenge answered, if any
        # One token request at a time: parallel transfers wait for the first answer, so
        # refused credentials are sent once, not once per thread, and a token another
        # thread fetched meanwhile is used instead of asking again.
        with self._fetch_lock:
            if self._refused is not None:
                raise AuthError(self._refused, status=401)
            with self._lock:
                fresh = self._tokens.get(scopes)
            if fresh and fresh != rejected:
                return {"Authorization": f"Bearer {fresh}"}
            return self._fetch(params, query, scopes, auth)

    def _fetch(self, params: dict[str, str], query: list[tuple[str, str]], scopes: tuple[str, ...],
               auth: tuple[str, str] | None) -> dict[str, str]:
        import requests

        try:
            resp = self._session().get(params["realm"], params=query, auth=auth, timeout=30)
        except requests.RequestException as exc:
            raise AuthError(f"token endpoint {params['realm']} unreachable: {exc}") from exc
        if resp.status_code in (401, 403):
            if self.credentials:
                self._refused = wrong_password(self.registry, self.credentials.username)
                raise AuthError(self._refused, status=resp.status_code)
            raise AuthError(not_logged_in(self.registry), status=resp.status_code)
        if resp.status_code == 429:
            wait = resp.headers.get("Retry-After", "a minute")
            raise AuthError(f"{self.registry} refuses logins for now after too many failed ones: retry in {wait} s",
                            status=429)
        if not resp.ok:
            raise AuthError(f"token endpoint answered HTTP {resp.status_code}", status=resp.status_code)
        try:
            body = resp.json()
            token = body.get("token") or body["access_token"]
        except (ValueError, KeyError) as exc:
            raise AuthError("token endpoint returned no token") from exc
        with self._lock:
            self._tokens[scopes] = token
        return {"Authorization": f"Bearer {token}"}

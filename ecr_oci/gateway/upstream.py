"""The registry behind the gateway: spawning the embedded one, and talking to it.

The embedded Distribution listens on a private loopback port and demands tokens
signed by the gateway's *upstream* key (``auth.token``), so reaching its port
directly gives nothing. The gateway mints itself short-lived tokens per repository.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from ecr_oci.gateway.tokens import TokenIssuer

REGISTRY_BIN = "/usr/bin/docker-registry"
log = logging.getLogger("ecr.gateway")
UPSTREAM_SERVICE = "ecr-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the gateway dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() still ends it on a clean shutdown


class EmbeddedRegistry:
    """A ``docker-registry serve`` child process with storage under ``data_dir/registry``.

    Args:
        data_dir: the gateway's data directory.
        issuer: the token issuer name the registry must expect.
        cert_path: the upstream signing certificate (``rootcertbundle``).
        realm: the gateway's token endpoint, shown in the registry's own challenges.
    """

    def __init__(self, data_dir: Path, *, issuer: str, cert_path: Path, realm: str) -> None:
        self.root = data_dir / "registry"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.root / "config.yml"
        storage = self.storage = self.root / "storage"
        # A fixed http.secret keeps upload sessions valid across restarts (Distribution
        # signs their state with it and picks a random one otherwise).
        secret_path = self.root / "http-secret"
        if not secret_path.exists():
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        secret = secret_path.read_text().strip()
        # relativeurls: Location headers stay paths, so the proxy never leaks this port.
        self.config_path.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  relativeurls: true\n  secret: {secret}\n"
            # Non-distributable (foreign) layers name where to fetch them: Distribution 2.7+
            # refuses every URL unless an allow list is set (and answers 500).
            "validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n"
            "auth:\n  token:\n"
            f"    realm: {realm}\n    service: {UPSTREAM_SERVICE}\n    issuer: {issuer}\n"
            f"    rootcertbundle: {cert_path}\n"
        )
        self.config_path.chmod(0o600)  # it holds the http secret
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()

    def start(self, timeout: float = 20.0) -> None:
        """Start the registry and wait until it answers.

        Raises:
            RuntimeError: the binary is missing or the process exited early.
        """
        binary = shutil.which("docker-registry") or REGISTRY_BIN
        if not Path(binary).exists():
            raise RuntimeError("docker-registry (CNCF Distribution) is not installed")
        log = (self.root / "registry.log").open("ab")
        # Distribution reads REGISTRY_* variables as configuration overrides; podman's
        # REGISTRY_AUTH_FILE, say, would break it. Only our config file counts.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._proc = subprocess.Popen([binary, "serve", str(self.config_path)], stdout=log, stderr=log, env=env,
                                      preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self._proc.returncode}; see {self.root}/registry.log")
            try:
                httpx.get(f"{self.url}/v2/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer on {self.url}")

    def supervise(self, interval: float = 0.5) -> None:
        """Restart the registry whenever it exits (killed, crashed) until :meth:`stop`.

        Same port and storage, so clients retrying or resuming an upload session (its
        state is signed with the fixed http secret) carry on; requests meanwhile get 503.
        """

        def watch() -> None:
            while not self._stopping.wait(interval):
                proc = self._proc
                if proc is None or proc.poll() is None:
                    continue
                if self._stopping.is_set():
                    return
                log.warning("the registry exited (%s): restarting it", proc.returncode)
                try:
                    self.start()
                except RuntimeError as exc:
                    log.error("the registry did not restart: %s", exc)

        threading.Thread(target=watch, name="registry-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


class Upstream:
    """An async HTTP client for the registry with self-minted tokens.

    Args:
        url: the registry base URL.
        issuer: signs the gateway's own tokens (upstream key and audience).
    """

    def __init__(self, url: str, issuer: TokenIssuer) -> None:
        self.url = url.rstrip("/")
        self._issuer = issuer
        self._tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = {}
        # No overall timeout: blob transfers may take as long as they take; only a
        # stalled connect or a read silent for 5 minutes fails.
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(connect=10, read=300, write=300, pool=60),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        await self.http.aclose()

    def auth_header(self, resource_type: str, name: str, actions: tuple[str, ...] | None = None) -> dict[str, str]:
        """A bearer header for one repository (or the catalog) carrying exactly ``actions``.

        Requests forwarded for a client pass the actions the gateway decided for that
        request, so the registry itself refuses anything beyond them; the gateway's own
        housekeeping (gate lookups, referrer indexes) uses the default full set.
        """
        if actions is None:
            actions = ("*",) if resource_type == "registry" else ("pull", "push", "delete")
        key = (resource_type, name, actions)
        cached = self._tokens.get(key)
        now = time.time()
        if cached and cached[1] > now + 30:
            return {"Authorization": f"Bearer {cached[0]}"}
        token, iat = self._issuer.mint("ecr-gateway", [{"type": resource_type, "name": name, "actions": list(actions)}])
        if len(self._tokens) > 4096:  # bounded: a few entries per recently used repository
            self._tokens.clear()
        self._tokens[key] = (token, iat + self._issuer.ttl)
        return {"Authorization": f"Bearer {token}"}

    def bearer_for(self, access: list[tuple[str, tuple[str, ...]]]) -> str:
        """An uncached ``Bearer`` value for several repositories, each with its own actions (mounts)."""
        claims = [{"type": "repository", "name": name, "actions": list(actions)} for name, actions in access]
        token, _ = self._issuer.mint("ecr-gateway", claims)
        return f"Bearer {token}"

    def repo_headers(self, repository: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**(extra or {}), **self.auth_header("repository", repository)}

    async def get_manifest(self, repository: str, reference: str, accept: str) -> httpx.Response:
        return await self.http.get(
            f"/v2/{repository}/manifests/{reference}", headers=self.repo_headers(repository, {"Accept": accept})
        )

    async def head(self, path: str, repository: str, accept: str | None = None) -> httpx.Response:
        headers = {"Accept": accept} if accept else {}
        return await self.http.head(path, headers=self.repo_headers(repository, headers))

    async def catalog(self) -> list[str]:
        """Every repository in the registry (paginated upstream)."""
        out: list[str] = []
        last = ""
        while True:
            params = {"n": "1000", **({"last": last} if last else {})}
            resp = await self.http.get(
                "/v2/_catalog", params=params, headers=self.auth_header("registry", "catalog")
            )
            resp.raise_for_status()
            page = resp.json().get("repositories") or []
            out += page
            if len(page) < 1000 or 'rel="next"' not in resp.headers.get("Link", ""):
                return out
            last = page[-1]

    async def tags(self, repository: str) -> list[str]:
        """All tags of a repository ([] when it does not exist)."""
        resp = await self.http.get(
            f"/v2/{repository}/tags/list", params={"n": "10000"}, headers=self.repo_headers(repository)
        )
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return list(resp.json().get("tags") or [])

    async def read_blob(self, repository: str, digest: str, size: int) -> bytes | None:
        """A small blob's bytes (the gate reads profile summaries), None unless exactly ``size``.

        Follows a storage redirect: a registry on object storage with
        ``storage.redirect`` enabled answers blob reads with ``307`` to a presigned URL.
        httpx drops the ``Authorization`` header on a cross-origin redirect, so the
        storage sees only its own signature.
        """
        resp = await self.http.get(f"/v2/{repository}/blobs/{digest}",
                                   headers=self.auth_header("repository", repository, ("pull",)),
                                   follow_redirects=True)
        return resp.content if resp.status_code == 200 and len(resp.content) == size else None

"""A small OCI distribution-spec client on ``requests``.

oras-py covers file pushes and pulls; what a bundle needs beyond it (index push,
cross-repository mount, resumable chunked uploads, range-resumed downloads,
referrers with the tag-schema fallback) is here, in one place.

requests is imported when the first request needs it, not with this module: a push to
a plain-http registry opens its upload session and streams the file with the standard
library (``filesend``), so ``ecr push``'s early start (cli/early.py) sends its first
byte while requests is still to be loaded.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from ecr_oci import mediatypes as mt
from ecr_oci.digest import CHUNK, VerifyingWriter, hex_of, sha256_bytes, sha256_file
from ecr_oci.errors import (
    AuthError,
    DigestMismatchError,
    Interrupted,
    NotFoundError,
    RegistryError,
)
from ecr_oci.oci import FileRange
from ecr_oci.registry import filesend
from ecr_oci.registry.auth import Credentials, TokenAuth, lookup_credentials
from ecr_oci.transfer.state import UploadSessions

if TYPE_CHECKING:
    import requests

Progress = Callable[[int], None]
MANIFEST_ACCEPT = ", ".join(sorted(mt.MANIFEST_TYPES))
# One PATCH per 512 MiB: fewer round trips (measured faster than 64 MiB by make bench),
# still resumable (the upload status says where to go on) and never buffered.
DEFAULT_CHUNK_SIZE = 512 << 20
MAX_MANIFEST_BYTES = 4 << 20
RETRIES = 3
# A 429/503 answer with a short Retry-After is retried this many times (replayable requests).
UNAVAILABLE_RETRIES = 5
# A registry (or gateway) that answered earlier in the run and cannot be reached now is
# waited for this long (seconds) by a replayable request: a restart takes a second or two.
REACH_WAIT = 20.0
MAX_RETRY_AFTER = 10.0
USER_AGENT = "ecr-oci/0.1"


@dataclass(frozen=True)
class Manifest:
    """Raw manifest bytes as the registry stores them, with their type and digest."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


def at(reference: str) -> str:
    """``@sha256:...`` for a digest, ``:TAG`` for a tag: how a reference is appended to a name."""
    return f"@{reference}" if reference.startswith(("sha256:", "sha512:")) else f":{reference}"


def is_loopback(registry: str) -> bool:
    """True for ``localhost``, ``127.x.y.z`` and ``[::1]`` hosts (served without TLS here)."""
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry[1:].split("]")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(resp: requests.Response) -> float | None:
    """Seconds a 429/503 asks to wait (Retry-After in seconds, at most 10; 1 when absent);
    None for a date or a longer wait (then the error is reported)."""
    value = resp.headers.get("Retry-After", "1").strip()
    try:
        delay = float(value)
    except ValueError:
        return None
    return delay if 0 <= delay <= MAX_RETRY_AFTER else None


def _error_text_of(status: int, reason: str, body: bytes) -> tuple[str, str | None]:
    """The OCI error JSON as one line, and its first error code."""
    try:
        document = json.loads(body)
        errors = (document.get("errors") if isinstance(document, dict) else None) or []
    except ValueError:
        errors = []
    if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
        errors = []
    if not errors:
        return f"HTTP {status} {reason}", None
    first = errors[0]
    parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
    return "; ".join(parts), first.get("code")


class RegistryClient:
    """Talks to one registry host.

    Args:
        registry: ``host[:port]``.
        credentials: explicit credentials; by default those stored by ``ecr login``,
            ``docker login``, ``podman login`` or ``oras login`` are used.
        plain_http: use http instead of https; by default only for loopback hosts.
        verify_tls: check the server certificate over https.
        chunk_size: bytes per PATCH request of a chunked upload.
        pool_size: connections kept open (parallel transfers use one each).
    """

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        plain_http: bool | None = None,
        verify_tls: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pool_size: int = 8,
    ) -> None:
        self.registry = registry
        if plain_http is None:
            plain_http = is_loopback(registry)
        self.base_url = f"{'http' if plain_http else 'https'}://{registry}"
        self._verify_tls = verify_tls
        self._pool_size = pool_size
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()
        self.auth = TokenAuth(lambda: self.session, credentials or lookup_credentials(registry), registry)
        self.chunk_size = chunk_size
        # Set (by a Ctrl-C handler) to stop every transfer of this client within one chunk.
        self.cancelled = threading.Event()
        self._reached = False  # the registry answered once in this run (see _send)

    @property
    def session(self) -> requests.Session:
        """The requests session, made (and requests imported) on first use."""
        if self._session is None:
            with self._session_lock:  # transfer threads may ask at once: one session for all
                if self._session is None:
                    from requests.adapters import HTTPAdapter

                    from ecr_oci.registry import tls

                    session = tls.session(self._verify_tls)
                    adapter = HTTPAdapter(pool_connections=self._pool_size, pool_maxsize=self._pool_size)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    session.headers["User-Agent"] = USER_AGENT
                    self._session = session
        return self._session

    # --- plumbing -------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        scopes: tuple[str, ...],
        ok: Iterable[int] = (200,),
        not_found: str | None = None,
        retry_auth: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request, answering an auth challenge once, and check the status.

        Args:
            method: HTTP method.
            url: absolute URL or a path below the registry base URL.
            scopes: token scopes the request needs, e.g. ``("repository:a/b:pull",)``.
            ok: statuses that count as success.
            not_found: message for a 404 (raised as NotFoundError); None means 404 is
                returned to the caller when it is listed in ``ok``.
            retry_auth: False for requests whose body cannot be sent twice.

        Raises:
            AuthError, NotFoundError, RegistryError.
        """
        import requests

        if not url.startswith("http"):
            url = urljoin(self.base_url, url)
        headers = dict(kwargs.pop("headers", {}) or {})
        sent = {**headers, **self.auth.header_for(scopes)}
        replayable = retry_auth and not callable(getattr(kwargs.get("data"), "__next__", None))
        try:
            resp = self._send(method, url, sent, replayable, kwargs)
            if resp.status_code == 401 and retry_auth and "WWW-Authenticate" in resp.headers:
                challenge = resp.headers["WWW-Authenticate"]
                resp.close()
                sent = {**headers, **self.auth.answer(challenge, scopes)}
                resp = self._send(method, url, sent, replayable, kwargs)
            for _ in range(UNAVAILABLE_RETRIES if replayable else 0):
                # "retry later" (a registry being restarted, a database briefly away): wait as told
                if resp.status_code not in (429, 503) or (delay := _retry_after(resp)) is None:
                    break
                resp.close()
                time.sleep(delay)
                resp = self._send(method, url, sent, replayable, kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"cannot reach registry {self.registry}: its TLS certificate is not trusted here"
                                " (--insecure skips the check; REQUESTS_CA_BUNDLE names a CA file)") from exc
        except requests.ConnectionError as exc:
            raise RegistryError(f"cannot reach registry {self.registry}: {exc.__class__.__name__}") from exc
        except requests.Timeout as exc:
            raise RegistryError(f"registry {self.registry} timed out") from exc
        if resp.status_code in tuple(ok):
            return resp
        status, reason, body = resp.status_code, resp.reason, resp.content
        resp.close()
        raise self._refusal(method, url, scopes, status, reason, body, not_found=not_found)

    def _send(self, method: str, url: str, headers: dict[str, str], replayable: bool,
              kwargs: dict[str, Any]) -> requests.Response:
        """One exchange. A registry (or gateway) that answered earlier in this run and now
        cannot be reached is being restarted, most likely: a replayable request waits for
        it (up to ``REACH_WAIT`` s). One never reached fails at once (a wrong name, say)."""
        import requests

        delay, deadline = 0.25, time.monotonic() + REACH_WAIT
        while True:
            try:
                resp = self.session.request(method, url, headers=headers, timeout=(10, 300), **kwargs)
            except requests.exceptions.SSLError:
                raise
            except requests.ConnectionError:
                if not (replayable and self._reached) or self.cancelled.is_set() \
                        or time.monotonic() + delay > deadline:
                    raise
                self.cancelled.wait(delay)
                delay = min(2 * delay, 2.0)
                continue
            self._reached = True
            return resp

    def _refusal(self, method: str, url: str, scopes: tuple[str, ...], status: int, reason: str, body: bytes, *,
                 not_found: str | None = None) -> RegistryError:
        """The error for an answer that is not a success, with the registry's words."""
        text, code = _error_text_of(status, reason, body)
        if status == 404 and not_found:
            return NotFoundError(f"{not_found} ({text})", status=status, code=code)
        if status in (401, 403):
            return AuthError(self._denied(scopes, text), status=status, code=code)
        return RegistryError(f"{method} {url.replace(self.base_url, '')}: {text}", status=status, code=code)

    def _denied(self, scopes: tuple[str, ...], text: str) -> str:
        """Why a request was refused, in words that say what to do.

        A gateway answers the same for a repository that does not exist and one the
        caller may not see, so a refused read says both possibilities.
        """
        from ecr_oci.registry.auth import not_logged_in

        repository_scopes = [s.split(":") for s in scopes if s.startswith("repository:")]
        if not repository_scopes:
            if self.auth.credentials is None:
                return f"{not_logged_in(self.registry)} ({text})"
            return f"access denied by {self.registry} to user {self.auth.credentials.username!r} ({text})"
        _, *name_parts, actions = repository_scopes[0]
        repository = ":".join(name_parts)
        user = self.auth.credentials.username if self.auth.credentials else None
        if "push" in actions.split(",") or "delete" in actions.split(","):
            verb = "delete from" if "delete" in actions else "push to"
            if user is None:
                return f"{verb} {self.registry}/{repository} needs a login: {not_logged_in(self.registry)}"
            return (f"user {user!r} may not {verb} {self.registry}/{repository} (not your namespace and no write"
                    f" grant; `ecr repo grant` gives one)")
        if user is None:
            return (f"{self.registry}/{repository}: not found, or not visible without a login"
                    f" ({not_logged_in(self.registry)})")
        return f"{self.registry}/{repository}: not found, or user {user!r} has no access to it"

    @staticmethod
    def scope(repository: str, actions: str = "pull") -> str:
        return f"repository:{repository}:{actions}"

    def ping(self) -> None:
        """Check that the registry speaks the distribution API (auth included)."""
        self.request("GET", "/v2/", scopes=())

    # --- manifests ------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest, verifying its digest.

        Raises:
            NotFoundError: no such manifest.
            DigestMismatchError: the bytes do not match the requested digest.
        """
        resp = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scopes=(self.scope(repository),),
            headers={"Accept": MANIFEST_ACCEPT},
            not_found=f"{self.registry}/{repository}{at(reference)} not found",
        )
        data = resp.content
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"manifest {reference} is larger than {MAX_MANIFEST_BYTES} bytes")
        digest = sha256_bytes(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(f"manifest {reference} has digest {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0]
        if media_type not in mt.MANIFEST_TYPES:
            media_type = json.loads(data).get("mediaType", media_type)
        return Manifest(data=data, media_type=media_type, digest=digest)

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest of a manifest, or None when it does not exist."""
        resp = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scopes=(self.scope(repository),),
            headers={"Accept": MANIFEST_ACCEPT},
            ok=(200, 404),
        )
        if resp.status_code == 404:
            return None
        return resp.headers.get("Docker-Content-Digest")

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest under a tag or its digest; returns its digest.

        Raises:
            RegistryError: the registry refused it (message carries the OCI error code).
        """
        digest, _ = self.put_manifest_checked(repository, reference, data, media_type)
        return digest

    def put_manifest_checked(
        self, repository: str, reference: str, data: bytes, media_type: str
    ) -> tuple[str, dict[str, str]]:
        """Like :meth:`put_manifest`, also returning the response headers (``OCI-Subject``)."""
        digest = sha256_bytes(data)
        resp = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scopes=(self.scope(repository, "pull,push"),),
            headers={"Content-Type": media_type},
            data=data,
            ok=(201,),
        )
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned != digest:
            raise DigestMismatchError(f"registry stored manifest as {returned}, expected {digest}")
        return digest, dict(resp.headers)

    def delete_manifest(self, repository: str, digest: str) -> None:
        self.request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scopes=(self.scope(repository, "delete"),),
            ok=(202,),
            not_found=f"{repository}@{digest} not found",
        )

    # --- listing --------------------------------------------------------------------
    def _paginated(self, url: str, key: str, scopes: tuple[str, ...], not_found: str) -> list[str]:
        items: list[str] = []
        next_url: str | None = url
        while next_url:
            resp = self.request("GET", next_url, scopes=scopes, not_found=not_found)
            items += resp.json().get(key) or []
            link = resp.headers.get("Link", "")
            next_url = link.split(";")[0].strip("<> ") if 'rel="next"' in link else None
        return items

    def tags(self, repository: str) -> list[str]:
        """All tags of a repository, in the registry's order."""
        return self._paginated(
            f"/v2/{repository}/tags/list?n=1000",
            "tags",
            (self.scope(repository),),
            f"repository {self.registry}/{repository} not found",
        )

    def catalog(self) -> list[str]:
        """Repositories the caller may see."""
        return self._paginated(
            "/v2/_catalog?n=1000", "repositories", ("registry:catalog:*",), "catalog not available"
        )

    def referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of manifests whose ``subject`` is ``digest``.

        Uses the OCI 1.1 referrers API and falls back to the ``sha256-<hex>`` tag schema
        on registries without it (Distribution 2.8).
        """
        params = {"artifactType": artifact_type} if artifact_type else None
        resp = self.request(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            scopes=(self.scope(repository),),
            params=params,
            headers={"Accept": mt.OCI_INDEX},
            ok=(200, 404),
        )
        if resp.status_code == 200 and resp.headers.get("Content-Type", "").startswith(mt.OCI_INDEX):
            manifests: list[dict[str, Any]] = resp.json().get("manifests") or []
            filtered = "artifactType" in resp.headers.get("OCI-Filters-Applied", "")
        else:
            try:
                index = self.get_manifest(repository, f"sha256-{hex_of(digest)}").json()
            except NotFoundError:
                return []
            manifests = index.get("manifests") or []
            filtered = False
        if artifact_type and not filtered:
            manifests = [m for m in manifests if m.get("artifactType") == artifact_type]
        return manifests

    # --- blobs ----------------------------------------------------------------------
    def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of a blob the repository holds, or None when it does not hold it."""
        resp = self.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scopes=(self.scope(repository),),
            ok=(200, 404, 500),
            allow_redirects=True,
        )
        if resp.status_code in (404, 500):
            # 500: Distribution cannot read its record of the blob (an empty link file left
            # by a full disk, say): not proof of presence; uploading it writes the record anew.
            return None
        return int(resp.headers.get("Content-Length", "0"))

    def _start_upload(
        self, repository: str, digest: str | None = None, mount_from: str | None = None
    ) -> tuple[bool, str]:
        """Open an upload session or mount; returns (mounted, upload location)."""
        scopes: tuple[str, ...] = (self.scope(repository, "pull,push"),)
        params: dict[str, str] = {}
        if mount_from and digest:
            scopes += (self.scope(mount_from),)
            params = {"mount": digest, "from": mount_from}
        elif location := self._start_upload_directly(repository, scopes):
            return False, location
        resp = self.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            scopes=scopes,
            params=params,
            ok=(201, 202),
        )
        location = urljoin(self.base_url, resp.headers.get("Location", ""))
        return resp.status_code == 201, location

    def _start_upload_directly(self, repository: str, scopes: tuple[str, ...]) -> str | None:
        """Open an upload session with the standard library (plain http, no proxy);
        None when that was not possible or not answered 202.

        Anything else (an auth challenge, "retry later", a refusal) creates no session,
        so :meth:`request` asks again and deals with it as with any request.
        """
        url = f"{self.base_url}/v2/{repository}/blobs/uploads/"
        if not filesend.can_send_directly(url):
            return None
        try:
            answer = filesend.send("POST", url, {"User-Agent": USER_AGENT, **self.auth.header_for(scopes)})
        except (OSError, http.client.HTTPException):
            return None
        self._reached = True
        if answer.status != 202 or "Location" not in answer.headers:
            return None
        return urljoin(self.base_url, answer.headers["Location"])

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount; True when the registry linked the blob without a copy."""
        mounted, location = self._start_upload(repository, digest, from_repository)
        if not mounted:
            self.request("DELETE", location, scopes=(self.scope(repository, "pull,push"),), ok=(204, 404))
        return mounted

    def upload_bytes(self, repository: str, data: bytes) -> str:
        """Upload a small blob in one request (skipped when present); returns its digest."""
        digest = sha256_bytes(data)
        if self.blob_size(repository, digest) is None:
            _, location = self._start_upload(repository)
            self.request(
                "PUT",
                location,
                scopes=(self.scope(repository, "pull,push"),),
                params={"digest": digest},
                headers={"Content-Type": "application/octet-stream"},
                data=data,
                ok=(201,),
            )
        return digest

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        read_from: Callable[[int], Iterator[bytes]],
        progress: Progress | None = None,
        *,
        sessions: UploadSessions | None = None,
    ) -> int:
        """Chunked, resumable upload of a blob whose digest and size are known.

        Args:
            read_from: returns an iterator over the blob's bytes starting at an offset
                (called again with the server's offset after a broken connection).
            progress: called with the number of bytes each time some are sent.
            sessions: where the upload session is remembered, so that a later run
                resumes it at the registry's offset instead of starting over.

        Returns:
            the offset the upload resumed from (0 for a fresh upload).

        Raises:
            RegistryError: the upload failed after retries.
            Interrupted: :attr:`cancelled` was set; the session is remembered.
        """
        _, resumed_from = self._upload(repository, size, read_from, progress, sessions=sessions,
                                       session_key=digest, digest=digest)
        return resumed_from

    def upload_hashing(
        self,
        repository: str,
        size: int,
        read_from: Callable[[int], Iterator[bytes]],
        progress: Progress | None = None,
        *,
        sessions: UploadSessions | None = None,
        session_key: str,
    ) -> tuple[str, int]:
        """Upload bytes whose digest is not known yet, hashing them as they are sent.

        A new file is read once: the digest the upload is closed with is that of the
        bytes the registry received (which checks it again). A resumed upload hashes
        the part the registry already holds from ``read_from(0)`` without sending it.

        Args:
            session_key: what identifies these bytes in ``sessions`` (a file's identity:
                there is no digest to key them by yet).

        Returns:
            (digest, the offset the upload resumed from).

        Raises:
            RegistryError, Interrupted: as :meth:`upload_blob`.
        """
        return self._upload(repository, size, read_from, progress, sessions=sessions,
                            session_key=session_key, digest=None)

    def _upload(
        self,
        repository: str,
        size: int,
        read_from: Callable[[int], Iterator[bytes]],
        progress: Progress | None,
        *,
        sessions: UploadSessions | None,
        session_key: str,
        digest: str | None,
    ) -> tuple[str, int]:
        """The chunked upload behind :meth:`upload_blob` (``digest`` known) and
        :meth:`upload_hashing` (``digest`` None: computed from the bytes sent)."""
        scopes = (self.scope(repository, "pull,push"),)
        saved = sessions.get(self.registry, repository, session_key) if sessions else None
        offset, location = self._session_for(repository, size, scopes, saved)
        resumed_from = offset

        def remember(where: str) -> None:
            if sessions:
                sessions.put(self.registry, repository, session_key, where)

        hasher = _RunningHash(read_from) if digest is None else None
        try:
            failures = 0
            while True:
                running = hasher if digest is None else None  # sent again after the PUT: already hashed
                location, failures = self._send_rest(repository, scopes, location, offset, size, read_from,
                                                     progress, running, remember, failures,
                                                     label=digest or session_key)
                if running:
                    running.move_to(size)
                    digest = running.digest()
                assert digest is not None
                if self._close(repository, scopes, location, digest, size):
                    break
                failures += 1  # the session is gone and the blob is not there: send it again
                if failures >= RETRIES:
                    raise RegistryError(f"upload of {digest}: the registry lost the upload session {failures} times")
                offset, location = 0, self._start_upload(repository)[1]
            if sessions:
                sessions.forget(self.registry, repository, session_key)
            return digest, resumed_from
        finally:
            if hasher:
                hasher.close()  # its thread ends however the upload ended

    def _session_for(self, repository: str, size: int, scopes: tuple[str, ...],
                     saved: str | None) -> tuple[int, str]:
        """(offset, location) of the upload session to send to: a remembered one the
        registry still holds (an interrupted push resumes there), else a new one."""
        if saved:
            try:
                offset, location = self._upload_status(saved, scopes)
                if offset <= size:
                    return offset, location
            except RegistryError:
                pass  # the registry forgot it (expired, or broken mid-chunk)
        return 0, self._start_upload(repository)[1]

    def _send_rest(self, repository: str, scopes: tuple[str, ...], location: str, offset: int, size: int,
                   read_from: Callable[[int], Iterator[bytes]], progress: Progress | None,
                   hasher: _RunningHash | None, remember: Callable[[str], None], failures: int, *,
                   label: str) -> tuple[str, int]:
        """PATCH bytes ``offset``..``size`` in chunks, going on after broken chunks where
        the registry stands; returns (the session's location, failures so far).

        Raises:
            RegistryError: ``RETRIES`` failures in all.
            Interrupted: :attr:`cancelled` was set (the body ended cleanly at a chunk
                boundary, so the registry keeps what it got; the session is remembered).
        """
        stream = _Reader(read_from(offset))
        while offset < size:
            remember(location)
            if hasher:
                hasher.move_to(offset)
            end = min(offset + self.chunk_size, size)
            headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{end - 1}"}
            try:
                if isinstance(read_from, FileRange) and filesend.can_send_directly(location):
                    answer = self._patch_from_file(location, scopes, headers, read_from, offset, end, progress,
                                                   hasher)
                else:
                    body = _counting(stream.take(end - offset), progress, self.cancelled, hasher)
                    answer = self.request("PATCH", location, scopes=scopes, headers=headers, ok=(202,),
                                          retry_auth=False, data=body).headers
            except RegistryError:
                failures += 1
                if failures >= RETRIES or self.cancelled.is_set():
                    raise
                offset, location = self._resume_point(repository, location, scopes)
                stream = _Reader(read_from(offset))
                continue
            location = urljoin(self.base_url, answer.get("Location", location))
            if self.cancelled.is_set():
                remember(location)
                stored = _range_end(answer.get("Range"))
                raise Interrupted(f"upload of {label} interrupted after {stored} of {size} bytes")
            offset = end
        return location, failures

    def _close(self, repository: str, scopes: tuple[str, ...], location: str, digest: str, size: int) -> bool:
        """Close the upload with its digest: True when the blob is stored; False when the
        session is gone and the blob is not there (the bytes must go again)."""
        try:
            self.request("PUT", location, scopes=scopes, params={"digest": digest},
                         headers={"Content-Length": "0"}, ok=(201,))
            return True
        except RegistryError as refused:
            if refused.code not in ("BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"):
                raise
        # Sent again after a lost answer (a gateway restarted under it), the PUT may have
        # been carried out already: the blob is there.
        return self.blob_size(repository, digest) == size

    def _resume_point(self, repository: str, location: str, scopes: tuple[str, ...]) -> tuple[int, str]:
        """Where an upload goes on after a failed chunk: (offset, location).

        The registry's offset of the session (asking waits for a registry or gateway being
        restarted, see :meth:`_send`); a new session from byte 0 when the registry forgot
        it (Distribution invalidates a session whose chunk broke half-way, BLOB_UPLOAD_INVALID).
        """
        try:
            return self._upload_status(location, scopes)
        except RegistryError as refused:
            if refused.status is None:
                raise  # still not reachable
            return 0, self._start_upload(repository)[1]

    def _patch_from_file(self, location: str, scopes: tuple[str, ...], headers: dict[str, str], source: FileRange,
                         start: int, end: int, progress: Progress | None,
                         hasher: _RunningHash | None) -> Mapping[str, str]:
        """One PATCH with the bytes sent from the file by the kernel (``filesend``);
        the answer's headers. Failures raise as :meth:`request` does."""
        sent = {**headers, "User-Agent": USER_AGENT, **self.auth.header_for(scopes)}
        try:
            answer = filesend.patch_from_file(location, sent, source, start, end, cancelled=self.cancelled,
                                              progress=progress, hash_update=hasher.update if hasher else None)
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(f"cannot reach registry {self.registry}: {exc.__class__.__name__}") from exc
        self._reached = True
        if answer.status == 202:
            return answer.headers
        raise self._refusal("PATCH", location, scopes, answer.status, answer.reason, answer.body)

    def _upload_offset(self, location: str, scopes: tuple[str, ...]) -> int:
        """Bytes the registry holds of an upload session."""
        return self._upload_status(location, scopes)[0]

    def _upload_status(self, location: str, scopes: tuple[str, ...]) -> tuple[int, str]:
        """Where the registry says an upload session stands: (offset, current location)."""
        resp = self.request("GET", location, scopes=scopes, ok=(204,))
        return _range_end(resp.headers.get("Range")), urljoin(self.base_url, resp.headers.get("Location", location))

    def upload_file(self, repository: str, path: Path, progress: Progress | None = None) -> str:
        """Upload a file as a blob unless present; returns its digest."""
        digest, size = sha256_file(path)
        if self.blob_size(repository, digest) is None:
            self.upload_blob(repository, digest, size, lambda start: _iter_path(path, start), progress)
        return digest

    def open_blob(self, repository: str, digest: str, start: int = 0) -> requests.Response:
        """A streaming response for a blob (from ``start``); the caller closes it."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        return self.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            scopes=(self.scope(repository),),
            headers=headers,
            ok=(200, 206),
            not_found=f"blob {digest} not found in {self.registry}/{repository}",
            stream=True,
        )

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A small blob's bytes, verified."""
        with self.open_blob(repository, digest) as resp:
            data = resp.content
        if sha256_bytes(data) != digest:
            raise DigestMismatchError(f"blob {digest} does not match its content")
        return data

    def download_blob(
        self,
        repository: str,
        digest: str,
        dest: Path,
        size: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Download a blob to ``dest`` atomically, verifying size and digest.

        A ``dest.part`` left by an interrupted download is resumed with a Range
        request; nothing is left at ``dest`` unless it verified.

        Raises:
            DigestMismatchError: the content does not match (the partial file is removed).
        """
        import requests

        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(RETRIES):
            start = part.stat().st_size if part.exists() else 0
            if size is not None and start > size:
                part.unlink()
                start = 0
            with part.open("ab" if start else "wb") as fh:
                writer = VerifyingWriter(fh, digest, size)
                if start:
                    for chunk in _iter_path(part, 0, limit=start):
                        writer.already_written(chunk)  # re-hash what an earlier attempt kept
                    if progress:
                        progress(start)
                try:
                    with self.open_blob(repository, digest, start) as resp:
                        if start and resp.status_code == 200:
                            # Server ignored Range: start over.
                            fh.seek(0)
                            fh.truncate()
                            writer = VerifyingWriter(fh, digest, size)
                        for chunk in resp.iter_content(CHUNK):
                            if self.cancelled.is_set():
                                raise Interrupted(f"download of {digest} interrupted (kept for a resume)")
                            writer.write(chunk)
                            if progress:
                                progress(len(chunk))
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                    if attempt == RETRIES - 1:
                        raise RegistryError(f"download of {digest} kept failing") from None
                    continue
            try:
                writer.verify()
            except DigestMismatchError:
                part.unlink(missing_ok=True)
                if start and attempt < RETRIES - 1:
                    continue  # the kept partial file was bad: start over once
                raise
            part.replace(dest)
            return


def _iter_path(path: Path, start: int, limit: int | None = None) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        remaining = limit
        while True:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            if want == 0:
                return
            data = fh.read(want)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


class _Reader:
    """An iterator of byte chunks that can hand out exactly N bytes at a time."""

    def __init__(self, stream: Iterator[bytes]) -> None:
        self._stream = stream
        self._pending = b""

    def take(self, count: int) -> Iterator[bytes]:
        while count > 0:
            chunk, self._pending = (self._pending, b"") if self._pending else (next(self._stream, b""), b"")
            if not chunk:
                return
            if len(chunk) > count:
                chunk, self._pending = chunk[:count], chunk[count:]
            count -= len(chunk)
            yield chunk


def _counting(body: Iterator[bytes], progress: Progress | None, cancelled: threading.Event,
              hasher: _RunningHash | None = None) -> Iterator[bytes]:
    """The body of a PATCH; ends early (cleanly, so the registry keeps what it got) on cancel."""
    for chunk in body:
        if cancelled.is_set():
            return
        if hasher:
            hasher.update(chunk)
        if progress:
            progress(len(chunk))
        yield chunk


class _RunningHash:
    """The sha256 of an upload's bytes up to the offset being sent.

    Fed each chunk as it is handed to the connection, and hashed in a thread of its own
    (hashlib releases the GIL), so the connection is not left idle while a chunk is
    hashed: the registry, hashing too, is what bounds a local upload. When the
    registry's offset is behind (a broken chunk) or ahead (a resumed session),
    :meth:`move_to` re-reads the prefix from the source instead of sending it again.
    """

    def __init__(self, read_from: Callable[[int], Iterator[bytes]]) -> None:
        self._read_from = read_from
        self._hash = hashlib.sha256()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=2)  # bounds memory to a few chunks
        self._worker: threading.Thread | None = None
        self.offset = 0

    def update(self, chunk: bytes) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._hash_chunks, name="ecr-upload-hash", daemon=True)
            self._worker.start()
        self._chunks.put(chunk)
        self.offset += len(chunk)

    def _hash_chunks(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._hash.update(chunk)

    def close(self) -> None:
        """Wait until every chunk handed over is hashed (and the thread has ended)."""
        if self._worker is not None:
            self._chunks.put(None)
            self._worker.join()
            self._worker = None

    def move_to(self, offset: int) -> None:
        if offset == self.offset:
            return
        self.close()
        if offset < self.offset:
            self._hash, self.offset = hashlib.sha256(), 0
        for chunk in _Reader(self._read_from(self.offset)).take(offset - self.offset):
            self._hash.update(chunk)
            self.offset += len(chunk)
        if self.offset != offset:
            raise RegistryError(f"the source ended at {self.offset} bytes, before the upload offset {offset}")

    def digest(self) -> str:
        self.close()
        return "sha256:" + self._hash.hexdigest()


def _range_end(header: str | None) -> int:
    """Bytes a registry holds of an upload, from its ``Range: 0-<last>`` header."""
    try:
        end = int((header or "0-0").split("-")[-1])
    except ValueError:
        return 0
    return end + 1 if end > 0 else 0

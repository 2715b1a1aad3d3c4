"""Browser sessions: a signed cookie, CSRF tokens bound to it, and a failed-login brake.

The cookie holds ``{"sid", "user", "exp"}`` (base64url JSON) and an HMAC-SHA256 of it
under a key kept in ``<data-dir>/keys/web-session.key`` (0600, made on first use).
Nothing secret is in the cookie, and nothing in it is trusted without the HMAC; the
account is looked up again on every request, so a removed account is signed out at
once. A form's CSRF token is an HMAC of the session id: a page served to one session
carries a token no other session can use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "ecr_session"
LIFETIME = 12 * 3600
# Failed sign-ins: after FREE_FAILURES for one user name (or FREE_ADDRESS_FAILURES from
# one client address, which many people may share behind NAT) within FAILURE_WINDOW
# seconds, each further attempt waits 1, 2, 4 ... up to MAX_DELAY seconds. The gateway's
# own LoginThrottle refuses outright past its higher limits.
FREE_FAILURES = 3
FREE_ADDRESS_FAILURES = 20
FAILURE_WINDOW = 900.0
MAX_DELAY = 16.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """One browser's session; ``user`` None for a visitor who has not signed in."""

    sid: str
    user: str | None
    expires: float


class SessionCodec:
    """Signs and checks session cookies and CSRF tokens.

    Args:
        keys_dir: where the HMAC key lives (gateways sharing sessions share this file).
    """

    def __init__(self, keys_dir: Path) -> None:
        path = keys_dir / "web-session.key"
        if not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another gateway process made it first
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(32))
        self._key = path.read_bytes()

    def _mac(self, purpose: str, data: bytes) -> str:
        return _b64(hmac.new(self._key, purpose.encode() + b"\0" + data, hashlib.sha256).digest())

    def new(self, user: str | None) -> Session:
        return Session(secrets.token_urlsafe(18), user, time.time() + LIFETIME)

    def encode(self, session: Session) -> str:
        payload = json.dumps({"sid": session.sid, "user": session.user, "exp": int(session.expires)},
                             separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._mac('cookie', payload)}"

    def decode(self, value: str | None) -> Session | None:
        """The session a cookie holds, or None when absent, forged or expired."""
        if not value or len(value) > 1024 or "." not in value:
            return None
        body, _, mac = value.partition(".")
        try:
            payload = _unb64(body)
            if not hmac.compare_digest(mac, self._mac("cookie", payload)):
                return None
            data = json.loads(payload)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        user, expires = data.get("user"), data.get("exp")
        if not isinstance(expires, int) or expires < time.time() or not (user is None or isinstance(user, str)):
            return None
        return Session(data["sid"], user, float(expires))

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.sid.encode())

    def csrf_valid(self, session: Session | None, token: str | None) -> bool:
        return bool(session and token and hmac.compare_digest(token, self.csrf_token(session)))


class LoginBrake:
    """Counts recent failed sign-ins per client address and per user name."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < FAILURE_WINDOW]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def delay(self, address: str, user: str) -> float:
        """Seconds the next attempt waits before its password is even checked."""
        now = time.time()
        over = max(len(self._recent(f"user:{user}", now)) - FREE_FAILURES,
                   len(self._recent(f"addr:{address}", now)) - FREE_ADDRESS_FAILURES)
        return 0.0 if over < 0 else float(min(2.0 ** over, MAX_DELAY))

    def failed(self, address: str, user: str) -> None:
        now = time.time()
        if len(self._failures) > 100000:
            self._failures.clear()
        for key in (f"addr:{address}", f"user:{user}"):
            self._failures.setdefault(key, []).append(now)
            del self._failures[key][:-64]

    def succeeded(self, user: str) -> None:
        self._failures.pop(f"user:{user}", None)

"""Password hashing (scrypt) and generated secrets.

Passwords chosen by people go through scrypt (memory-hard, stdlib). Secrets the
gateway generates (node credentials, API tokens) carry 256 bits of entropy, so a
SHA-256 of them is enough and lets the store look them up by hash in one query.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# scrypt cost: N=2**14, r=8 needs 16 MiB and ~50 ms here: slow enough for an attacker
# holding the database, fast enough for one check per token request.
_N, _R, _P, _LEN = 1 << 14, 8, 1, 32
SECRET_PREFIX = "ecr_"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    """An encoded scrypt hash: ``scrypt$N$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LEN)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches the encoded hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password, to spend the same time on names that have none."""
    return hash_password(secrets.token_urlsafe(16))


def new_secret() -> str:
    """A generated credential (node secret or API token)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """How a generated secret is stored: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()

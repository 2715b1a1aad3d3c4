"""Forged, expired and misused tokens are refused by the gateway and by the registry port."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from ecr_oci.gateway.tokens import SigningKey, TokenIssuer
from tests.gateway.support import GatewayProcess

PULL_PUB = [{"type": "repository", "name": "alice/pub", "actions": ["pull"]}]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def alg_none(claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def claims(audience: str, access: list[dict[str, Any]], *, exp_offset: int = 300) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "ecr-gateway", "sub": "alice", "aud": audience, "iat": now - 10, "nbf": now - 10,
            "exp": now + exp_offset, "jti": "x", "access": access}


def signed(key: SigningKey, body: dict[str, Any], *, other_key: bool = False) -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if other_key else key.private_key
    # Even with the genuine certificate in x5c, a signature by another key must fail.
    return jwt.encode(body, private, algorithm="RS256", headers={"x5c": key.x5c})


def tampered(token: str, access: list[dict[str, Any]]) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["access"] = access
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"


def forged(key: SigningKey, audience: str) -> dict[str, str]:
    """Every kind of bad token for a pull of alice/pub."""
    good = signed(key, claims(audience, PULL_PUB))
    return {
        "expired": signed(key, claims(audience, PULL_PUB, exp_offset=-120)),
        "wrong-audience": signed(key, claims("someone-else", PULL_PUB)),
        "wrong-signature": signed(key, claims(audience, PULL_PUB), other_key=True),
        "alg-none": alg_none(claims(audience, PULL_PUB)),
        "tampered-access": tampered(good, [{"type": "repository", "name": "alice/priv", "actions": ["pull"]}]),
    }


def keys(gw: GatewayProcess, name: str) -> SigningKey:
    return SigningKey(Path(gw.data_dir) / "keys", name)


def get(url: str, token: str, method: str = "GET") -> requests.Response:
    return requests.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.mark.parametrize("kind", ["expired", "wrong-audience", "wrong-signature", "alg-none", "tampered-access"])
def test_gateway_refuses(gw: GatewayProcess, kind: str) -> None:
    token = forged(keys(gw, "client"), "ecr")[kind]
    target = "alice/priv" if kind == "tampered-access" else "alice/pub"
    resp = get(f"{gw.url}/v2/{target}/tags/list", token)
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_gateway_control_token_works(gw: GatewayProcess) -> None:
    token = signed(keys(gw, "client"), claims("ecr", PULL_PUB))
    assert get(f"{gw.url}/v2/alice/pub/tags/list", token).status_code == 200


def test_gateway_refuses_scope_escalation(gw: GatewayProcess) -> None:
    token = gw.token("eve", "repository:alice/pub:pull")["token"]
    for method, path in (("POST", "/v2/alice/pub/blobs/uploads/"), ("DELETE", f"/v2/alice/pub/manifests/{'1.0.0'}"),
                         ("GET", "/v2/alice/prot/tags/list")):
        assert get(gw.url + path, token, method).status_code == 401
    # A token naming an action policy never granted (minted with the real key, as if
    # leaked from a bug) is still cut down by the per-request policy check.
    escalated = signed(keys(gw, "client"), {**claims("ecr", [{"type": "repository", "name": "alice/priv",
                                                                "actions": ["pull"]}]), "sub": "eve"})
    assert get(f"{gw.url}/v2/alice/priv/tags/list", escalated).status_code == 401


def test_registry_port_refuses(gw: GatewayProcess) -> None:
    url = gw.registry_url()
    upstream = keys(gw, "upstream")
    assert requests.get(f"{url}/v2/alice/pub/tags/list", timeout=10).status_code == 401
    for kind, token in forged(upstream, "ecr-registry").items():
        target = "alice/priv" if kind == "tampered-access" else "alice/pub"
        assert get(f"{url}/v2/{target}/tags/list", token).status_code == 401, kind
    # A client token, valid at the gateway, is worthless at the registry port.
    client_token = gw.token("alice", "repository:alice/pub:pull")["token"]
    assert get(f"{url}/v2/alice/pub/tags/list", client_token).status_code == 401
    # Scope escalation: a pull token does not push.
    pull_only = signed(upstream, claims("ecr-registry", PULL_PUB))
    assert get(f"{url}/v2/alice/pub/blobs/uploads/", pull_only, "POST").status_code == 401
    # Control: a genuine upstream token works, so the refusals above mean something.
    issuer = TokenIssuer(upstream, issuer="ecr-gateway", audience="ecr-registry")
    genuine, _ = issuer.mint("test", PULL_PUB)
    assert get(f"{url}/v2/alice/pub/tags/list", genuine).status_code == 200

"""Scale-out: two ``ecr serve`` processes share one PostgreSQL state store and one registry.

Gateway A runs the embedded registry; gateway B fronts the same registry
(``--registry-url``). What the two must share besides the store: ``<data-dir>/keys``
(B gets a copy of A's before it starts) so that a client token minted by one is
accepted by the other, and the registry trusts B's upstream tokens; the registry
itself. Each keeps its own data directory for the rest (audit log, logs).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
import requests

from ecr_oci.gateway.client import GatewayAdmin
from ecr_oci.registry.auth import Credentials
from tests.gateway.pgserver import PostgresServer
from tests.gateway.support import PASSWORDS, GatewayProcess, push_image, verified_cosign_payload

Pair = tuple[GatewayProcess, GatewayProcess]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Pair]:
    url = postgres.create_database("scaleout")
    a = GatewayProcess(tmp_path_factory.mktemp("gateway-a") / "data", extra_args=["--state-url", url])
    b = GatewayProcess(tmp_path_factory.mktemp("gateway-b") / "data",
                       extra_env={"ECR_STATE_URL": url})  # the environment variable works as well
    try:
        a.start()
        b.extra_args = ["--registry-url", a.registry_url()]
        shutil.copytree(a.data_dir / "keys", b.data_dir / "keys")  # before B's first start: else it makes its own
        b.start()
        # the users every test relies on: alice (through A) and eve (through B)
        a.admin().add_user("alice", PASSWORDS["alice"])
        b.admin().add_user("eve", PASSWORDS["eve"])
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_user_added_on_one_gateway_logs_in_at_the_other(pair: Pair) -> None:
    a, b = pair
    a.admin().add_user("carol", PASSWORDS["carol"])
    b.admin().add_user("dave", "dave-password")
    assert GatewayAdmin(b.url, Credentials("carol", PASSWORDS["carol"])).whoami()["name"] == "carol"
    assert GatewayAdmin(a.url, Credentials("dave", "dave-password")).whoami()["name"] == "dave"
    token = requests.get(f"{b.url}/auth/token", params={"service": "ecr", "scope": "repository:carol/app:pull"},
                         auth=("carol", PASSWORDS["carol"]), timeout=30)
    assert token.status_code == 200 and token.json()["token"]
    wrong = requests.get(f"{b.url}/auth/token", params={"service": "ecr"}, auth=("carol", "not-it"), timeout=30)
    assert wrong.status_code == 401


def test_push_through_one_is_pullable_through_the_other(pair: Pair) -> None:
    a, b = pair
    digest, manifest = push_image(a.client("alice"), "alice/app", "1.0.0", payload=b"pushed through A")
    at_b = b.client("alice")
    assert at_b.get_manifest("alice/app", "1.0.0").digest == digest
    assert b.client(None).get_blob("alice/app", _layer(manifest)) == b"pushed through A"  # public by default
    # and the other way round: B's upstream tokens are good at A's registry (shared keys)
    digest_b, manifest_b = push_image(at_b, "alice/app", "2.0.0", payload=b"pushed through B")
    assert a.client("eve").get_manifest("alice/app", "2.0.0").digest == digest_b
    assert sorted(a.client(None).tags("alice/app")) == ["1.0.0", "2.0.0"]
    # a release tag recorded through A is immutable through B too
    again = b.call("alice", "PUT", "/v2/alice/app/manifests/1.0.0", "repository:alice/app:pull,push",
                   data=manifest_b, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert again.status_code == 403 and "released version" in again.text
    assert a.client("alice").head_manifest("alice/app", "1.0.0") == digest


def test_protected_on_one_is_invisible_to_anonymous_on_the_other(pair: Pair) -> None:
    a, b = pair
    push_image(a.client("alice"), "alice/secret", "1.0.0", payload=b"secret")
    assert b.call(None, "GET", "/v2/alice/secret/tags/list", "repository:alice/secret:pull").status_code == 200
    a.admin("alice").set_visibility("alice/secret", "protected")
    anonymous = b.call(None, "GET", "/v2/alice/secret/tags/list", "repository:alice/secret:pull")
    assert anonymous.status_code == 401
    assert "alice/secret" not in b.call(None, "GET", "/v2/_catalog", "registry:catalog:*").json()["repositories"]
    assert b.call("eve", "GET", "/v2/alice/secret/tags/list", "repository:alice/secret:pull").status_code == 401
    assert b.client("alice").tags("alice/secret") == ["1.0.0"]
    # a grant made on B takes effect on A at once
    b.admin("alice").grant("alice/secret", "eve", "read")
    assert a.call("eve", "GET", "/v2/alice/secret/tags/list", "repository:alice/secret:pull").status_code == 200


def test_a_token_from_one_gateway_is_good_at_the_other(pair: Pair) -> None:
    a, b = pair
    push_image(a.client("alice"), "alice/tokened", "1.0.0", payload=b"tokened")
    token = a.token("alice", "repository:alice/tokened:pull")["token"]
    resp = requests.get(f"{b.url}/v2/alice/tokened/tags/list", headers={"Authorization": f"Bearer {token}"},
                        timeout=30)
    assert resp.status_code == 200 and resp.json()["tags"] == ["1.0.0"]
    # a token from a gateway with other keys is refused: the acceptance above is the shared keys
    forged = requests.get(f"{b.url}/v2/alice/tokened/tags/list", headers={"Authorization": "Bearer " + token[:-4]
                          + ("AAAA" if not token.endswith("AAAA") else "BBBB")}, timeout=30)
    assert forged.status_code == 401


def test_node_approved_on_one_pulls_through_the_other(pair: Pair) -> None:
    a, b = pair
    digest, _ = push_image(a.client("alice"), "alice/edge", "1.0.0", payload=b"edge")
    a.admin("alice").set_visibility("alice/edge", "private")
    b.nodes["node-n"] = a.nodes["node-n"] = a.admin().add_node("node-n", ["neon"])
    node = b.client("node-n")
    assert b.call("node-n", "GET", "/v2/alice/edge/manifests/1.0.0", "repository:alice/edge:pull").status_code == 401
    a.admin().set_stage("alice/edge", "1.0.0", "approved", "neon")
    assert node.get_manifest("alice/edge", "1.0.0").digest == digest


def test_the_first_gateway_still_countersigns_after_the_second_started(pair: Pair) -> None:
    a, b = pair
    digest, _ = push_image(a.client("alice"), "alice/signed", "1.0.0", payload=b"signed")
    answer = a.admin().set_stage("alice/signed", "1.0.0", "approved", "neon")
    assert answer["countersignature"].startswith("sha256:")
    # the signature A made verifies with the key B serves (one shared countersigning key),
    # checked with `cryptography` against cosign's wire format, not with ecr_oci.trust
    served = requests.get(f"{b.url}/api/v1/signing-key", timeout=10)
    assert served.status_code == 200
    payload = verified_cosign_payload(b, "alice", "alice/signed", digest, served.content)
    assert payload["critical"]["type"] == "cosign container image signature"


def _layer(manifest: bytes) -> str:
    digest: str = json.loads(manifest)["layers"][0]["digest"]
    return digest

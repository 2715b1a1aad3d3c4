"""Backup and restore drill on the replicated setup (deploy/README.md, *Backup and restore*).

A setup of its own (bucket ``drill``, database ``drill``) holds signed bundles with
profiles, an approval and a protected repository. Backup in the read-only window:
``pg_dump`` of the state store, a copy of the gateways' ``keys/``, ``rclone copy`` of
the bucket. Then everything is wiped (gateways and registries stopped, database
dropped, bucket purged, data directories deleted) and restored in the opposite order;
every bundle pulls, verifies its signature and shows its profile again, the approval
and the access settings are back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.pgserver import PostgresServer, _bin_dir
from tests.scaleout.ceph import ACCESS_KEY, SECRET_KEY, CephCluster
from tests.scaleout.conftest import populated
from tests.scaleout.stack import ScaleOut
from tests.scaleout.support import attach_test_profile, ecr, keygen, push_signed, run
from tests.scaleout.tls import LocalCA

pytestmark = pytest.mark.slow

BUCKET = "drill"
BUNDLES = {"alice/drill-a": "1.0.0", "alice/drill-b": "2.0.0"}


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, pki: LocalCA, ceph: CephCluster,
          scaleout_postgres: PostgresServer) -> Iterator[ScaleOut]:
    if not shutil.which("rclone"):
        pytest.fail("rclone is not installed: run `make deps`")
    setup = populated(tmp_path_factory.mktemp("drill"), pki, ceph, scaleout_postgres.create_database("drill"),
                      BUCKET)
    yield setup
    setup.stop()


def rclone(stack: ScaleOut, *args: str) -> None:
    """rclone against the object store (S3 remote ``store``, configured by environment)."""
    env = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},  # --ca-cert instead
           "RCLONE_CONFIG_STORE_TYPE": "s3", "RCLONE_CONFIG_STORE_PROVIDER": "Ceph",
           "RCLONE_CONFIG_STORE_ENDPOINT": stack.ceph.endpoint, "RCLONE_CONFIG_STORE_ACCESS_KEY_ID": ACCESS_KEY,
           "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": SECRET_KEY, "RCLONE_CONFIG_STORE_REGION": "us-east-1"}
    done = run(["rclone", "--ca-cert", str(stack.pki.ca), *args], env=env, timeout=600)
    assert done.returncode == 0, done.stderr


def postgres_tool(tool: str, *args: str) -> None:
    bin_dir = _bin_dir()
    assert bin_dir is not None
    done = run([str(bin_dir / tool), *args], timeout=300)
    assert done.returncode == 0, done.stderr


def test_backup_wipe_restore(drill: ScaleOut, tiny_layout: Path, tmp_path: Path) -> None:
    stack = drill
    key, public = keygen(stack, tmp_path / "signer")
    weights = {}
    for repository, version in BUNDLES.items():
        weights[repository] = os.urandom(256 << 10)
        root = write_bundle(tmp_path / repository.replace("/", "_"), tiny_layout,
                            dict(BASE_METADATA, name=repository.split("/")[1], version=version),
                            weights=weights[repository])
        push_signed(stack, root, f"{stack.host}/{repository}:{version}", key)
        attach_test_profile(stack.client("alice"), repository, version)
    approved = ecr(stack, "admin", "stage", "set", f"{stack.host}/alice/drill-a:1.0.0", "approved",
                   "--deployment", "edge", "--server", stack.url)
    assert approved.returncode == 0, approved.stderr
    stack.gateways[0].admin("alice").set_visibility("alice/drill-b", "protected")

    # --- backup, in the read-only window -------------------------------------------------
    backup = tmp_path / "backup"
    backup.mkdir()
    started = time.monotonic()
    stack.set_read_only(True)
    postgres_tool("pg_dump", "-Fc", "-f", str(backup / "state.dump"), stack.state_url)
    shutil.copytree(stack.gateways[0].data_dir / "keys", backup / "keys")
    rclone(stack, "copy", f"store:{BUCKET}", str(backup / "bucket"))
    stack.set_read_only(False)
    backed_up = time.monotonic() - started

    # --- wipe ----------------------------------------------------------------------------
    for gateway in stack.gateways:
        gateway.stop()
    for replica in stack.registries:
        replica.stop()
    rclone(stack, "purge", f"store:{BUCKET}")
    database = stack.state_url.rsplit("/", 1)
    postgres_tool("dropdb", "--maintenance-db", f"{database[0]}/postgres", database[1])
    for gateway in stack.gateways:
        shutil.rmtree(gateway.data_dir)
    assert BUCKET not in subprocess.run(["radosgw-admin", "-c", str(stack.ceph.conf), "-n", "client.rgw.a",
                                         "bucket", "list"], capture_output=True, text=True).stdout

    # --- restore ---------------------------------------------------------------------------
    started = time.monotonic()
    postgres_tool("createdb", "--maintenance-db", f"{database[0]}/postgres", database[1])
    postgres_tool("pg_restore", "--no-owner", "-d", stack.state_url, str(backup / "state.dump"))
    stack.ceph.create_bucket(BUCKET, ca_file=stack.pki.ca)
    rclone(stack, "copy", str(backup / "bucket"), f"store:{BUCKET}")
    for gateway in stack.gateways:
        gateway.data_dir.mkdir(parents=True)
        shutil.copytree(backup / "keys", gateway.data_dir / "keys")
    for replica in stack.registries:
        replica.start()
    for gateway in stack.gateways:
        gateway.start()
    restored = time.monotonic() - started

    # --- every bundle pulls, verifies its signature, shows its profile ------------------------
    for repository, version in BUNDLES.items():
        ref = f"{stack.host}/{repository}:{version}"
        out = tmp_path / "pulled" / repository.replace("/", "_")
        pulled = ecr(stack, "alice", "pull", "--quiet", "--platform", "linux/arm64", "-o", str(out), ref)
        assert pulled.returncode == 0, pulled.stderr
        assert next(out.rglob("weights.bin")).read_bytes() == weights[repository]
        verified = ecr(stack, "alice", "verify", "--key", str(public), ref)
        assert verified.returncode == 0, verified.stderr
        shown = ecr(stack, "alice", "profile", "show", ref)
        assert shown.returncode == 0 and "W0S1" in shown.stdout, shown.stderr
    trail = ecr(stack, "admin", "stage", "list", "--json", f"{stack.host}/alice/drill-a", "--server", stack.url)
    assert trail.returncode == 0 and any(e.get("stage") == "approved" for e in json.loads(trail.stdout))
    hidden = ecr(stack, "eve", "pull", "--quiet", "-o", str(tmp_path / "eve"), f"{stack.host}/alice/drill-b:2.0.0")
    assert hidden.returncode != 0  # still protected
    print(f"\nbackup {backed_up:.1f} s (read-only window), restore {restored:.1f} s")

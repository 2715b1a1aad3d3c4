"""Faults survived: real parts killed or broken while clients work (deploy/README.md, "Faults").

Each test has a gateway of its own (they break storage, the registry, the state store).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.pgserver import PostgresServer
from tests.gateway.support import PASSWORDS, GatewayProcess, password_of


def ecr(gw: GatewayProcess, user: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw), "ECR_SERVER": gw.host}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=timeout, env=env)


def started_gateway(data_dir: Path, **kwargs: object) -> GatewayProcess:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    gateway = GatewayProcess(data_dir, **kwargs)  # type: ignore[arg-type]
    gateway.start()
    for user in ("alice", "bob"):
        gateway.admin().add_user(user, PASSWORDS[user])
    return gateway


@pytest.fixture
def fault_gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = started_gateway(tmp_path / "gw" / "data")
    yield gateway
    gateway.stop()


def blob_file(gw: GatewayProcess, digest: str) -> Path:
    hexdigest = digest.split(":", 1)[1]
    return gw.data_dir / "registry" / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[
        :2] / hexdigest / "data"


def manifest_json(gw: GatewayProcess, repo: str, reference: str) -> dict[str, object]:
    resp = gw.call("alice", "GET", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull")
    resp.raise_for_status()
    doc: dict[str, object] = resp.json()
    return doc


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


# --- a corrupted blob in storage -------------------------------------------------------------
def test_a_corrupted_blob_is_refused_by_every_verified_pull(fault_gw: GatewayProcess, tiny_layout: Path,
                                                            tmp_path: Path) -> None:
    gw = fault_gw
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="corrupt"),
                        weights=os.urandom(1 << 20))
    ref = f"{gw.host}/alice/corrupt:1.0.0"
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    index = manifest_json(gw, "alice/corrupt", "1.0.0")
    entries = index["manifests"]
    assert isinstance(entries, list)
    image_digest = next(e["digest"] for e in entries if "platform" in e and e["platform"]["os"] == "linux")
    model_digest = next(e["digest"] for e in entries if e.get("artifactType", "").endswith("model.v1+json"))
    image_layer = manifest_json(gw, "alice/corrupt", image_digest)["layers"][0]["digest"]  # type: ignore[index]
    model_layers = manifest_json(gw, "alice/corrupt", model_digest)["layers"]
    weights = next(layer["digest"] for layer in model_layers  # type: ignore[attr-defined]
                   if layer.get("annotations", {}).get("org.opencontainers.image.title", "").endswith("weights.bin"))
    for digest in (image_layer, weights):
        path = blob_file(gw, digest)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only a digest check sees it
        path.write_bytes(bytes(data))

    pulled = ecr(gw, "bob", "pull", ref, "-o", str(tmp_path / "out"))
    assert pulled.returncode == 8, (pulled.returncode, pulled.stdout, pulled.stderr)
    assert image_layer in pulled.stderr or weights in pulled.stderr, pulled.stderr
    no_traceback(pulled.stderr)

    if shutil.which("skopeo"):
        copied = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds",
                                 f"bob:{password_of('bob', gw)}", f"docker://{gw.host}/alice/corrupt@{image_digest}",
                                 f"oci:{tmp_path / 'skopeo'}:x"], capture_output=True, text=True, timeout=300)
        assert copied.returncode != 0 and "digest" in copied.stderr.lower(), copied.stderr
    # oras-py 0.2 does not check digests on pull (it writes what it gets): see deploy/README.md, "Faults".
    assert requests.get(f"{gw.url}/healthz", timeout=10).status_code == 200


# --- PostgreSQL restarted under load ---------------------------------------------------------
class Load:
    """Worker threads sending a mix of store-backed requests until stopped; outcomes per phase."""

    def __init__(self, gw: GatewayProcess, workers: int = 4) -> None:
        import threading

        self.gw = gw
        self.phase = "up"
        self.outcomes: dict[str, Counter[str]] = {}
        self.slowest: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _pull_manifest(self, session: requests.Session) -> requests.Response:
        """An anonymous pull's two requests; the first failing answer, or the manifest's."""
        token = session.get(f"{self.gw.url}/auth/token", params={"service": "ecr", "scope":
                            "repository:alice/pg:pull"}, timeout=30)
        if token.status_code != 200:
            return token
        return session.get(f"{self.gw.url}/v2/alice/pg/manifests/1.0.0", timeout=30,
                           headers={"Authorization": f"Bearer {token.json()['token']}",
                                    "Accept": "application/vnd.oci.image.manifest.v1+json"})

    def _work(self, worker: int) -> None:
        session = requests.Session()
        alice = ("alice", password_of("alice", self.gw))
        calls = [
            lambda: session.get(f"{self.gw.url}/auth/token", params={"service": "ecr",
                                "scope": "repository:alice/pg:pull"}, auth=alice, timeout=30),
            lambda: session.get(f"{self.gw.url}/api/v1/bundles", timeout=30),
            lambda: session.get(f"{self.gw.url}/api/v1/whoami", auth=alice, timeout=30),
            lambda: self._pull_manifest(session),
            lambda: session.get(f"{self.gw.url}/", timeout=30),  # the web catalog
        ]
        i = worker
        while not self._stop.is_set():
            phase = self.phase
            started = time.monotonic()
            try:
                outcome = str(calls[i % len(calls)]().status_code)
            except requests.RequestException as exc:
                outcome = exc.__class__.__name__
            i += 1
            if phase != self.phase:
                phase = f"{phase}->{self.phase}"  # in flight across a change: no expectation
            with self._lock:
                self.outcomes.setdefault(phase, Counter())[outcome] += 1
                self.slowest[phase] = max(self.slowest.get(phase, 0.0), time.monotonic() - started)


def restart_postgres(pg: PostgresServer) -> subprocess.Popen[bytes]:
    """The stopped server started again on its port and data (as pgserver starts it: as postgres when root)."""
    import pwd

    from tests.support import as_user_dying_with_parent, die_with_parent

    preexec = die_with_parent
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        preexec = as_user_dying_with_parent(user.pw_uid, user.pw_gid)
    with (pg.root / "postgres.log").open("ab") as log:
        return subprocess.Popen(pg.proc.args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec, cwd=pg.root)


def test_postgresql_restarted_under_load(tmp_path: Path) -> None:
    from tests.gateway.pgserver import start_postgres
    from tests.gateway.support import push_image

    try:
        pg = start_postgres()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    gw = None
    try:
        gw = started_gateway(tmp_path / "gw" / "data", extra_env={"ECR_STATE_URL": pg.create_database("faults")})
        push_image(gw.client("alice"), "alice/pg", "1.0.0", payload=b"pg")
        with Load(gw) as load:
            time.sleep(2)
            load.phase = "down"
            pid = int((pg.root / "data" / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)  # fast shutdown: open sessions are ended
            pg.proc.wait(20)
            time.sleep(5)
            # each surface in its own error format
            api = requests.get(f"{gw.url}/api/v1/bundles", timeout=30)
            page = requests.get(f"{gw.url}/", timeout=30)
            token = requests.get(f"{gw.url}/auth/token", params={"service": "ecr"}, timeout=30,
                                 auth=("alice", password_of("alice", gw)))
            assert api.status_code == 503 and "unavailable" in api.json()["error"]
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert token.status_code == 503 and token.headers["Retry-After"]
            time.sleep(1)
            load.phase = "restarting"
            pg.proc = restart_postgres(pg)
            deadline = time.monotonic() + 30
            while requests.get(f"{gw.url}/api/v1/bundles", timeout=30).status_code != 200:
                assert time.monotonic() < deadline, ("the gateway did not recover after PostgreSQL came back: "
                                                     + (pg.root / "postgres.log").read_text()[-1500:])
                time.sleep(0.2)
            load.phase = "back"
            time.sleep(2)
        print(f"outcomes per phase: {load.outcomes}; slowest answer per phase: {load.slowest}")
        assert set(load.outcomes["up"]) == {"200"}, load.outcomes
        assert set(load.outcomes["back"]) == {"200"}, load.outcomes
        # while down: answered, promptly, 200 where the store is not needed and 503 where it is
        assert set(load.outcomes["down"]) <= {"200", "503"} and load.outcomes["down"]["503"] > 0, load.outcomes
        assert load.slowest["down"] < 5, load.slowest
        no_traceback((gw.data_dir.parent / "gateway.log").read_text())
    finally:
        if gw is not None:
            gw.stop()
        pg.stop()


# --- the registry killed during a push and during a pull --------------------------------------
def registry_pid(gw: GatewayProcess) -> int:
    assert gw.proc is not None
    found = subprocess.run(["pgrep", "-P", str(gw.proc.pid), "-f", "docker-registry"], capture_output=True,
                           text=True).stdout.split()
    assert found, "no registry child process"
    return int(found[0])


def kill_registry_when(gw: GatewayProcess, ready: Callable[[], bool], client: subprocess.Popen[str],
                       timeout: float = 60) -> bool:
    """SIGKILL the embedded registry once ``ready()`` (True), or False if the client finished first."""
    deadline = time.monotonic() + timeout
    while client.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(registry_pid(gw), signal.SIGKILL)
            return True
        time.sleep(0.01)
    return False


def ecr_background(gw: GatewayProcess, user: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, gw), "ECR_SERVER": gw.host}
    return subprocess.Popen(["ecr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def tags_of(gw: GatewayProcess, repo: str) -> list[str]:
    resp = gw.call("alice", "GET", f"/v2/{repo}/tags/list", f"repository:{repo}:pull")
    return list(resp.json().get("tags") or []) if resp.status_code == 200 else []


def file_over(root: Path, pattern: str, size: int) -> bool:
    """Whether a file under ``root`` matching ``pattern`` is larger than ``size`` bytes.

    The registry and the client create, rename and remove these files while we look:
    one that vanishes mid-walk simply does not count.
    """
    try:
        for path in root.rglob(pattern):
            try:
                if path.is_file() and path.stat().st_size > size:
                    return True
            except FileNotFoundError:
                continue
    except FileNotFoundError:
        return False
    return False


def test_registry_killed_during_push_and_during_pull(fault_gw: GatewayProcess, tiny_layout: Path,
                                                     tmp_path: Path) -> None:
    gw = fault_gw
    weights = os.urandom(96 << 20)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="killed"), weights=weights)
    ref = f"{gw.host}/alice/killed:1.0.0"
    uploads = gw.data_dir / "registry" / "storage" / "docker" / "registry" / "v2" / "repositories" / "alice"

    def upload_in_progress() -> bool:
        return file_over(uploads, "_uploads/*/data", 8 << 20)

    push = ecr_background(gw, "alice", "push", "--quiet", str(root), ref)
    killed = kill_registry_when(gw, upload_in_progress, push)
    _, push_err = push.communicate(timeout=300)
    assert killed, "the push ended before the registry could be killed"
    # resumed through the restarted registry, or failed with one readable error; never a traceback
    no_traceback(push_err)
    if push.returncode != 0:
        assert push_err.strip() and len(push_err.strip().splitlines()) <= 3, push_err
        assert "1.0.0" not in tags_of(gw, "alice/killed")  # no tag names a partial bundle
        again = ecr(gw, "alice", "push", "--quiet", str(root), ref)
        assert again.returncode == 0, again.stderr
    assert tags_of(gw, "alice/killed") == ["1.0.0"]

    out = tmp_path / "out"
    pull = ecr_background(gw, "bob", "pull", ref, "-o", str(out))
    killed = kill_registry_when(gw, lambda: file_over(out, "*", 8 << 20),
                                pull)
    _, pull_err = pull.communicate(timeout=300)
    no_traceback(pull_err)
    if pull.returncode != 0:
        assert pull_err.strip() and len(pull_err.strip().splitlines()) <= 3, pull_err
        shutil.rmtree(out, ignore_errors=True)
        again = ecr(gw, "bob", "pull", ref, "-o", str(out))
        assert again.returncode == 0, again.stderr
    assert (out / "model" / "weights.bin").read_bytes() == weights
    print(f"push: killed={True} exit={push.returncode} {push_err.strip()[:200]!r}; "
          f"pull: killed={killed} exit={pull.returncode} {pull_err.strip()[:200]!r}")
    deadline = time.monotonic() + 10  # the watchdog looks every 0.5 s; the pull may have finished first
    while (gw.data_dir.parent / "gateway.log").read_text().count("the registry exited") < 1 + int(killed):
        assert time.monotonic() < deadline, "the registry was not restarted"
        time.sleep(0.1)
    assert gw.call("bob", "HEAD", "/v2/alice/killed/manifests/1.0.0", "repository:alice/killed:pull").ok


def test_a_push_waits_for_a_restarted_gateway(fault_gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    """The gateway itself SIGKILLed mid-upload and started again ~1 s later (a crash and a
    supervisor's restart): `ecr push` waits for it, goes on with the upload (at the
    registry's offset, or anew when the broken chunk invalidated the session) and tags
    the bundle (before: "cannot reach registry", exit 5, at once)."""
    gw = fault_gw
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="gwkilled"),
                        weights=os.urandom(96 << 20))
    ref = f"{gw.host}/alice/gwkilled:1.0.0"
    uploads = gw.data_dir / "registry" / "storage" / "docker" / "registry" / "v2" / "repositories" / "alice"
    push = ecr_background(gw, "alice", "push", str(root), ref)
    deadline = time.monotonic() + 60
    while not file_over(uploads, "_uploads/*/data", 8 << 20):
        assert push.poll() is None and time.monotonic() < deadline, "the push ended before the gateway was killed"
        time.sleep(0.01)
    assert gw.proc is not None
    gw.proc.kill()
    gw.proc.wait(30)
    time.sleep(1.0)
    gw.start()
    _, err = push.communicate(timeout=300)
    no_traceback(err)
    assert push.returncode == 0, err
    assert tags_of(gw, "alice/gwkilled") == ["1.0.0"]


# --- the storage filesystem full during a push ---------------------------------------------------
@pytest.fixture
def small_storage_gw(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    """A gateway whose registry storage is a 64 MiB tmpfs (mounting needs root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the storage-full test mounts a tmpfs: CI runs as root")
        pytest.skip("mounting a tmpfs needs root")
    storage = tmp_path / "gw" / "data" / "registry" / "storage"
    storage.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(storage)], check=True)
    gateway = None
    try:
        gateway = started_gateway(tmp_path / "gw" / "data")
        yield gateway, storage
    finally:
        if gateway is not None:
            gateway.stop()
        subprocess.run(["umount", "-l", str(storage)], check=False)


def test_storage_full_during_a_push(small_storage_gw: tuple[GatewayProcess, Path], tiny_layout: Path,
                                    tmp_path: Path) -> None:
    gw, storage = small_storage_gw
    filler = storage / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * (40 << 20))
    weights = os.urandom(32 << 20)
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="full"), weights=weights)
    ref = f"{gw.host}/alice/full:1.0.0"
    full = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    print(f"push on a full disk: exit {full.returncode}: {full.stderr.strip()[:300]!r}")
    assert full.returncode != 0
    no_traceback(full.stderr)
    assert len(full.stderr.strip().splitlines()) <= 3 and "storage" in full.stderr.lower(), full.stderr
    # nothing half-visible: no tag, no model blob
    assert tags_of(gw, "alice/full") == []
    from ecr_oci.digest import sha256_bytes

    head = gw.call("alice", "HEAD", f"/v2/alice/full/blobs/{sha256_bytes(weights)}", "repository:alice/full:pull")
    assert head.status_code == 404
    # the wire answer itself: a clean OCI error (here for opening an upload session)
    refused = gw.call("alice", "POST", "/v2/alice/full/blobs/uploads/", "repository:alice/full:pull,push")
    assert refused.status_code == 507, (refused.status_code, refused.text)
    assert refused.json()["errors"][0]["code"] == "UNKNOWN" and "storage" in refused.json()["errors"][0]["message"]

    filler.unlink()
    again = ecr(gw, "alice", "push", "--quiet", str(root), ref)
    assert again.returncode == 0, again.stderr
    assert tags_of(gw, "alice/full") == ["1.0.0"]
    pulled = ecr(gw, "alice", "pull", ref, "-o", str(tmp_path / "out"))
    assert pulled.returncode == 0, pulled.stderr
    no_traceback((gw.data_dir.parent / "gateway.log").read_text())


# --- the gateway restarted during a docker pull ----------------------------------------------
def _gateway_read_bytes(gw: GatewayProcess) -> int:
    assert gw.proc is not None
    for line in Path(f"/proc/{gw.proc.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@pytest.mark.slow
def test_gateway_restarted_during_a_docker_pull(fault_gw: GatewayProcess, tmp_path: Path) -> None:
    import tarfile
    import tempfile

    from ecr_oci import mediatypes as mt
    from ecr_oci.digest import sha256_bytes, sha256_file
    from ecr_oci.oci import canonical_json, descriptor
    from tests.support import start_dockerd

    gw = fault_gw
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for _ in range(12):
            fh.write(os.urandom(8 << 20))  # 96 MiB that no compression shrinks
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(big, arcname="big.bin")
    client = gw.client("alice")
    layer_digest = client.upload_file("alice/bigimage", layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    client.upload_bytes("alice/bigimage", config)
    manifest = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                               "config": descriptor(mt.OCI_CONFIG, sha256_bytes(config), len(config)),
                               "layers": [descriptor(mt.OCI_LAYER_TAR, layer_digest, sha256_file(layer)[1])]})
    client.put_manifest("alice/bigimage", "1.0.0", manifest, mt.OCI_MANIFEST)

    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-dk-", dir="/tmp")), gw.host)
    if isinstance(engine, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"dockerd cannot start: {engine}")
        pytest.skip(engine)
    try:
        before = _gateway_read_bytes(gw)
        pull = subprocess.Popen(["docker", "pull", f"{gw.host}/alice/bigimage:1.0.0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=engine.env)
        deadline = time.monotonic() + 120
        while _gateway_read_bytes(gw) - before < (24 << 20):  # a quarter of the layer served
            assert pull.poll() is None and time.monotonic() < deadline, "the pull ended before the restart"
            time.sleep(0.01)
        assert gw.proc is not None
        gw.proc.kill()  # the harshest restart: no graceful end of the transfer
        gw.proc.wait(30)
        gw.start()
        out, err = pull.communicate(timeout=300)
        assert pull.returncode == 0, (out, err)
        image_id = engine.docker("image", "inspect", "--format", "{{.Id}}",
                                 f"{gw.host}/alice/bigimage:1.0.0").stdout.strip()
        assert image_id == sha256_bytes(config)
        retried = [line for line in (engine.root / "dockerd.log").read_text(errors="replace").splitlines()
                   if "download" in line.lower() and ("error" in line.lower() or "retry" in line.lower())]
        print(f"docker pull across a gateway restart: exit 0; the engine's own account: {retried[-2:]}")
        assert retried, "the restart did not interrupt the download"
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)

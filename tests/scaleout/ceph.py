"""A throwaway single-node Ceph cluster with a RADOS Gateway (S3), from Debian packages.

One monitor, one OSD on ``memstore`` (RAM, no disk), one ``radosgw``: a real
S3-compatible object store that starts in a couple of seconds. No systemd, no cephx
(``auth ... required = none``); everything lives in one temporary directory. The
monitor's ports are fixed (3300, 6789), so only one cluster runs per machine: start
it once per test session. Stop order matters (gateway, OSD, monitor): :meth:`stop`.
Facts behind the settings: ``/work/shared/FIELD-NOTES.md`` (Ceph RGW).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.scaleout.processes import spawn, stop
from tests.support import free_port

PACKAGES = "radosgw ceph-mon ceph-osd"
MON_PORTS = (3300, 6789)
ACCESS_KEY = "ecr-test-access"
SECRET_KEY = "ecr-test-secret-key-0123456789"


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class CephCluster:
    """A running cluster; ``endpoint`` is the RADOS Gateway's S3 URL."""

    root: Path
    rgw_port: int
    scheme: str = "http"
    host: str = "127.0.0.1"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # mon, osd, rgw

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.rgw_port}"

    def ceph(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(["ceph", "-c", str(self.conf), *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"ceph {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def admin(self, *args: str) -> str:
        proc = subprocess.run(["radosgw-admin", "-c", str(self.conf), "-n", "client.rgw.a", *args],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"radosgw-admin {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def create_bucket(self, bucket: str, ca_file: Path | None = None) -> None:
        """An empty bucket (Distribution does not create its own): a SigV4-signed PUT by curl."""
        cmd = ["curl", "-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-X", "PUT", f"{self.endpoint}/{bucket}"]
        if ca_file is not None:
            cmd[1:1] = ["--cacert", str(ca_file)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def bucket_objects(self, bucket: str) -> list[str]:
        """Every object name in the bucket (radosgw-admin, bypassing S3)."""
        import json

        out = self.admin("bucket", "list", f"--bucket={bucket}", "--max-entries=1000000")
        return [entry["name"] for entry in json.loads(out)]

    def stop(self) -> None:
        for proc in reversed(self.procs):  # rgw, osd, mon
            stop(proc, timeout=15)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _config(root: Path, fsid: str, rgw_port: int, tls: tuple[Path, Path] | None) -> str:
    frontend = (f"beast ssl_endpoint=127.0.0.1:{rgw_port} ssl_certificate={tls[0]} ssl_private_key={tls[1]}"
                if tls else f"beast endpoint=127.0.0.1:{rgw_port}")
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{MON_PORTS[0]},v1:127.0.0.1:{MON_PORTS[1]}]
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail warn = 2
mon data avail crit = 1
run dir = {root}/run
log file = {root}/log/$name.log
admin socket = {root}/run/$name.asok
pid file = {root}/run/$name.pid
mon data = {root}/mon/$cluster-$id
osd data = {root}/osd/$cluster-$id
rgw data = {root}/rgw/$cluster-$id

[client.rgw.a]
rgw frontends = {frontend}
"""


def start_ceph(root: Path, tls: tuple[Path, Path] | None = None, host: str = "127.0.0.1",
               timeout: float = 60) -> CephCluster:
    """Create and start the cluster in ``root`` (created; removed by :meth:`CephCluster.stop`).

    Args:
        tls: (certificate, key) PEM files: the gateway then speaks https.
        host: the name clients use for the gateway (it must resolve to 127.0.0.1).

    Raises:
        FileNotFoundError: the Ceph packages are missing (the message says which).
        RuntimeError: the monitor ports are taken (another cluster runs) or a daemon failed.
    """
    missing = [b for b in ("ceph-mon", "ceph-osd", "radosgw", "monmaptool", "ceph-authtool") if not shutil.which(b)]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not installed: run `make deps` (apt: {PACKAGES})")
    if any(_port_in_use(p) for p in MON_PORTS):
        raise RuntimeError(f"ports {MON_PORTS} are taken: another Ceph cluster runs on this machine")
    for sub in ("run", "log", "mon/ceph-a", "rgw/ceph-rgw.a"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster = CephCluster(root=root, rgw_port=free_port(), scheme="https" if tls else "http", host=host)
    fsid = str(uuid.uuid4())
    cluster.conf.write_text(_config(root, fsid, cluster.rgw_port, tls))
    conf = ["-c", str(cluster.conf)]

    def run(*cmd: str) -> str:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    try:
        keyring = root / "mon.keyring"
        run("ceph-authtool", "--create-keyring", str(keyring), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
        monmap = root / "monmap"
        run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
            f"[v2:127.0.0.1:{MON_PORTS[0]},v1:127.0.0.1:{MON_PORTS[1]}]", str(monmap))
        run("ceph-mon", *conf, "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(keyring))
        cluster.procs.append(spawn(["ceph-mon", *conf, "-f", "-i", "a"], root / "log" / "mon.out"))
        osd_uuid = str(uuid.uuid4())
        osd_id = cluster.ceph("osd", "new", osd_uuid).strip()
        (root / "osd" / f"ceph-{osd_id}").mkdir(parents=True, exist_ok=True)
        run("ceph-osd", *conf, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        cluster.procs.append(spawn(["ceph-osd", *conf, "-f", "-i", osd_id], root / "log" / "osd.out"))
        cluster.procs.append(spawn(["radosgw", *conf, "-f", "-n", "client.rgw.a"], root / "log" / "rgw.out"))
        _wait_rgw(cluster, timeout)
        cluster.admin("user", "create", "--uid=ecr", "--display-name=ecr", f"--access-key={ACCESS_KEY}",
                      f"--secret-key={SECRET_KEY}")
    except RuntimeError as exc:
        logs = "".join(p.read_text(errors="replace")[-1500:] for p in sorted((root / "log").glob("*")))
        cluster.stop()
        raise RuntimeError(f"{exc}\n{logs}") from None
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_rgw(cluster: CephCluster, timeout: float) -> None:
    """Until the RADOS Gateway accepts connections (TLS or not, so a TCP connect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in cluster.procs:
            if proc.poll() is not None:
                command = proc.args if isinstance(proc.args, list) else [str(proc.args)]
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}")
        if _port_in_use(cluster.rgw_port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"radosgw did not answer within {timeout}s")

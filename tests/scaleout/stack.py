"""The replicated setup, from real parts, on one machine.

    clients ──https──▶ nginx :LB ─┬─▶ gateway A ─┐            ┌─▶ registry 1 ─┐
                                  └─▶ gateway B ─┴─▶ nginx :R ┴─▶ registry 2 ─┴─https─▶ Ceph RGW (bucket)
                                       (one PostgreSQL state store)

* Ceph RADOS Gateway (S3, TLS with the test CA) holds the one bucket both Distribution
  replicas use; the replicas share their ``http.secret`` (an upload started at one can
  finish at the other) and trust the gateways' upstream certificate.
* Two ``ecr serve --registry-url`` share one PostgreSQL database and one key directory
  (copied from A before B first starts, as ``deploy/README.md`` prescribes).
* nginx (Debian) terminates TLS for clients and balances both tiers; a dead upstream
  is skipped (``proxy_next_upstream``) and retried after ``fail_timeout``.
* The RGW is reached as ``localhost``, the registry as ``127.0.0.1``: distinct host
  names, as in a real deployment (``ecr.example.org`` vs ``s3.example.org``), so Go
  clients do not forward their registry ``Authorization`` header to the storage when
  they follow a redirect.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import RegistryClient
from tests.gateway.support import ADMIN_PASSWORD, GatewayProcess, password_of
from tests.scaleout.ceph import ACCESS_KEY, SECRET_KEY, CephCluster
from tests.scaleout.processes import kill, spawn, stop
from tests.scaleout.tls import LocalCA
from tests.support import REGISTRY_BIN, free_port, wait_http

BUCKET = "registry"
NGINX_BIN = "/usr/sbin/nginx"


def registry_env(pki: LocalCA) -> dict[str, str]:
    """Distribution's environment: trust the test CA (Go reads SSL_CERT_FILE), no overrides.

    ``REGISTRY_*`` variables override its configuration; ``AWS_CA_BUNDLE`` makes 2.8 panic.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_") and k != "AWS_CA_BUNDLE"}
    env["SSL_CERT_FILE"] = str(pki.ca)
    return env


REGISTRY_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "registry.yml"


def registry_config(*, port: int, s3_endpoint: str, secret: str, upstream_cert: Path, redirect: bool,
                    bucket: str = BUCKET) -> str:
    """The shipped Distribution configuration (deploy/compose/registry.yml) with this setup's values."""
    config = yaml.safe_load(REGISTRY_TEMPLATE.read_text())
    config["storage"]["s3"].update(regionendpoint=s3_endpoint, bucket=bucket, accesskey=ACCESS_KEY,
                                   secretkey=SECRET_KEY)
    config["storage"]["redirect"]["disable"] = not redirect
    config["http"].update(addr=f"127.0.0.1:{port}", secret=secret)
    config["auth"]["token"].update(realm="https://unused.invalid/auth/token", rootcertbundle=str(upstream_cert))
    return str(yaml.safe_dump(config, sort_keys=False))


@dataclass
class RegistryReplica:
    """One ``docker-registry serve`` on the shared bucket."""

    root: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    def start(self) -> None:
        self.proc = spawn([REGISTRY_BIN, "serve", str(self.config)], self.root / "registry.log", env=self.env)
        wait_http(f"http://127.0.0.1:{self.port}/v2/", timeout=30, proc=self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            kill(self.proc)

    def set_read_only(self, read_only: bool) -> None:
        """Rewrite the configuration (``storage.maintenance.readonly``) and restart."""
        self.update(lambda config: config["storage"]["maintenance"].update(readonly={"enabled": read_only}))

    def set_redirect(self, redirect: bool) -> None:
        """Blob reads redirected to presigned storage URLs, or streamed by the registry; restart."""
        self.update(lambda config: config["storage"]["redirect"].update(disable=not redirect))

    def update(self, change: Callable[[dict[str, Any]], object]) -> None:
        config = yaml.safe_load(self.config.read_text())
        change(config)
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.stop()
        self.start()

    def stop(self) -> None:
        stop(self.proc)


def nginx_config(root: Path, pki: LocalCA, *, public_port: int, internal_port: int, gateways: list[int],
                 registries: list[int]) -> str:
    """The load balancer: TLS for clients in front of the gateways, plain http in front of the registries."""

    def upstream(name: str, ports: list[int]) -> str:
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in ports)
        return f"  upstream {name} {{\n{servers}    keepalive 16;\n  }}\n"

    proxy = (
        "    client_max_body_size 0;\n"          # blobs of any size
        "    proxy_request_buffering off;\n"     # stream uploads, do not spool them to disk
        "    proxy_buffering off;\n"             # and downloads
        "    proxy_http_version 1.1;\n"
        '    proxy_set_header Connection "";\n'
        "    proxy_set_header Host $http_host;\n"
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "    proxy_read_timeout 900s;\n    proxy_send_timeout 900s;\n"
        "    proxy_next_upstream error timeout http_502 http_503;\n"
        "    proxy_next_upstream_tries 2;\n"
    )
    tmp = root / "tmp"
    return (
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n"
        f"pid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n"
        "events {\n  worker_connections 1024;\n}\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
        f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
        + upstream("ecr_gateways", gateways) + upstream("ecr_registries", registries)
        + "  server {\n"
        f"    listen 127.0.0.1:{public_port} ssl;\n"
        f"    ssl_certificate {pki.cert};\n    ssl_certificate_key {pki.key};\n"
        "    proxy_set_header X-Forwarded-Proto https;\n" + proxy
        + "    location / {\n      proxy_pass http://ecr_gateways;\n    }\n  }\n"
        + "  server {\n"
        f"    listen 127.0.0.1:{internal_port};\n" + proxy
        + "    location / {\n      proxy_pass http://ecr_registries;\n    }\n  }\n"
        "}\n"
    )


class StackGateway(GatewayProcess):
    """``ecr serve`` as in the gateway tests, but dying with the test process (SIGTERM: it shuts down)."""

    def start(self) -> None:
        env = {**os.environ, "ECR_ADMIN_PASSWORD": ADMIN_PASSWORD, **self.extra_env}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn([sys.executable, "-c", "from ecr_oci.cli import run; run()", "serve",
                           "--data-dir", str(self.data_dir), "--listen", self.host, *self.extra_args],
                          self.data_dir.parent / "gateway.log", env=env, sig=signal.SIGTERM)
        wait_http(f"{self.url}/healthz", timeout=30, proc=self.proc)


@dataclass
class ScaleOut:
    """The running setup; :attr:`host` is what clients use (``https://``, test CA)."""

    root: Path
    pki: LocalCA
    ceph: CephCluster
    state_url: str
    gateways: list[GatewayProcess] = field(default_factory=list)
    registries: list[RegistryReplica] = field(default_factory=list)
    public_port: int = field(default_factory=free_port)
    internal_port: int = field(default_factory=free_port)
    nginx: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.public_port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def internal_url(self) -> str:
        """The registry tier's balancer (what the gateways' ``--registry-url`` names)."""
        return f"http://127.0.0.1:{self.internal_port}"

    def client_env(self) -> dict[str, str]:
        """Environment for client processes: trust the test CA, use https to 127.0.0.1."""
        return {**os.environ, "REQUESTS_CA_BUNDLE": str(self.pki.ca), "SSL_CERT_FILE": str(self.pki.ca),
                "ECR_PLAIN_HTTP": "false"}

    def client(self, user: str | None, via: GatewayProcess | None = None) -> RegistryClient:
        """A registry client through the load balancer (or straight to one gateway's plain http port)."""
        creds = Credentials(user, password_of(user, self.gateways[0])) if user else None
        client = RegistryClient(via.host if via else self.host, credentials=creds, plain_http=via is not None)
        client.session.verify = str(self.pki.ca)
        client.session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over verify
        return client

    def start_nginx(self) -> None:
        (self.root / "nginx" / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx" / "nginx.conf"
        conf.write_text(nginx_config(self.root / "nginx", self.pki, public_port=self.public_port,
                                     internal_port=self.internal_port,
                                     gateways=[g.port for g in self.gateways],
                                     registries=[r.port for r in self.registries]))
        self.nginx = spawn([NGINX_BIN, "-c", str(conf), "-p", str(self.root / "nginx")],
                           self.root / "nginx" / "nginx.out", sig=signal.SIGTERM)  # stops its workers too
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                log = (self.root / "nginx" / "error.log")
                text = log.read_text() if log.exists() else (self.root / "nginx" / "nginx.out").read_text()
                raise RuntimeError(f"nginx exited: {text[-1500:]}")
            try:
                wait_http(f"{self.internal_url}/v2/", timeout=0.5)
                return
            except RuntimeError:
                pass
        raise RuntimeError("nginx did not answer")

    def set_read_only(self, read_only: bool) -> None:
        """Every replica read-only (pulls work, pushes are refused) or back, one at a time."""
        for replica in self.registries:
            replica.set_read_only(read_only)

    def garbage_collect(self) -> str:
        """``docker-registry garbage-collect`` on the bucket (replicas must be read-only); its output."""
        done = subprocess.run([REGISTRY_BIN, "garbage-collect", str(self.registries[0].config)], capture_output=True,
                              text=True, env=self.registries[0].env, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"garbage-collect failed: {done.stderr[-2000:]}")
        return done.stdout

    def upstream_errors(self, port: int) -> list[str]:
        """The balancer's error-log lines about requests to the upstream on ``port`` (failed, retried)."""
        log = self.root / "nginx" / "error.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return [line for line in lines if f"127.0.0.1:{port}/" in line]

    def stop(self) -> None:
        stop(self.nginx)
        for gateway in self.gateways:
            gateway.stop()
        for replica in self.registries:
            replica.stop()


def start_scaleout(root: Path, pki: LocalCA, ceph: CephCluster, state_url: str, *, redirect: bool = True,
                   bucket: str = BUCKET) -> ScaleOut:
    """Gateways, registry replicas and the balancer on an existing Ceph cluster and database.

    Raises:
        FileNotFoundError: nginx or Distribution is not installed.
        RuntimeError: a component did not start (the message says which).
    """
    for binary in (NGINX_BIN, REGISTRY_BIN):
        if not Path(binary).exists():
            raise FileNotFoundError(f"{binary} is not installed: run `make deps`")
    ceph.create_bucket(bucket, ca_file=pki.ca)
    setup = ScaleOut(root=root, pki=pki, ceph=ceph, state_url=state_url)
    try:
        public = f"https://127.0.0.1:{setup.public_port}"
        for name in ("a", "b"):
            setup.gateways.append(StackGateway(
                root / f"gateway-{name}" / "data",
                extra_args=["--registry-url", setup.internal_url, "--state-url", state_url, "--public-url", public,
                            "--trusted-proxy", "127.0.0.1"],
                # the gate follows storage redirects to the RGW (httpx and requests read these)
                extra_env={"SSL_CERT_FILE": str(pki.ca), "REQUESTS_CA_BUNDLE": str(pki.ca)}))
        first, second = setup.gateways
        for gateway in setup.gateways:
            gateway.data_dir.mkdir(parents=True)
        first.start()  # makes the keys (client, upstream, countersigning) ...
        shutil.copytree(first.data_dir / "keys", second.data_dir / "keys")  # ... which B must share
        second.start()
        secret = secrets.token_hex(32)
        for index in (1, 2):
            replica = RegistryReplica(root / f"registry-{index}", free_port(), registry_env(pki))
            replica.root.mkdir(parents=True)
            replica.config.write_text(registry_config(
                port=replica.port, s3_endpoint=ceph.endpoint, secret=secret, bucket=bucket,
                upstream_cert=first.data_dir / "keys" / "upstream-cert.pem", redirect=redirect))
            replica.start()
            setup.registries.append(replica)
        setup.start_nginx()
    except BaseException:
        setup.stop()
        raise
    return setup

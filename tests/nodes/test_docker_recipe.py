"""`ecr deploy docker` for a node: the printed script, run by a real dockerd, fetches and verifies
the model with the fetcher image and the node's credential, and starts the plugin with it
read-only (docker has no Pods: the same two steps by hand)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.gateway.support import GatewayProcess
from tests.nodes.conftest import ecr
from tests.support import free_port, start_dockerd

pytestmark = pytest.mark.slow
REPO = "alice/bird-docker"


def test_docker_script_runs_the_bundle_with_its_model(
    gw: GatewayProcess, example_bundle: Path, tmp_path: Path
) -> None:
    pushed = ecr(gw, "alice", "push", "--quiet", str(example_bundle), f"{gw.host}/{REPO}:1.2.0")
    assert pushed.returncode == 0, pushed.stderr
    bundle = pushed.stdout.strip().rsplit("@", 1)[1]
    gw.admin("alice").set_visibility(REPO, "protected")
    added = ecr(gw, "admin", "admin", "node", "add", "VW03", "--deployment", "dock", "--platform", "linux/amd64")
    assert added.returncode == 0, added.stderr
    gw.nodes["VW03"] = added.stdout.strip()
    assert ecr(gw, "admin", "stage", "set", f"{gw.host}/{REPO}:1.2.0", "approved", "--deployment", "dock"
               ).returncode == 0
    fetcher = ecr(gw, "admin", "deploy", "fetcher", f"{gw.host}/ecr/model-fetcher:latest", "--deployment", "dock")
    assert fetcher.returncode == 0, fetcher.stderr
    script = tmp_path / "run.sh"
    generated = ecr(gw, "VW03", "deploy", "docker", f"{gw.host}/{REPO}:1.2.0", "--node", "VW03", "--network", "host",
                    "--metrics-port", str(free_port()), "-e", "FRAMES=3", "-o", str(script))
    assert generated.returncode == 0, generated.stderr
    text = script.read_text()
    assert "ecr_" not in text.replace("ECR_", "")  # no credential in the script
    name = f"bird-detector-{bundle[7:19]}"

    engine = start_dockerd(Path(tempfile.mkdtemp(prefix="ecr-dk-", dir="/tmp")), gw.host)
    if isinstance(engine, str):
        pytest.skip(engine)
    try:
        engine.docker("login", "-u", "VW03", "--password-stdin", gw.host, input_text=gw.nodes["VW03"])
        env = {**engine.env, "ECR_USERNAME": "VW03", "ECR_PASSWORD": gw.nodes["VW03"]}
        ran = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "ecr-fetch-model: weights.bin ok" in ran.stdout
        assert engine.docker("wait", name).stdout.strip() == "0"
        logs = engine.docker("logs", name)
        output = logs.stdout + logs.stderr
        weights = (example_bundle / "model" / "weights.bin").read_bytes()
        assert f"model sha256:{hashlib.sha256(weights).hexdigest()} from /app/model" in output
        assert "summary frames=3" in output and f"bundle={bundle}" in output
        labels = engine.docker("inspect", "--format", "{{json .Config.Labels}}", name).stdout
        assert bundle in labels and '"prometheus.io/scrape":"true"' in labels
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, env=engine.env, timeout=60, check=False)
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)

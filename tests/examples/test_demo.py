"""``make demo`` itself: the example images built, then ``examples/demo.sh`` run end to end.

What ``make demo`` runs (``example``: ``build_images.py``, then ``bash examples/demo.sh``) runs
here in a copy of ``examples/`` under the test's temporary directory, so nothing is written
into the checkout; the download cache is shared with tests/examples/test_example_images.py
(``ECR_EXAMPLE_CACHE``). ``make`` itself is not used: its ``deps`` prerequisite would
``pip install -e`` the tree under test, changing which ``ecr`` the whole machine runs.

The test checks what the demo's header and README.md promise, line by line in its output
(pushed signed with provenance, inspected, protected, approved, pulled by the node with the
approval signature required, the feed, the node's spec, the podman run where podman runs,
the approval revoked, alice sees her repository and anonymous callers do not), and that the
demo leaves nothing behind: its work directory gone and no process still running from it.
About 20 s with a warm cache.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import die_with_parent

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CACHE = Path(os.environ.get("ECR_EXAMPLE_CACHE", EXAMPLES / "bird-detector" / "build" / "cache"))
DEMO_TIMEOUT = 300
PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
          "--runtime", "runc"]

pytestmark = pytest.mark.slow


def podman_runs_here() -> bool:
    """The demo's own condition for its Virtual Waggle part."""
    return all(shutil.which(t) for t in ("podman", "runc", "catatonit")) and os.geteuid() == 0


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose command line or working directory contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if text in cmdline or text in cwd:
            found.append(f"{proc.name}: {cmdline}")
    return found


def between(output: str, start: str, end: str) -> str:
    """The output after the first line starting with ``start`` up to the next line starting with ``end``."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i in range(first + 1, len(lines)) if lines[i].startswith(end))
    return "\n".join(lines[first + 1 : last])


def test_make_demo(tmp_path: Path) -> None:
    for tool in ("docker-registry", "skopeo", "umoci", "curl"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run `make deps`")
    # `make demo`'s working tree: examples/ without any build output, in the temporary directory.
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("build", "__pycache__"))
    demo_tmp = tmp_path / "tmp"
    demo_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(demo_tmp)}

    built = subprocess.run(
        [sys.executable, "examples/bird-detector/build_images.py", "--cache", str(CACHE)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "examples" / "bird-detector" / "build" / "oci" / "index.json").is_file()

    # Output to a file, not a pipe: if pytest dies, bash gets SIGTERM (PR_SET_PDEATHSIG) and its
    # EXIT trap must still stop the server; with a pipe, the trap's first traced line would die of SIGPIPE.
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        demo = subprocess.Popen(["bash", "examples/demo.sh"], cwd=tmp_path, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=die_with_parent)
    try:
        demo.wait(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        demo.send_signal(signal.SIGTERM)  # the script's EXIT trap stops its server
        try:
            demo.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGKILL)
        pytest.fail(f"make demo did not finish in {DEMO_TIMEOUT} s:\n{log.read_text()[-4000:]}")
    finally:
        leftovers = []
        deadline = time.monotonic() + 10  # the gateway's registry child exits right after it
        while time.monotonic() < deadline and (leftovers := processes_mentioning(str(tmp_path))):
            time.sleep(0.2)
        for line in leftovers:  # never leave them running, whatever the verdict
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    output = log.read_text()

    assert demo.returncode == 0, output[-6000:]
    assert output.rstrip().endswith("demo finished"), output[-2000:]

    # cleanup: the demo's work directory (data, keys, logins, the pulled bundle) and its processes are gone
    assert list(demo_tmp.iterdir()) == [], "the demo left its work directory behind"
    assert leftovers == [], f"the demo left processes running: {leftovers}"
    port = re.search(r"^\+ ecr login 127\.0\.0\.1:(\d+) ", output, re.M)
    assert port, output[:2000]
    host = f"127.0.0.1:{port.group(1)}"
    ref = f"{host}/alice/bird-detector"

    # validated, pushed, signed with provenance, made protected
    assert re.search(r"^bird-detector 1\.2\.0: valid \(2 images, digest sha256:[0-9a-f]{64}\)$", output, re.M)
    pushed = re.search(r"^pushed bird-detector 1\.2\.0: \d+ blobs uploaded", output, re.M)
    assert pushed, output
    signed = re.search(r"^signed \(sha256:[0-9a-f]{64}\) and attached provenance \(sha256:[0-9a-f]{64}\)$",
                       output, re.M)
    assert signed, output
    digest = re.search(rf"^{re.escape(ref)}@(sha256:[0-9a-f]{{64}})$", output, re.M)
    assert digest, output
    bundle = digest.group(1)
    assert "alice/bird-detector is protected" in output
    # inspected: protected, both platforms, model files, the signature and the provenance referrers
    inspected = between(output, "+ ecr inspect ", "+ ecr verify ")
    assert re.search(r"^visibility\s+protected", inspected, re.M)
    assert "linux/amd64" in inspected and "linux/arm64" in inspected
    assert "model/weights.bin" in inspected and "model/labels.txt" in inspected
    assert "provenance (SLSA)" in inspected and "signature (cosign" in inspected
    assert re.search(rf"^verified: {re.escape(ref)}@{bundle} signed by alice\.pub with signed provenance ",
                     output, re.M)
    # approved for neon; the node pulls it, plain skopeo and ecr pull requiring the approval signature
    assert f"alice/bird-detector@{bundle}: approved for neon" in output
    assert f'"Digest": "{bundle}"' in between(output, "+ skopeo inspect ", "+ ECR_USERNAME=W0A1")
    assert re.search(rf"^verified: {re.escape(ref)}@{bundle} is signed by ecr\.pub .*pulling exactly that digest$",
                     output, re.M)
    listing = between(output, "+ find ", "+ curl ")
    pulled = re.search(r"(\S+/pulled)$", listing, re.M)
    assert pulled, listing
    for name in ("model/weights.bin", "model/labels.txt", "image/index.json", "ecr-bundle.json",
                 "bird-detector-1.2.0-source.tar.gz"):
        assert f"{pulled.group(1)}/{name}" in listing.splitlines(), (name, listing)
    # the scheduler's feed: the bundle countersigned, both nodes able to run their platform
    assert f"alice/bird-detector 1.2.0 {bundle[:19]} countersigned: True" in output
    assert re.search(r"^\s+W0A1 can run linux/arm64$", output, re.M)
    assert re.search(r"^\s+VW01 can run linux/amd64$", output, re.M)
    # the node's Kubernetes spec, for its platform
    spec = between(output, "+ ecr deploy k8s ", "+ command -v podman")
    assert "kind: Pod" in spec and "org.waggle.ecr.platform: linux/arm64" in spec
    assert f"org.waggle.ecr.bundle: {bundle}" in spec
    # the Virtual Waggle: the bundle started from its spec under podman kube play, its metrics scraped
    pod = "bird-detector-" + bundle.split(":")[1][:12]
    if podman_runs_here():
        assert re.search(rf'^ecr_inference_seconds_count\{{bundle="{bundle}"\}} \d', output, re.M), output
        assert re.search(r"^frame=0 label=\w+ score=", output, re.M)
        assert subprocess.run([*PODMAN, "pod", "exists", pod], timeout=60).returncode == 1, f"pod {pod} left"
    else:
        assert "kube play" not in output
    # the approval revoked: out of the feed, the node's pull refused
    assert "bundles in the feed: 0" in output
    assert "the node's pull is refused" in output
    # alice sees her repository; anonymous callers see nothing of a protected bundle
    alice = between(output, f"+ ecr ls {host}", "+ DOCKER_CONFIG=").splitlines()
    anonymous = between(output, "+ DOCKER_CONFIG=", "+ set +x").splitlines()
    assert "alice/bird-detector" in alice, alice
    assert "alice/bird-detector" not in anonymous, anonymous

#!/usr/bin/env python3
"""Run the OCI distribution-spec conformance suite against the bare registry and the gateway.

    python3 conformance/run.py [--suite-version V | --suite-bin PATH] [--targets registry,gateway] [--keep]

Steps (each idempotent; everything built or downloaded is cached in ``conformance/.build/``):

1. Go: ``go`` from PATH, else Debian's ``golang-go`` (``apt-get install``). A Go of 1.21 or
   newer switches itself to the toolchain the suite's ``go.mod`` asks for (``GOTOOLCHAIN=auto``).
2. The suite: the Go module ``github.com/opencontainers/distribution-spec/conformance`` at
   ``SUITE_VERSION`` (``--suite-version`` or ``ECR_CONFORMANCE_VERSION``; any Go module query:
   a pseudo-version, or a commit hash such as the one of a spec release tag) is fetched with
   ``go mod download`` through the Go module proxy (``GOPROXY`` as configured) and built with
   ``go test -c`` into ``.build/conformance-<version>.test``. ``--suite-bin PATH`` skips 1-2
   and runs a test binary built elsewhere.
3. Targets, each fresh and on a free 127.0.0.1 port (``tests/support.py`` and
   ``tests/gateway/support.py``, as the test suite starts them):
   * ``registry``: bare CNCF Distribution (``/usr/bin/docker-registry``, deletes enabled), no auth;
   * ``gateway``: ``ecr serve`` with its embedded Distribution, admin password from
     ``ECR_ADMIN_PASSWORD`` (the tests' one); the suite logs in as ``admin``.
   Both use namespace ``admin/conformance`` and cross-mount namespace ``admin/other``
   (a namespace the gateway's admin owns).
4. The suite runs against each target with all four workflows enabled (pull, push,
   content discovery, content management), ``OCI_DEBUG`` on (the HTML report then carries
   the HTTP exchanges), reports written to ``conformance/results/<target>/`` (``junit.xml``,
   ``report.html``, ``suite.log``; the servers' logs beside them).
5. Prints passed/failed/skipped per workflow for each target, the tests whose outcome
   differs between the targets, and every test failing on the gateway with its message;
   writes ``conformance/results/summary.json``.

Exit status: 0 when the gateway passes at least as many tests as the bare registry (the
customer's criterion), 1 when it passes fewer, 2 when the suite could not be built or run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / ".build"
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))

MODULE = "github.com/opencontainers/distribution-spec/conformance"
# The newest version of the module that `go get` accepted when this was written (the module
# carries no semver tags of its own: spec releases tag the repository root).
DEFAULT_SUITE_VERSION = "v0.0.0-20260831232431-97274622c111"
NAMESPACE = "admin/conformance"
CROSSMOUNT_NAMESPACE = "admin/other"
WORKFLOWS = ("Pull", "Push", "Content Discovery", "Content Management")
SUITE_TIMEOUT = 1800


class SetupError(Exception):
    """The suite could not be built or a target not started."""


# --- building the suite ----------------------------------------------------------------------
def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(BUILD / "gopath"),
        GOMODCACHE=str(BUILD / "gopath" / "pkg" / "mod"),
        GOCACHE=str(BUILD / "gocache"),
        GOFLAGS="-modcacherw",
        GO111MODULE="on",
        GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN", "auto"),
        CGO_ENABLED="0",
    )
    return env


def ensure_go() -> str:
    go = shutil.which("go")
    if go:
        return go
    if os.geteuid() != 0:
        raise SetupError("no `go` on PATH and not root: install Go (Debian: apt-get install golang-go)")
    print("installing golang-go (apt)...", flush=True)
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "golang-go"],
    ):
        proc = subprocess.run(
            cmd, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SetupError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    go = shutil.which("go")
    if not go:
        raise SetupError("golang-go installed but no `go` on PATH")
    return go


def build_suite(version: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    binary = BUILD / f"conformance-{safe}.test"
    if binary.exists():
        print(f"suite: cached {binary.relative_to(ROOT)}", flush=True)
        return binary
    go = ensure_go()
    BUILD.mkdir(parents=True, exist_ok=True)
    env = go_env()

    def go_out(*args: str) -> str:
        return subprocess.run([go, *args], capture_output=True, text=True, env=env).stdout.strip()

    print(f"suite: fetching {MODULE}@{version} ({go_out('version')})", flush=True)
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{version}"],
        cwd=BUILD,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or not info.get("Dir"):
        detail = info.get("Error") or proc.stderr.strip() or proc.stdout.strip()
        raise SetupError(
            f"could not fetch {MODULE}@{version} through the Go module proxy "
            f"(GOPROXY={go_out('env', 'GOPROXY')}):\n"
            f"{detail[-3000:]}\n"
            "Run where the Go module proxy is reachable, or pass --suite-bin with a prebuilt conformance.test."
        )
    src = Path(info["Dir"])
    print(f"suite: building {info.get('Version', version)} with go test -c", flush=True)
    tmp = binary.with_suffix(".part")
    proc = subprocess.run(
        [go, "test", "-c", "-o", str(tmp), "."], cwd=src, env=env, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise SetupError(f"go test -c failed in {src}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    tmp.rename(binary)
    (BUILD / f"conformance-{safe}.info.json").write_text(json.dumps(info, indent=2))
    return binary


# --- targets ------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    url: str
    username: str = ""
    password: str = ""
    logs: list[Path] = field(default_factory=list)


def start_registry(stack: contextlib.ExitStack, work: Path) -> Target:
    from tests.support import start_registry as start

    reg = start(work / "registry")
    stack.callback(reg.stop)
    return Target("registry", reg.url, logs=[work / "registry" / "registry.log"])


def start_gateway(stack: contextlib.ExitStack, work: Path) -> Target:
    from tests.gateway.support import ADMIN_PASSWORD, GatewayProcess

    gw = GatewayProcess(data_dir=work / "gateway" / "data")
    (work / "gateway").mkdir(parents=True, exist_ok=True)
    stack.callback(gw.stop)
    gw.start()
    reg_log = work / "gateway" / "data" / "registry"
    return Target(
        "gateway",
        gw.url,
        "admin",
        ADMIN_PASSWORD,
        logs=[
            work / "gateway" / "gateway.log",
            *sorted(reg_log.glob("*.log")),
            work / "gateway" / "data" / "audit.log",
        ],
    )


STARTERS = {"registry": start_registry, "gateway": start_gateway}


# --- running and reading the suite --------------------------------------------------------------
def run_suite(binary: Path, target: Target, outdir: Path) -> int:
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    env = {
        **os.environ,
        "OCI_ROOT_URL": target.url,
        "OCI_NAMESPACE": NAMESPACE,
        "OCI_CROSSMOUNT_NAMESPACE": CROSSMOUNT_NAMESPACE,
        "OCI_TEST_PULL": "1",
        "OCI_TEST_PUSH": "1",
        "OCI_TEST_CONTENT_DISCOVERY": "1",
        "OCI_TEST_CONTENT_MANAGEMENT": "1",
        "OCI_HIDE_SKIPPED_WORKFLOWS": "0",
        "OCI_DEBUG": "1",
        "OCI_REPORT_DIR": str(outdir),
    }
    if target.username:
        env["OCI_USERNAME"], env["OCI_PASSWORD"] = target.username, target.password
    else:
        env.pop("OCI_USERNAME", None)
        env.pop("OCI_PASSWORD", None)
    print(f"{target.name}: running the suite against {target.url} ...", flush=True)
    with (outdir / "suite.log").open("wb") as log:
        try:
            proc = subprocess.run(
                [str(binary)], cwd=outdir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=SUITE_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            log.write(f"\n[run.py] suite timed out after {SUITE_TIMEOUT}s\n".encode())
            return -1
    for log_path in target.logs:
        if log_path.exists():
            shutil.copy(log_path, outdir / f"server-{log_path.name}")
    return proc.returncode


@dataclass
class Case:
    name: str
    workflow: str
    status: str  # passed | failed | skipped
    message: str = ""


def workflow_of(name: str) -> str:
    found = [(name.find(w), w) for w in WORKFLOWS if w in name]
    found += [(name.lower().find(w.lower()), w) for w in WORKFLOWS if w not in name and w.lower() in name.lower()]
    return min(found)[1] if found else "other"


def read_junit(path: Path) -> list[Case]:
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        name = tc.get("name", "")
        if tc.get("classname") and tc.get("classname") not in name and workflow_of(name) == "other":
            name = f"{tc.get('classname')} {name}"
        failure = tc.find("failure")
        if failure is None:
            failure = tc.find("error")
        status = (tc.get("status") or "").lower()
        if failure is not None or status in ("failed", "error", "panicked", "interrupted", "timedout", "aborted"):
            parts = [
                failure.get("message", "") if failure is not None else "",
                (failure.text or "").strip() if failure is not None else "",
            ]
            cases.append(Case(name, workflow_of(name), "failed", "\n".join(p for p in parts if p)))
        elif tc.find("skipped") is not None or status in ("skipped", "pending"):
            cases.append(Case(name, workflow_of(name), "skipped"))
        else:
            cases.append(Case(name, workflow_of(name), "passed"))
    return cases


def counts(cases: list[Case]) -> dict[str, Counter[str]]:
    table: dict[str, Counter[str]] = {w: Counter() for w in (*WORKFLOWS, "other", "total")}
    for c in cases:
        table[c.workflow][c.status] += 1
        table["total"][c.status] += 1
    return table


def short(text: str, width: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= width else text[:width] + " ..."


def report(results: dict[str, list[Case]]) -> int:
    names = list(results)
    tables = {t: counts(results[t]) for t in names}
    print()
    header = f"{'workflow':<20}" + "".join(f"{t + ' passed/failed/skipped':>32}" for t in names)
    print(header)
    print("-" * len(header))
    for w in (*WORKFLOWS, "other", "total"):
        if w == "other" and not any(tables[t][w] for t in names):
            continue
        cells = (f"{tables[t][w]['passed']} / {tables[t][w]['failed']} / {tables[t][w]['skipped']}" for t in names)
        print(f"{w:<20}" + "".join(f"{cell:>32}" for cell in cells))
    by_name = {t: {c.name: c for c in results[t]} for t in names}
    diff = []
    if len(names) == 2:
        a, b = names
        for n in sorted(set(by_name[a]) | set(by_name[b])):
            sa = by_name[a].get(n).status if n in by_name[a] else "absent"
            sb = by_name[b].get(n).status if n in by_name[b] else "absent"
            if sa != sb:
                diff.append((n, sa, sb))
        print()
        if diff:
            print(f"tests whose outcome differs ({a} -> {b}):")
            for n, sa, sb in diff:
                print(f"  {sa:>8} -> {sb:<8} {n}")
        else:
            print(f"no test differs between {a} and {b}")
    for t in names:
        failed = [c for c in results[t] if c.status == "failed"]
        print(f"\n{t}: {len(failed)} failed test(s)")
        for c in failed:
            print(f"  - {c.name}\n      " + short(c.message).replace("\n", "\n      "))
    summary = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": {t: {w: dict(tables[t][w]) for w in tables[t]} for t in names},
        "differs": [{"test": n, names[0]: sa, names[1]: sb} for n, sa, sb in diff],
        "cases": {t: [asdict(c) for c in results[t]] for t in names},
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    if not {"registry", "gateway"} <= set(names):
        return 0
    reg, gw = tables["registry"]["total"], tables["gateway"]["total"]
    ok = gw["passed"] >= reg["passed"]
    worse = [n for n, sa, sb in diff if sa == "passed" and sb != "passed"]
    verdict = (
        f"VERDICT: {'PASS' if ok else 'FAIL'}: gateway passes {gw['passed']} test(s), bare registry "
        f"{reg['passed']} ({gw['failed']} vs {reg['failed']} failed)"
    )
    if worse:
        verdict += f"; {len(worse)} test(s) pass on the registry but not on the gateway"
    print("\n" + verdict)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite-version", default=os.environ.get("ECR_CONFORMANCE_VERSION", DEFAULT_SUITE_VERSION))
    parser.add_argument(
        "--suite-bin",
        type=Path,
        default=os.environ.get("ECR_CONFORMANCE_BIN") or None,
        help="a prebuilt conformance.test (skips Go and the build)",
    )
    parser.add_argument("--targets", default="registry,gateway")
    parser.add_argument("--keep", action="store_true", help="keep the targets' data directories")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := [t for t in targets if t not in STARTERS]:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(STARTERS)}")
    try:
        binary = args.suite_bin.resolve() if args.suite_bin else build_suite(args.suite_version)
    except (SetupError, subprocess.TimeoutExpired) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    (BUILD / "runs").mkdir(parents=True, exist_ok=True)
    results: dict[str, list[Case]] = {}
    for name in targets:
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=BUILD / "runs"))
        outdir = RESULTS / name
        try:
            with contextlib.ExitStack() as stack:
                target = STARTERS[name](stack, work)
                rc = run_suite(binary, target, outdir)
        except Exception as exc:  # a target that does not start is reported
            print(f"ERROR: {name}: {exc}", file=sys.stderr)
            return 2
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        junit = next(iter(sorted(outdir.glob("*.xml"))), None)
        if junit is None:
            tail = (outdir / "suite.log").read_text(errors="replace")[-3000:]
            print(f"ERROR: {name}: the suite (exit {rc}) wrote no JUnit report:\n{tail}", file=sys.stderr)
            return 2
        results[name] = read_junit(junit)
        print(f"{name}: suite exit {rc}, {len(results[name])} test case(s) in {junit.relative_to(ROOT)}", flush=True)
    return report(results)


if __name__ == "__main__":
    sys.exit(main())

"""``ecr profile attach | list | show``: performance profiles of a bundle."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.cli.common import (
    Insecure,
    PasswordStdin,
    PlainHttp,
    Username,
    connect,
    err,
    handle_errors,
    make_client,
    out,
    styled,
)
from ecr_oci.errors import ValidationError
from ecr_oci.profile import (
    ProfileContext,
    PrometheusClient,
    Window,
    Workload,
    detect_hardware,
    profile_prometheus,
    profile_scrape,
)
from ecr_oci.profile.attach import AttachedProfile, attach_profile, list_profiles
from ecr_oci.profile.summary import Hardware
from ecr_oci.registry.reference import parse_reference

app = typer.Typer(help="Performance profiles: measure a bundle's plugin and attach the result as a referrer.",
                  no_args_is_help=True)
Ref = Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY[:TAG|@DIGEST] of the bundle")]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``30s``, ``5m``, ``1h``, ``500ms``.

    Raises:
        ValidationError: anything else.
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise ValidationError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


@app.command()
@handle_errors
def attach(
    reference: Ref,
    node: Annotated[str, typer.Option(help="Node id (e.g. W0A1, or vw-<host> for a Virtual Waggle).")],
    prometheus: Annotated[str | None, typer.Option(help="Prometheus URL that scraped the node.")] = None,
    since: Annotated[str, typer.Option(help="Window length before now, with --prometheus.")] = "30m",
    scrape: Annotated[str | None, typer.Option(help="The plugin's /metrics URL, scraped directly.")] = None,
    duration: Annotated[str, typer.Option(help="How long to scrape, with --scrape.")] = "30s",
    interval: Annotated[str, typer.Option(help="Seconds between scrapes, with --scrape.")] = "1s",
    latency_metric: Annotated[str | None, typer.Option(
        "--latency-metric", help="The plugin's own latency metric (seconds; histogram or summary), with --scrape; "
                                 "its bundle label may be absent.")] = None,
    stage: Annotated[str, typer.Option(help="vw (Virtual Waggle) or node (a real Waggle node).")] = "node",
    workload: Annotated[str, typer.Option(help="What the plugin was doing.")] = "plugin run",
    accelerator: Annotated[str | None, typer.Option(help="Accelerator used, if any.")] = None,
    hardware_model: Annotated[str | None, typer.Option(help="Hardware model (default: this machine's).")] = None,
    hardware_arch: Annotated[str | None, typer.Option(help="Architecture (default: this machine's).")] = None,
    no_series: Annotated[bool, typer.Option("--no-series", help="Attach the summary only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary document.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Measure a bundle (from Prometheus, or by scraping its plugin) and attach the profile."""
    if (prometheus is None) == (scrape is None):
        raise ValidationError("give exactly one of --prometheus URL or --scrape URL")
    if stage not in ("vw", "node"):
        raise ValidationError(f"stage must be vw or node, not {stage!r}")
    if latency_metric and not scrape:
        raise ValidationError("--latency-metric works with --scrape (one plugin scraped directly)")
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure,
                          username=username, password_stdin=password_stdin)
    bundle = fetch_bundle(client, ref)
    hardware = _hardware(accelerator, hardware_model, hardware_arch)
    context = ProfileContext(bundle=bundle.digest, node=node, stage=stage,  # type: ignore[arg-type]
                             hardware=hardware, workload=Workload(description=workload))
    if prometheus:
        end = datetime.now(UTC)
        window = Window(end - timedelta(seconds=parse_duration(since)), end)
        result = profile_prometheus(PrometheusClient(prometheus), context, window, with_series=not no_series)
    else:
        assert scrape is not None
        err.print(f"scraping {scrape} for {duration} ...")
        result = profile_scrape(scrape, context, interval=parse_duration(interval), duration=parse_duration(duration),
                                latency_metric=latency_metric)
    digest = attach_profile(client, bundle, result, with_series=not no_series)
    if as_json:
        print(json.dumps(result.summary.to_dict(), indent=2, sort_keys=True))
    else:
        _print_table([AttachedProfile(digest, result.summary)])
    err.print(f"attached profile {digest} to {bundle.reference.pinned()}")


def _hardware(accelerator: str | None, model: str | None, arch: str | None) -> Hardware:
    detected = detect_hardware(accelerator)
    return Hardware(model=model or detected.model, arch=arch or detected.arch,
                    memory_bytes=detected.memory_bytes, accelerator=accelerator)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _print_table(profiles: list[AttachedProfile]) -> None:
    table = Table("node", "stage", "hardware", "window end", "p50 ms", "p95 ms", "p99 ms", "items/s", "cpu",
                  "peak RSS", "errors", "samples", title="performance profiles")
    for p in profiles:
        s = p.summary
        m = s.metrics
        rss = "-" if m.peak_rss_bytes is None else f"{m.peak_rss_bytes / 2**20:.0f} MiB"
        cpu = "-" if m.cpu_cores is None else f"{m.cpu_cores:.2f}"
        lat = m.latency_seconds  # None: a resources-only profile
        table.add_row(s.node, s.stage, f"{s.hardware.model} ({s.hardware.arch})",
                      s.window.end.strftime("%Y-%m-%d %H:%M:%S"), _ms(lat.p50 if lat else None),
                      _ms(lat.p95 if lat else None), _ms(lat.p99 if lat else None), f"{m.throughput_per_second:.2f}",
                      cpu, rss, str(m.error_count), str(m.sample_count))
    out.print(table)


@app.command("list")
@handle_errors
def list_(
    reference: Ref,
    plot: Annotated[Path | None, typer.Option(help="Also draw latency per node to this PNG (needs matplotlib).")]
    = None,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Compare a bundle's profiles side by side across nodes, hardware and stages."""
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure,
                          username=username, password_stdin=password_stdin)
    profiles = list_profiles(client, fetch_bundle(client, ref))
    if not profiles:
        err.print("no profiles attached yet")
        return
    _print_table(profiles)
    if plot:
        _plot(profiles, plot)
        err.print(f"wrote {plot}")


def _plot(profiles: list[AttachedProfile], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValidationError("--plot needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(profiles) + 2), 4.5))
    labels = [f"{p.summary.node}\n{p.summary.hardware.arch} ({p.summary.stage})" for p in profiles]
    for i, key in enumerate(("p50", "p95", "p99")):
        values = [getattr(p.summary.metrics.latency_seconds, key) * 1000 if p.summary.metrics.latency_seconds else 0.0
                  for p in profiles]
        ax.bar([x + (i - 1) * 0.25 for x in range(len(profiles))], values, width=0.25, label=key)
    ax.set_xticks(list(range(len(profiles))), labels)
    ax.set_xlim(-0.6, len(profiles) - 0.4)
    ax.set_ylabel("inference latency (ms)")
    ax.set_title("latency per node")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@app.command()
@handle_errors
def show(
    reference: Ref,
    node: Annotated[str | None, typer.Option(help="Only this node's profiles.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The summary documents as JSON.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Show a bundle's profiles in full."""
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure,
                          username=username, password_stdin=password_stdin)
    profiles = list_profiles(client, fetch_bundle(client, ref), node=node)
    if not profiles:
        raise ValidationError(f"no profiles{' for node ' + node if node else ''} on {ref}")
    if as_json:
        docs: list[dict[str, Any]] = [{"digest": p.digest, **p.summary.to_dict()} for p in profiles]
        print(json.dumps(docs, indent=2, sort_keys=True))
        return
    for p in profiles:
        out.print(styled((p.digest, "bold")))
        out.print_json(json.dumps(p.summary.to_dict()))


def wait_for(url: str, timeout: float) -> None:
    """Poll ``url`` until it answers (a plugin's metrics endpoint coming up)."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise ValidationError(f"{url} did not answer within {timeout:.0f}s")


@handle_errors
def run(
    reference: Ref,
    duration: Annotated[str, typer.Option(help="How long to measure (after the plugin is up).")] = "60s",
    interval: Annotated[str, typer.Option(help="Seconds between metric scrapes.")] = "1s",
    node: Annotated[str | None, typer.Option(help="Node id for the profile (default vw-<hostname>).")] = None,
    engine: Annotated[str, typer.Option(help="auto, podman, or process (Python entrypoint, no container).")]
    = "auto",
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the plugin (repeatable).")]
    = None,
    startup_timeout: Annotated[float, typer.Option(help="Seconds to wait for the metrics endpoint.")] = 60.0,
    attach_profile_: Annotated[bool, typer.Option("--attach/--no-attach", help="Attach the vw profile.")] = True,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Virtual Waggle run: pull the bundle for this machine, run it, scrape its metrics, attach a vw profile."""
    import socket
    import tempfile

    from ecr_oci.bundle.config import Platform
    from ecr_oci.cli.bundle import host_platform
    from ecr_oci.transfer.progress import TransferProgress
    from ecr_oci.transfer.pull import pull_bundle
    from ecr_oci.vw import choose_engine, start_plugin

    ref = parse_reference(reference)
    extra = dict(item.split("=", 1) for item in env or [] if "=" in item)
    if len(extra) != len(env or []):
        raise ValidationError("--env takes KEY=VALUE")
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure, username=username,
                         password_stdin=password_stdin)
    chosen = choose_engine(engine)
    node_id = node or f"vw-{socket.gethostname().split('.')[0].lower()}"
    with tempfile.TemporaryDirectory(prefix="ecr-vw-") as scratch:
        work = Path(scratch)
        report = pull_bundle(client, ref, work / "bundle", platform=Platform.parse(host_platform()),
                             progress=TransferProgress(True))
        bundle = report.bundle
        if chosen == "process":
            err.print("no usable container engine: running the image's Python entrypoint as a local process")
        plugin = start_plugin(work / "bundle", engine=chosen, digest=bundle.digest, env=extra, workdir=work)
        try:
            err.print(f"started {bundle.reference.pinned()} with {plugin.engine}; metrics at {plugin.metrics_url}")
            try:
                wait_for(plugin.metrics_url, startup_timeout)
            except ValidationError:
                raise ValidationError(f"the plugin exported no metrics at {plugin.metrics_url} "
                                      f"(last output: {plugin.output()[-300:].strip()!r})") from None
            context = ProfileContext(bundle=bundle.digest, node=node_id, stage="vw",
                                     hardware=_hardware(None, None, None),
                                     workload=Workload(description=f"Virtual Waggle run ({plugin.engine})"))
            err.print(f"measuring for {duration} ...")
            result = profile_scrape(plugin.metrics_url, context, interval=parse_duration(interval),
                                    duration=parse_duration(duration))
        finally:
            plugin.stop()
        digest = attach_profile(client, bundle, result) if attach_profile_ else None
    _print_table([AttachedProfile(digest or "(not attached)", result.summary)])
    if digest:
        err.print(f"attached vw profile {digest} to {bundle.reference.pinned()}")

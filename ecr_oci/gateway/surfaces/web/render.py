"""Templates and the small pieces of presentation logic the pages share.

Jinja2 with autoescape on for every template (``.html`` and ``.svg``): metadata is
hostile input and only ever reaches a page as escaped text. URLs taken from metadata
are only made links when they are ``http(s)``; everything else is shown as text.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

# Strict: no inline script or style at all, everything from this origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def human_size(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def when(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))


def short_digest(value: Any) -> str:
    text = str(value or "")
    return text[:19] if text.startswith("sha256:") else text


def safe_url(value: Any) -> str | None:
    """``value`` when it is an absolute http(s) URL without credentials, else None."""
    if not isinstance(value, str) or len(value) > 2000 or any(c in value for c in "\r\n\t "):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return value


def paragraphs(value: Any) -> list[str]:
    """Plain-text paragraphs of a description (blank lines separate them); no markup is kept."""
    return [p.strip() for p in re.split(r"\n\s*\n", str(value or "")) if p.strip()]


def number(value: Any, digits: int = 1) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    return f"{value:.{digits}f}"


def milliseconds(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value * 1000:.1f} ms"


def as_text(value: Any) -> str:
    """A metadata value (string, list or mapping) as one line of text."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {as_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(as_text(v) for v in value)
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "" if value is None else str(value)


def bibtex_escaped(value: Any) -> str:
    """Text safe inside a BibTeX ``{...}`` field: braces and backslashes cannot close it."""
    return re.sub(r"([{}\\%&$#_^~])", lambda m: "\\" + m.group(1) if m.group(1) not in "\\^~" else " ",
                  str(value or "")).replace("\n", " ")


def citation(meta: dict[str, Any], doi: str, host: str, pushed: float) -> dict[str, str]:
    """Citation text and BibTeX for a version with a DOI (DataCite's software style)."""
    year = time.strftime("%Y", time.gmtime(pushed))
    authors = [a.split("<")[0].strip() for a in str(meta.get("authors") or "").split(",") if a.strip()]
    name, version = str(meta.get("name") or ""), str(meta.get("version") or "")
    text = f"{'; '.join(authors) or 'Unknown'} ({year}). {name} (version {version}) [Software]. {host}. " \
           f"https://doi.org/{doi}"
    key = re.sub(r"[^A-Za-z0-9]+", "_", f"{name}_{version}").strip("_") or "bundle"
    bib = (f"@software{{{key},\n"
           f"  author = {{{bibtex_escaped(' and '.join(authors))}}},\n"
           f"  title = {{{bibtex_escaped(name)}}},\n"
           f"  version = {{{bibtex_escaped(version)}}},\n"
           f"  year = {{{year}}},\n"
           f"  publisher = {{{bibtex_escaped(host)}}},\n"
           f"  doi = {{{bibtex_escaped(doi)}}},\n"
           f"  url = {{https://doi.org/{bibtex_escaped(doi)}}}\n}}")
    return {"text": text, "bibtex": bib}


def chart(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Geometry of the latency chart (bars of p95, a tick at p50), drawn by ``chart.svg``."""
    measured = [r for r in rows if isinstance(r.get("p95"), float)]
    if not measured:
        return None
    top = max(r["p95"] for r in measured) or 1.0
    label_width, plot_width, bar, gap = 300, 360, 20, 8
    bars = []
    for i, row in enumerate(measured):
        y = 10 + i * (bar + gap)
        p50 = row.get("p50") if isinstance(row.get("p50"), float) else None
        width = round(max(1.0, plot_width * row["p95"] / top), 1)
        bars.append({
            "label": _clip(f"{row['version']} · {row['node']} ({row['hardware']})", 44),
            "y": y, "text_y": round(y + bar * 0.7, 1), "width": width,
            "p50_x": round(label_width + plot_width * p50 / top, 1) if p50 is not None else None,
            "value": milliseconds(row["p95"]), "value_x": round(label_width + 6 + width, 1),
        })
    height = 10 + len(bars) * (bar + gap) + 24
    return {"bars": bars, "height": height, "width": label_width + plot_width + 90, "label_width": label_width,
            "bar": bar, "axis_y": height - 8, "top": milliseconds(top)}


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


def badge(label: str, value: str, tone: str) -> dict[str, Any]:
    """Geometry of a shields-style badge (widths from a fixed per-character estimate)."""
    left = 7 * len(label) + 12
    right = 7 * len(value) + 12
    return {"label": label, "value": value, "left": left, "right": right, "width": left + right,
            "tone": {"approved": "#2b7a3d", "deprecated": "#8a2d2d"}.get(tone, "#3b5b8c")}


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html", "svg"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=human_size, when=when, short=short_digest, safe_url=safe_url, paragraphs=paragraphs,
                       number=number, ms=milliseconds, text=as_text)
    return env

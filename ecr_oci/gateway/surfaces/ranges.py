"""``Range`` request headers read as RFC 9110 §14 says, for blob GET/HEAD.

One reading for blobs served from local storage and for blobs proxied to the registry:

* a header whose unit is not ``bytes``, or whose ranges-specifier is not valid
  (``bytes=abc``, ``bytes=500-0`` where last < first), is *ignored*: the answer is the
  whole blob with 200 (§14.2: a server MUST ignore an unknown unit, MAY ignore an
  invalid specifier);
* a valid specifier none of whose ranges overlaps the blob (``bytes=99999999999-``,
  ``bytes=-0``) is answered 416 with ``Content-Range: bytes */SIZE`` (§15.5.17);
* otherwise the satisfiable ranges, clipped to the blob and merged.

Never 400: a range is a preference, not a part of the request that can be malformed
in a way the client must fix.
"""

from __future__ import annotations

import re

_SPEC = re.compile(r"^(?:(\d+)-(\d*)|-(\d+))$")
MAX_RANGES = 100  # more is an abuse of ranges (RFC 9110 §17.15): ignored, whole blob
_HUGE = 10**20  # numbers longer than this are beyond any blob; parse them no further

Spec = tuple[int | None, int | None]  # (first, last) or (None, suffix length)


class Unsatisfiable(Exception):
    """A valid ``bytes`` range set of which no range overlaps the blob."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"bytes */{size}")


def _number(text: str) -> int:
    return _HUGE if len(text) > 20 else int(text)


def parse(header: str) -> list[Spec] | None:
    """The range specs of a valid ``bytes=`` header, or None when the header is to be ignored."""
    unit, sep, specifier = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs: list[Spec] = []
    for part in specifier.split(","):
        part = part.strip()
        if not part:
            continue  # RFC 9110 list syntax allows empty elements
        match = _SPEC.match(part)
        if match is None:
            return None
        if match[3] is not None:
            specs.append((None, _number(match[3])))
            continue
        first = _number(match[1])
        last = _number(match[2]) if match[2] else None
        if last is not None and last < first:
            return None
        specs.append((first, last))
    if not specs or len(specs) > MAX_RANGES:
        return None
    return specs


def is_valid(header: str) -> bool:
    """Whether a proxied request may carry this ``Range`` on to the registry."""
    return parse(header) is not None


def resolve(header: str, size: int) -> list[tuple[int, int]]:
    """Half-open byte ranges of a blob of ``size`` bytes; [] means "ignore the header".

    Raises:
        Unsatisfiable: the specifier is valid but no range overlaps the blob.
    """
    specs = parse(header)
    if specs is None:
        return []
    ranges: list[tuple[int, int]] = []
    for first, last in specs:
        if first is None:  # suffix: the last ``last`` bytes
            assert last is not None
            if last > 0 and size > 0:
                ranges.append((max(size - last, 0), size))
        elif first < size:
            ranges.append((first, size if last is None else min(last + 1, size)))
    if not ranges:
        raise Unsatisfiable(size)
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged

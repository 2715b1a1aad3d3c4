"""Strict JSON for text that comes from clients (manifests, API bodies).

Python's parser accepts two things a registry must not store: strings that are not
sequences of Unicode scalar values (a lone surrogate such as ``"\\ud800"``, which no
UTF-8 encoder can write back out), and nesting deep enough to exhaust the parser's
recursion. Both are refused here with a :class:`ValueError`, so one client cannot
plant a record that breaks every later listing, or crash a request handler.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: bytes | str) -> Any:
    """Parse JSON text; :class:`ValueError` with a readable message when it is not acceptable."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc.__class__.__name__})") from None
    if not is_unicode_clean(value):
        raise ValueError("a string is not valid Unicode (lone surrogate)")
    return value


def is_unicode_clean(value: Any) -> bool:
    """Whether ``value`` can be written back out as UTF-8 JSON (every string is valid Unicode)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, RecursionError, ValueError, TypeError):
        return False
    return True

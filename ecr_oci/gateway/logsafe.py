"""The gateway's log lines hold what clients sent (paths, names, header values, errors
quoting them): control characters in a message are escaped, so a request can neither
forge log lines (a newline) nor send escape sequences to the terminal of whoever reads
the log. Tracebacks, written by the logging module itself, keep their lines.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def escaped(text: str) -> str:
    """``text`` with every non-printable character as its Python escape (``\\x1b``, ``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escaped(record.message)
        return super().formatMessage(record)


def configure(level: int = logging.INFO) -> None:
    """Log to stderr in the gateway's format, messages escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])

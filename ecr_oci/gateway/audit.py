"""A structured audit log: one JSON object per line for every write and every denial.

Lines go to ``<data-dir>/audit.log`` (append-only; ship it with any log collector)
and to the ``ecr.audit`` logger.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

_log = logging.getLogger("ecr.audit")


class AuditLog:
    """Appends audit events.

    Args:
        path: the JSON-lines file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Owner-only whatever the umask: the log names every account and repository.
        self._fh = open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8")

    def record(self, event: str, *, actor: str, decision: str, **fields: Any) -> None:
        """Write one event (``decision`` is ``allow`` or ``deny``)."""
        entry = {"ts": round(time.time(), 3), "event": event, "actor": actor, "decision": decision, **fields}
        line = json.dumps(entry, sort_keys=True, default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
        _log.info(line)

    def close(self) -> None:
        self._fh.close()

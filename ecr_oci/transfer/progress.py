"""Progress bars (rich, on stderr) for transfers worth watching."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich loads only when bars may be shown (a quiet push starts sooner)
    from rich.console import Console
    from rich.progress import Progress


# Below this a bar only flickers: small blobs are counted in the summary line instead.
BAR_THRESHOLD = 4 << 20


class TransferProgress(AbstractContextManager["TransferProgress"]):
    """One bar per large blob; silent when disabled or not on a terminal.

    Args:
        enabled: False for ``--quiet`` or machine output.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._progress: Progress | None = None
        if not enabled:
            pass
        elif (console := _stderr_console()).is_terminal:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),  # file names are not markup
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
        self._lock = threading.Lock()
        self._depth = 0  # entered by a command and again by the transfer it runs
        self.bytes = 0

    def __enter__(self) -> TransferProgress:
        self._depth += 1
        if self._progress and self._depth == 1:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._progress and self._depth == 0:
            self._progress.stop()

    def track(self, label: str, total: int) -> Callable[[int], None]:
        """A callback that advances a bar for one blob of ``total`` bytes."""
        task = None
        if self._progress and total >= BAR_THRESHOLD:
            task = self._progress.add_task(label, total=total)
        progress = self._progress

        def advance(n: int) -> None:
            with self._lock:
                self.bytes += n
            if progress is not None and task is not None:
                progress.advance(task, n)

        return advance


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)

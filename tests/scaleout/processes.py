"""Child processes that die with the test run, and waiting for them."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the test process dies, even by SIGKILL."""
    def arm() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    return arm


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None,
          sig: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its output appended to ``log``; it gets ``sig`` when this process dies
    (SIGTERM for a process that must stop children of its own, like nginx's workers)."""
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent(sig))


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (a crash, not a shutdown) and reap."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()

"""A real, throwaway PostgreSQL server for the state store tests (Debian ``postgresql`` package).

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
system user (``initdb`` runs through ``runuser``, the server is started as that user
directly so that it dies with the test run); its directory is a fresh one in
``/tmp`` (pytest's own temporary directories are closed to other users). Durability
is switched off: the data is thrown away with the directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import as_user_dying_with_parent, die_with_parent, free_port

# psycopg is imported where used: without it only the PostgreSQL tests fail (with
# this hint), not the collection of the whole gateway suite.
HINT = "PostgreSQL is not installed: run `make deps` (Debian package postgresql)"
PSYCOPG_HINT = "psycopg is not installed: run `make install` (psycopg[binary,pool])"


def _bin_dir() -> Path | None:
    """The newest installed server's ``bin`` (Debian keeps it off PATH), else PATH's."""
    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    """A running ``postgres`` on 127.0.0.1 with trust authentication for user ``postgres``."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster: open sessions are ended), then remove the files."""
        if self.proc.poll() is None:
            pid_file = self.root / "data" / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(timeout: float = 30.0) -> PostgresServer:
    """initdb a new cluster in a temporary directory and start it on a free port.

    Raises:
        FileNotFoundError: PostgreSQL or psycopg is not installed (the message says how to fix it).
        RuntimeError: the server did not start (the message has its log).
    """
    try:
        import psycopg
    except ImportError:
        raise FileNotFoundError(PSYCOPG_HINT) from None

    bin_dir = _bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(HINT)
    as_user: list[str] = []
    preexec = die_with_parent
    root = Path(tempfile.mkdtemp(prefix="ecr-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise FileNotFoundError(HINT + " (no postgres user)") from None
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
        # the server itself runs as postgres with no runuser in between, so the parent-death
        # signal reaches the postmaster (which then shuts down its backends)
        preexec = as_user_dying_with_parent(user.pw_uid, user.pw_gid)
    data = root / "data"
    log_path = root / "postgres.log"
    init = subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         "--locale=C.UTF-8", "--no-sync"],
        capture_output=True, text=True, timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
    port = free_port()
    with open(log_path, "ab") as log:
        # The child writes into the file the postgres user owns through our descriptor.
        proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-k", str(root), "-p", str(port),
             "-h", "127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec, cwd=root,
        )
    server = PostgresServer(root=root, port=port, proc=proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.url, connect_timeout=2):
                return server
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                server.stop()
                raise RuntimeError(f"postgres did not start (exit {proc.poll()}):\n{text}") from None
            time.sleep(0.1)

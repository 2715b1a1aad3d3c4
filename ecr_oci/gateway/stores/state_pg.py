"""The gateway's state in PostgreSQL: one store shared by several gateways.

:class:`PostgresStore` runs the same queries as :class:`~ecr_oci.gateway.stores.state.SqliteStore`
(:class:`~ecr_oci.gateway.stores.state.SqlStore` holds them) through psycopg 3 with a small
connection pool. The gateway calls the store from its event loop and from worker
threads, so connections are borrowed per call rather than shared: each call is one
short transaction (writes) or autocommit statements (reads).

The tables are created when missing, under an advisory lock so that gateways starting
together do not race on ``CREATE TABLE IF NOT EXISTS`` (which is not race-free in
PostgreSQL).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ecr_oci.gateway.stores.state import Dialect, Session, SqlStore, StateUnavailable

# Arbitrary, fixed key of the advisory lock that serialises schema creation.
_SCHEMA_LOCK_KEY = 0x6563725F7374  # "ecr_st"

POSTGRES = Dialect(
    "postgresql",
    "format",
    {"float": "DOUBLE PRECISION", "serial_pk": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
    schema_lock=f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})",
)


def redact(url: str) -> str:
    """``url`` with its password (if any) masked, for messages and logs."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)


class PostgresStore(SqlStore):
    """:class:`~ecr_oci.gateway.stores.state.StateStore` in a PostgreSQL database.

    Args:
        url: a libpq connection string or ``postgresql://`` URL; what it leaves out
            comes from the ``PG*`` environment variables (``PGPASSWORD``, ...) or
            ``~/.pgpass``, which keeps the password off the command line.
        max_connections: pool size. A gateway's store calls are short, so a few
            connections serve many concurrent requests; the pool makes callers wait
            (up to ``timeout``) rather than open more.
        timeout: seconds to wait for the server at start and for a free connection.

    Raises:
        RuntimeError: the server cannot be reached or the schema cannot be created.
    """

    dialect = POSTGRES

    def __init__(self, url: str, *, max_connections: int = 8, timeout: float = 10.0,
                 checkout_timeout: float = 1.0) -> None:
        self.url = url
        # Store calls run on the event loop too: while the server is down, one request a
        # second waits up to checkout_timeout for a connection and the others fail at once
        # (503), so the gateway keeps answering instead of stalling on the pool.
        self._checkout_timeout = checkout_timeout
        self._unreachable_until = 0.0
        # Connect once directly first: a wrong URL or a server that is down then fails
        # at start with libpq's own reason, which the pool would only log and retry.
        try:
            with psycopg.connect(url, connect_timeout=max(1, int(timeout))):
                pass
        except psycopg.Error as exc:
            raise RuntimeError(f"cannot connect to the state store {redact(url)}: {exc}".strip()) from None
        # autocommit: a read is a single statement needing no transaction; writes open
        # one explicitly. check_connection on checkout: a connection broken by a
        # server restart or failover is replaced instead of failing one request.
        self._pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            timeout=timeout,
            check=ConnectionPool.check_connection,
            name="ecr-state",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            self._create_schema()
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise RuntimeError(f"state store {redact(url)}: {exc}") from None

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        if time.monotonic() < self._unreachable_until:
            raise StateUnavailable(f"state store {redact(self.url)}: unreachable a moment ago")
        try:
            with self._pool.connection(timeout=self._checkout_timeout) as conn:
                if write:
                    with conn.transaction(), conn.cursor() as cursor:
                        yield Session(cursor, self.dialect)
                else:
                    with conn.cursor() as cursor:
                        yield Session(cursor, self.dialect)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # The pool drops the broken connection and reconnects in the background.
            self._unreachable_until = time.monotonic() + 1.0
            raise StateUnavailable(f"state store {redact(self.url)}: {exc.__class__.__name__}") from None

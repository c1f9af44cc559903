"""One SQLite write transaction, committed whole or rolled back, that never hides why it
failed: what the capture store and its pruning write through.

SQLite rolls a transaction back by itself when a statement or the COMMIT fails with
SQLITE_FULL ("database or disk is full"), SQLITE_IOERR or SQLITE_NOMEM; a ROLLBACK
after that fails with "cannot rollback - no transaction is active", which used to
replace the error that said what was wrong. Only the standard library: every
registered model ships it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on `connection` (in autocommit mode): committed at the end,
    rolled back on any error, which is raised as it was."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # SQLite may have rolled it back already
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` is SQLite's "database or disk is full"."""
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL

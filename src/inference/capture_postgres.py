"""Prediction capture in PostgreSQL: the store every task of a team can reach.

The same table, columns, indexes (the partial ones too) and guarantees as the SQLite
store of `inference.capture`, whose schema this module translates rather than copies
(PostgreSQL's REAL has 24 bits: confidences and times are DOUBLE PRECISION). A
request's rows are committed before the response is sent (PostgreSQL's default
`synchronous_commit`: the commit is on the server's disk), so an answered prediction is
a stored one; a row saved again under its id replaces the first answer, keeping its
ground truth. The schema only grows: a store lacking columns or indexes gains them
when opened, under an advisory lock so that workers starting together migrate once,
and a store that has them all (named in the table's comment) is not touched.

Each server worker holds up to CONNECTIONS connections, one per request in flight, so
that their commits are flushed together; a connection found broken (a restarted
database) is replaced and the operation done again (each may be repeated: a save
replaces by id), and a forked process opens its own. Ground truth is staged in a temporary
table by COPY and applied in one `UPDATE ... FROM`. The retention's policy is
`inference.retention.enforce`, through a connection of its own, in batches;
PostgreSQL's autovacuum gives the space back.

The URL (`postgresql://user@host:port/dbname`) names no password in anything this
module shows: the password comes separately (`password`, from
SERVING_CAPTURE_PASSWORD in the server) or from libpq's own PGPASSWORD or ~/.pgpass.
psycopg is imported when a store opens: a SQLite store never needs it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from inference.capture import (
    ADDED_COLUMNS,
    DISK_FULL_ADVICE,
    INSERT_PREDICTIONS,
    SAVED_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SMOKE,
    SOURCES,
    CaptureError,
    StoreBase,
    recent_parameters,
    recent_query,
)
from inference.retention import Retention, delete_in_batches, enforce, oldest_deletion

if TYPE_CHECKING:
    import psycopg

SCHEMES = ("postgresql", "postgres")
# The table's comment once a store has the whole schema: opening it then reads one row.
SCHEMA_COMMENT = f"penguins prediction capture, schema {SCHEMA_VERSION}"
# Held while migrating, so that the workers of one server migrate one at a time.
MIGRATION_LOCK = 0x70656E67  # "peng"
CONNECT_TIMEOUT_SECONDS = 10
# Connections a store (a server worker) holds at most: requests of one worker commit
# side by side, and PostgreSQL flushes their commits to its log together.
CONNECTIONS = 4
T = TypeVar("T")
# Above this many labels the staged table is analysed, so the planner joins it well.
ANALYSE_FROM_LABELS = 1_000


def is_postgres_url(database: str) -> bool:
    """Whether `database` names a PostgreSQL store (else it is a SQLite file)."""
    return database.partition("://")[0].lower() in SCHEMES and "://" in database


def described(url: str) -> str:
    """`url` without its password: how messages and logs name the store."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _postgres(statement: str) -> str:
    """A statement of the SQLite store in PostgreSQL's spelling: %s parameters, 64-bit
    floats."""
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement.replace("?", "%s"))


INSERT = _postgres(INSERT_PREDICTIONS)
# Up to this many rows go in one INSERT statement, in autocommit: one round trip and one
# commit, atomic as a statement is (10 parameters a row, of PostgreSQL's 65,535). More
# (a batch chunk) are copied into a staging table and inserted from it in one statement.
ROWS_PER_STATEMENT = 1_000
_VALUES, _CONFLICT = INSERT.split(" VALUES ")[1].split(" ON CONFLICT ")
STAGE_ROWS = (
    "CREATE TEMP TABLE IF NOT EXISTS staged_predictions (LIKE predictions INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
COPY_ROWS = f"COPY staged_predictions ({', '.join(SAVED_COLUMNS)}) FROM STDIN"
INSERT_STAGED = (
    f"{INSERT.split(' VALUES ')[0]} SELECT {', '.join(SAVED_COLUMNS)} FROM staged_predictions "
    f"ON CONFLICT {_CONFLICT}"
)
STAGE_LABELS = (
    "CREATE TEMP TABLE IF NOT EXISTS labels (id TEXT PRIMARY KEY, truth TEXT NOT NULL) "
    "ON COMMIT DELETE ROWS"
)
APPLY_LABELS = (
    "UPDATE predictions SET ground_truth = labels.truth, labeled_at = %s "
    "FROM labels WHERE predictions.id = labels.id"
)


def connect(url: str, password: str | None = None) -> psycopg.Connection:
    """Open a store in autocommit mode (transactions are explicit), migrated."""
    import psycopg

    extra = {"password": password} if password else {}
    connection = psycopg.connect(
        url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="penguins-capture", **extra,
    )  # fmt: skip
    try:
        comment = connection.execute(
            "SELECT obj_description(to_regclass('predictions'), 'pg_class')"
        ).fetchone()
        if comment is None or comment[0] != SCHEMA_COMMENT:
            _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: psycopg.Connection) -> None:
    """Bring the store to SCHEMA_VERSION in one transaction, rows untouched."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        existing = {
            row[0]
            for row in connection.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'predictions' AND table_schema = current_schema()"
            )
        }
        if existing:  # An older store: add what it lacks before the indexes need it.
            for name, definition in ADDED_COLUMNS.items():
                if name not in existing:
                    connection.execute(
                        _postgres(f"ALTER TABLE predictions ADD COLUMN {name} {definition}")
                    )
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(_postgres(statement))
        connection.execute(f"COMMENT ON TABLE predictions IS '{SCHEMA_COMMENT}'")


def _failure(what: str, where: str, error: Exception) -> str:
    """`what` failed on the store `where`, and why: a full disk says so, and what to do."""
    if getattr(error, "sqlstate", None) == "53100":  # disk_full
        return f"{what} {where}: the database server's disk is full: {DISK_FULL_ADVICE}"
    return f"{what} {where}: {str(error).strip()}"


class PostgresCaptureStore(StoreBase):
    """A thread-safe writer and reader of the predictions table in PostgreSQL."""

    def __init__(
        self, url: str, retention: Retention | None = None, password: str | None = None
    ) -> None:
        super().__init__(retention)
        self.url = url
        self.path = described(url)
        self._password = password
        self._slots = threading.BoundedSemaphore(CONNECTIONS)
        self._pool_lock = threading.Lock()
        self._idle: list[psycopg.Connection] = []
        self._pid = os.getpid()
        try:
            import psycopg  # noqa: F401 - only a PostgreSQL store needs the driver
        except ImportError:
            raise CaptureError(
                f"Cannot open the capture database {self.path}: PostgreSQL needs its driver "
                "where the server runs: pip install 'psycopg[binary]' (a dependency of this "
                "project: uv sync)."
            ) from None
        # Opened (and migrated) now: a store that cannot be reached fails at start.
        self._run("Cannot open the capture database", lambda connection: None)

    def _take(self) -> psycopg.Connection:
        """An idle connection of this process, or a new one."""
        with self._pool_lock:
            if self._pid != os.getpid():  # forked: the parent's connections are its own
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return connect(self.url, self._password)

    def _give_back(self, connection: psycopg.Connection) -> None:
        from psycopg.pq import TransactionStatus

        if connection.broken or connection.closed:
            return
        if connection.info.transaction_status != TransactionStatus.IDLE:
            connection.close()
            return
        with self._pool_lock:
            self._idle.append(connection)

    def _run(self, what: str, work: Callable[[psycopg.Connection], T], transaction=False) -> T:
        """`work` on a connection of the store's (in one transaction if asked); a failure
        as CaptureError saying `what` failed. A connection found broken (the database
        restarted) is replaced and `work` done once more: each of the store's operations
        may be repeated (a save replaces its rows by id)."""
        import psycopg

        with self._slots:
            for attempt in range(2):
                connection = None
                try:
                    connection = self._take()
                    if not transaction:
                        result = work(connection)
                    else:
                        with connection.transaction():
                            result = work(connection)
                except (psycopg.Error, OSError) as error:
                    broken = connection is not None and connection.broken
                    if connection is not None:
                        self._give_back(connection)
                    if broken and attempt == 0:
                        continue
                    raise CaptureError(_failure(what, self.path, error)) from error
                self._give_back(connection)
                return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _read(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(
            "Could not read predictions from",
            lambda connection: connection.execute(query, parameters).fetchall(),
        )

    def close(self) -> None:
        with self._pool_lock:
            idle, self._idle = (self._idle if self._pid == os.getpid() else []), []
        for connection in idle:
            connection.close()

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if len(rows) <= ROWS_PER_STATEMENT:  # a request's rows: one statement
            statement = INSERT.replace(_VALUES, ", ".join([_VALUES] * len(rows)))
            values = [value for row in rows for value in row]
            self._run(
                "Could not capture predictions in",
                lambda connection: connection.execute(statement, values),
            )
            return

        def staged(connection: psycopg.Connection) -> None:
            connection.execute(STAGE_ROWS)
            with connection.cursor().copy(COPY_ROWS) as copy:
                for row in rows:
                    copy.write_row(row)
            connection.execute(INSERT_STAGED)

        self._run("Could not capture predictions in", staged, transaction=True)

    def unlabeled(self) -> list[tuple[str, str]]:
        """(id, prediction) of every prediction without ground truth, but a smoke test's."""
        return self._read(
            "SELECT id, prediction FROM predictions WHERE ground_truth IS NULL "
            f"AND source != '{SMOKE}'"
        )

    def label(self, ground_truth: dict[str, str]) -> int:
        """Attach ground truth by prediction id in one transaction; return rows updated."""

        def apply(connection: psycopg.Connection) -> int:
            connection.execute(STAGE_LABELS)
            with connection.cursor().copy("COPY labels (id, truth) FROM STDIN") as copy:
                for id_, truth in ground_truth.items():
                    copy.write_row((id_, str(truth)))
            if len(ground_truth) >= ANALYSE_FROM_LABELS:
                connection.execute("ANALYZE labels")
            return connection.execute(APPLY_LABELS, (time.time(),)).rowcount

        return self._run("Could not record ground truth in", apply, transaction=True)

    def mark_source(self, ids: Sequence[str], source: str) -> int:
        """Mark the predictions `ids` as coming from `source`; return how many were found."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
        return self._run(
            "Could not mark predictions in",
            lambda connection: (
                connection.execute(
                    "UPDATE predictions SET source = %s WHERE id = ANY(%s)", (source, list(ids))
                ).rowcount
            ),
        )

    def recent(
        self, limit: int, labeled_only: bool = False, model_version: str | None = None
    ) -> list[tuple[Any, ...]]:
        """The `limit` newest predictions (with ground truth only, of `model_version`
        only, if asked), newest first; never a smoke test's."""
        query = recent_query(labeled_only, model_version is not None, tiebreak="id")
        return self._read(_postgres(query), recent_parameters(limit, model_version))

    def classes(self) -> list[str]:
        """Every class seen so far, predicted (by either model) or labelled."""
        rows = self._read(
            "SELECT DISTINCT prediction FROM predictions UNION "
            "SELECT DISTINCT shadow_prediction FROM predictions "
            "WHERE shadow_prediction IS NOT NULL UNION "
            "SELECT DISTINCT ground_truth FROM predictions WHERE ground_truth IS NOT NULL"
        )
        return sorted(row[0] for row in rows)

    def prune(self) -> int:
        """Delete what the retention no longer keeps, through a connection of its own
        and a transaction per batch (the server's writes never wait for it); rows deleted."""
        if self.retention is None:
            return 0
        import psycopg

        try:
            connection = connect(self.url, self._password)
            try:
                return enforce(
                    self.retention,
                    lambda limit: _stored_rows(connection, limit),
                    lambda labelled, before, limit: _delete_oldest(
                        connection, labelled, before, limit
                    ),
                )
            finally:
                connection.close()
        except (psycopg.Error, OSError) as error:
            message = _failure("Could not delete old predictions from", self.path, error)
            raise CaptureError(message) from error

    def rewrite(self) -> None:
        """Rewrite the table without its dead rows' space (`VACUUM FULL`): it holds the
        server's writes while it runs, as the SQLite store's does."""
        self._run(
            "Could not rewrite", lambda connection: connection.execute("VACUUM FULL predictions")
        )


def _stored_rows(connection: psycopg.Connection, limit: int) -> int:
    """The number of stored predictions, counted only when the planner's estimate says
    it may come near `limit` (counting reads the whole table)."""
    estimate = connection.execute(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass('predictions')"
    ).fetchone()
    if estimate is not None and 0 <= estimate[0] < 0.9 * limit:
        return int(estimate[0])
    return connection.execute("SELECT count(*) FROM predictions").fetchone()[0]


def _delete_oldest(
    connection: psycopg.Connection, labelled: bool, before: float | None, limit: int | None
) -> int:
    """Delete the oldest unlabelled (or labelled) predictions made `before` a time, at
    most `limit` of them, a batch per transaction; return how many."""
    statement, parameters = oldest_deletion(labelled, before, key="id")
    statement = _postgres(statement)

    def delete_batch(batch: int) -> int:
        with connection.transaction():
            return connection.execute(statement, parameters(batch)).rowcount

    return delete_in_batches(delete_batch, limit)

"""Prediction capture in SQLite: written by the model server, read and labelled later.
(The same store in PostgreSQL, for a team: `inference.capture_postgres`; which one a
setting names: `inference.capture_stores`.)

One row per prediction: its id (returned to the caller), when, which model version,
the inputs as JSON, the prediction, its confidence and, once known, the ground truth.
Inputs are stored as JSON so the table does not depend on the dataset's columns.

Several server workers write at once: WAL journaling lets readers and one writer
proceed together, and the busy timeout makes a writer wait for the lock instead of
failing. Each request's rows are committed before the response is sent, so a
prediction that was answered is on disk, even if the server is killed right after.

The schema only ever grows by statements that are no-ops on a store that has them
(`CREATE ... IF NOT EXISTS`): opening a store made by an older version migrates it in
place, rows untouched. Version 2 added `predictions_labeled`, so reading the newest
labelled rows costs the same however many newer rows still wait for ground truth.
Version 3 added columns, by `ALTER TABLE ... ADD COLUMN` when a store lacks them
(SQLite adds a column without rewriting a row): `source` (`online` for the server,
`batch` for the scoring pipeline, `smoke` for a deployment's smoke test, which is never
read back as evidence nor labelled) and the shadow model's answer to the same request
(`shadow_version`, `shadow_prediction`, `shadow_confidence`), labelled by the same
ground truth as the champion's.

The store is private to whoever runs the server: its file is created 0600 (SQLite
gives its `-wal` and `-shm` the same mode) and an older store's files are made so when
it is opened. With a `Retention` (`inference.retention`), the store deletes what it no
longer keeps after its first write and then at most every `PRUNE_INTERVAL_SECONDS`,
in a thread of its own, without stopping the server. A full disk fails the
write with a `CaptureError` that says so; what was stored before is intact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from inference.retention import Retention, give_space_back, prune, rewrite
from inference.sqlite_writes import is_disk_full, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    model_version TEXT,
    inputs TEXT NOT NULL,
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    ground_truth TEXT,
    labeled_at REAL,
    source TEXT NOT NULL DEFAULT 'online',
    shadow_version TEXT,
    shadow_prediction TEXT,
    shadow_confidence REAL
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
CREATE INDEX IF NOT EXISTS predictions_unlabeled ON predictions (created_at)
    WHERE ground_truth IS NULL;
CREATE INDEX IF NOT EXISTS predictions_labeled ON predictions (created_at)
    WHERE ground_truth IS NOT NULL;
"""
# Columns added after version 2, in order: what `ALTER TABLE` gives an older store.
ADDED_COLUMNS = {
    "source": "TEXT NOT NULL DEFAULT 'online'",
    "shadow_version": "TEXT",
    "shadow_prediction": "TEXT",
    "shadow_confidence": "REAL",
}
# Recorded in the database header (`PRAGMA user_version`) once a store has it all.
SCHEMA_VERSION = 3
# What `recent` returns per row, in order: the one list of a capture's columns, which
# `backends.base.captured_frame` (both backends' `load`) reads too. The last four may
# be missing from rows of an older reader (SageMaker's JSON Lines before shadows).
CAPTURE_COLUMNS = (
    "id", "created_at", "model_version", "inputs", "prediction", "confidence",
    "ground_truth", "source", "shadow_version", "shadow_prediction", "shadow_confidence",
)  # fmt: skip
SOURCES = ("online", "batch", "smoke")
# A deployment's smoke test: stored, never evidence (`recent` and `unlabeled` leave it out).
SMOKE = "smoke"
# The captured columns that monitoring and promotion compare.
PREDICTION = "prediction"
GROUND_TRUTH = "ground_truth"

# `label` stages the labels in a temporary table and applies them in one UPDATE, of
# one of two plans. Looking each label's id up costs ~20 µs a label; walking the whole
# id index beside the staged labels costs ~0.15 s a million predictions and little per
# label, so it wins from about one label per hundred stored predictions (measured here
# with 100,000 labels in a store of 1,000,000: ~1.9-2.4 s of CPU looked up, ~0.9 s
# staged and walked).
STAGE_LABELS = (
    "CREATE TEMP TABLE IF NOT EXISTS labels (id TEXT PRIMARY KEY, truth TEXT NOT NULL) "
    "WITHOUT ROWID"
)
APPLY_LABELS_BY_LOOKUP = (
    "UPDATE predictions "
    "SET ground_truth = (SELECT truth FROM temp.labels WHERE labels.id = predictions.id), "
    "labeled_at = ? WHERE id IN (SELECT id FROM temp.labels)"
)
APPLY_LABELS_BY_WALK = (
    "UPDATE predictions SET ground_truth = labels.truth, labeled_at = ? "
    "FROM temp.labels AS labels WHERE predictions.id = labels.id"
)
STORED_PER_LABEL_TO_WALK = 100

BUSY_TIMEOUT_SECONDS = 30.0
# How often a store with a retention looks for rows to delete while it is written to.
PRUNE_INTERVAL_SECONDS = 60.0
# The write-ahead log is cut back to this size after a checkpoint: a prune of many rows
# writes them all to it once.
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
# The companions SQLite keeps beside a store; they hold its rows too.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
DISK_FULL_ADVICE = (
    "free space on its disk, or keep fewer predictions (backend.capture_retention); the "
    "predictions stored before are intact."
)

logger = logging.getLogger(__name__)

# What a save writes of each row, in order. A row whose id is stored already (a batch
# chunk retried with its failed attempt's ids) is replaced by the newer answer, its
# ground truth kept: never a second row, never an error.
SAVED_COLUMNS = (
    "id", "created_at", "model_version", "inputs", "prediction", "confidence",
    "source", "shadow_version", "shadow_prediction", "shadow_confidence",
)  # fmt: skip
INSERT_PREDICTIONS = (
    f"INSERT INTO predictions ({', '.join(SAVED_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(SAVED_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in SAVED_COLUMNS[1:])
)


def prediction_ids(count: int) -> list[str]:
    """`count` new prediction ids: UUIDv7s (RFC 9562) as 32 hex digits, in increasing order.

    The id is the store's primary key. Random ids (UUIDv4) land all over its index, and
    at a million stored rows every batch of 100,000 touched pages the cache no longer
    held (100,000 inserts: 1.4 s into an empty store, 3.7-4.4 s into one of 900,000).
    These begin with the millisecond and, within a call, count up from a random start
    (RFC 9562's monotonic random, method 2), so a batch lands at the index's end: ~1.2 s
    whatever the store's size. 73 random bits per call keep two calls in the same
    millisecond apart.
    """
    if count <= 0:
        return []
    milliseconds = time.time_ns() // 1_000_000
    random_a = int.from_bytes(os.urandom(2)) & 0xFFF
    # The top bit of rand_b left clear, so counting up never carries into the variant.
    random_b = int.from_bytes(os.urandom(8)) & ((1 << 61) - 1)
    first = uuid7(milliseconds, random_a, random_b)
    return [f"{value:032x}" for value in range(first, first + count)]


def uuid7(milliseconds: int, random_a: int, random_b: int) -> int:
    """The UUIDv7 (RFC 9562) of a Unix time in milliseconds and its two random fields:
    `random_a` of 12 bits, `random_b` of 62 (here the top one kept clear)."""
    timestamp = milliseconds & ((1 << 48) - 1)
    return timestamp << 80 | 0x7 << 76 | random_a << 64 | 0b10 << 62 | random_b


class CaptureError(RuntimeError):
    """Predictions could not be stored; the request that made them must not succeed."""


@dataclass(frozen=True)
class ShadowAnswers:
    """What the shadow model answered to the rows of one request."""

    version: str | None
    predictions: Sequence[Any]
    confidences: Sequence[float | None]  # None where the shadow failed


def connect(path: str) -> sqlite3.Connection:
    """Open (and create if needed) a capture database, ready for concurrent writers."""
    _make_private(path)
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    if connection.execute("PRAGMA page_count").fetchone()[0] == 0:
        # Only a store without tables can take it: deleted rows' pages can then be
        # given back to the file system without rewriting the whole file.
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    # NORMAL in WAL mode survives a killed process (the OS keeps the written pages);
    # only a power loss could drop the last commits.
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA temp_store = MEMORY")  # `label`'s staging table
    # Only when it changes: setting it writes the header, and readers open stores too.
    if connection.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        _migrate(connection)
    return connection


def _make_private(path: str) -> None:
    """Create the store's file readable by its owner only, and make an existing store's
    files so (those of another user, or on a read-only disk, are left as they are)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, *(path + suffix for suffix in COMPANION_SUFFIXES)):
        with contextlib.suppress(OSError):
            mode = os.stat(name).st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
                os.chmod(name, 0o600)


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a new or older store to SCHEMA_VERSION in one transaction, rows untouched."""
    with write_transaction(connection):
        existing = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
        if existing:  # An older store: add what it lacks before the indexes need it.
            for name, definition in ADDED_COLUMNS.items():
                if name not in existing:
                    connection.execute(f"ALTER TABLE predictions ADD COLUMN {name} {definition}")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def recent_query(labeled_only: bool, by_version: bool = False, tiebreak: str = "rowid") -> str:
    """The query of `CaptureStore.recent`; its parameters are the model version (when
    `by_version`) and the row limit (`recent_parameters`). Smoke-test rows are left out.
    Rows of one time come newest first by `tiebreak`: SQLite's insertion order, or the
    (time-ordered) id."""
    where = f"WHERE source != '{SMOKE}' "
    where += "AND ground_truth IS NOT NULL " if labeled_only else ""
    where += "AND model_version = ? " if by_version else ""
    return (
        f"SELECT {', '.join(CAPTURE_COLUMNS)} "
        f"FROM predictions {where}ORDER BY created_at DESC, {tiebreak} DESC LIMIT ?"
    )


def recent_parameters(limit: int, model_version: str | None) -> tuple[Any, ...]:
    """The parameters of `recent_query(..., by_version=model_version is not None)`."""
    return (int(limit),) if model_version is None else (str(model_version), int(limit))


def _shadow_columns(shadow: ShadowAnswers | None, count: int) -> Iterable[tuple[Any, Any, Any]]:
    """Each row's (shadow_version, shadow_prediction, shadow_confidence); all None without
    a shadow, and no prediction where the shadow failed: NULL, which monitoring counts."""
    if shadow is None:
        return [(None, None, None)] * count
    return (
        (
            shadow.version,
            None if prediction is None else str(prediction),
            None if confidence is None else float(confidence),
        )
        for prediction, confidence in zip(shadow.predictions, shadow.confidences, strict=True)
    )


def _failure(what: str, path: str, error: sqlite3.Error | OSError) -> str:
    """`what` failed on the store at `path`, and why: a full disk says so, and what to do."""
    if is_disk_full(error):
        return f"{what} {path}: database or disk is full: {DISK_FULL_ADVICE}"
    return f"{what} {path}: {error}"


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


class StoreBase:
    """What every capture store shares: encoding a request's rows, checking them, and
    pruning in the background after writes. Thread-safe, as the model server needs.

    A store (`CaptureStore` here, `inference.capture_postgres.PostgresCaptureStore`)
    writes rows with `_write` and has `close`, `prune`, `rewrite`, `unlabeled`,
    `label`, `mark_source`, `recent` and `classes`. `path` names it in messages (never
    with a password). With a `retention`, what it no longer keeps is deleted in a
    thread of the store's own after its first write, then at most every
    PRUNE_INTERVAL_SECONDS after one.
    """

    path: str

    def __init__(self, retention: Retention | None) -> None:
        self.retention = retention
        self._prune_lock = threading.Lock()
        self._pruned_at = -math.inf  # time.monotonic() of the last prune started
        self._pruning: threading.Thread | None = None

    def prune(self) -> int:
        raise NotImplementedError

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """Store `rows` (values of SAVED_COLUMNS) in one transaction, or raise CaptureError."""
        raise NotImplementedError

    def wait_for_pruning(self, timeout: float | None = None) -> None:
        """Return once the prune running in the background, if any, has finished."""
        pruning = self._pruning
        if pruning is not None:
            pruning.join(timeout)

    def _prune_when_due(self) -> None:
        """Start a prune in the background if the last began PRUNE_INTERVAL_SECONDS ago."""
        if self.retention is None:
            return
        with self._prune_lock:
            running = self._pruning is not None and self._pruning.is_alive()
            if running or time.monotonic() - self._pruned_at < PRUNE_INTERVAL_SECONDS:
                return
            self._pruned_at = time.monotonic()
            self._pruning = threading.Thread(
                target=self._prune_and_log, daemon=True, name="capture-retention"
            )
            self._pruning.start()

    def _prune_and_log(self) -> None:
        try:
            deleted = self.prune()
        except CaptureError as error:  # the next write tries again after the interval
            logger.warning("%s", error)
            return
        if deleted:
            logger.info("Deleted %d predictions older than the retention from %s.", deleted,
                        self.path)  # fmt: skip

    def save(
        self,
        ids: Sequence[str],
        inputs: Iterable[dict[str, Any]],
        predictions: Sequence[Any],
        confidences: Sequence[float],
        model_version: str | None,
        source: str = "online",
        shadow: ShadowAnswers | None = None,
    ) -> None:
        """Store one request's predictions (and its shadow's) in a single transaction.

        An id stored already is replaced by this answer (its ground truth kept): saving
        a retried batch chunk's rows under their first ids again leaves one row each.
        """
        encoded = [json.dumps({k: _json_value(v) for k, v in row.items()}) for row in inputs]
        self.save_encoded(
            ids, encoded, predictions, confidences, model_version, source=source, shadow=shadow
        )

    def save_encoded(
        self,
        ids: Sequence[str],
        inputs_json: Sequence[str],
        predictions: Sequence[Any],
        confidences: Sequence[float],
        model_version: str | None,
        source: str = "online",
        shadow: ShadowAnswers | None = None,
    ) -> None:
        """`save`, with each row's inputs already encoded as a JSON object.

        Batch captures encode a whole frame at once (pandas' JSON writer), several
        times cheaper than a `json.dumps` per row.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
        now = time.time()
        rows = [
            (id_, now, model_version, row, str(prediction), float(confidence), source, *answer)
            for id_, row, prediction, confidence, answer in zip(
                ids, inputs_json, predictions, confidences, _shadow_columns(shadow, len(ids)),
                strict=True,
            )
        ]  # fmt: skip
        self._write(rows)
        self._prune_when_due()


class CaptureStore(StoreBase):
    """The SQLite store: a thread-safe writer and reader of the predictions table."""

    def __init__(self, path: str, retention: Retention | None = None) -> None:
        super().__init__(retention)
        self.path = path
        try:
            self._connection = connect(path)
        except (sqlite3.Error, OSError) as error:
            raise CaptureError(f"Cannot open the capture database {path}: {error}") from error
        self._lock = threading.Lock()

    def close(self) -> None:
        self._connection.close()

    def prune(self) -> int:
        """Delete what the retention no longer keeps, give the space back; rows deleted.

        Through a connection of its own: the store's writers wait one batch at most.
        """
        if self.retention is None:
            return 0
        try:
            connection = connect(self.path)
            try:
                deleted = prune(connection, self.retention)
                if deleted:
                    give_space_back(connection)
            finally:
                connection.close()
        except (sqlite3.Error, OSError) as error:
            message = _failure("Could not delete old predictions from", self.path, error)
            raise CaptureError(message) from error
        return deleted

    def rewrite(self) -> None:
        """Rewrite the store without its free pages (see `inference.retention.rewrite`)."""
        try:
            rewrite(self._connection)
        except sqlite3.Error as error:
            raise CaptureError(_failure("Could not rewrite", self.path, error)) from error

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            with self._lock, write_transaction(self._connection):
                self._connection.executemany(INSERT_PREDICTIONS, rows)
        except sqlite3.Error as error:
            raise CaptureError(
                _failure("Could not capture predictions in", self.path, error)
            ) from error

    def unlabeled(self) -> list[tuple[str, str]]:
        """(id, prediction) of every prediction without ground truth, but a smoke test's."""
        return self._connection.execute(
            "SELECT id, prediction FROM predictions WHERE ground_truth IS NULL "
            f"AND source != '{SMOKE}'"
        ).fetchall()

    def label(self, ground_truth: dict[str, str]) -> int:
        """Attach ground truth by prediction id in one transaction; return rows updated.

        The labels are staged in a temporary table and applied in one UPDATE, by the
        cheaper plan for their number (see `STAGE_LABELS`).
        """
        now = time.time()
        try:
            with self._lock, write_transaction(self._connection):
                updated = self._apply_labels(ground_truth, now)
        except sqlite3.Error as error:
            raise CaptureError(
                _failure("Could not record ground truth in", self.path, error)
            ) from error
        return updated

    def _apply_labels(self, ground_truth: dict[str, str], now: float) -> int:
        self._connection.execute(STAGE_LABELS)
        self._connection.executemany(
            "INSERT OR REPLACE INTO temp.labels (id, truth) VALUES (?, ?)",
            ((id_, str(truth)) for id_, truth in ground_truth.items()),
        )
        # About the number of rows (exactly, until the retention deletes some), in two seeks.
        stored = self._connection.execute("SELECT max(rowid) - min(rowid) + 1 FROM predictions")
        walk = len(ground_truth) * STORED_PER_LABEL_TO_WALK >= (stored.fetchone()[0] or 0)
        apply = APPLY_LABELS_BY_WALK if walk else APPLY_LABELS_BY_LOOKUP
        updated = self._connection.execute(apply, (now,)).rowcount
        self._connection.execute("DELETE FROM temp.labels")
        return updated

    def mark_source(self, ids: Sequence[str], source: str) -> int:
        """Mark the predictions `ids` as coming from `source` (e.g. a smoke test's, which
        no reader then takes for evidence); return how many were found."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
        try:
            with self._lock, write_transaction(self._connection):
                return self._connection.executemany(
                    "UPDATE predictions SET source = ? WHERE id = ?", ((source, i) for i in ids)
                ).rowcount
        except sqlite3.Error as error:
            message = _failure("Could not mark predictions in", self.path, error)
            raise CaptureError(message) from error

    def recent(
        self, limit: int, labeled_only: bool = False, model_version: str | None = None
    ) -> list[tuple[Any, ...]]:
        """The `limit` newest predictions (with ground truth only, of `model_version`
        only, if asked), newest first; never a smoke test's."""
        query = recent_query(labeled_only, by_version=model_version is not None)
        return self._connection.execute(query, recent_parameters(limit, model_version)).fetchall()

    def classes(self) -> list[str]:
        """Every class seen so far, predicted (by either model) or labelled."""
        rows = self._connection.execute(
            "SELECT DISTINCT prediction FROM predictions UNION "
            "SELECT DISTINCT shadow_prediction FROM predictions "
            "WHERE shadow_prediction IS NOT NULL UNION "
            "SELECT DISTINCT ground_truth FROM predictions WHERE ground_truth IS NOT NULL"
        ).fetchall()
        return sorted(row[0] for row in rows)

"""How long the capture store keeps predictions, and the pruning that enforces it.

A `Retention` says how long a prediction is kept: `days` for one without ground
truth, `labeled_days` for one with it (kept longer: labelled rows are what accuracy
and the shadow comparison are measured on), and `rows`, the most the store holds,
beyond which the oldest unlabelled predictions go first and labelled ones only when
they alone are too many. None keeps that kind of row for ever.

`prune` deletes what the retention no longer keeps in small transactions, so the
server's writers wait at most one batch, then gives the space back to the file system
(a store made by this version has `auto_vacuum = INCREMENTAL`; an older one reuses its
freed pages for new rows, or is converted by `VACUUM`: `python -m backends.local prune
--vacuum`). The model server reads its retention from `SERVING_CAPTURE_RETENTION`
(the JSON of `as_json`). What to delete is decided once, by `enforce`, for this
SQLite store and the PostgreSQL one (`inference.capture_postgres`) alike. Only the
standard library: every registered model ships it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from inference.sqlite_writes import write_transaction

ENVIRONMENT_VARIABLE = "SERVING_CAPTURE_RETENTION"
SECONDS_PER_DAY = 86_400.0
# Rows deleted per transaction: each batch holds the store's write lock ~10-20 ms.
BATCH_ROWS = 5_000
# Pages moved per incremental_vacuum transaction, for the same reason.
VACUUM_PAGES = 2_000
# SQLite's `PRAGMA auto_vacuum` value for INCREMENTAL.
INCREMENTAL = 2


@dataclass(frozen=True)
class Retention:
    """How long captured predictions are kept (`backend.capture_retention`); None: for ever."""

    days: float | None = 90.0  # a prediction without ground truth, from when it was made
    labeled_days: float | None = 365.0  # one with ground truth, from when it was made
    rows: int | None = 5_000_000  # the most kept: the oldest unlabelled go first

    def problem(self) -> tuple[str, str] | None:
        """(setting, why) for the first value that cannot be a retention, or None."""
        for name in ("days", "labeled_days", "rows"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                return name, f"must be a positive number or null (kept for ever), got {value!r}."
        if self.labeled_days is not None and (self.days is None or self.labeled_days < self.days):
            return "labeled_days", (
                f"must be at least days ({self.days!r}): labelled predictions are kept longer "
                f"than unlabelled ones, got {self.labeled_days!r}."
            )
        return None

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def from_environment(environment: Mapping[str, str]) -> Retention | None:
    """The retention `SERVING_CAPTURE_RETENTION` sets, None when unset (nothing pruned).

    ValueError, naming the variable, for a value that is not a retention.
    """
    text = environment.get(ENVIRONMENT_VARIABLE)
    if not text:
        return None
    try:
        retention = Retention(**json.loads(text))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE} must be a JSON object with days, labeled_days and rows; "
            f"got {text!r} ({error})."
        ) from None
    problem = retention.problem()
    if problem is not None:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}: {problem[0]} {problem[1]}")
    return retention


def prune(connection: sqlite3.Connection, retention: Retention, now: float | None = None) -> int:
    """Delete the predictions `retention` no longer keeps from a SQLite store; how many.

    `connection` is in autocommit mode (as `inference.capture.connect` opens it) and
    belongs to the caller's thread. Cheap when nothing is due: a few index seeks.
    """

    def delete_oldest(labelled: bool, before: float | None, limit: int | None) -> int:
        return _delete_oldest(connection, labelled, before=before, limit=limit)

    return enforce(retention, lambda limit: _stored_rows(connection, limit), delete_oldest, now=now)


def enforce(
    retention: Retention,
    stored_rows: Callable[[int], int],
    delete_oldest: Callable[[bool, float | None, int | None], int],
    now: float | None = None,
) -> int:
    """What `retention` keeps, whatever the store: the policy of every store's prune.

    `stored_rows(limit)` is the number of stored predictions (exact when it may exceed
    `limit`); `delete_oldest(labelled, before, limit)` deletes the oldest unlabelled (or
    labelled) ones made before a time (None: any), at most `limit` (None: all), and
    says how many. Returns the predictions deleted.
    """
    now = time.time() if now is None else now
    deleted = 0
    for labelled, days in ((False, retention.days), (True, retention.labeled_days)):
        if days is not None:
            deleted += delete_oldest(labelled, now - days * SECONDS_PER_DAY, None)
    if retention.rows is not None:
        excess = stored_rows(retention.rows) - retention.rows
        for labelled in (False, True):
            if excess > 0:
                removed = delete_oldest(labelled, None, excess)
                deleted, excess = deleted + removed, excess - removed
    return deleted


def give_space_back(connection: sqlite3.Connection) -> int:
    """Return the store's free pages to the file system, in small transactions; the
    pages given back (0 for a store without incremental auto_vacuum)."""
    if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
        return 0
    before = connection.execute("PRAGMA page_count").fetchone()[0]
    while (free := connection.execute("PRAGMA freelist_count").fetchone()[0]) > 0:
        connection.execute(f"PRAGMA incremental_vacuum({min(free, VACUUM_PAGES)})").fetchall()
        if connection.execute("PRAGMA freelist_count").fetchone()[0] >= free:
            break  # nothing moved (another writer holds the lock): the next prune goes on
    # In WAL mode the file shrinks when the vacuum's pages are checkpointed.
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return before - connection.execute("PRAGMA page_count").fetchone()[0]


def rewrite(connection: sqlite3.Connection) -> None:
    """Rewrite the store without its free pages (`VACUUM`), giving space back by itself
    from then on. It holds the store's write lock while it runs and needs free disk
    space of about the store's size."""
    connection.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
    connection.execute("VACUUM")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _stored_rows(connection: sqlite3.Connection, limit: int) -> int:
    """The number of stored predictions, counted only when the rowid range says it may
    exceed `limit` (counting reads a whole index; the range is two seeks)."""
    low, high = connection.execute("SELECT min(rowid), max(rowid) FROM predictions").fetchone()
    if low is None or high - low + 1 <= limit:
        return 0 if low is None else high - low + 1
    return connection.execute("SELECT count(*) FROM predictions").fetchone()[0]


def _delete_oldest(
    connection: sqlite3.Connection,
    labelled: bool,
    before: float | None = None,
    limit: int | None = None,
) -> int:
    """Delete the oldest unlabelled (or labelled) predictions made `before` a time, at
    most `limit` of them, a batch per transaction; return how many."""
    statement, parameters = oldest_deletion(labelled, before, key="rowid")

    def delete_batch(batch: int) -> int:
        with write_transaction(connection):
            return connection.execute(statement, parameters(batch)).rowcount

    return delete_in_batches(delete_batch, limit)


def oldest_deletion(
    labelled: bool, before: float | None, key: str
) -> tuple[str, Callable[[int], tuple[Any, ...]]]:
    """The statement deleting a batch of the oldest unlabelled (or labelled) predictions
    made `before` a time (None: any), rows picked by their `key` column, with `?`
    parameters; and the parameters of a batch of a given size."""
    condition = "ground_truth IS NOT NULL" if labelled else "ground_truth IS NULL"
    if before is not None:
        condition += " AND created_at < ?"
    # Walks the partial index of the labelled (or unlabelled) rows, oldest first.
    statement = (
        f"DELETE FROM predictions WHERE {key} IN (SELECT {key} FROM predictions "
        f"WHERE {condition} ORDER BY created_at LIMIT ?)"
    )
    return statement, lambda batch: (before, batch) if before is not None else (batch,)


def delete_in_batches(delete_batch: Callable[[int], int], limit: int | None) -> int:
    """Call `delete_batch(size)` (which deletes up to `size` rows in a transaction of
    its own and says how many) in batches of `BATCH_ROWS` until fewer than asked are
    left or `limit` (None: no limit) rows are gone; return how many were deleted."""
    deleted = 0
    while limit is None or deleted < limit:
        batch = BATCH_ROWS if limit is None else min(BATCH_ROWS, limit - deleted)
        count = delete_batch(batch)
        deleted += count
        if count < batch:
            break
    return deleted

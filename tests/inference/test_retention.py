"""How long the capture store keeps predictions (src/inference/retention.py) and the
store pruning itself while it is written to (src/inference/capture.py), on real files."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from inference import capture, retention
from inference.capture import CaptureStore
from inference.retention import Retention, from_environment, give_space_back, prune

DAY = 86_400.0
NOW = 1_800_000_000.0


def store_with(path: Path, rows: list[tuple[str, float, str | None]], note: int = 10) -> None:
    """A capture store holding `rows` of (id, days before NOW it was made, ground truth)."""
    store = CaptureStore(str(path))
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executemany(
            "INSERT INTO predictions (id, created_at, inputs, prediction, confidence, "
            "ground_truth) VALUES (?, ?, ?, 'Adelie', 0.5, ?)",
            [
                (id_, NOW - age * DAY, json.dumps({"n": "x" * note}), truth)
                for id_, age, truth in rows
            ],
        )
        connection.commit()


def kept(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return sorted(row[0] for row in connection.execute("SELECT id FROM predictions"))


def pruned(path: Path, kept_for: Retention) -> int:
    with contextlib.closing(capture.connect(str(path))) as connection:
        return prune(connection, kept_for, now=NOW)


def test_unlabelled_rows_go_after_days_and_labelled_ones_are_kept_longer(tmp_path: Path) -> None:
    path = tmp_path / "capture.db"
    store_with(path, [
        ("fresh", 1, None), ("old", 40, None), ("older", 400, None),
        ("old-labelled", 40, "Adelie"), ("ancient-labelled", 400, "Gentoo"),
    ])  # fmt: skip
    assert pruned(path, Retention(days=30, labeled_days=365, rows=None)) == 3
    assert kept(path) == ["fresh", "old-labelled"]


def test_beyond_the_row_limit_the_oldest_unlabelled_rows_go_first(tmp_path: Path) -> None:
    path = tmp_path / "capture.db"
    rows = [(f"u{age:02}", age, None) for age in range(10)]
    rows += [(f"l{age:02}", age + 0.5, "Adelie") for age in range(10)]
    store_with(path, rows)
    assert pruned(path, Retention(days=None, labeled_days=None, rows=14)) == 6
    assert kept(path) == sorted(
        [f"u{age:02}" for age in range(4)] + [f"l{a:02}" for a in range(10)]
    )
    # Only when the labelled rows alone are too many do the oldest of them go.
    assert pruned(path, Retention(days=None, labeled_days=None, rows=3)) == 11
    assert kept(path) == ["l00", "l01", "l02"]


def test_pruning_goes_in_batches_and_walks_the_partial_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH_ROWS", 7)
    path = tmp_path / "capture.db"
    store_with(path, [(f"id{i:03}", 100 + i % 5, None) for i in range(100)])
    assert pruned(path, Retention(days=30, labeled_days=None, rows=None)) == 100
    with contextlib.closing(sqlite3.connect(path)) as connection:
        plan = " ".join(
            str(row[-1])
            for row in connection.execute(
                "EXPLAIN QUERY PLAN SELECT rowid FROM predictions "
                "WHERE ground_truth IS NULL AND created_at < ? ORDER BY created_at LIMIT ?",
                (NOW, 10),
            )
        ).upper()
    assert "PREDICTIONS_UNLABELED" in plan and "TEMP B-TREE" not in plan, plan


def test_the_space_of_deleted_rows_goes_back_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / "capture.db"
    store_with(path, [(f"id{i:05}", 100 if i < 4000 else 1, None) for i in range(5000)], 400)
    with contextlib.closing(capture.connect(str(path))) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
        assert prune(connection, Retention(days=30), now=NOW) == 4000
        assert give_space_back(connection) > 0
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = path.stat().st_size
    assert after < before * 0.3, (before, after)
    assert len(kept(path)) == 1000


def test_a_store_with_a_retention_prunes_while_another_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the server runs: its store prunes after a write, in a thread of its own, then
    again after a write once the interval has passed; the writes go on meanwhile."""
    monkeypatch.setattr(capture, "PRUNE_INTERVAL_SECONDS", 0.2)
    path = tmp_path / "capture.db"
    now = time.time()
    store_with(path, [(f"stale{i}", (NOW - now) / DAY + 40, None) for i in range(50)])
    server = CaptureStore(str(path), Retention(days=30))
    try:
        server.save(["first"], [{"x": 1}], ["Gentoo"], [0.8], "3")
        server.wait_for_pruning(timeout=10)
        assert kept(path) == ["first"]
        with contextlib.closing(sqlite3.connect(path)) as other:  # a row made 40 days ago
            other.execute(
                "INSERT INTO predictions (id, created_at, inputs, prediction, confidence) "
                "VALUES ('late', ?, '{}', 'Adelie', 0.5)",
                (now - 40 * DAY,),
            )
            other.commit()
        server.save(["second"], [{"x": 1}], ["Gentoo"], [0.8], "3")
        assert "late" in kept(path)  # not yet: the interval has not passed
        time.sleep(0.25)
        server.save(["third"], [{"x": 1}], ["Gentoo"], [0.8], "3")
        server.wait_for_pruning(timeout=10)
        assert kept(path) == ["first", "second", "third"]
    finally:
        server.close()


def test_the_server_reads_its_retention_from_the_environment() -> None:
    assert from_environment({}) is None
    setting = Retention(days=7, labeled_days=30, rows=1000)
    variable = retention.ENVIRONMENT_VARIABLE
    assert from_environment({variable: setting.as_json()}) == setting
    with pytest.raises(ValueError, match=f"{variable}.*JSON"):
        from_environment({variable: "7 days"})
    with pytest.raises(ValueError, match="days must be a positive number"):
        from_environment({variable: json.dumps({"days": -1, "labeled_days": None})})


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        (Retention(days=0), "days"),
        (Retention(rows=-5), "rows"),
        (Retention(days=float("nan")), "days"),
        (Retention(days=float("inf")), "days"),
        (Retention(days=30, labeled_days=7), "labeled_days"),
        (Retention(days=None, labeled_days=365), "labeled_days"),
    ],
)
def test_a_retention_that_cannot_be_is_named(setting: Retention, problem: str) -> None:
    found = setting.problem()
    assert found is not None and found[0] == problem


def test_a_store_without_a_retention_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "capture.db"
    store_with(path, [("ancient", 10_000, None)])
    store = CaptureStore(str(path))
    try:
        assert store.prune() == 0
    finally:
        store.close()
    assert kept(path) == ["ancient"]
    assert os.stat(path).st_mode & 0o777 == 0o600

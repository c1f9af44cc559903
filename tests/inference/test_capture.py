"""Tests for the SQLite prediction capture (src/inference/capture.py), on real files."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference import capture
from inference.capture import CaptureError, CaptureStore

INPUTS = [
    {"island": "Biscoe", "culmen_length_mm": 48.6, "sex": None},
    {"island": "Dream", "culmen_length_mm": float("nan"), "sex": "FEMALE"},
    {"island": None, "culmen_length_mm": 39.1, "sex": "MALE"},
]


@pytest.fixture
def store(tmp_path: Path):
    store = CaptureStore(str(tmp_path / "capture.db"))
    yield store
    store.close()


def save_rows(store: CaptureStore, ids: list[str], predictions: list[str], version="7") -> None:
    rows = [INPUTS[i % len(INPUTS)] for i in range(len(ids))]
    confidences = [0.5 + 0.01 * i for i in range(len(ids))]
    store.save(ids, rows, predictions, confidences, version)


@contextlib.contextmanager
def other_connection(store: CaptureStore) -> Iterator[sqlite3.Connection]:
    """A second connection to the store's database, as another process would have."""
    connection = sqlite3.connect(
        store.path, isolation_level=None, timeout=5, check_same_thread=False
    )
    try:
        yield connection
    finally:
        connection.close()


def test_save_stores_every_field(store: CaptureStore) -> None:
    before = time.time()
    store.save(["a", "b", "c"], INPUTS, ["Gentoo", "Adelie", "Adelie"], [0.9, 0.6, 0.7], "3")

    with other_connection(store) as connection:
        connection.row_factory = sqlite3.Row
        rows = {row["id"]: row for row in connection.execute("SELECT * FROM predictions")}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["prediction"] == "Gentoo"
    assert rows["a"]["confidence"] == pytest.approx(0.9)
    assert rows["a"]["model_version"] == "3"
    assert before - 1 <= rows["a"]["created_at"] <= time.time() + 1
    assert rows["a"]["ground_truth"] is None and rows["a"]["labeled_at"] is None
    assert json.loads(rows["a"]["inputs"]) == INPUTS[0]
    # NaN is not JSON: a missing number is stored as null.
    assert json.loads(rows["b"]["inputs"]) == {**INPUTS[1], "culmen_length_mm": None}
    assert store.count() == 3


def test_database_uses_wal_journaling(store: CaptureStore) -> None:
    with other_connection(store) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recent_returns_newest_first_with_a_limit(store: CaptureStore) -> None:
    save_rows(store, ["old1", "old2"], ["Adelie", "Adelie"])
    time.sleep(0.01)
    save_rows(store, ["new1", "new2"], ["Gentoo", "Chinstrap"], version="8")

    rows = store.recent(3)
    assert [row[0] for row in rows] == ["new2", "new1", "old2"]
    identifier, created_at, version, inputs, prediction, confidence, truth = rows[0]
    assert (identifier, version, prediction, truth) == ("new2", "8", "Chinstrap", None)
    assert created_at > rows[2][1]
    assert json.loads(inputs) == {**INPUTS[1], "culmen_length_mm": None}
    assert confidence == pytest.approx(0.51)
    assert len(store.recent(100)) == 4


def test_unlabeled_label_and_labeled_only(store: CaptureStore) -> None:
    save_rows(store, ["a", "b", "c"], ["Adelie", "Gentoo", "Adelie"])
    assert sorted(store.unlabeled()) == [("a", "Adelie"), ("b", "Gentoo"), ("c", "Adelie")]
    assert store.recent(10, labeled_only=True) == []

    assert store.label({"b": "Chinstrap", "missing": "Adelie"}) == 1

    assert sorted(store.unlabeled()) == [("a", "Adelie"), ("c", "Adelie")]
    labeled = store.recent(10, labeled_only=True)
    assert [(row[0], row[4], row[6]) for row in labeled] == [("b", "Gentoo", "Chinstrap")]
    with other_connection(store) as connection:
        labeled_at = connection.execute("SELECT labeled_at FROM predictions WHERE id = 'b'")
        assert labeled_at.fetchone()[0] is not None


def test_classes_are_predicted_and_labelled_ones(store: CaptureStore) -> None:
    assert store.classes() == []
    save_rows(store, ["a", "b"], ["Gentoo", "Adelie"])
    store.label({"a": "Chinstrap"})
    assert store.classes() == ["Adelie", "Chinstrap", "Gentoo"]


def test_count(store: CaptureStore) -> None:
    assert store.count() == 0
    save_rows(store, [f"id{i}" for i in range(5)], ["Adelie"] * 5)
    assert store.count() == 5


def test_a_request_is_stored_whole_or_not_at_all(store: CaptureStore) -> None:
    save_rows(store, ["a"], ["Adelie"])
    with pytest.raises(CaptureError):  # "a" again: the primary key refuses the whole batch.
        save_rows(store, ["b", "a"], ["Adelie", "Adelie"])
    assert [row[0] for row in store.recent(10)] == ["a"]


def test_labelling_30000_rows_by_id(store: CaptureStore) -> None:
    count = 30_000
    ids = [f"{i:032x}" for i in range(count)]
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    store.save(
        ids,
        [{"culmen_length_mm": float(i)} for i in range(count)],
        [classes[i % 3] for i in range(count)],
        [0.9] * count,
        "1",
    )
    truth = {identifier: classes[(i + 1) % 3] for i, identifier in enumerate(ids)}

    assert store.label(truth) == count

    with other_connection(store) as connection:
        stored = dict(connection.execute("SELECT id, ground_truth FROM predictions"))
        # Each update finds its row through the primary key's index: linear, not a scan
        # of the whole table per row.
        plan = " ".join(
            str(row[-1])
            for row in connection.execute(
                "EXPLAIN QUERY PLAN UPDATE predictions SET ground_truth = ?, labeled_at = ? "
                "WHERE id = ?",
                ("x", 0.0, "y"),
            )
        )
    assert stored == truth
    assert store.unlabeled() == []
    assert "INDEX" in plan.upper() and "SCAN" not in plan.upper(), plan


def test_writer_waits_for_a_lock_instead_of_failing(store: CaptureStore) -> None:
    with other_connection(store) as blocker:
        blocker.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(0.5, blocker.execute, ("COMMIT",))
        release.start()
        try:
            started = time.monotonic()
            save_rows(store, ["a"], ["Adelie"])
            waited = time.monotonic() - started
        finally:
            release.join()
    assert waited >= 0.4
    assert store.count() == 1


def test_locked_database_raises_capture_error_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real busy timeout is 30 s; the behaviour at its end is the same with 0.2 s.
    monkeypatch.setattr(capture, "BUSY_TIMEOUT_SECONDS", 0.2)
    store = CaptureStore(str(tmp_path / "capture.db"))
    try:
        with other_connection(store) as blocker:
            blocker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(CaptureError, match="lock"):
                save_rows(store, ["a", "b"], ["Adelie", "Gentoo"])
            blocker.execute("COMMIT")
        assert store.count() == 0
        save_rows(store, ["c"], ["Adelie"])  # Usable again once the lock is gone.
        assert store.count() == 1
    finally:
        store.close()


def test_failing_write_raises_capture_error_and_stores_nothing(store: CaptureStore) -> None:
    save_rows(store, ["a"], ["Adelie"])
    with other_connection(store) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON predictions "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    with pytest.raises(CaptureError, match="disk says no"):
        save_rows(store, ["b", "c"], ["Adelie", "Gentoo"])
    assert store.count() == 1


@pytest.mark.parametrize("kind", ["parent is a file", "path is a directory"])
def test_database_on_an_unwritable_path_raises_capture_error(tmp_path: Path, kind: str) -> None:
    # A path where no database can be written, whoever runs the tests (root included).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "capture.db" if kind == "parent is a file" else tmp_path
    with pytest.raises(CaptureError, match=re.escape(str(path))):
        store = CaptureStore(str(path))
        save_rows(store, ["a"], ["Adelie"])

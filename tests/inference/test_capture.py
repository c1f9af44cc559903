"""Tests for the SQLite prediction capture (src/inference/capture.py), on real files."""

from __future__ import annotations

import contextlib
import json
import os
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


def stored_rows(store: CaptureStore) -> int:
    """How many predictions the store's database holds, read through its own connection."""
    with other_connection(store) as connection:
        return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


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
    assert stored_rows(store) == 3


def test_database_uses_wal_journaling(store: CaptureStore) -> None:
    with other_connection(store) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recent_returns_newest_first_with_a_limit(store: CaptureStore) -> None:
    save_rows(store, ["old1", "old2"], ["Adelie", "Adelie"])
    time.sleep(0.01)
    save_rows(store, ["new1", "new2"], ["Gentoo", "Chinstrap"], version="8")

    rows = store.recent(3)
    assert [row[0] for row in rows] == ["new2", "new1", "old2"]
    identifier, created_at, version, inputs, prediction, confidence, truth, *rest = rows[0]
    assert (identifier, version, prediction, truth) == ("new2", "8", "Chinstrap", None)
    assert rest == ["online", None, None, None]  # source and the (absent) shadow
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


def test_stored_rows_counts_what_was_saved(store: CaptureStore) -> None:
    assert stored_rows(store) == 0
    save_rows(store, [f"id{i}" for i in range(5)], ["Adelie"] * 5)
    assert stored_rows(store) == 5


def test_a_request_is_stored_whole_or_not_at_all(store: CaptureStore) -> None:
    save_rows(store, ["a"], ["Adelie"])
    with pytest.raises(CaptureError):  # the second row's inputs are NULL: the batch fails
        store.save_encoded(["b", "c"], ["{}", None], ["Adelie"] * 2, [0.5] * 2, "7")
    assert [row[0] for row in store.recent(10)] == ["a"]


def test_saving_stored_ids_again_replaces_their_rows_and_keeps_ground_truth(
    store: CaptureStore,
) -> None:
    save_rows(store, ["a", "b"], ["Adelie", "Gentoo"], version="1")
    store.label({"a": "Chinstrap"})
    # A retried batch chunk saves the same ids again, one of them beside a new one.
    store.save(["a", "b", "c"], INPUTS, ["Gentoo"] * 3, [0.9] * 3, "2", source="batch")
    assert stored_rows(store) == 3
    rows = {row[0]: row for row in store.recent(10)}
    assert {id_: (row[2], row[4], row[6], row[7]) for id_, row in rows.items()} == {
        "a": ("2", "Gentoo", "Chinstrap", "batch"),
        "b": ("2", "Gentoo", None, "batch"),
        "c": ("2", "Gentoo", None, "batch"),
    }


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
    assert stored == truth
    assert store.unlabeled() == []


def query_plan(store: CaptureStore, statement: str, *parameters: object) -> list[str]:
    with other_connection(store) as connection:
        connection.execute(capture.STAGE_LABELS)
        return [
            str(row[-1]).upper()
            for row in connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        ]


def test_both_plans_of_applying_labels_go_through_the_primary_key(store: CaptureStore) -> None:
    # Looked up: one search of the id index per label, never a pass over the table.
    plan = query_plan(store, capture.APPLY_LABELS_BY_LOOKUP, 0.0)
    assert any(step.startswith("SEARCH PREDICTIONS USING INDEX") for step in plan), plan
    assert not any(step.startswith("SCAN PREDICTIONS") for step in plan), plan
    # Walked: one pass over the id index alone (covering), each staged label found by key.
    plan = query_plan(store, capture.APPLY_LABELS_BY_WALK, 0.0)
    assert "SCAN PREDICTIONS USING COVERING INDEX" in " ".join(plan), plan
    assert any(step.startswith("SEARCH LABELS USING PRIMARY KEY") for step in plan), plan


@pytest.mark.parametrize("labels", [1, 150])  # 200 stored: looked up, walked
def test_either_plan_labels_exactly_the_rows_named(store: CaptureStore, labels: int) -> None:
    ids = [f"id{i:03}" for i in range(200)]
    save_rows(store, ids, ["Adelie"] * len(ids))
    chosen = ids[::-1][:labels]
    assert store.label({id_: f"class-{id_}" for id_ in chosen}) == labels
    with other_connection(store) as connection:
        stored = dict(
            connection.execute(
                "SELECT id, ground_truth FROM predictions WHERE ground_truth IS NOT NULL"
            )
        )
    assert stored == {id_: f"class-{id_}" for id_ in chosen}


def test_labels_in_any_order_reach_their_rows_and_unknown_ids_are_ignored(
    store: CaptureStore,
) -> None:
    ids = [f"id{i:03}" for i in range(200)]
    save_rows(store, ids, ["Adelie"] * len(ids))
    shuffled = ids[::7] + ids[3::7]
    truth = {identifier: f"class-{identifier}" for identifier in reversed(shuffled)}

    assert store.label({**truth, "nobody": "Gentoo"}) == len(truth)
    assert store.label({ids[0]: "Gentoo"}) == 1  # relabelling: the newer label wins

    with other_connection(store) as connection:
        stored = dict(
            connection.execute(
                "SELECT id, ground_truth FROM predictions WHERE ground_truth IS NOT NULL"
            )
        )
        staged = connection.execute(
            "SELECT COUNT(*) FROM sqlite_temp_master WHERE name = 'labels'"
        ).fetchone()[0]
    assert stored == {**truth, ids[0]: "Gentoo"}
    assert staged == 0  # the staging table belongs to the store's connection only
    assert sorted(id_ for id_, _ in store.unlabeled()) == sorted(set(ids) - set(truth))


def test_the_newest_labelled_rows_are_read_through_their_own_index(store: CaptureStore) -> None:
    save_rows(store, ["old1", "old2"], ["Adelie", "Gentoo"])
    store.label({"old1": "Adelie", "old2": "Adelie"})
    save_rows(store, [f"new{i}" for i in range(50)], ["Adelie"] * 50)  # newer, unlabelled

    assert [row[0] for row in store.recent(5, labeled_only=True)] == ["old2", "old1"]
    with other_connection(store) as connection:
        plan = " ".join(
            str(row[-1]).upper()
            for row in connection.execute(
                "EXPLAIN QUERY PLAN " + capture.recent_query(labeled_only=True), (5,)
            )
        )
    # Walked newest first through the labelled rows only: no scan, no sort.
    assert "PREDICTIONS_LABELED" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# A store as version 1 of this module made it: no index of the labelled rows, no version.
VERSION_1_SCHEMA = """
CREATE TABLE predictions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    model_version TEXT,
    inputs TEXT NOT NULL,
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    ground_truth TEXT,
    labeled_at REAL
);
CREATE INDEX predictions_created_at ON predictions (created_at);
CREATE INDEX predictions_unlabeled ON predictions (created_at) WHERE ground_truth IS NULL;
"""


def test_a_version_1_store_is_migrated_in_place_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    rows = [
        (f"id{i}", 1000.0 + i, "3", json.dumps({"island": "Dream", "n": i}), "Adelie", 0.75,
         "Gentoo" if i % 3 == 0 else None, 2000.0 + i if i % 3 == 0 else None)
        for i in range(300)
    ]  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(VERSION_1_SCHEMA)
        old.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        old.commit()
        assert old.execute("PRAGMA user_version").fetchone()[0] == 0

    for _ in range(2):  # migrated once; opening it again changes nothing
        store = CaptureStore(str(path))
        try:
            with other_connection(store) as connection:
                kept = connection.execute("SELECT * FROM predictions ORDER BY rowid").fetchall()
                indexes = {
                    name for (name,) in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'index'"
                    )
                }  # fmt: skip
                version = connection.execute("PRAGMA user_version").fetchone()[0]
            # Old rows keep their values; the added columns read as an online capture
            # without a shadow.
            assert kept == [(*row, "online", None, None, None) for row in rows]
            assert {"predictions_created_at", "predictions_unlabeled", "predictions_labeled"} <= (
                indexes
            )
            assert version == capture.SCHEMA_VERSION == 3
            newest = [row[0] for row in store.recent(3, labeled_only=True)]
            assert newest == ["id297", "id294", "id291"]
        finally:
            store.close()

    store = CaptureStore(str(path))
    try:  # and it works as a store: new predictions, labels, reads
        save_rows(store, ["fresh"], ["Chinstrap"])
        assert store.label({"fresh": "Chinstrap", "id1": "Adelie"}) == 2
        assert [row[0] for row in store.recent(2, labeled_only=True)] == ["fresh", "id297"]
        assert stored_rows(store) == len(rows) + 1
    finally:
        store.close()


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
    assert stored_rows(store) == 1


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
        assert stored_rows(store) == 0
        save_rows(store, ["c"], ["Adelie"])  # Usable again once the lock is gone.
        assert stored_rows(store) == 1
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
    assert stored_rows(store) == 1


@pytest.mark.parametrize("kind", ["parent is a file", "path is a directory"])
def test_database_on_an_unwritable_path_raises_capture_error(tmp_path: Path, kind: str) -> None:
    # A path where no database can be written, whoever runs the tests (root included).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "capture.db" if kind == "parent is a file" else tmp_path
    with pytest.raises(CaptureError, match=re.escape(str(path))):
        store = CaptureStore(str(path))
        save_rows(store, ["a"], ["Adelie"])


def test_shadow_answers_and_source_are_stored_beside_the_served_ones(store: CaptureStore) -> None:
    shadow = capture.ShadowAnswers("9", ["Gentoo", "Adelie"], [0.6, 0.7])
    store.save(["s1", "s2"], INPUTS[:2], ["Adelie", "Adelie"], [0.9, 0.8], "8", shadow=shadow)
    store.save(["b1"], INPUTS[:1], ["Gentoo"], [0.5], "8", source="batch")
    assert store.label({"s1": "Gentoo", "s2": "Adelie"}) == 2  # one label serves both models

    rows = {row[0]: row for row in store.recent(10)}
    assert rows["s1"][6:] == ("Gentoo", "online", "9", "Gentoo", 0.6)
    assert rows["s2"][6:] == ("Adelie", "online", "9", "Adelie", 0.7)
    assert rows["b1"][6:] == (None, "batch", None, None, None)
    assert "Gentoo" in store.classes()


def test_unknown_source_or_unpaired_shadow_stores_nothing(store: CaptureStore) -> None:
    with pytest.raises(ValueError, match="source"):
        store.save(["x"], INPUTS[:1], ["Adelie"], [0.9], "8", source="nightly")
    with pytest.raises(ValueError):
        shadow = capture.ShadowAnswers("9", ["Gentoo"], [0.6, 0.7])
        store.save(["y"], INPUTS[:1], ["Adelie"], [0.9], "8", shadow=shadow)
    assert store.recent(10) == []


def test_a_version_2_store_gains_the_new_columns_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(VERSION_1_SCHEMA)
        old.execute(
            "CREATE INDEX predictions_labeled ON predictions (created_at) "
            "WHERE ground_truth IS NOT NULL"
        )
        old.execute(
            "INSERT INTO predictions VALUES ('k', 1.0, '3', '{}', 'Adelie', 0.5, 'Adelie', 2.0)"
        )
        old.execute("PRAGMA user_version = 2")
        old.commit()
    store = CaptureStore(str(path))
    try:
        assert store.recent(1) == [
            ("k", 1.0, "3", "{}", "Adelie", 0.5, "Adelie", "online", None, None, None)
        ]
        with other_connection(store) as connection:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        store.close()


def test_prediction_ids_are_unique_time_ordered_uuid7s() -> None:
    import uuid

    first = capture.prediction_ids(1000)
    time.sleep(0.002)
    second = capture.prediction_ids(1000)
    ids = first + second
    assert len(set(ids)) == 2000
    assert first == sorted(first) and second == sorted(second)
    assert max(first) < min(second)  # a later millisecond sorts after
    for value in (ids[0], ids[-1]):
        parsed = uuid.UUID(hex=value)
        assert len(value) == 32 and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        milliseconds = int(value[:12], 16)
        assert abs(milliseconds / 1000 - time.time()) < 60
    assert capture.prediction_ids(0) == []
    # Two calls in one millisecond start at random places: apart, not overlapping.
    assert capture.prediction_ids(5)[0] != capture.prediction_ids(5)[0]


# --- data at rest: who can read the store, a full disk, and the retention -------------


def file_modes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mode & 0o777 for path in directory.iterdir()}


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_store_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    with umask(0o022):  # a usual umask, which makes new files world-readable
        store = CaptureStore(str(tmp_path / "capture.db"))
        try:
            save_rows(store, ["a"], ["Adelie"])
            modes = file_modes(tmp_path)
        finally:
            store.close()
    assert modes == {"capture.db": 0o600, "capture.db-wal": 0o600, "capture.db-shm": 0o600}


def test_an_existing_world_readable_store_is_made_private_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "capture.db"
    with umask(0o022), contextlib.closing(sqlite3.connect(path)) as old:
        old.execute("PRAGMA journal_mode = WAL")
        old.executescript(VERSION_1_SCHEMA)
        old.execute(
            "INSERT INTO predictions VALUES ('k', 1.0, '3', '{}', 'Adelie', 0.5, NULL, NULL)"
        )
        old.commit()
        assert file_modes(tmp_path)["capture.db-wal"] == 0o644
        store = CaptureStore(str(path))
        store.close()
        assert set(file_modes(tmp_path).values()) == {0o600}


@contextlib.contextmanager
def full_disk(store: CaptureStore) -> Iterator[None]:
    """The store's file may not grow by a page: SQLite then fails a write with
    SQLITE_FULL, "database or disk is full", as on a disk with no space left."""
    connection = store._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute(f"PRAGMA max_page_count = {pages}")
    try:
        yield
    finally:
        connection.execute("PRAGMA max_page_count = 4294967294")


def large_rows(count: int, prefix: str) -> tuple[list[str], list[dict]]:
    return [f"{prefix}{i}" for i in range(count)], [{"note": "x" * 2000}] * count


def test_a_full_disk_fails_the_save_saying_so_and_loses_nothing(store: CaptureStore) -> None:
    save_rows(store, ["kept1", "kept2"], ["Adelie", "Gentoo"])
    ids, rows = large_rows(50, "lost")
    with full_disk(store), pytest.raises(CaptureError) as failed:
        store.save(ids, rows, ["Adelie"] * 50, [0.9] * 50, "7")
    message = str(failed.value)
    assert "database or disk is full" in message and store.path in message
    assert "cannot rollback" not in message
    assert "free space" in message  # and what to do about it
    assert sorted(row[0] for row in store.recent(10)) == ["kept1", "kept2"]
    store.save(ids, rows, ["Adelie"] * 50, [0.9] * 50, "7")  # space again: it takes writes
    assert stored_rows(store) == 52


def test_a_full_disk_fails_labelling_with_a_capture_error(store: CaptureStore) -> None:
    ids = [f"id{i:05}" for i in range(3000)]
    save_rows(store, ids, ["Adelie"] * len(ids))
    with full_disk(store), pytest.raises(CaptureError) as failed:
        store.label({id_: "Gentoo-" + "x" * 200 for id_ in ids})
    assert "Could not record ground truth in" in str(failed.value)
    assert "database or disk is full" in str(failed.value)
    assert store.recent(5, labeled_only=True) == []  # no label half applied
    assert store.label({ids[0]: "Gentoo"}) == 1


def test_a_full_disk_is_a_503_whose_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the request guard the model server runs, in process: what the client
    gets and what the server's log says when the capture cannot be written."""
    import numpy as np
    from mlflow.pyfunc import scoring_server

    from inference.request_guard import install_request_guard

    store = CaptureStore(str(tmp_path / "capture.db"))

    class OneColumn:  # the guard's view of the model's features: one number per row
        def validate(self, rows: list[dict], max_rows: int) -> dict:
            return {"x": np.array([float(row["x"]) for row in rows])}

    def answer(columns: dict) -> tuple[list[str], list[float], list[str]]:
        ids, rows = large_rows(len(columns["x"]), "request")
        store.save(ids, rows, ["Adelie"] * len(ids), [0.9] * len(ids), "7")
        return ["Adelie"] * len(ids), [0.9] * len(ids), ids

    original = scoring_server.invocations
    install_request_guard(OneColumn(), 1000, answer)
    try:
        with full_disk(store), caplog.at_level("ERROR"):
            body = json.dumps({"inputs": [{"x": 1.0}] * 20})
            response = scoring_server.invocations(body, "application/json", None, None)
    finally:
        scoring_server.invocations = original
        store.close()
    assert response.status == 503
    assert "database or disk is full" in json.loads(response.response)["message"]
    assert "database or disk is full" in caplog.text
    assert "cannot rollback" not in caplog.text

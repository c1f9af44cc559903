"""Tests for the PostgreSQL prediction capture (src/inference/capture_postgres.py) and
the choice of store (src/inference/capture_stores.py), on a real PostgreSQL cluster."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from inference.capture import CaptureError, CaptureStore
from inference.capture_postgres import PostgresCaptureStore, described, is_postgres_url
from inference.capture_stores import from_environment, open_store
from inference.retention import SECONDS_PER_DAY, Retention

USER, PASSWORD = "capture_tests", "a-test-password"
INPUTS = [
    {"island": "Biscoe", "culmen_length_mm": 48.6, "sex": None},
    {"island": "Dream", "culmen_length_mm": float("nan"), "sex": "FEMALE"},
]
_databases = itertools.count()


@pytest.fixture(scope="module")
def capture_user(postgres_cluster):
    postgres_cluster.create_user(USER, PASSWORD)
    return postgres_cluster


@pytest.fixture
def database_url(capture_user) -> str:
    """A new, empty database's URL without the password (which goes separately)."""
    name = f"captures_{next(_databases)}"
    capture_user.create_database(name, owner=USER)
    return f"postgresql://{USER}@127.0.0.1:{capture_user.port}/{name}"


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresCaptureStore]:
    store = PostgresCaptureStore(database_url, password=PASSWORD)
    yield store
    store.close()


def query(store: PostgresCaptureStore, statement: str, *parameters: object) -> list[tuple]:
    """`statement`'s rows through a connection of their own, as another process reads."""
    import psycopg

    with psycopg.connect(store.url, password=PASSWORD, autocommit=True) as connection:
        cursor = connection.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


def test_a_url_names_postgres_and_a_path_names_sqlite(tmp_path) -> None:
    assert is_postgres_url("postgresql://u@h:5432/db") and is_postgres_url("postgres://h/db")
    assert not is_postgres_url("penguins.db") and not is_postgres_url(str(tmp_path / "x.db"))
    sqlite = open_store(str(tmp_path / "captures.db"))
    assert isinstance(sqlite, CaptureStore)
    sqlite.close()


def test_messages_name_the_store_without_its_password() -> None:
    assert described("postgresql://ann:S3cret@db:5432/captures") == (
        "postgresql://ann:***@db:5432/captures"
    )
    assert described("postgresql://ann@db/captures") == "postgresql://ann@db/captures"


def test_without_the_driver_opening_a_store_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(CaptureError) as refused:
        PostgresCaptureStore("postgresql://ann:S3cret@db.internal/captures")
    assert str(refused.value) == (
        "Cannot open the capture database postgresql://ann:***@db.internal/captures: "
        "PostgreSQL needs its driver where the server runs: pip install 'psycopg[binary]' "
        "(a dependency of this project: uv sync)."
    )


def test_save_and_read_back_every_field(store: PostgresCaptureStore) -> None:
    before = time.time()
    store.save(["a", "b"], INPUTS, ["Gentoo", "Adelie"], [0.9, 0.625], "3")
    rows = store.recent(10)
    assert [row[0] for row in rows] == ["b", "a"]  # one time: the later id first
    newest = rows[0]
    assert newest[2:7] == ("3", '{"island": "Dream", "culmen_length_mm": null, "sex": "FEMALE"}',
                           "Adelie", 0.625, None)  # fmt: skip
    assert newest[7:] == ("online", None, None, None)
    assert before <= newest[1] <= time.time()  # a double: microseconds survive
    assert store.classes() == ["Adelie", "Gentoo"]


def test_the_schema_is_the_sqlite_stores_with_its_partial_indexes(
    store: PostgresCaptureStore,
) -> None:
    columns = query(
        store,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'predictions' ORDER BY ordinal_position",
    )
    assert [name for name, _ in columns] == [
        "id", "created_at", "model_version", "inputs", "prediction", "confidence",
        "ground_truth", "labeled_at", "source", "shadow_version", "shadow_prediction",
        "shadow_confidence",
    ]  # fmt: skip
    assert dict(columns)["confidence"] == "double precision"
    indexes = dict(query(store, "SELECT indexname, indexdef FROM pg_indexes "
                                "WHERE tablename = 'predictions'"))  # fmt: skip
    assert indexes["predictions_unlabeled"].endswith("WHERE (ground_truth IS NULL)")
    assert indexes["predictions_labeled"].endswith("WHERE (ground_truth IS NOT NULL)")


def test_an_older_store_gains_the_new_columns_in_place(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, password=PASSWORD, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE predictions (id TEXT PRIMARY KEY, created_at DOUBLE PRECISION "
            "NOT NULL, model_version TEXT, inputs TEXT NOT NULL, prediction TEXT NOT NULL, "
            "confidence DOUBLE PRECISION NOT NULL, ground_truth TEXT, labeled_at "
            "DOUBLE PRECISION)"
        )
        connection.execute(
            "INSERT INTO predictions VALUES ('old', 1.0, '1', '{}', 'Adelie', 0.5, NULL, NULL)"
        )
    store = PostgresCaptureStore(database_url, password=PASSWORD)
    try:
        assert store.recent(5) == [
            ("old", 1.0, "1", "{}", "Adelie", 0.5, None, "online", None, None, None)
        ]
        store.save(["new"], INPUTS[:1], ["Gentoo"], [0.8], "2", source="batch")
        assert [row[7] for row in store.recent(5)] == ["batch", "online"]
    finally:
        store.close()


def test_workers_opening_a_new_store_together_migrate_it_once(database_url: str) -> None:
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            PostgresCaptureStore(database_url, password=PASSWORD).close()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=open_and_close) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_saving_stored_ids_again_replaces_their_rows_and_keeps_ground_truth(
    store: PostgresCaptureStore,
) -> None:
    store.save(["a", "b"], INPUTS, ["Adelie", "Gentoo"], [0.5, 0.6], "1")
    store.label({"a": "Chinstrap"})
    # A retried batch chunk saves the same ids again, one of them beside a new one.
    store.save(["a", "b", "c"], [*INPUTS, INPUTS[0]], ["Gentoo"] * 3, [0.9] * 3, "2",
               source="batch")  # fmt: skip
    assert query(store, "SELECT count(*) FROM predictions") == [(3,)]
    rows = {row[0]: (row[2], row[4], row[6], row[7]) for row in store.recent(10)}
    assert rows == {
        "a": ("2", "Gentoo", "Chinstrap", "batch"),
        "b": ("2", "Gentoo", None, "batch"),
        "c": ("2", "Gentoo", None, "batch"),
    }


def test_a_request_is_stored_whole_or_not_at_all(store: PostgresCaptureStore) -> None:
    store.save(["a"], INPUTS[:1], ["Adelie"], [0.5], "1")
    with pytest.raises(CaptureError, match="Could not capture predictions in postgresql://"):
        store.save_encoded(["b", "c"], ["{}", None], ["Adelie"] * 2, [0.5] * 2, "1")
    assert [row[0] for row in store.recent(10)] == ["a"]


def test_labels_staged_and_applied_by_id_and_unknown_ids_ignored(
    store: PostgresCaptureStore,
) -> None:
    ids = [f"{i:032x}" for i in range(3000)]
    store.save_encoded(ids, ["{}"] * len(ids), ["Adelie"] * len(ids), [0.5] * len(ids), "1")
    labels = {id_: "Gentoo" for id_ in ids[::2]} | {"missing": "Adelie"}
    assert store.label(labels) == 1500
    assert len(store.unlabeled()) == 1500
    assert len(store.recent(5000, labeled_only=True)) == 1500
    assert store.label({ids[1]: "Chinstrap"}) == 1  # the staging table is empty again
    assert store.classes() == ["Adelie", "Chinstrap", "Gentoo"]


def test_smoke_rows_are_stored_but_never_read_back(store: PostgresCaptureStore) -> None:
    store.save(["s", "o"], INPUTS, ["Adelie", "Gentoo"], [0.5, 0.6], "4")
    assert store.mark_source(["s", "unknown"], "smoke") == 1
    assert [row[0] for row in store.recent(10)] == ["o"]
    assert store.unlabeled() == [("o", "Gentoo")]
    assert [row[0] for row in store.recent(10, model_version="4")] == ["o"]
    assert store.recent(10, model_version="5") == []


def test_retention_deletes_old_and_excess_unlabelled_rows_first(
    store: PostgresCaptureStore,
) -> None:
    ids = [f"{i:032x}" for i in range(6)]
    store.save_encoded(ids, ["{}"] * 6, ["Adelie"] * 6, [0.5] * 6, "1")
    store.label({ids[0]: "Adelie", ids[1]: "Adelie"})
    now = time.time()
    for id_, days in ((ids[0], 45), (ids[2], 45), (ids[3], 1)):
        query(store, "UPDATE predictions SET created_at = %s WHERE id = %s",
              now - days * SECONDS_PER_DAY, id_)  # fmt: skip
    # Another store with a retention (this one's would prune after its first write).
    pruner = PostgresCaptureStore(
        store.url, Retention(days=30, labeled_days=60, rows=4), password=PASSWORD
    )
    try:
        # ids[2] (unlabelled, 45 days old) goes by age, the labelled ids[0] stays; of the
        # 5 left, one too many: the oldest unlabelled, ids[3].
        assert pruner.prune() == 2
    finally:
        pruner.close()
    assert sorted(row[0] for row in store.recent(10)) == [ids[0], ids[1], ids[4], ids[5]]


def test_a_wrong_password_fails_opening_without_showing_it(database_url: str) -> None:
    url = database_url.replace(f"{USER}@", f"{USER}:not-the-password@")
    with pytest.raises(CaptureError, match="password authentication failed") as raised:
        PostgresCaptureStore(url)
    assert "not-the-password" not in str(raised.value)
    assert f"{USER}:***@" in str(raised.value)


def test_a_save_on_a_broken_connection_is_done_again_on_a_new_one(
    store: PostgresCaptureStore,
) -> None:
    store.save(["a"], INPUTS[:1], ["Adelie"], [0.5], "1")
    ended = query(
        store,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert ended == [(True,)]  # the store's one connection, as a database restart does
    store.save(["b"], INPUTS[:1], ["Gentoo"], [0.5], "1")
    assert sorted(row[0] for row in store.recent(10)) == ["a", "b"]


def test_requests_in_flight_together_commit_on_connections_of_their_own(
    store: PostgresCaptureStore,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from inference.capture_postgres import CONNECTIONS

    def save(index: int) -> None:
        store.save([f"r{index}"], INPUTS[:1], ["Adelie"], [0.5], "1")

    with ThreadPoolExecutor(16) as threads:
        list(threads.map(save, range(400)))
    assert query(store, "SELECT count(*) FROM predictions") == [(400,)]
    assert 1 <= len(store._idle) <= CONNECTIONS


def test_the_server_environment_opens_the_store_with_its_password(database_url: str) -> None:
    environment = {
        "SERVING_CAPTURE_DATABASE": database_url,
        "SERVING_CAPTURE_PASSWORD": PASSWORD,
        "SERVING_CAPTURE_RETENTION": Retention(days=1, labeled_days=2, rows=10).as_json(),
    }
    store = from_environment(environment)
    try:
        assert isinstance(store, PostgresCaptureStore)
        assert store.retention == Retention(days=1, labeled_days=2, rows=10)
        assert store.recent(1) == []
    finally:
        store.close()
    assert from_environment({}) is None


def test_a_batch_chunk_is_copied_in_and_saved_again_under_its_ids_once(
    store: PostgresCaptureStore,
) -> None:
    from inference.capture_postgres import ROWS_PER_STATEMENT

    count = ROWS_PER_STATEMENT * 2 + 1  # through the staging table
    ids = [f"{i:032x}" for i in range(count)]
    inputs = [f'{{"row": {i}}}' for i in range(count)]
    store.save_encoded(ids, inputs, ["Adelie"] * count, [0.5] * count, "1", source="batch")
    store.label({ids[0]: "Adelie"})
    store.save_encoded(ids, inputs, ["Gentoo"] * count, [0.75] * count, "1", source="batch")
    assert query(store, "SELECT count(*), min(prediction), max(confidence) FROM predictions") == [
        (count, "Gentoo", 0.75)
    ]
    assert query(store, "SELECT ground_truth FROM predictions WHERE id = %s", ids[0]) == [
        ("Adelie",)
    ]
    assert query(store, "SELECT inputs FROM predictions WHERE id = %s", ids[-1]) == [
        (f'{{"row": {count - 1}}}',)
    ]

"""model_monitoring.production_rows: the rows the monitored version answered, described.

Captures are stored through the project's own store and read back through the Local
backend, as the monitoring pipeline reads them.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from backends.local import Local
from inference.capture import SMOKE, CaptureStore
from model_monitoring.production_rows import describe_rows, rows_sentence, version_windows

ROW = {"island": "Dream", "culmen_length_mm": 40.0}


def capture(path: Path, version: str, rows: int, source: str = "online") -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(rows)]
    store = CaptureStore(str(path))
    try:
        store.save(ids, [ROW] * rows, ["Adelie"] * rows, [0.9] * rows, version, source=source)
    finally:
        store.close()
    return ids


@pytest.fixture
def backend(tmp_path: Path) -> Local:
    return Local({"database": str(tmp_path / "capture.db")})


def test_each_version_gets_only_the_rows_it_answered(backend: Local) -> None:
    database = Path(backend.database)
    first = capture(database, "1", 6)
    second = capture(database, "2", 4)
    backend.label_by_id({id_: "Adelie" for id_ in first[:3] + second[:2]})

    windows = version_windows(backend, 100, "2")
    assert windows.labelled is not None and windows.recent is not None
    assert sorted(windows.labelled["id"]) == sorted(second[:2])
    assert sorted(windows.recent["id"]) == sorted(second)
    assert set(windows.recent["model_version"]) == {"2"}
    # A version that answered nothing has no rows; None (nothing registered): all rows.
    assert version_windows(backend, 100, "3").recent is None
    everything = version_windows(backend, 100, None)
    assert everything.recent is not None and len(everything.recent) == 10


def test_the_newest_rows_of_the_version_fill_the_window(backend: Local) -> None:
    database = Path(backend.database)
    old = capture(database, "2", 5)
    capture(database, "1", 20)  # newer, of another version: they must not crowd it out
    windows = version_windows(backend, 5, "2")
    assert windows.recent is not None and sorted(windows.recent["id"]) == sorted(old)


def test_smoke_test_rows_are_never_evidence_nor_labelled(backend: Local) -> None:
    database = Path(backend.database)
    smoke = capture(database, "2", 5, source=SMOKE)
    served = capture(database, "2", 3)
    assert backend.label(1.0) == 3  # the smoke rows stay without labels
    backend.label_by_id({id_: "Adelie" for id_ in smoke})  # even labelled by hand
    windows = version_windows(backend, 100, "2")
    for frame in (windows.labelled, windows.recent):
        assert frame is not None and sorted(frame["id"]) == sorted(served)
    loaded = backend.load(limit=100)
    assert loaded is not None and SMOKE not in set(loaded["source"])


def test_rows_are_marked_as_a_smoke_tests_by_id(backend: Local) -> None:
    database = Path(backend.database)
    ids = capture(database, "2", 4)
    store = CaptureStore(str(database))
    try:
        assert store.mark_source(ids[:3], SMOKE) == 3
        with pytest.raises(ValueError, match="source must be one of"):
            store.mark_source(ids, "rehearsal")
    finally:
        store.close()
    loaded = backend.load(limit=100)
    assert loaded is not None and loaded["id"].tolist() == [ids[3]]


def test_a_window_is_described_by_version_count_time_and_sources(backend: Local) -> None:
    database = Path(backend.database)
    capture(database, "2", 3)
    capture(database, "2", 2, source="batch")
    frame = backend.load(limit=100, model_version="2")
    described = describe_rows(frame, "2")
    assert described["version"] == "2" and described["rows"] == 5
    assert described["sources"] == {"online": 3, "batch": 2}
    assert described["first"] <= described["last"]
    assert described["first"].endswith("+00:00")  # UTC
    sentence = rows_sentence(described, "Estimate")
    assert sentence.startswith("Estimate: 5 rows answered by version 2, ")
    assert "3 online, 2 batch" in sentence


def test_an_empty_window_says_so() -> None:
    described = describe_rows(None, "4")
    assert described == {"version": "4", "rows": 0, "first": None, "last": None, "sources": {}}
    assert rows_sentence(described, "Estimate") == "Estimate: no rows of version 4."

"""The Local backend (src/backends/local.py) against a real server and real SQLite."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.rows import SPEC_ROW

from backends.base import BackendError
from backends.local import Local

ROWS = [
    SPEC_ROW,
    {
        "island": "Torgersen",
        "culmen_length_mm": 39.1,
        "culmen_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "sex": "FEMALE",
    },
    {
        "island": "Dream",
        "culmen_length_mm": 49.5,
        "culmen_depth_mm": 19.0,
        "flipper_length_mm": 200.0,
        "body_mass_g": 3800.0,
        "sex": None,
    },
]
FEATURES = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
META = ["prediction", "confidence", "ground_truth", "id", "model_version", "created_at"]


@pytest.fixture
def backend(server) -> Local:
    return Local(server.backend_config())


def unused_url() -> str:
    """The invocations URL of a free port of 127.0.0.1: no server answers there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/invocations"


def labels(database: str, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """(prediction, ground truth) by id."""
    with sqlite3.connect(database) as db:
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            f"SELECT id, prediction, ground_truth FROM predictions WHERE id IN ({marks})", ids
        )
        return {row[0]: (row[1], row[2]) for row in rows}


def unlabeled_count(database: str) -> int:
    with sqlite3.connect(database) as db:
        query = "SELECT COUNT(*) FROM predictions WHERE ground_truth IS NULL"
        return db.execute(query).fetchone()[0]


def test_deployed_version_is_the_one_serving(backend: Local, server) -> None:
    assert backend.deployed_version() == server.version


def test_a_version_that_cannot_be_downloaded_leaves_the_old_one_serving(
    backend: Local, server
) -> None:
    """The new model is downloaded before the old server stops: a bad one changes nothing."""
    with pytest.raises(BackendError, match=r"Could not download the model models:/no-such-model/1"):
        backend.deploy("models:/no-such-model/1", "99")
    assert backend.deployed_version() == server.version
    (prediction,) = backend.invoke(ROWS[:1])["predictions"]
    assert prediction["prediction"] == "Gentoo"


def test_prepare_downloads_without_touching_the_serving_server(
    backend: Local, server, serving_models
) -> None:
    import json

    other = next(v for v in serving_models.good if v != server.version)
    backend.prepare(serving_models.uri(other), other)

    prepared = json.loads((Path(backend.state_dir) / "prepared.json").read_text())
    assert prepared["model_uri"] == serving_models.uri(other)
    assert any(Path(prepared["path"]).rglob("MLmodel"))
    assert backend.deployed_version() == server.version
    with pytest.raises(BackendError, match=r"Preparing models:/no-such-model/1 failed"):
        backend.prepare("models:/no-such-model/1", "1")
    assert backend.deployed_version() == server.version


def test_a_new_server_keeps_only_its_own_download(backend: Local, server) -> None:
    from backends.local_server import LocalServer

    server.stop()
    server.start()  # as a deployment does: the downloads of earlier servers are deleted
    state_dir = Path(backend.state_dir)
    (kept,) = (state_dir / "models").iterdir()
    assert any(kept.rglob("MLmodel")), f"no model in {kept}"
    assert not (state_dir / "prepared.json").exists()
    assert LocalServer(state_dir).state().model_version == server.version


def test_deployed_version_is_none_without_a_server(tmp_path: Path) -> None:
    backend = Local({"target": unused_url(), "state_dir": str(tmp_path / "serving")})
    assert backend.deployed_version() is None


def test_invoke_returns_predictions_with_ids(backend: Local) -> None:
    response = backend.invoke(ROWS)
    predictions = response["predictions"]
    assert [p["prediction"] for p in predictions] == ["Gentoo", "Adelie", "Chinstrap"]
    assert all(0 < p["confidence"] <= 1 for p in predictions)
    assert all(re.fullmatch(r"[0-9a-f]{32}", p["id"]) for p in predictions)
    assert set(labels(backend.database, [p["id"] for p in predictions])) == {
        p["id"] for p in predictions
    }


def test_invoke_reports_a_rejected_request(backend: Local) -> None:
    with pytest.raises(BackendError, match=r"400.*Atlantis"):
        backend.invoke([{**ROWS[0], "island": "Atlantis"}])


def test_invoke_without_a_server_says_how_to_deploy(tmp_path: Path) -> None:
    backend = Local({"target": unused_url(), "database": str(tmp_path / "capture.db")})
    with pytest.raises(BackendError, match=r"deployment\.py"):
        backend.invoke(ROWS)


def test_load_returns_the_newest_rows_first(backend: Local, server) -> None:
    first = backend.invoke(ROWS[:2])["predictions"]
    second = backend.invoke(ROWS)["predictions"]

    frame = backend.load(limit=4)

    assert len(frame) == 4
    assert {*FEATURES, "island", "sex", *META} <= set(frame.columns)
    # Newest request first; within one request, the last row first.
    assert frame["id"].tolist() == [p["id"] for p in reversed(second)] + [first[1]["id"]]
    assert frame["created_at"].is_monotonic_decreasing
    assert str(frame["created_at"].dt.tz) == "UTC"
    newest = frame.iloc[0]
    assert newest["island"] == "Dream" and newest["culmen_length_mm"] == 49.5
    assert newest["prediction"] == second[2]["prediction"]
    assert newest["confidence"] == pytest.approx(second[2]["confidence"])
    assert newest["model_version"] == server.version
    assert pd.isna(newest["sex"])


def test_load_labeled_only(backend: Local) -> None:
    ids = [p["id"] for p in backend.invoke(ROWS)["predictions"]]
    assert backend.label_by_id({ids[1]: "Chinstrap"}) == 1

    labeled = backend.load(limit=1000, labeled_only=True)
    assert labeled["ground_truth"].notna().all()
    assert ids[1] in set(labeled["id"])
    assert not {ids[0], ids[2]} & set(labeled["id"])
    assert labeled.set_index("id").loc[ids[1], "ground_truth"] == "Chinstrap"


def test_load_without_a_database_is_none(tmp_path: Path) -> None:
    assert Local({"database": str(tmp_path / "nothing.db")}).load() is None


def test_label_labels_every_unlabeled_row_once(backend: Local) -> None:
    ids = [p["id"] for p in backend.invoke(ROWS * 2)["predictions"]]
    unlabeled = unlabeled_count(backend.database)
    assert unlabeled >= len(ids)

    assert backend.label(ground_truth_quality=1.0) == unlabeled
    assert unlabeled_count(backend.database) == 0
    assert backend.label(ground_truth_quality=1.0) == 0
    assert all(truth == prediction for prediction, truth in labels(backend.database, ids).values())


def test_label_with_quality_zero_never_agrees(backend: Local) -> None:
    ids = [p["id"] for p in backend.invoke(ROWS * 3)["predictions"]]
    assert backend.label(ground_truth_quality=0.0) >= len(ids)
    found = labels(backend.database, ids).values()
    assert all(truth in {"Adelie", "Chinstrap", "Gentoo"} for _, truth in found)
    assert all(truth != prediction for prediction, truth in found)


def test_label_by_id_labels_exactly_the_given_ids(backend: Local) -> None:
    ids = [p["id"] for p in backend.invoke(ROWS)["predictions"]]
    assert backend.label_by_id({ids[0]: "Adelie", ids[2]: "Gentoo", "f" * 32: "Adelie"}) == 2
    found = labels(backend.database, ids)
    assert found[ids[0]][1] == "Adelie"
    assert found[ids[1]][1] is None
    assert found[ids[2]][1] == "Gentoo"


def test_save_captures_frames_made_elsewhere(tmp_path: Path) -> None:
    backend = Local({"database": str(tmp_path / "elsewhere.db")})
    model_input = pd.DataFrame(ROWS[:2]).assign(body_mass_g=[np.nan, 3750.0])
    model_output = pd.DataFrame(
        {
            "prediction": ["Gentoo", "Adelie"],
            "confidence": [0.9, 0.8],
            "id": ["a" * 32, "b" * 32],
            "model_version": ["5", "5"],
        }
    )
    backend.save(model_input, model_output)
    # Without ids, the backend makes them.
    backend.save(model_input.head(1), model_output.drop(columns=["id", "model_version"]).head(1))

    frame = backend.load(limit=10)
    assert len(frame) == 3
    by_id = frame.set_index("id")
    assert by_id.loc["a" * 32, "prediction"] == "Gentoo"
    assert by_id.loc["b" * 32, "confidence"] == pytest.approx(0.8)
    assert by_id.loc["b" * 32, "model_version"] == "5"
    assert pd.isna(by_id.loc["a" * 32, "body_mass_g"])
    assert by_id.loc["b" * 32, "island"] == "Torgersen"
    generated = frame.iloc[0]
    assert re.fullmatch(r"[0-9a-f]{32}", generated["id"])
    assert generated["model_version"] is None
    assert frame["ground_truth"].isna().all()


def test_batch_saves_capture_inputs_as_the_server_does(tmp_path: Path) -> None:
    """Frames are encoded at once (pandas), rows by the server one by one (json.dumps):
    the stored inputs must read back the same, missing values as null."""
    from inference.capture import CaptureStore

    database = str(tmp_path / "batch.db")
    model_input = pd.DataFrame(
        {
            "island": ["Biscoe", None, 'Dr"eam\n'],
            "culmen_length_mm": [48.6, np.nan, 1234.5678901234],
            "body_mass_g": [3750, 4000, 5000],
        }
    )
    ids = ["c" * 32, "d" * 32, "e" * 32]
    outputs = pd.DataFrame(
        {"prediction": ["Gentoo"] * 3, "confidence": [0.5] * 3, "id": ids, "model_version": "2"}
    )
    Local({"database": database}).save(model_input, outputs, source="batch")
    reference = CaptureStore(str(tmp_path / "online.db"))
    reference.save(ids, model_input.to_dict("records"), ["Gentoo"] * 3, [0.5] * 3, "2")
    batch = CaptureStore(database)
    try:
        stored = {row[0]: row for row in batch.recent(10)}
        expected = {row[0]: row for row in reference.recent(10)}
        for id_ in ids:
            assert json.loads(stored[id_][3]) == pytest.approx(json.loads(expected[id_][3]))
            assert stored[id_][7] == "batch"
    finally:
        batch.close()
        reference.close()


# --- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"max_bach_size": 50},
            r"^backend\.max_bach_size: unknown setting, did you mean max_batch_size\?",
        ),
        ({"state_dri": ".s"}, r"^backend\.state_dri: unknown setting, did you mean state_dir\?"),
        ({"worker": 3}, r"^backend\.worker: unknown setting, did you mean workers\?"),
        ({"region": "us-east-1"}, r"^backend\.region: unknown setting\. Valid settings: module,"),
        ({"max_batch_size": "50"}, r"^backend\.max_batch_size: expected int, got str '50'"),
        ({"max_batch_size": 0}, r"^backend\.max_batch_size: must be a positive integer, got 0"),
        ({"workers": -1}, r"^backend\.workers: must be a positive integer, got -1"),
        ({"target": "127.0.0.1:8080"}, r"^backend\.target: '127\.0\.0\.1:8080' is not where"),
        ({"database": ""}, r"^backend\.database: '' names no database"),
        ({"database": "${CAPTURE_URL}"}, r"^backend\.database: '\$\{CAPTURE_URL\}' names no"),
        (
            {"database": "postgresql://ann:S3cret@db:5432/captures"},
            r"^backend\.database: postgresql://ann:\*\*\*@db:5432/captures holds a password, "
            r"which would be stored with every run: remove it from the URL and put it in "
            r"CAPTURE_DATABASE_PASSWORD",
        ),
        ({"database": "postgresql://ann@db:5432"}, r"must name a host and a database"),
        ({"database": "postgresql://ann@db:port/x"}, r"^backend\.database: postgresql://ann@db"),
    ],
)
def test_wrong_settings_are_refused_naming_the_key(settings: dict, message: str) -> None:
    from common import settings_loader as common_settings

    with pytest.raises(common_settings.SettingsError, match=message) as info:
        Local({"module": "backend.Local", **settings})
    assert isinstance(info.value, BackendError)


def test_a_typo_stops_the_pipeline_with_one_line() -> None:
    from common.pipeline import PipelineError, build_backend

    with pytest.raises(PipelineError) as info:
        build_backend("backend.Local", {"module": "backend.Local", "max_bach_size": 50})
    assert str(info.value).startswith(
        "Backend backend.Local: backend.max_bach_size: unknown setting, did you mean "
        "max_batch_size?"
    )


def test_settings_take_effect_and_hyphenated_keys_still_load(tmp_path: Path) -> None:
    backend = Local({"max_batch_size": 50, "state_dir": str(tmp_path), "workers": 1})
    assert (backend.max_batch_size, backend.state_dir, backend.workers) == (50, str(tmp_path), 1)
    with pytest.warns(FutureWarning, match=r"backend\.max-batch-size: write it as max_batch_size"):
        assert Local({"max-batch-size": 7}).max_batch_size == 7
    assert Local({}).settings == Local({"target": "http://127.0.0.1:8080/invocations"}).settings


def test_a_port_held_by_another_process_is_refused_naming_it(tmp_path: Path) -> None:
    """Nothing of this state directory serves there: the deployment says whose port it is
    not, and how to get one, instead of a server that dies at start."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        backend = Local(
            {
                "target": f"http://127.0.0.1:{port}/invocations",
                "state_dir": str(tmp_path / "serving"),
                "database": str(tmp_path / "capture.db"),
            }
        )
        with pytest.raises(
            BackendError,
            match=rf"Port {port} of 127\.0\.0\.1 is in use by another process, not by a model "
            r"server of .*serving: stop that process, or set backend\.target to a free port",
        ):
            backend.deploy(str(model), "1")
    assert not (tmp_path / "serving" / "server.json").exists()


# --- captures at rest: retention, and failures of the store ---------------------------


def aged_store(database: Path, ages_in_days: dict[str, float]) -> None:
    """Captures made `age` days ago, by id, through the backend's own `save`."""
    ids = list(ages_in_days)
    outputs = pd.DataFrame({"prediction": ["Adelie"] * len(ids), "confidence": 0.5, "id": ids})
    Local({"database": str(database)}).save(pd.DataFrame([SPEC_ROW] * len(ids)), outputs)
    with sqlite3.connect(database) as db:
        db.executemany(
            "UPDATE predictions SET created_at = created_at - ? WHERE id = ?",
            [(age * 86_400, id_) for id_, age in ages_in_days.items()],
        )


def stored_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as db:
        return sorted(row[0] for row in db.execute("SELECT id FROM predictions"))


def test_the_retention_reaches_the_server_and_is_checked() -> None:
    from inference.retention import ENVIRONMENT_VARIABLE, Retention

    backend = Local({"capture_retention": {"days": 7, "labeled_days": 30, "rows": 1000}})
    assert backend.settings.capture_retention == Retention(days=7, labeled_days=30, rows=1000)
    served = json.loads(backend._environment("3")[ENVIRONMENT_VARIABLE])
    assert served == {"days": 7, "labeled_days": 30, "rows": 1000}
    assert Local({}).settings.capture_retention == Retention()  # kept 90 days, labelled 365
    assert Local({"capture_retention": {"days": None, "labeled_days": None, "rows": None}})
    for retention, message in [
        ({"days": 0}, r"backend\.capture_retention\.days: must be a positive number or null"),
        ({"days": float("nan")}, r"backend\.capture_retention\.days: must be a (finite|positive)"),
        ({"rows": -1}, r"backend\.capture_retention\.rows: must be a positive number"),
        (
            {"days": 30, "labeled_days": 7},
            r"backend\.capture_retention\.labeled_days: must be at least",
        ),
        ({"dayz": 3}, r"backend\.capture_retention\.dayz: unknown setting, did you mean days\?"),
    ]:
        with pytest.raises(BackendError, match=message):
            Local({"capture_retention": retention})


def test_labelling_deletes_what_the_retention_no_longer_keeps(tmp_path: Path) -> None:
    database = tmp_path / "capture.db"
    aged_store(database, {"new": 0, "month": 31, "year": 400})
    backend = Local({"database": str(database), "capture_retention": {"days": 30}})
    assert backend.label(ground_truth_quality=1.0) == 3  # labelled first, then pruned
    assert stored_ids(database) == ["month", "new"]  # labelled: kept 365 days
    assert backend.prune() == 0


def test_prune_command_deletes_past_the_configured_retention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from backends.local import main

    database = tmp_path / "capture.db"
    aged_store(database, {"new": 0, "old": 10, "older": 20})
    config = tmp_path / "project.yml"
    config.write_text(
        "project: penguins\n"
        f"backend:\n  module: backend.Local\n  database: {database}\n"
        "  capture_retention:\n    days: 5\n"
        "dataset:\n  target: species\n  numeric_features: [culmen_length_mm]\n"
        "  categorical_features: [island]\n"
        "model:\n  name: penguins\n"
    )
    assert main(["prune", "--config", str(config), "--vacuum"]) == 0
    assert f"Deleted 2 captured predictions past backend.capture_retention from {database}" in (
        capsys.readouterr().out
    )
    assert stored_ids(database) == ["new"]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # gives space back now
    config.write_text(config.read_text().replace("days: 5", "days: -5"))
    assert main(["prune", "--config", str(config)]) == 1
    assert "backend.capture_retention.days: must be a positive number" in capsys.readouterr().err


def test_a_store_that_refuses_labels_is_a_backend_error_naming_it(tmp_path: Path) -> None:
    database = tmp_path / "capture.db"
    aged_store(database, {"a": 0})
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON predictions "
            "BEGIN SELECT RAISE(ABORT, 'labels refused by the test'); END"
        )
    backend = Local({"database": str(database)})
    for label in (lambda: backend.label(), lambda: backend.label_by_id({"a": "Gentoo"})):
        with pytest.raises(BackendError) as failed:
            label()
        assert str(failed.value) == (
            f"Labelling failed: Could not record ground truth in {database}: "
            "labels refused by the test"
        )


def test_the_servers_state_logs_and_captures_are_private(backend: Local, server) -> None:
    """What a running server keeps at rest: only its owner can read any of it, and its
    record knows the process by its start time too."""
    from backends.local_server import LocalServer
    from backends.local_state import process_start

    backend.invoke([SPEC_ROW])  # a capture, so the store and its WAL exist
    state_dir = Path(backend.state_dir)
    assert state_dir.stat().st_mode & 0o777 == 0o700
    private = [state_dir / "server.json", *state_dir.glob("server-*.log*")]
    private += [Path(backend.database + suffix) for suffix in ("", "-wal", "-shm")]
    assert {path.name: path.stat().st_mode & 0o777 for path in private} == {
        path.name: 0o600 for path in private
    }
    state = LocalServer(state_dir).state()
    assert state is not None and state.process_start == process_start(state.pid) is not None


# --- captures every task can reach ----------------------------------------------------


def test_remote_steps_are_refused_with_a_sqlite_store_and_accepted_with_postgres() -> None:
    local = Local({"database": "captures.db"})
    local.check_remote_steps([])  # nothing remote: any store
    with pytest.raises(BackendError) as refused:
        local.check_remote_steps(["score_chunk"])
    assert str(refused.value) == (
        f"backend.database is the SQLite file {Path('captures.db').resolve()}, on this "
        "machine, but the step score_chunk runs on other machines (--with batch, --with "
        "kubernetes or a scheduler): captures would stay on the workers and be lost. Set "
        "backend.database to a postgresql:// URL reachable from the workers (see "
        'docs/team-setup.md, "Captures every task can reach").'
    )
    shared = Local({"database": "postgresql://ann@db.internal:5432/captures"})
    shared.check_remote_steps(["deploy", "score_chunk"])
    assert shared.database == "postgresql://ann@db.internal:5432/captures"  # not a path


def test_the_postgres_password_reaches_the_server_by_its_environment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql://ann@db.internal:5432/captures"
    monkeypatch.setenv("TEAM_CAPTURE_SECRET", "S3cret")
    backend = Local({"database": url, "database_password_variable": "TEAM_CAPTURE_SECRET"})
    environment = backend._environment("3")
    assert environment["SERVING_CAPTURE_DATABASE"] == url
    assert environment["SERVING_CAPTURE_PASSWORD"] == "S3cret"
    monkeypatch.delenv("TEAM_CAPTURE_SECRET")  # then libpq's PGPASSWORD or ~/.pgpass
    assert "SERVING_CAPTURE_PASSWORD" not in backend._environment("3")
    sqlite = Local({"database": "captures.db"})._environment("3")
    assert "SERVING_CAPTURE_PASSWORD" not in sqlite


@pytest.fixture
def postgres_captures(
    postgres_cluster, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """A capture database of the test's own on the test cluster; its URL, without the
    password, which CAPTURE_DATABASE_PASSWORD holds."""
    name = "captures_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[-40:]
    postgres_cluster.create_user("penguins", "capture-password")
    postgres_cluster.create_database(name, owner="penguins")
    monkeypatch.setenv("CAPTURE_DATABASE_PASSWORD", "capture-password")
    return f"postgresql://penguins@127.0.0.1:{postgres_cluster.port}/{name}"


def test_a_server_capturing_in_postgres_stores_every_answered_prediction(
    postgres_captures: str, serving_models, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    version = serving_models.good[0]
    backend = Local({
        "target": unused_url(), "database": postgres_captures, "workers": 2,
        "state_dir": str(tmp_path / "serving"),
    })  # fmt: skip
    try:
        backend.deploy(serving_models.uri(version), version)
        with ThreadPoolExecutor(8) as clients:
            answers = list(clients.map(lambda _: backend.invoke(ROWS), range(40)))
        answered = [row["id"] for answer in answers for row in answer["predictions"]]
    finally:
        backend.stop()
    assert len(answered) == 120 == len(set(answered))
    with psycopg.connect(postgres_captures, password="capture-password") as connection:
        stored = connection.execute("SELECT id, model_version FROM predictions").fetchall()
    assert sorted(stored) == sorted((id_, str(version)) for id_ in answered)
    assert backend.label_by_id({answered[0]: "Gentoo", "unknown": "Adelie"}) == 1
    loaded = backend.load(limit=200)
    assert loaded is not None and len(loaded) == 120
    assert loaded.loc[loaded["id"] == answered[0], "ground_truth"].tolist() == ["Gentoo"]
    assert set(loaded["island"]) == {row["island"] for row in ROWS if row["island"]}
    assert "capture-password" not in "".join(
        path.read_text(errors="replace") for path in (tmp_path / "serving").rglob("*") if
        path.is_file()
    )  # fmt: skip


def test_a_batch_chunk_saved_twice_under_its_ids_is_captured_once(
    postgres_captures: str,
) -> None:
    backend = Local({"database": postgres_captures})
    features = pd.DataFrame(ROWS)
    outputs = pd.DataFrame({
        "prediction": ["Adelie", "Gentoo", "Chinstrap"], "confidence": [0.9, 0.8, 0.7],
        "id": ["c1", "c2", "c3"], "model_version": ["4"] * 3,
    })  # fmt: skip
    backend.save(features, outputs, source="batch")
    backend.save(features, outputs, source="batch")  # the retried attempt
    loaded = backend.load(limit=10)
    assert loaded is not None and sorted(loaded["id"]) == ["c1", "c2", "c3"]

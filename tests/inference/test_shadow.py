"""Shadow scoring (src/inference/shadow.py and its use in src/inference/model.py).

Unit tests load real tiny models in process (tests/support/toy_models.py): a champion
and a shadow trained on the same features with other seeds, a shadow whose weights are
NaN, and shadows trained on other features or categories. The end-to-end tests start
a real `mlflow models serve` with a registered shadow and talk to it over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from support.paths import PENGUINS_CSV
from support.places import ModelServer
from support.toy_models import (
    HABITATS,
    features_of,
    model_directory,
    save_artifacts,
    serve,
    train_toy,
)

from inference.capture import CAPTURE_COLUMNS, CaptureStore
from inference.shadow import (
    FIRST_COOLDOWN,
    TRIP_AFTER,
    IncompatibleShadow,
    ShadowScorer,
)

SHADOW_VERSION = "12"
# For tests of what is captured, not of the time budget: on a loaded machine a healthy
# shadow's call can be preempted past the default budget, and its answer dropped.
NO_BUDGET = {"SERVING_SHADOW_BUDGET_MS": "600000"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The champion's artifacts and downloaded-model directories of the shadows."""
    root = tmp_path_factory.mktemp("shadow-models")
    champion = train_toy(root / "champion", data_seed=0, seed=1)
    # Fewer epochs and another sample: a model that disagrees with the champion sometimes.
    shadow = train_toy(root / "shadow", data_seed=3, seed=7, epochs=1)
    broken = train_toy(root / "broken", data_seed=3, seed=7, epochs=1)
    kernel = broken.model.layers[0].kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    save_artifacts(str(root / "broken"), broken.model, broken.features, broken.target)
    other_categories = train_toy(
        root / "categories", habitats=[*HABITATS[:2], "ocean"], data_seed=3
    )
    return SimpleNamespace(
        champion=champion,
        shadow=model_directory(shadow.paths, root / "shadow-model"),
        broken=model_directory(broken.paths, root / "broken-model"),
        other_categories=model_directory(other_categories.paths, root / "categories-model"),
    )


def served(models: SimpleNamespace, shadow: Path, **environment: str) -> Any:
    return serve(
        models.champion.paths,
        SERVING_SHADOW_MODEL_PATH=str(shadow),
        SERVING_SHADOW_VERSION=SHADOW_VERSION,
        SERVING_MODEL_VERSION="11",
        **environment,
    )


def captured(database: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute("SELECT * FROM predictions")]


# --- loading ----------------------------------------------------------------------------


def test_without_the_variables_there_is_no_shadow(models: SimpleNamespace) -> None:
    assert serve(models.champion.paths).shadow is None


def test_the_shadow_is_loaded_without_a_guard_or_capture_of_its_own(
    models: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inference.model

    loaded: list[Any] = []
    real = inference.model.load_scorer

    def recording(directory: Any) -> Any:
        scorer = real(directory)
        loaded.append(scorer)
        return scorer

    monkeypatch.setattr(inference.model, "load_scorer", recording)
    model = served(models, models.shadow, SERVING_CAPTURE_DATABASE=str(tmp_path / "c.db"))
    assert model.shadow is not None and model.shadow.version == SHADOW_VERSION
    [scorer] = loaded
    # A plain scorer: no capture, no shadow, no request guard (those are the server's).
    assert not any(hasattr(scorer, name) for name in ("capture", "shadow", "max_rows"))
    assert model.capture is not None
    model.capture.close()


def test_a_shadow_with_other_categories_refuses_to_load_naming_them(
    models: SimpleNamespace,
) -> None:
    with pytest.raises(IncompatibleShadow) as info:
        served(models, models.other_categories)
    message = str(info.value)
    assert f"version {SHADOW_VERSION}" in message
    assert "['ocean'] of 'habitat' only in the shadow" in message
    assert "['town'] of 'habitat' only in the champion" in message


def test_a_shadow_with_other_columns_is_named(models: SimpleNamespace) -> None:
    from inference.features import FeatureTransform
    from inference.shadow import feature_differences

    champion = FeatureTransform(None, ["length", "mass"], {"habitat": ["desert"]})
    shadow = FeatureTransform(None, ["length", "width"], {"colour": ["red"]})
    assert feature_differences(champion, shadow) == [
        "numeric feature(s) ['width'] only in the shadow",
        "numeric feature(s) ['mass'] only in the champion",
        "categorical feature(s) ['colour'] only in the shadow",
        "categorical feature(s) ['habitat'] only in the champion",
    ]
    assert feature_differences(champion, champion) == []


@pytest.mark.parametrize(
    ("environment", "fragment"),
    [
        ({"SERVING_SHADOW_VERSION": ""}, "SERVING_SHADOW_VERSION is not"),
        ({"SERVING_SHADOW_BUDGET_MS": "fast"}, "SERVING_SHADOW_BUDGET_MS must be a positive"),
        ({"SERVING_SHADOW_BUDGET_MS": "-1"}, "got '-1'"),
    ],
)
def test_bad_shadow_settings_are_refused(
    models: SimpleNamespace, environment: dict[str, str], fragment: str
) -> None:
    settings = {
        "SERVING_SHADOW_MODEL_PATH": str(models.shadow),
        "SERVING_SHADOW_VERSION": SHADOW_VERSION,
        **environment,
    }
    with pytest.raises(ValueError, match=fragment):
        serve(models.champion.paths, **settings)


def test_a_directory_that_is_no_model_refuses_to_load(
    models: SimpleNamespace, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="not a model this project registered"):
        served(models, tmp_path)


# --- scoring and capture ------------------------------------------------------------------


def test_every_answer_is_captured_with_the_shadows_in_the_same_row(
    models: SimpleNamespace, tmp_path: Path
) -> None:
    from inference.model import load_scorer

    database = tmp_path / "capture.db"
    model = served(models, models.shadow, SERVING_CAPTURE_DATABASE=str(database), **NO_BUDGET)
    rows = features_of(40, seed=5)
    rows.loc[[0, 1], "habitat"] = np.nan  # imputed alike for both
    try:
        output = model.predict(None, rows)
    finally:
        model.capture.close()

    scorer = load_scorer(models.shadow)
    expected, confidences = scorer.score(scorer.features.validate(rows))
    by_id = {row["id"]: row for row in captured(database)}
    assert list(by_id) == output["id"].tolist()
    for index, answer in output.iterrows():
        row = by_id[answer["id"]]
        assert (row["model_version"], row["prediction"]) == ("11", answer["prediction"])
        assert row["shadow_version"] == SHADOW_VERSION
        assert row["shadow_prediction"] == expected[index]
        assert row["shadow_confidence"] == pytest.approx(confidences[index])
    # The shadow is its own model: it disagrees on some rows, so it is not the champion.
    assert output["prediction"].tolist() != expected
    assert model.shadow.counts()["scored"] == 40
    assert model.shadow.failures == 0


def test_one_label_labels_both_answers(models: SimpleNamespace, tmp_path: Path) -> None:
    database = tmp_path / "capture.db"
    model = served(models, models.shadow, SERVING_CAPTURE_DATABASE=str(database), **NO_BUDGET)
    try:
        output = model.predict(None, features_of(6, seed=8))
    finally:
        model.capture.close()
    store = CaptureStore(str(database))
    try:
        assert store.label(dict.fromkeys(output["id"], "lizard")) == 6
        rows = store.recent(10, labeled_only=True)
    finally:
        store.close()
    assert len(rows) == 6
    for row in (dict(zip(CAPTURE_COLUMNS, values, strict=True)) for values in rows):
        assert row["ground_truth"] == "lizard"
        assert row["shadow_version"] == SHADOW_VERSION
        assert row["shadow_prediction"] is not None


def test_a_broken_shadow_never_fails_a_request(
    models: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "capture.db"
    champion_only = serve(models.champion.paths)
    model = served(models, models.broken, SERVING_CAPTURE_DATABASE=str(database))
    rows = features_of(3, seed=9)
    requests = TRIP_AFTER + FIRST_COOLDOWN + 1
    with caplog.at_level(logging.WARNING, logger="inference.shadow"):
        try:
            outputs = [model.predict(None, rows) for _ in range(requests)]
        finally:
            model.capture.close()

    expected = champion_only.predict(None, rows)["prediction"].tolist()
    assert all(output["prediction"].tolist() == expected for output in outputs)
    stored = captured(database)
    assert len(stored) == 3 * requests
    assert {row["shadow_version"] for row in stored} == {SHADOW_VERSION}
    assert {row["shadow_prediction"] for row in stored} == {None}
    assert {row["shadow_confidence"] for row in stored} == {None}
    # NaN weights: non-finite answers, TRIP_AFTER of them in a row suspend the shadow for
    # FIRST_COOLDOWN requests, then it is tried once more (and trips again later).
    counts = model.shadow.counts()
    assert counts == {
        "scored": 0,
        "error": 0,
        "non_finite": 3 * (TRIP_AFTER + 1),
        "slow": 0,
        "skipped": 3 * FIRST_COOLDOWN,
    }
    failed = [r for r in caplog.records if "failed (non_finite)" in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in caplog.records]
    assert len(caplog.records) <= 3  # the first failure, the suspension: not one per request


def test_the_shadow_is_safe_from_many_threads(models: SimpleNamespace, tmp_path: Path) -> None:
    database = tmp_path / "capture.db"
    model = served(models, models.shadow, SERVING_CAPTURE_DATABASE=str(database), **NO_BUDGET)
    rows = features_of(2, seed=7)
    first = model.predict(None, rows)
    failures: list[str] = []

    def work() -> None:
        for _ in range(30):
            try:
                model.predict(None, rows)
            except Exception as error:  # Collected and asserted below.
                failures.append(repr(error))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model.capture.close()
    assert failures == []
    stored = captured(database)
    assert len(stored) == 2 + 6 * 30 * 2
    first_shadow = {r["id"]: r["shadow_prediction"] for r in stored}[first["id"].iloc[0]]
    assert first_shadow is not None
    answered = model.shadow.counts()
    assert answered["scored"] + model.shadow.failures == len(stored)
    assert sum(row["shadow_prediction"] is not None for row in stored) == answered["scored"]


# --- the scorer's rules, on stand-in score functions -----------------------------------------


class Clock:
    """A clock that moves only when told: each `score` call below advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


COLUMNS = {"x": np.zeros(2)}


def test_a_slow_answer_is_dropped_and_counted() -> None:
    clock = Clock()
    delay = {"seconds": 0.0}

    def score(columns: Any) -> tuple[list[str], list[float]]:
        clock.now += delay["seconds"]
        return ["a", "b"], [0.9, 0.8]

    shadow = ShadowScorer(score, "3", budget_ms=2.0, clock=clock, cpu_clock=clock)
    assert shadow.answer(COLUMNS, 2, champion_seconds=0.0001).predictions == ["a", "b"]
    delay["seconds"] = 0.0015  # under the budget
    assert shadow.answer(COLUMNS, 2, champion_seconds=0.0001).predictions == ["a", "b"]
    delay["seconds"] = 0.005
    slow = shadow.answer(COLUMNS, 2, champion_seconds=0.0001)
    assert slow.version == "3" and slow.predictions == [None, None]
    assert slow.confidences == [None, None]
    # A large batch may take twice what the champion took for it.
    assert shadow.answer(COLUMNS, 2, champion_seconds=0.003).predictions == ["a", "b"]
    assert shadow.counts() == {"scored": 6, "error": 0, "non_finite": 0, "slow": 2, "skipped": 0}


def test_a_call_slowed_by_other_work_keeps_its_answer_unless_it_hangs() -> None:
    wall, cpu = Clock(), Clock()
    delay = {"seconds": 0.0}

    def score(columns: Any) -> tuple[list[str], list[float]]:
        wall.now += delay["seconds"]  # preempted: time passes, the shadow works little
        cpu.now += 0.0001
        return ["a", "b"], [0.9, 0.8]

    shadow = ShadowScorer(score, "3", budget_ms=2.0, clock=wall, cpu_clock=cpu)
    delay["seconds"] = 0.015
    assert shadow.answer(COLUMNS, 2, champion_seconds=0.0001).predictions == ["a", "b"]
    delay["seconds"] = 0.025  # over ten budgets: hung, whatever held it
    assert shadow.answer(COLUMNS, 2, champion_seconds=0.0001).predictions == [None, None]
    assert shadow.counts()["slow"] == 2


def test_failures_in_a_row_suspend_the_shadow_for_longer_each_time() -> None:
    answers = {"fail": True}

    def score(columns: Any) -> tuple[list[str], list[float]]:
        if answers["fail"]:
            raise RuntimeError("boom")
        return ["a", "b"], [0.9, 0.8]

    shadow = ShadowScorer(score, "3")
    tried = []
    for _ in range(TRIP_AFTER + FIRST_COOLDOWN + TRIP_AFTER + 2 * FIRST_COOLDOWN + 1):
        before = shadow.counts()["error"]
        shadow.answer(COLUMNS, 2, 0.0)
        tried.append(shadow.counts()["error"] > before)
    # Three tries, a cooldown; three more, a cooldown twice as long; then a try.
    expected = (
        [True] * TRIP_AFTER
        + [False] * FIRST_COOLDOWN
        + [True] * TRIP_AFTER
        + [False] * 2 * FIRST_COOLDOWN
        + [True]
    )
    assert tried == expected
    answers["fail"] = False
    assert shadow.answer(COLUMNS, 2, 0.0).predictions == ["a", "b"]
    counts = shadow.counts()
    assert counts["error"] == 2 * (2 * TRIP_AFTER + 1)
    assert counts["skipped"] == 2 * 3 * FIRST_COOLDOWN


def test_a_non_finite_confidence_is_a_failure() -> None:
    shadow = ShadowScorer(lambda columns: (["a"], [float("nan")]), "3")
    assert shadow.answer(COLUMNS, 1, 0.0).predictions == [None]
    assert shadow.counts()["non_finite"] == 1


def test_answers_for_other_rows_than_asked_are_a_failure() -> None:
    # Captured as they are, they would fail the request's capture (rows must pair up).
    shadow = ShadowScorer(lambda columns: (["a"], [0.5]), "3")
    assert shadow.answer(COLUMNS, 2, 0.0).predictions == [None, None]
    assert shadow.counts()["error"] == 2


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ShadowScorer(lambda columns: ([], []), "3", budget_ms=0)


# --- end to end: a real server over HTTP --------------------------------------------------


@dataclass(kw_only=True)
class ShadowServer(ModelServer):
    """A real model server that also scores every request with the model in `shadow_path`."""

    shadow_path: Path
    shadow_version: str

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "SERVING_SHADOW_MODEL_PATH": str(self.shadow_path),
            "SERVING_SHADOW_VERSION": self.shadow_version,
            **NO_BUDGET,
        }


def download(serving_models: Any, version: str, tracking_uri: str, directory: Path) -> Path:
    import mlflow.artifacts

    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=serving_models.uri(version),
            dst_path=str(directory),
            tracking_uri=tracking_uri,
        )
    )


def post(url: str, rows: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps({"inputs": rows}).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.e2e
def test_a_served_shadow_is_captured_and_labelled_over_http(
    serving_models: Any, tracking_uri: str, tmp_path: Path
) -> None:
    from inference.model import load_scorer

    champion, shadow = serving_models.good[0], serving_models.good[1]
    shadow_path = download(serving_models, shadow, tracking_uri, tmp_path / "shadow")
    server = ShadowServer(
        tmp_path / "place",
        model_name=serving_models.name,
        model_uri=serving_models.uri(champion),
        version=champion,
        shadow_path=shadow_path,
        shadow_version=shadow,
    )
    data = pd.read_csv(PENGUINS_CSV).sample(n=25, random_state=3)
    truth = data.pop("species").tolist()
    rows = json.loads(data.to_json(orient="records"))
    server.start()
    try:
        answers = [post(server.url, [row]) for row in rows[:5]]
        answers.append(post(server.url, rows[5:]))
        refused = post(server.url, [{"island": "Atlantis"}])
    finally:
        server.stop()

    assert [status for status, _ in answers] == [200] * 6, answers
    assert refused[0] == 400  # refused before either model: nothing captured
    predictions = [p for _, body in answers for p in body["predictions"]]
    ids = [p["id"] for p in predictions]
    stored = server.captured_rows()
    assert sorted(stored) == sorted(ids)

    scorer = load_scorer(shadow_path)
    expected, confidences = scorer.score(scorer.features.validate(data))
    for index, answer in enumerate(predictions):
        row = stored[answer["id"]]
        assert (row["model_version"], row["prediction"]) == (champion, answer["prediction"])
        assert row["shadow_version"] == shadow
        assert row["shadow_prediction"] == expected[index]
        assert row["shadow_confidence"] == pytest.approx(confidences[index])

    # One label per id labels both answers; `load` reads them back side by side.
    backend = server.backend()
    assert backend.label_by_id(dict(zip(ids, truth, strict=True))) == len(ids)
    frame = backend.load(limit=100, labeled_only=True).set_index("id").loc[ids]
    assert frame["ground_truth"].tolist() == truth
    assert frame["shadow_version"].tolist() == [shadow] * len(ids)
    assert frame["shadow_prediction"].tolist() == expected
    assert frame["prediction"].tolist() == [p["prediction"] for p in predictions]


@pytest.mark.e2e
def test_a_server_with_an_incompatible_shadow_refuses_to_start(
    serving_models: Any, tracking_uri: str, tmp_path: Path
) -> None:
    import pickle

    from support.serving import train_small_model

    from backends.local_server import ServerError
    from inference.features import export_transform
    from model_training.preprocessing import fit_transform

    champion = serving_models.good[0]
    shadow_path = download(serving_models, champion, tracking_uri, tmp_path / "shadow")
    schema, data, _ = train_small_model(epochs=1)
    # A transformer that never saw one island: the shadow would not know that category.
    features, *_ = fit_transform(data[data["island"] != "Torgersen"], schema)
    with open(shadow_path / "artifacts" / "features.pkl", "wb") as file:
        pickle.dump(features, file)
    # And its compiled copy, which the server reads first.
    with open(shadow_path / "artifacts" / "target.pkl", "rb") as file:
        target = pickle.load(file)
    assert export_transform(features, target, str(shadow_path / "artifacts" / "transform.json"))
    server = ShadowServer(
        tmp_path / "place",
        model_uri=serving_models.uri(champion),
        version=champion,
        workers=1,
        shadow_path=shadow_path,
        shadow_version="99",
    )
    try:
        with pytest.raises(ServerError) as info:
            server.start()
    finally:
        server.stop()
    message = str(info.value)
    assert "exited" in message
    assert "does not take the champion's input" in message
    assert "['Torgersen'] of 'island' only in the champion" in message

"""The deployment pipeline (src/pipelines/deployment.py) through `metaflow.Runner`.

The Local backend serves on a free port of 127.0.0.1 with the capture database and
state directory of a place of this module's own (support/places.py). The models are the
tiny ones of support/serving.py: two good versions and a broken one (no `confidence`).
The tests follow one deployment history, newest first, then another version, then the
broken one (rolled back), then a rollback to `previous`; each checks its starting point
and, if it is not there (a test run alone, or in another order), gets there first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.flows import FlowResult, card_text
from support.paths import DEPLOYMENT_FLOW
from support.places import Place
from support.rows import CLASSES, SPEC_ROW
from support.serving import ServingModels

from backends.local import Local
from backends.local_server import LocalServer
from promotion.audit import deployment_history


@dataclass
class Setup:
    config: Path
    backend: Local
    models: ServingModels
    runner: Any

    @property
    def name(self) -> str:
        return self.models.name

    def deploy(self, **parameters: Any) -> FlowResult:
        return self.runner(DEPLOYMENT_FLOW, parameters, config=self.config)

    def server_pid(self) -> int | None:
        state = LocalServer(self.backend.state_dir).state()
        return state.pid if state else None


@pytest.fixture(scope="module")
def deployment_setup(
    serving_models: ServingModels, flow_runner: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """A place of its own for these tests; its server is stopped after them."""
    place = Place(tmp_path_factory.mktemp("deployment"), model_name=serving_models.name, workers=1)
    backend = place.backend()
    try:
        yield Setup(place.write_config(), backend, serving_models, flow_runner)
    finally:
        backend.stop()


@pytest.fixture
def setup(deployment_setup: Setup) -> Setup:
    return deployment_setup


def alias(client: Any, name: str, alias_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias_name).version)
    except MlflowException:
        return None


def artifact(result: FlowResult, step: str, name: str) -> Any:
    return result.run[step].task[name].data


def served_prediction(setup: Setup) -> tuple[dict[str, Any], str]:
    """A real prediction from the target, and the model version its capture records."""
    (prediction,) = setup.backend.invoke([SPEC_ROW])["predictions"]
    with sqlite3.connect(setup.backend.database) as db:
        (version,) = db.execute(
            "SELECT model_version FROM predictions WHERE id = ?", (prediction["id"],)
        ).fetchone()
    return prediction, version


def ensure_history(setup: Setup, *versions: str) -> None:
    """Unless `versions[-1]` serves as champion after `versions[-2]`, deploy them in turn."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if (
        setup.backend.deployed_version() == versions[-1]
        and alias(client, setup.name, "champion") == versions[-1]
        and (len(versions) < 2 or alias(client, setup.name, "previous") == versions[-2])
    ):
        return
    for version in versions:
        result = setup.deploy(model_version=version)
        assert result.successful, result.describe()


def test_deploys_the_newest_version(setup: Setup, mlflow_client: Any) -> None:
    versions = mlflow_client.search_model_versions(f"name = '{setup.name}'")
    newest = str(max(int(version.version) for version in versions))
    assert newest == setup.models.good[-1]
    if setup.backend.deployed_version() == newest:  # not the first test to run here
        ensure_history(setup, setup.models.good[0])
    started = datetime.now(UTC)

    result = setup.deploy()

    assert result.successful, result.describe()
    assert artifact(result, "start", "version") == newest
    assert artifact(result, "deploy", "deployed") is True
    assert setup.backend.deployed_version() == newest
    prediction, captured_version = served_prediction(setup)
    assert prediction["prediction"] == "Gentoo" and 0 < prediction["confidence"] <= 1
    assert captured_version == newest

    assert alias(mlflow_client, setup.name, "champion") == newest
    tags = mlflow_client.get_model_version(setup.name, newest).tags
    assert tags["deployment_target"] == setup.backend.target
    deployed_at = datetime.fromisoformat(tags["deployed_at"])
    assert started - timedelta(seconds=5) <= deployed_at <= datetime.now(UTC)
    # The smoke test's rows went through the new server, and were captured.
    with sqlite3.connect(setup.backend.database) as db:
        smoke = db.execute(
            "SELECT COUNT(*) FROM predictions WHERE model_version = ?", (newest,)
        ).fetchone()[0]
    assert smoke >= 1 + 5


def test_deploying_the_serving_version_again_is_a_noop(setup: Setup, mlflow_client: Any) -> None:
    newest = setup.models.good[-1]
    ensure_history(setup, newest)
    pid = setup.server_pid()
    tags = mlflow_client.get_model_version(setup.name, newest).tags

    result = setup.deploy()

    assert result.successful, result.describe()
    assert artifact(result, "deploy", "deployed") is False
    assert "already serving" in result.output
    assert setup.server_pid() == pid
    assert setup.backend.deployed_version() == newest
    assert alias(mlflow_client, setup.name, "champion") == newest
    assert mlflow_client.get_model_version(setup.name, newest).tags == tags


def test_deploying_another_version_promotes_it(setup: Setup, mlflow_client: Any) -> None:
    old, new = setup.models.good[-1], setup.models.good[0]
    ensure_history(setup, old)
    pid = setup.server_pid()

    result = setup.deploy(model_version=new)

    assert result.successful, result.describe()
    assert artifact(result, "deploy", "deployed") is True
    assert setup.server_pid() != pid
    assert setup.backend.deployed_version() == new
    assert served_prediction(setup)[1] == new
    assert alias(mlflow_client, setup.name, "champion") == new
    assert alias(mlflow_client, setup.name, "previous") == old
    assert artifact(result, "promote", "previous") == old
    # No labelled captures here: the versions' cross-validated scores (equal) decided.
    decision = artifact(result, "start", "decision")
    assert (decision.decision, decision.evidence) == ("promoted", "cross-validation")
    assert "cross-validated scores were compared" in result.output
    tags = mlflow_client.get_model_version(setup.name, new).tags
    assert {"deployed_at", "deployment_target"} <= set(tags)


def test_a_broken_version_is_rolled_back(setup: Setup, mlflow_client: Any) -> None:
    champion, previous = setup.models.good[0], setup.models.good[-1]
    broken = setup.models.broken
    ensure_history(setup, previous, champion)

    # Forced: the broken version has no cross-validated scores to compare.
    result = setup.deploy(model_version=broken, force=True)

    assert not result.successful
    assert result.status == "failed", result.describe()
    # The message says what was deployed, what went wrong and what serves now.
    assert f"Version {broken} failed its smoke test" in result.output, result.describe()
    assert f"rolled back to {champion}" in result.output, result.describe()
    assert "confidence" in result.output, result.describe()

    assert setup.backend.deployed_version() == champion
    prediction, captured_version = served_prediction(setup)
    assert prediction["prediction"] in CLASSES and 0 < prediction["confidence"] <= 1
    assert captured_version == champion
    assert alias(mlflow_client, setup.name, "champion") == champion
    assert alias(mlflow_client, setup.name, "previous") == previous
    assert "deployed_at" not in mlflow_client.get_model_version(setup.name, broken).tags
    # The audit trail says it was forced, failed and rolled back.
    (event, *_) = deployment_history(mlflow_client, setup.name)
    assert event["decision"] == "rollback"
    assert event["roles"] == {broken: "failed", champion: "restored"}
    assert "deployed with --force" in event["reason"] and "smoke test" in event["reason"]


def test_rollback_to_the_previous_version(setup: Setup, mlflow_client: Any) -> None:
    champion, previous = setup.models.good[0], setup.models.good[-1]
    ensure_history(setup, previous, champion)

    result = setup.deploy(model_version="previous")

    assert result.successful, result.describe()
    assert artifact(result, "start", "version") == previous
    assert setup.backend.deployed_version() == previous
    assert served_prediction(setup)[1] == previous
    assert alias(mlflow_client, setup.name, "champion") == previous
    assert alias(mlflow_client, setup.name, "previous") == champion
    (event, *_) = deployment_history(mlflow_client, setup.name)
    assert event["decision"] == "rollback" and event["evidence"] == "none"
    assert event["roles"] == {previous: "restored", champion: "replaced"}


def test_a_shadow_scores_every_request_and_one_label_serves_both(
    setup: Setup, mlflow_client: Any
) -> None:
    """`--shadow` end to end: the pipeline, the Local server, capture, labels, `load`."""
    # Whichever good version serves as champion (the rollback test leaves one): two
    # runs instead of four.
    champion = setup.backend.deployed_version()
    if champion not in setup.models.good or alias(mlflow_client, setup.name, "champion") != (
        champion
    ):
        champion = setup.models.good[0]
        ensure_history(setup, champion)
    (shadow,) = set(setup.models.good) - {champion}
    try:
        result = setup.deploy(shadow=shadow)

        assert result.successful, result.describe()
        assert setup.backend.deployed_version() == champion
        assert setup.backend.deployed_shadow_version() == shadow
        assert alias(mlflow_client, setup.name, "champion") == champion  # nothing promoted
        answered = setup.backend.invoke([SPEC_ROW, {**SPEC_ROW, "island": "Dream"}])
        ids = [row["id"] for row in answered["predictions"]]
        assert set(answered["predictions"][0]) == {"prediction", "confidence", "id"}

        truth = {ids[0]: "Gentoo", ids[1]: "Adelie"}
        assert setup.backend.label_by_id(truth) == 2
        frame = setup.backend.load(limit=1000, labeled_only=True)
        rows = frame[frame["id"].isin(ids)].set_index("id")
        assert (rows["model_version"] == champion).all()
        assert (rows["shadow_version"] == shadow).all()
        assert rows["shadow_prediction"].isin(CLASSES).all()
        assert rows["shadow_confidence"].between(0, 1).all()
        assert rows["ground_truth"].to_dict() == truth
        (event, *_) = deployment_history(mlflow_client, setup.name)
        assert event["decision"] == "shadow"
        # The start card says which version shadows which, with their training figures.
        from metaflow.cards import get_cards

        card = card_text(get_cards(result.run["start"].task)[0])
        assert f"Shadow: version {shadow}" in card
        assert f"scores every request in shadow beside version **{champion}**" in card
        assert "cross-validated accuracy" in card
    finally:  # the other tests expect no shadow
        removed = setup.deploy(model_version=champion)
    assert removed.successful, removed.describe()
    assert setup.backend.deployed_shadow_version() is None
    assert setup.backend.deployed_version() == champion

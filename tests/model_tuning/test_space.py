"""The search space (src/model_tuning/space.py): names the model takes, its defaults,
Optuna's distributions; and the network building what the names say."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from common.settings import SearchRange, SearchSpace
from model_tuning.space import (
    HYPERPARAMETERS,
    contains,
    default_hyperparameters,
    distributions,
    with_defaults,
)


def test_every_searchable_name_is_a_keyword_of_train_model() -> None:
    from model_training.network import train_model

    keywords = set(inspect.signature(train_model).parameters)
    assert set(HYPERPARAMETERS) <= keywords
    assert [f.name for f in dataclasses.fields(SearchSpace)] == list(HYPERPARAMETERS)


def test_the_defaults_are_what_the_training_pipeline_trains_with() -> None:
    from pipelines import training

    flow = getattr(training.Training, "_flow_cls", training.Training)  # under @retrain_on_alert
    defaults = default_hyperparameters()
    assert defaults == {
        "epochs": 50,
        "batch_size": 32,
        "learning_rate": 0.01,
        "hidden_units": 16,
        "hidden_layers": 2,
        "dropout": 0.0,
    }
    for parameter, name in [
        (flow.training_epochs, "epochs"),
        (flow.training_batch_size, "batch_size"),
    ]:
        parameter.init()  # Metaflow fills a parameter's settings lazily.
        assert parameter.kwargs["default"] == defaults[name]


def test_the_default_search_space_contains_the_defaults() -> None:
    assert contains(SearchSpace(), default_hyperparameters())
    narrow = SearchSpace(epochs=SearchRange(low=100, high=300))
    assert not contains(narrow, default_hyperparameters())


def test_distributions_follow_the_ranges_and_the_types() -> None:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space = SearchSpace(dropout=None)
    found = distributions(space)
    assert set(found) == set(HYPERPARAMETERS) - {"dropout"}
    assert found["learning_rate"] == FloatDistribution(0.001, 0.1, log=True)
    assert found["epochs"] == IntDistribution(10, 100)
    assert found["batch_size"] == CategoricalDistribution([8, 16, 32, 64])
    assert all(isinstance(choice, int) for choice in found["batch_size"].choices)


def test_a_trial_trains_the_defaults_for_what_it_does_not_search() -> None:
    full = with_defaults({"learning_rate": 0.02, "epochs": 12.0})
    assert full["learning_rate"] == 0.02 and full["epochs"] == 12
    assert isinstance(full["epochs"], int)
    assert full["hidden_units"] == 16 and full["dropout"] == 0.0


@pytest.mark.parametrize(
    ("arguments", "layers"),
    [
        ({}, [("Dense", 16), ("Dense", 8), ("Dense", 3)]),
        (
            {"hidden_units": 32, "hidden_layers": 3},
            [("Dense", 32), ("Dense", 16), ("Dense", 8), ("Dense", 3)],
        ),
        (
            {"hidden_units": 4, "hidden_layers": 1, "dropout": 0.2},
            [("Dense", 4), ("Dropout", None), ("Dense", 3)],
        ),
    ],
)
def test_build_model_takes_the_searched_hyperparameters(arguments: dict, layers: list) -> None:
    from model_training.network import build_model

    model = build_model(5, 3, **arguments)
    assert [
        (type(layer).__name__, getattr(layer, "units", None)) for layer in model.layers
    ] == layers

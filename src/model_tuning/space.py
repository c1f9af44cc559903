"""The search space: the hyperparameters a trial varies, their defaults, Optuna's view of them.

The names are `model_training.network.train_model`'s keyword arguments (and its
`epochs` and `batch_size`); `tuning.parameters` in the config may name only these, and
one it leaves empty keeps its default. The defaults are what the training pipeline
trains with when it is not told otherwise: the network's from `train_model`'s
signature, the epochs and batch size from the training pipeline's parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from common.settings import SearchRange, SearchSpace

# `train_model`'s own arguments that the search may vary, besides epochs and batch size.
NETWORK_HYPERPARAMETERS = ("learning_rate", "hidden_units", "hidden_layers", "dropout")
HYPERPARAMETERS = (
    "learning_rate",
    "epochs",
    "batch_size",
    "hidden_units",
    "hidden_layers",
    "dropout",
)
INTEGER_HYPERPARAMETERS = frozenset({"epochs", "batch_size", "hidden_units", "hidden_layers"})
# The training pipeline's `--training-epochs` and `--training-batch-size` defaults
# (tests/model_tuning/test_space.py holds them equal).
DEFAULT_EPOCHS = 50
DEFAULT_BATCH_SIZE = 32


def default_hyperparameters() -> dict[str, Any]:
    """The training pipeline's hyperparameters when it is not given any."""
    import inspect

    from model_training.network import train_model

    signature = inspect.signature(train_model).parameters
    network = {name: signature[name].default for name in NETWORK_HYPERPARAMETERS}
    return {"epochs": DEFAULT_EPOCHS, "batch_size": DEFAULT_BATCH_SIZE, **network}


def typed_value(name: str, value: Any) -> int | float:
    """`value` as the model takes `name`: a whole number or a float."""
    return int(value) if name in INTEGER_HYPERPARAMETERS else float(value)


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna's distribution for each searched hyperparameter, by name."""
    return {name: _distribution(name, searched) for name, searched in space.ranges().items()}


def _distribution(name: str, searched: SearchRange) -> BaseDistribution:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if searched.choices is not None:
        return CategoricalDistribution([typed_value(name, value) for value in searched.choices])
    low, high = typed_value(name, searched.low), typed_value(name, searched.high)
    if name in INTEGER_HYPERPARAMETERS:
        return IntDistribution(int(low), int(high), log=searched.log)
    return FloatDistribution(float(low), float(high), log=searched.log)


def contains(space: SearchSpace, hyperparameters: dict[str, Any]) -> bool:
    """Whether every searched value of `hyperparameters` lies in the search space."""
    for name, searched in space.ranges().items():
        value = hyperparameters[name]
        if searched.choices is not None:
            if value not in searched.choices:
                return False
        elif not searched.low <= value <= searched.high:  # type: ignore[operator]
            return False
    return True


def with_defaults(sampled: dict[str, Any]) -> dict[str, Any]:
    """A trial's full hyperparameters: the sampled ones, the defaults for the rest."""
    typed = {name: typed_value(name, value) for name, value in sampled.items()}
    return {**default_hyperparameters(), **typed}

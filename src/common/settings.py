"""The project's typed settings: what each section of `config/*.yml` may hold.

One frozen dataclass per section (`dataset`, `model`, `monitoring`, `retraining`,
`promotion`, `scoring`, `tuning`), joined by `ProjectSettings`, with every default, what
each setting means, and the checks a type cannot express (a range, a cron expression, a
project name Metaflow accepts, a model name MLflow's search filters can hold). Every
threshold is refused outside its range, naming the range: accuracies in [0, 1], drift
thresholds within what their method scores, `min_gain` in [-1, 1], p-values in (0, 1].
`project_settings` fills them from a configuration, as `common.config` parsed it or as
raw YAML data, through the generic `common.settings_loader`; a wrong value is a
`ConfigurationError` naming its key.
`backend:` is only a mapping here: each backend checks its own settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from metaflow.exception import MetaflowException

from common.data import DatasetSchema
from common.settings_loader import (
    SettingsError,
    SettingValueError,
    load_settings,
    require_positive_integers,
)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


DEFAULT_BACKEND = "backend.Local"


# The `@schedule` shorthands, spelled as Metaflow's own decorator spells them.
SCHEDULE_ALIASES = {
    "hourly": "0 * * * ? *",
    "daily": "0 0 * * ? *",
    "weekly": "0 0 ? * SUN *",
}


# Metaflow's @project rule for project names.
_PROJECT_NAME = re.compile(r"[a-z0-9_]+")


# Argo Events accepts these characters in an event name (Metaflow checks the same).
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ConfigurationError(MetaflowException):
    """A project configuration file is unreadable or holds a wrong value."""

    headline = "Project configuration error"


def _hint(text: str) -> dict[str, str]:
    return {"hint": text}


def normalize_schedule(value: str) -> str:
    """Turn `monitoring.schedule` into the cron expression `@schedule(cron=...)` takes.

    Both schedulers read the same expression, so it must suit the stricter one:
    EventBridge wants six fields; Argo Workflows drops the sixth (the year).
    """
    cron = SCHEDULE_ALIASES.get(value.strip().lower(), value.strip())
    if len(cron.split()) != 6:
        raise SettingValueError(
            "schedule",
            f"{value!r} is not hourly, daily, weekly or a six-field EventBridge cron "
            "expression (minutes hours day-of-month month day-of-week year, UTC), e.g. "
            "`0 6 * * ? *` for 06:00 every day.",
        )
    return " ".join(cron.split())


def _non_negative(settings: Any, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if value < 0:
            raise SettingValueError(name, f"must be a non-negative number, got {value!r}.")


# Model names go into MLflow's search filters (`name = '...'`), whose grammar has no
# escape, and into `models:/<name>/<version>` URIs: no quote, slash or colon.
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


# Evidently's drift methods whose score lies in [0, 1]: a p-value (drift below the
# threshold, so 0 would never alert) or a bounded distance (drift at or above it, so
# a threshold above 1 would never alert). Other methods score distances without bound.
_P_VALUE_DRIFT_METHODS = frozenset(
    {"anderson", "chisquare", "cramer_von_mises", "empirical_mmd", "es", "fisher_exact"}
    | {"g_test", "ks", "mannw", "t_test", "z"}
)
_BOUNDED_DRIFT_METHODS = frozenset({"hellinger", "jensenshannon", "TVD"})


def _check_drift_threshold(settings: Any, kind: str) -> None:
    """`<kind>_drift_threshold`, in the range its `<kind>_drift_method` scores in."""
    name, method = f"{kind}_drift_threshold", getattr(settings, f"{kind}_drift_method")
    _non_negative(settings, name)
    threshold = getattr(settings, name)
    if method in _P_VALUE_DRIFT_METHODS and not 0 < threshold <= 1:
        raise SettingValueError(
            name,
            f"must be a p-value in (0, 1] for {method}, which detects drift when the "
            f"p-value is under it, got {threshold!r}.",
        )
    if method in _BOUNDED_DRIFT_METHODS and threshold > 1:
        raise SettingValueError(
            name,
            f"must be in [0, 1] for {method}, a distance between 0 and 1, got {threshold!r}.",
        )


@dataclass(frozen=True)
class DatasetSettings:
    """Which CSV columns play which role (`dataset:`). Nothing under src/ knows them."""

    target: str = field(metadata=_hint("Name the column to predict, e.g. `target: species`."))
    numeric_features: tuple[str, ...] = field(
        metadata=_hint("It must be a list of column names, e.g. `[culmen_length_mm, body_mass_g]`.")
    )
    categorical_features: tuple[str, ...] = field(
        metadata=_hint("It must be a list of column names, e.g. `[island, sex]`.")
    )
    # Raw values that mean "missing" in a column, e.g. `{sex: ["."]}`.
    extraneous_values: dict[str, tuple[Any, ...]] = field(
        default_factory=dict,
        metadata=_hint(
            "It maps a column name to a list of values to treat as missing, e.g. `{sex: ['.']}`."
        ),
    )

    def __post_init__(self) -> None:
        features = [*self.numeric_features, *self.categorical_features]
        for key in ("numeric_features", "categorical_features"):
            if not all(name.strip() for name in getattr(self, key)):
                raise SettingValueError(key, "column names must be non-empty strings.")
        if not features:
            raise SettingValueError(
                "numeric_features",
                "the dataset lists no feature columns: name them in `numeric_features` "
                "and/or `categorical_features`.",
            )
        repeated = sorted({name for name in features if features.count(name) > 1})
        if repeated:
            raise SettingValueError(
                "categorical_features",
                f"{repeated} appear twice in `numeric_features`/`categorical_features`: "
                "list each column once.",
            )
        if self.target in features:
            raise SettingValueError(
                "target", f"the target column `{self.target}` is also listed as a feature."
            )
        unknown = sorted(set(self.extraneous_values) - set(features) - {self.target})
        if unknown:
            raise SettingValueError(
                "extraneous_values",
                f"names unknown columns: {unknown}. Use the target or a feature column.",
            )

    @property
    def schema(self) -> DatasetSchema:
        return DatasetSchema(
            target=self.target,
            numeric_features=tuple(self.numeric_features),
            categorical_features=tuple(self.categorical_features),
            extraneous_values={k: tuple(v) for k, v in self.extraneous_values.items()},
        )


@dataclass(frozen=True)
class ModelSettings:
    """The registered model (`model:`)."""

    # Default: the project name.
    name: str | None = field(
        default=None,
        metadata=_hint(
            "Name it with letters, digits, `_`, `.` and `-`, starting with a letter or digit."
        ),
    )
    # Written into every registered version's model card (`model_card.md`).
    intended_use: str = (
        "Classify the species of a penguin from its measurements, for the islands and "
        "populations the training data covers."
    )
    limitations: str = (
        "Trained on a few hundred birds; rows unlike the training data (other islands, "
        "other species, other units) get confident but meaningless answers."
    )

    def __post_init__(self) -> None:
        if self.name is not None and _MODEL_NAME.fullmatch(self.name) is None:
            raise SettingValueError(
                "name",
                f"must match {MODEL_NAME_PATTERN} (letters, digits, `_`, `.` and `-`, "
                "starting with a letter or digit: MLflow's search filters cannot quote "
                f"anything else), got {self.name!r}.",
            )


_DRIFT_THRESHOLD = (
    "Write a non-negative number, at most 1 for a method that scores a p-value or a "
    "distance in [0, 1] (e.g. ks, jensenshannon), e.g. 0.2."
)


@dataclass(frozen=True)
class MonitoringSettings:
    """Thresholds and schedule of the monitoring pipeline (`monitoring:`)."""

    # Production accuracy under this raises an alert. Simulated labels with
    # --ground-truth-quality 0.8 put a healthy model near 0.8.
    accuracy_threshold: float = field(
        default=0.7, metadata=_hint("It is an accuracy: a number in [0, 1], e.g. 0.7.")
    )
    # Per-column drift: normed Wasserstein distance for numbers, Jensen-Shannon
    # distance for categories. Rows drawn from the training data score ~0.05 with
    # a few hundred rows; a two-standard-deviation shift scores ~2.
    numeric_drift_method: str = "wasserstein"
    numeric_drift_threshold: float = field(default=0.2, metadata=_hint(_DRIFT_THRESHOLD))
    categorical_drift_method: str = "jensenshannon"
    categorical_drift_threshold: float = field(default=0.2, metadata=_hint(_DRIFT_THRESHOLD))
    # Reports look at most this many rows of each dataset (a random sample).
    max_rows: int = 5000
    experiment: str = "monitoring"
    # When a production scheduler (Argo Workflows CronWorkflow, EventBridge for
    # Step Functions) starts the monitoring pipeline: `hourly`, `daily`, `weekly`
    # or an EventBridge cron expression (six fields, UTC; Argo uses the first five).
    # Held as the cron expression `@schedule(cron=...)` takes.
    schedule: str = field(
        default="hourly",
        metadata=_hint(
            "Write hourly, daily, weekly or a six-field EventBridge cron expression, "
            "e.g. `0 6 * * ? *`."
        ),
    )

    def __post_init__(self) -> None:
        if not 0 <= self.accuracy_threshold <= 1:
            raise SettingValueError(
                "accuracy_threshold",
                f"must be an accuracy in [0, 1], got {self.accuracy_threshold!r}.",
            )
        _check_drift_threshold(self, "numeric")
        _check_drift_threshold(self, "categorical")
        require_positive_integers(self, "max_rows")
        object.__setattr__(self, "schedule", normalize_schedule(self.schedule))


@dataclass(frozen=True)
class RetrainingSettings:
    """Retraining on alert (`retraining:`)."""

    # An event name turns on retraining on alert for deployments on Argo Workflows:
    # monitoring publishes it when it raises an alert, training is triggered by it.
    # Off by default because Step Functions cannot deploy a flow with @trigger.
    event: str | None = field(
        default=None,
        metadata=_hint(
            "Leave it empty for no retraining on alert, or name an event with letters, "
            "digits, `_`, `-` and `.`."
        ),
    )

    def __post_init__(self) -> None:
        _check_event_name(self, "no retraining on alert")


def _check_event_name(settings: Any, empty_means: str) -> None:
    """An `event` setting: empty is None; else a name Argo Events and Metaflow accept."""
    if isinstance(settings.event, str) and settings.event.strip() == "":
        # What `event: ${RETRAINING_EVENT:-}` expands to when the variable is unset.
        object.__setattr__(settings, "event", None)
    if settings.event is not None and _EVENT_NAME.fullmatch(settings.event) is None:
        raise SettingValueError(
            "event",
            f"must be empty ({empty_means}) or an event name of letters, "
            f"digits, `_`, `-` and `.`, got {settings.event!r}.",
        )


@dataclass(frozen=True)
class PromotionSettings:
    """When a challenger replaces the champion (`promotion:`)."""

    # Labelled production captures the paired comparison needs; with fewer, the
    # cross-validated scores are compared instead.
    min_rows: int = 200
    # The challenger's accuracy must be at least the champion's plus this.
    min_gain: float = field(
        default=0.0, metadata=_hint("It is an accuracy difference in [-1, 1], e.g. 0.01.")
    )
    # When set, the difference must also be significant (McNemar's p-value under it).
    max_p_value: float | None = field(
        default=None, metadata=_hint("It is a probability in (0, 1], e.g. 0.05, or empty.")
    )
    # When the monitoring pipeline finds the shadow better by the rule above, it
    # asks the deployment pipeline to promote it.
    auto: bool = False
    # Where monitoring runs on Argo Workflows, auto-promotion publishes this event
    # (the version in its payload) for the deployment flow deployed there with a
    # @trigger on it, instead of deploying from the monitoring task. Off by default
    # because Step Functions cannot deploy a flow with @trigger.
    event: str | None = field(
        default=None,
        metadata=_hint(
            "Leave it empty to promote only where monitoring runs locally, or name an "
            "event with letters, digits, `_`, `-` and `.`."
        ),
    )

    def __post_init__(self) -> None:
        require_positive_integers(self, "min_rows")
        _check_gain_rule(self)
        _check_event_name(self, "no promotion by event")


@dataclass(frozen=True)
class ScoringSettings:
    """The batch scoring pipeline (`scoring:`)."""

    # When a production scheduler starts it; the same forms as `monitoring.schedule`.
    schedule: str = field(
        default="daily",
        metadata=_hint(
            "Write hourly, daily, weekly or a six-field EventBridge cron expression, "
            "e.g. `0 6 * * ? *`."
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", normalize_schedule(self.schedule))


@dataclass(frozen=True)
class SearchRange:
    """Where the search looks for one hyperparameter: `low`..`high` (on a log scale with
    `log: true`), or a list of `choices`."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: tuple[int | float, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise SettingValueError("choices", "write either low/high or choices, not both.")
            if not self.choices:
                raise SettingValueError("choices", "is empty: list at least one value.")
            return
        if self.low is None or self.high is None:
            raise SettingValueError(
                "low", "a range needs both low and high; or list the values as `choices`."
            )
        if self.low > self.high:
            raise SettingValueError(
                "low", f"inverted range: low {self.low} is above high {self.high}; swap them."
            )
        if self.low == self.high:
            raise SettingValueError(
                "high",
                f"empty range: low and high are both {self.low}; widen it, or write "
                f"`choices: [{self.low}]` to fix the value.",
            )
        if self.log and self.low <= 0:
            raise SettingValueError("low", f"a log range needs low > 0, got {self.low}.")

    @property
    def values(self) -> tuple[int | float, ...]:
        """The values that bound it: its choices, or low and high."""
        if self.choices is not None:
            return self.choices
        return (self.low, self.high)  # type: ignore[return-value]


# The values the model takes for each hyperparameter: (kind, bounds, bounds check).
_MODEL_TAKES: dict[str, tuple[str, str, Any]] = {
    "learning_rate": ("float", "> 0", lambda value: value > 0),
    "epochs": ("int", ">= 1", lambda value: value >= 1),
    "batch_size": ("int", ">= 1", lambda value: value >= 1),
    "hidden_units": ("int", ">= 1", lambda value: value >= 1),
    "hidden_layers": ("int", ">= 1", lambda value: value >= 1),
    "dropout": ("float", "in [0, 1)", lambda value: 0 <= value < 1),
}


@dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters the search varies (`tuning.parameters:`), each a `SearchRange`.

    One that is empty (`dropout: null`) keeps the training pipeline's default. Hidden
    layer i has `hidden_units / 2**i` units (the default 16 -> 8).
    """

    learning_rate: SearchRange | None = field(
        default_factory=lambda: SearchRange(low=0.001, high=0.1, log=True)
    )
    epochs: SearchRange | None = field(default_factory=lambda: SearchRange(low=10, high=100))
    batch_size: SearchRange | None = field(
        default_factory=lambda: SearchRange(choices=(8, 16, 32, 64))
    )
    hidden_units: SearchRange | None = field(
        default_factory=lambda: SearchRange(choices=(8, 16, 32, 64))
    )
    hidden_layers: SearchRange | None = field(default_factory=lambda: SearchRange(low=1, high=3))
    dropout: SearchRange | None = field(default_factory=lambda: SearchRange(low=0.0, high=0.5))

    def __post_init__(self) -> None:
        for name, space in self.ranges().items():
            for value in space.values:
                _check_searched_value(name, value)

    def ranges(self) -> dict[str, SearchRange]:
        """The searched parameters by name, in the order the config documents them."""
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if getattr(self, name) is not None
        }


def _check_searched_value(name: str, value: float) -> None:
    kind, bounds, within = _MODEL_TAKES[name]
    if kind == "int" and value != int(value):
        raise SettingValueError(name, f"takes whole numbers, got {value}.")
    if not within(value):
        raise SettingValueError(name, f"{value} is out of bounds: the model takes {name} {bounds}.")


def _check_gain_rule(settings: Any) -> None:
    """`min_gain` and `max_p_value`, the thresholds of a rule that compares two models."""
    if not -1.0 <= settings.min_gain <= 1.0:
        raise SettingValueError(
            "min_gain", f"must be an accuracy difference in [-1, 1], got {settings.min_gain!r}."
        )
    if settings.max_p_value is not None and not 0.0 < settings.max_p_value <= 1.0:
        raise SettingValueError(
            "max_p_value",
            f"must be a probability in (0, 1], or empty, got {settings.max_p_value!r}.",
        )


@dataclass(frozen=True)
class TuningSettings:
    """The hyperparameter search of src/pipelines/tuning.py (`tuning:`)."""

    trials: int = 20
    # Trials evaluated at once: the width of each of the search's two fan-outs.
    concurrency: int = 2
    # Development runs with the same seed ask the same trials and find the same winner.
    seed: int = 42
    # What the search optimizes, the mean over the folds: accuracy up, or loss down.
    objective: Literal["accuracy", "loss"] = field(
        default="accuracy",
        metadata=_hint("The trials produce `accuracy` (maximized) and `loss` (minimized)."),
    )
    # A trial stops early when, after its second fold or later, its running mean is
    # worse than the median of at least this many finished trials. Empty: no pruning.
    pruning_startup_trials: int | None = 5
    # The winner is recommended over the defaults only if its mean objective beats
    # theirs by more than `min_gain` and, when `max_p_value` is set, the paired test on
    # the fold scores (a corrected t-test, model_tuning/comparison.py) is under it.
    min_gain: float = 0.0
    max_p_value: float | None = 0.05
    # The MLflow experiment of the search's runs, one nested run per trial.
    experiment: str = "tuning"
    parameters: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        require_positive_integers(self, "trials")
        if not self.parameters.ranges():
            raise SettingValueError(
                "parameters", "searches nothing: give at least one parameter a range or choices."
            )
        if not 1 <= self.concurrency <= self.trials:
            raise SettingValueError(
                "concurrency",
                f"must be between 1 and tuning.trials ({self.trials}), got {self.concurrency}.",
            )
        if self.pruning_startup_trials is not None:
            require_positive_integers(self, "pruning_startup_trials")
        _check_gain_rule(self)


@dataclass(frozen=True)
class ProjectSettings:
    """The whole project configuration, as `config/*.yml` holds it."""

    project: str = field(
        metadata=_hint(
            "Name the project, e.g. `project: penguins` (lowercase letters, digits, `_`)."
        )
    )
    dataset: DatasetSettings = field(
        metadata=_hint(
            "Describe the CSV columns: `target`, `numeric_features` and `categorical_features`."
        )
    )
    # Filled from MLFLOW_TRACKING_URI, else DEFAULT_TRACKING_URI, when the file has none.
    mlflow_tracking_uri: str = field(
        default=DEFAULT_TRACKING_URI,
        metadata=_hint("Write a URI such as http://localhost:5000 or sqlite:///mlflow.db."),
    )
    # `module` names the backend class; every other key is the backend's own setting,
    # checked by the backend when it is built (at the run's first step).
    backend: dict[str, Any] = field(
        default_factory=dict,
        metadata=_hint("Write `backend:` as a mapping with at least `module: backend.Local`."),
    )
    model: ModelSettings = field(default_factory=ModelSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    retraining: RetrainingSettings = field(default_factory=RetrainingSettings)
    promotion: PromotionSettings = field(default_factory=PromotionSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)

    def __post_init__(self) -> None:
        if _PROJECT_NAME.fullmatch(self.project) is None:
            raise SettingValueError(
                "project",
                "must be lowercase letters, digits and underscores (Metaflow's @project "
                f"rule), got {self.project!r}.",
            )
        module = self.backend.get("module", DEFAULT_BACKEND)
        if not isinstance(module, str) or "." not in module.strip(".") or " " in module:
            raise SettingValueError(
                "backend.module",
                f"must look like `module.Class` (e.g. backend.Local), got {module!r}.",
            )
        object.__setattr__(self, "backend", {**self.backend, "module": module})
        if self.model.name is None:
            object.__setattr__(self, "model", replace(self.model, name=self.project))


def project_settings(config: Mapping[str, Any]) -> ProjectSettings:
    """The typed settings of a configuration: a parsed one (`self.project`) or raw YAML data.

    Raises `ConfigurationError` naming the offending key and what it should hold.
    """
    try:
        return load_settings(ProjectSettings, config, "")
    except SettingsError as error:
        raise ConfigurationError(str(error)) from None

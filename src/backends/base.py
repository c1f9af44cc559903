"""What every backend provides, and the helpers they share.

A backend is where a model is deployed, how it is invoked and where its predictions
are kept. A pipeline picks one with `backend.module` in the project config (or
`--backend`); `@backend` instantiates it as `self.backend_impl` with the config's
`backend` settings.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from common import settings_loader as common_settings
from inference.capture import CAPTURE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


@dataclass(frozen=True)
class ShadowModel:
    """A registered version that scores live traffic beside the champion, unseen."""

    model_uri: str
    model_version: str


class BackendError(RuntimeError):
    """A backend operation failed; the message says what and where."""


class SettingsError(BackendError, common_settings.SettingsError):
    """A backend refused its settings; the message says which and how to fix it.

    Both a `BackendError` (what the backends' callers catch) and the project's
    `common.settings_loader.SettingsError` (a ValueError, which `build_backend` reports as
    one line), so a bad setting is one kind of error wherever it is caught.
    """


def load_backend_settings(cls: type[T], config: Mapping[str, Any] | None) -> T:
    """The `backend:` section as the frozen settings `cls`, refusing unknown keys.

    Messages name the key under `backend.` and the nearest valid name.
    """
    try:
        return common_settings.load_settings(cls, config, "backend")
    except common_settings.SettingsError as error:
        raise SettingsError(str(error)) from None


class Backend(ABC):
    """What every deployment target provides to the pipelines."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    @abstractmethod
    def deploy(self, model_uri: str, model_version: str, shadow: ShadowModel | None = None) -> bool:
        """Serve `model_uri` (registry version `model_version`) at the configured target.

        With `shadow`, that model also scores every request, its answers captured
        beside the served ones and never returned. Returns False when that version
        (with that shadow, or none) was already serving: nothing was changed.
        """

    def prepare(
        self, model_uri: str, model_version: str, shadow: ShadowModel | None = None
    ) -> None:
        """Get `model_uri` ready to deploy (e.g. download it) without touching what serves.

        Optional: a later `deploy` of the same model is then quicker. Nothing by default.
        """
        return None

    def deployed_shadow_version(self) -> str | None:
        """The registry version scoring in shadow at the target now, if any."""
        return None

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release what it costs (server, endpoint)."""

    @abstractmethod
    def deployed_version(self) -> str | None:
        """The registry version serving at the target now, if any."""

    @abstractmethod
    def invoke(self, payload: list[dict[str, Any]], source: str = "online") -> dict[str, Any]:
        """Send rows to the deployed model; return `{"predictions": [...]}`.

        `source` "smoke" marks a deployment's smoke test: its answers are captured with
        that source, and never loaded, labelled or counted as production evidence.
        """

    @abstractmethod
    def save(
        self, model_input: pd.DataFrame, model_output: pd.DataFrame, source: str = "online"
    ) -> None:
        """Capture predictions (inputs and outputs) made outside the server.

        `model_output` has `prediction`, `confidence` and, optionally, `id` and
        `model_version`; `source` is `online` or `batch` (the scoring pipeline).
        """

    @abstractmethod
    def load(
        self, limit: int = 100, labeled_only: bool = False, model_version: str | None = None
    ) -> pd.DataFrame | None:
        """The `limit` most recent captured predictions, newest first, with ground truth;
        with `model_version`, only those that version answered. Never a smoke test's.

        Columns: the input features, `prediction`, `confidence`, `ground_truth`, `id`,
        `model_version`, `created_at`, `source` and the shadow's `shadow_version`,
        `shadow_prediction`, `shadow_confidence` (None without a shadow). None when
        nothing was captured.
        """

    @abstractmethod
    def label(self, ground_truth_quality: float = 0.8) -> int:
        """Simulate ground truth for unlabeled predictions; return how many were labelled.

        Each label equals the prediction with probability `ground_truth_quality`,
        otherwise another class: a stand-in for labels that arrive from people later.
        """

    @abstractmethod
    def label_by_id(self, ground_truth: dict[str, str]) -> int:
        """Attach real ground truth to predictions by their ids; return how many matched."""

    # Whether `deploy` starts the model server on the machine it runs on (Local), so
    # that a deployment task on a worker would serve from a machine that goes away.
    serves_where_deployed: bool = False

    def check_remote_steps(self, steps: list[str]) -> None:
        """Refuse (SettingsError, saying how to fix it) when the flow steps `steps`, which
        use this backend, run on other machines than the one starting the run (AWS Batch,
        Kubernetes) and could not reach what it stores. Nothing to refuse by default."""
        del steps  # a backend whose stores every machine reaches accepts any step


def simulate_ground_truth(
    predictions: list[tuple[str, str]], classes: list[str], quality: float, seed: int | None = None
) -> dict[str, str]:
    """Ground truth for (id, prediction) pairs: right with probability `quality`."""
    if not 0 <= quality <= 1:
        raise ValueError(f"ground truth quality must be in [0, 1], got {quality}.")
    rng = random.Random(seed)
    labels = {}
    for id_, prediction in predictions:
        others = [name for name in classes if name != prediction]
        right = rng.random() < quality or not others
        labels[id_] = prediction if right else rng.choice(others)
    return labels


def captured_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Capture rows (the fields of `CAPTURE_COLUMNS`, in order; `inputs` as JSON) as
    one DataFrame with the inputs spread into columns."""
    import pandas as pd

    inputs = pd.DataFrame([json.loads(row[3]) for row in rows])
    width = len(CAPTURE_COLUMNS)
    padded = [(*row, *((None,) * (width - len(row)))) for row in rows]
    meta = pd.DataFrame(padded, columns=list(CAPTURE_COLUMNS)).drop(columns="inputs")
    meta["source"] = meta["source"].fillna("online")
    meta["created_at"] = pd.to_datetime(meta["created_at"], unit="s", utc=True)
    return pd.concat([inputs, meta], axis=1)

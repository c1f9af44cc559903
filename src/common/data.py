"""Load a tabular classification dataset described by the project configuration.

The configuration's `dataset` section names the target column, the numeric and the
categorical feature columns, and values that mean "missing" in the raw file. Nothing
here knows which dataset it is reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metaflow.exception import MetaflowException

if TYPE_CHECKING:
    import pandas as pd


S3_SCHEME = "s3://"


class DatasetError(MetaflowException):
    """The dataset file is missing, unreadable, or does not match its description."""

    headline = "Dataset error"


@dataclass(frozen=True)
class DatasetSchema:
    """Which columns of the CSV play which role."""

    target: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    extraneous_values: dict[str, tuple[Any, ...]]

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> DatasetSchema:
        return cls(
            target=section["target"],
            numeric_features=tuple(section["numeric_features"]),
            categorical_features=tuple(section["categorical_features"]),
            extraneous_values={
                column: tuple(values)
                for column, values in (section.get("extraneous_values") or {}).items()
            },
        )

    @property
    def features(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    @property
    def columns(self) -> list[str]:
        return [self.target, *self.features]


def read_dataset(path: str | os.PathLike[str], schema: DatasetSchema) -> pd.DataFrame:
    """Read the CSV at `path` (a file or an s3:// URL) and check it has every column."""
    location = os.fspath(path)
    if location.startswith(S3_SCHEME):
        data = _read_s3_csv(location)
    else:
        if not os.path.isfile(location):
            raise DatasetError(
                f"Dataset file not found: {location!r} (relative to {os.getcwd()!r}). "
                "Run from the project root or pass `--dataset <path to a CSV>`."
            )
        data = _read_csv(location, location)

    missing = [column for column in schema.columns if column not in data.columns]
    if missing:
        raise DatasetError(
            f"{location!r} lacks the configured column(s) {missing}; it has "
            f"{list(data.columns)}. Fix the `dataset` section of the project config."
        )
    return data


def _read_csv(path: str, location: str) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"Cannot read {location!r} as CSV: {error}") from None


def _read_s3_csv(url: str) -> pd.DataFrame:
    """Download an s3:// CSV with `metaflow.S3` and read it.

    Metaflow's client uses the credentials and the METAFLOW_S3_ENDPOINT_URL its
    datastore uses, so a dataset beside the datastore reads wherever tasks run; a
    remote worker cannot see the developer's files, only what the code package holds.
    """
    from metaflow import S3

    with S3() as s3:
        downloaded = s3.get(url, return_missing=True)
        if not downloaded.exists:
            raise DatasetError(
                f"Dataset object not found: {url!r}. Upload the CSV there or pass "
                "`--dataset <path or s3:// URL of a CSV>`."
            )
        return _read_csv(downloaded.path, url)


def clean_dataset(data: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Keep the configured columns, turn extraneous values into NaN, type the features.

    Rows without a target cannot teach anything and are dropped. A numeric column that
    holds text is an error, not a silent NaN: it means the file is not what the config
    says it is.
    """
    import numpy as np
    import pandas as pd

    data = data[schema.columns].copy()
    for column, values in schema.extraneous_values.items():
        data[column] = data[column].where(~data[column].isin(values), np.nan)

    for column in schema.numeric_features:
        converted = pd.to_numeric(data[column], errors="coerce")
        bad = data[column].notna() & converted.isna()
        if bad.any():
            examples = data.loc[bad, column].astype(str).unique()[:3].tolist()
            raise DatasetError(
                f"Column {column!r} is configured as numeric but holds {examples}. "
                "List those values under `dataset.extraneous_values` or move the column "
                "to `categorical_features`."
            )
        data[column] = converted.astype("float64")
    for column in schema.categorical_features:
        data[column] = data[column].astype("object").where(data[column].notna(), np.nan)

    data = data[data[schema.target].notna()].reset_index(drop=True)
    if data[schema.target].nunique() < 2:
        raise DatasetError(
            f"The target column {schema.target!r} needs at least two classes to train a classifier."
        )
    return data


def shuffle(data: pd.DataFrame, seed: int | None) -> pd.DataFrame:
    """Shuffle rows; a fixed seed makes development runs repeatable."""
    return data.sample(frac=1, random_state=seed).reset_index(drop=True)


def load_dataset(
    path: str | os.PathLike[str], schema: DatasetSchema, seed: int | None
) -> pd.DataFrame:
    """Read, clean and shuffle the dataset."""
    return shuffle(clean_dataset(read_dataset(path, schema), schema), seed)

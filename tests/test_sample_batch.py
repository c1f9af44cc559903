"""data/sample-batch.csv, the batch input the README scores: what the scoring pipeline's
`start` accepts, every row valid, drawn from the dataset without its answer.

Checked with the pipeline's own reading and row checks (batch_scoring.reading and
.splitting) and a feature transformer fitted on the penguins in process: no model, no
registry, no pipeline run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from support.paths import LOCAL_CONFIG, PENGUINS_CSV, REPO_ROOT

from batch_scoring.reading import open_input
from batch_scoring.splitting import stage_chunks
from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset
from inference.features import FeatureTransform
from model_training.preprocessing import fit_features_transformer

SAMPLE_BATCH = REPO_ROOT / "data" / "sample-batch.csv"


def test_scoring_accepts_every_row_of_the_sample_batch(tmp_path: Path) -> None:
    schema = DatasetSchema.from_config(load_project_configuration(LOCAL_CONFIG)["dataset"])
    data = load_dataset(PENGUINS_CSV, schema, 42)
    features = FeatureTransform.from_transformer(fit_features_transformer(data, schema))

    source = open_input(str(SAMPLE_BATCH), schema, str(tmp_path))
    staged = stage_chunks(
        source, features, schema, staging=str(tmp_path / "staging"), chunk_rows=1000,
        sample_size=100, directory=str(tmp_path),
    )  # fmt: skip

    assert 15 <= staged.rows <= 30
    assert staged.rejected_rows == 0, staged.refusal_warnings()
    assert [chunk["rows"] for chunk in staged.chunks] == [staged.rows]


def test_the_sample_batch_is_dataset_rows_without_the_species() -> None:
    sample = pd.read_csv(SAMPLE_BATCH)
    penguins = pd.read_csv(PENGUINS_CSV)

    assert list(sample.columns) == [c for c in penguins.columns if c != "species"]
    found = sample.merge(penguins.drop(columns="species").drop_duplicates(), how="left",
                         indicator=True)  # fmt: skip
    assert (found["_merge"] == "both").all(), sample[found["_merge"] != "both"]
    assert sample.notna().all().all()

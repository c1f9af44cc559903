"""Tests for inference.scorer: a registered model scored in process, from its own code
directory, without MLflow, scikit-learn or Keras (batch scoring, the deployment
pipeline's comparison)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.rows import SPARSE_ROW, SPEC_ROW

from common.registry import download_model

ROWS = [SPEC_ROW, SPARSE_ROW]

# The pipelines' in-process path (batch scoring, the deployment comparison), run from
# the model's code directory: `inference.scorer` alone, without MLflow.
SCORER_CHILD = """
import json, sys
code, model_dir, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, code)
import pandas as pd
from inference.scorer import load_scorer

scorer = load_scorer(model_dir)
predictions, confidences = scorer.score(scorer.features.validate(pd.DataFrame(rows)))
heavy = ("mlflow", "sklearn", "scipy", "keras", "jax")
print("RESULT" + json.dumps({
    "predictions": predictions,
    "imported": sorted(name for name in heavy if name in sys.modules),
}))
"""


def test_the_scorer_loads_a_registered_model_without_mlflow_or_scikit_learn(
    serving_models: Any, tmp_path: Path
) -> None:
    model_dir = download_model(serving_models.uri(serving_models.good[0]), tmp_path / "model")
    process = subprocess.run(
        [sys.executable, "-c", SCORER_CHILD, str(model_dir / "code"), str(model_dir),
         json.dumps(ROWS)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(row for row in process.stdout.splitlines() if row.startswith("RESULT"))
    result = json.loads(line.removeprefix("RESULT"))
    assert result["imported"] == []
    assert result["predictions"][0] == "Gentoo"

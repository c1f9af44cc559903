"""The folds every trial trains on (src/model_tuning/folds.py)."""

from __future__ import annotations

import numpy as np
from support.paths import LOCAL_CONFIG, PENGUINS_CSV

from common.config import load_project_configuration
from common.data import load_dataset
from common.settings import project_settings
from model_training.cross_validation import stratified_folds
from model_training.preprocessing import fit_features_transformer, fit_target_transformer, transform
from model_tuning.folds import transformed_folds


def test_the_folds_are_the_training_pipelines_transformed_as_scikit_learn_would() -> None:
    schema = project_settings(load_project_configuration(LOCAL_CONFIG)).dataset.schema
    data = load_dataset(PENGUINS_CSV, schema, 42)
    folds, classes = transformed_folds(data, schema, 3, seed=42)
    assert classes == ["Adelie", "Chinstrap", "Gentoo"]
    for fold, (train, test) in zip(
        folds, stratified_folds(data[schema.target], 3, 42), strict=True
    ):
        features = fit_features_transformer(data.iloc[train], schema)
        target = fit_target_transformer(data, schema)
        x_test, y_test = transform(data.iloc[test], schema, features, target)
        np.testing.assert_allclose(fold.x_test, x_test, atol=1e-6)
        np.testing.assert_array_equal(fold.y_test, y_test)
        assert len(fold.x_train) == len(train)


def test_data_the_numpy_fit_cannot_vouch_for_goes_to_scikit_learn() -> None:
    import pandas as pd

    from common.data import DatasetSchema

    schema = DatasetSchema("label", ("x",), (), {})
    data = pd.DataFrame({"x": np.arange(12, dtype=float), "label": [0, 1, 2] * 4})  # not strings
    folds, classes = transformed_folds(data, schema, 2, seed=0)
    assert classes == ["0", "1", "2"] and folds[0].x_train.shape == (6, 1)

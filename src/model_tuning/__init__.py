"""The tuning stage: a hyperparameter search over the training pipeline's folds.

- `space`: the hyperparameters the model takes, their defaults, Optuna's distributions;
- `folds`: the training pipeline's folds, transformed once for every trial;
- `trials`: one trial, trained and scored on every fold, pruned after a fold if told;
- `search`: the lanes of the two fan-outs, ask-and-tell on an in-memory Optuna study
  (TPE sampler, median pruner) rebuilt from the trials passed as artifacts;
- `comparison`: the winner against the defaults (corrected paired t-test), the verdict;
- `handoff`: what a tuning run recommends, read by `training.py --hyperparameters-from`,
  and the registered version's tags and model card section;
- `tracking`: the parent MLflow run's outcome and one nested run per trial;
- `cards`, `charts`: the pipeline's card and its SVG charts.

It builds on `model_training` (folds, transforms, the network, its MLflow parent run).
"""

"""The tuning stage: a hyperparameter search over the training pipeline's folds."""

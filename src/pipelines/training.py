"""Training pipeline: cross-validate, train on everything, register a servable model.

    uv run src/pipelines/training.py run

    start ┬ transform ─ train ────────────────────────────────────┐
          └ cross_validation ─ transform_fold (foreach fold) ─ train_fold
                                 ─ evaluate_fold ─ average_scores ┴ register ─ end

The cross-validated accuracy estimates how the final model, trained on the whole
dataset, will do; the model is registered only if that estimate reaches
`--accuracy-threshold`.

MLflow: `start` opens the parent run and one nested run per fold.
Fold tasks keep their metrics as artifacts and `register` writes them to MLflow in one
go: only `start` and `register` import MLflow (seconds per process), and a retried
task never leaves duplicate metrics behind.

`evaluate_fold` scores each fold model with the model server's own forward pass
(`inference.forward.dense_forward`) over weights `train_fold` copies out of the Keras
model: the scores measure what will be served, and the task never imports Keras.
`start` sends `transform` first: that branch (transform, train) is the longest chain
of tasks, so it runs beside the folds instead of after them.

Champion and challenger: a registered version gets the alias `challenger` and the tags
`cv_accuracy`, `cv_accuracy_std`, `cv_fold_accuracies` (JSON list), `training_rows` and
`training_data_digest`, which the deployment pipeline reads to compare it with the
champion. Its model card (model_training/model_card.py) is `model_card.md` on its MLflow run
and the `register` step's card (`card view register --id model_card`). The card's
slices and permutation importances come from the folds: `evaluate_fold` permutes each
feature of its unseen rows through the same forward pass, `average_scores` slices the
out-of-fold predictions, so no step scores a model again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaflow import Parameter, card, current, environment, step

from common.keras_runtime import check_backend_installed, keras_backend
from common.pipeline import Pipeline, dataset, development_seed
from common.retraining import retrain_on_alert

if TYPE_CHECKING:
    from model_training.model_card import ModelCard

environment_variables = {"KERAS_BACKEND": keras_backend()}


@retrain_on_alert
class Training(Pipeline):
    """Train and register a classifier for the configured dataset.

    - 5-fold stratified cross-validation estimates accuracy (mean and std).
    - A final model is trained on the whole dataset.
    - The model, its transformers and the code to serve them are registered in MLflow
      as a pyfunc when the cross-validated accuracy reaches the threshold.
    """

    training_epochs = Parameter(
        "training-epochs",
        help="Number of epochs to train each model.",
        default=50,
    )

    training_batch_size = Parameter(
        "training-batch-size",
        help="Batch size used to train each model.",
        default=32,
    )

    accuracy_threshold = Parameter(
        "accuracy-threshold",
        help="Minimum cross-validated accuracy required to register the model.",
        default=0.7,
    )

    cross_validation_folds = Parameter(
        "folds",
        help="Number of cross-validation folds.",
        default=5,
    )

    hyperparameters_from = Parameter(
        "hyperparameters-from",
        help="A finished tuning run (Tuning/<id>): train with the hyperparameters it "
        "recommends, instead of --training-epochs, --training-batch-size and the defaults.",
        default="",
    )

    @dataset
    # Blank: the default card would also list `data`, every row with its pandas index.
    @card(type="blank")
    @step
    def start(self):
        """Validate parameters, open the parent MLflow run, record the training data."""
        from common.secrets import redact
        from model_training.cards import cards_guide, dataset_summary
        from model_training.tracking import log_training_data, open_fold_runs, training_run

        self.validate_parameters()
        self.tuning, self.hyperparameters = self.chosen_hyperparameters()
        self.logger.info("MLflow tracking server: %s", redact(self.mlflow_tracking_uri))
        self.mode = "production" if current.is_production else "development"
        self.logger.info("Running flow in %s mode.", self.mode)
        parameters = {
            "training_epochs": self.training_epochs,
            "training_batch_size": self.training_batch_size,
            "accuracy_threshold": self.accuracy_threshold,
            "folds": self.cross_validation_folds,
            "metaflow_run": f"{current.flow_name}/{current.run_id}",
            "mode": self.mode,
            **({"hyperparameters_from": self.tuning["tuning_run"]} if self.tuning else {}),
            **(self.hyperparameters if self.tuning else {}),
        }
        uri, experiment = self.mlflow_tracking_uri, self.project.project
        with training_run(uri, experiment, current.run_id, parameters) as self.mlflow_run_id:
            log_training_data(self.data, self.dataset, self.schema.target)
            # Opened here, where MLflow is imported anyway, rather than in
            # `cross_validation`, which then needs nothing heavier than numpy.
            self.mlflow_fold_run_ids = open_fold_runs(self.cross_validation_folds)
        current.card.extend(cards_guide() + dataset_summary(self.data, self.schema.target))
        self.next(self.transform, self.cross_validation)

    def validate_parameters(self):
        """Reject nonsensical parameter values before any work is done."""
        from common.pipeline import PipelineError

        for name, value in (
            ("training-epochs", self.training_epochs),
            ("training-batch-size", self.training_batch_size),
        ):
            if value < 1:
                raise PipelineError(f"--{name} must be a positive integer, got {value}.")
        if not 0 <= self.accuracy_threshold <= 1:
            raise PipelineError(
                f"--accuracy-threshold must be between 0 and 1, got {self.accuracy_threshold}."
            )
        if not 2 <= self.cross_validation_folds <= len(self.data):
            raise PipelineError(
                f"--folds must be between 2 and the number of rows ({len(self.data)}), "
                f"got {self.cross_validation_folds}."
            )
        try:  # Here rather than in the first task that trains, minutes later.
            check_backend_installed(keras_backend())
        except (ValueError, ModuleNotFoundError) as error:
            raise PipelineError(str(error)) from None

    def chosen_hyperparameters(self):
        """(the tuning run's recommendation or None, the hyperparameters to train with)."""
        if not self.hyperparameters_from:
            return None, {"epochs": self.training_epochs, "batch_size": self.training_batch_size}
        from common.pipeline import PipelineError
        from model_tuning.handoff import TuningRunError, read_recommendation

        try:
            tuning = read_recommendation(self.hyperparameters_from)
        except TuningRunError as error:
            raise PipelineError(str(error)) from None
        self.logger.info("Hyperparameters of %s: %s", tuning["tuning_run"], tuning["reason"])
        return tuning, tuning["hyperparameters"]

    @step
    def cross_validation(self):
        """Split rows into stratified folds, one foreach branch per fold."""
        from model_training.cross_validation import stratified_folds

        splits = stratified_folds(
            self.data[self.schema.target],
            self.cross_validation_folds,
            seed=development_seed(current.is_production),
        )
        self.folds = list(enumerate(splits))
        self.next(self.transform_fold, foreach="folds")

    @step
    def transform_fold(self):
        """Fit the features transformer on this fold's training rows; transform both sides
        (`model_training.fold_transform`: numpy, without importing scikit-learn)."""
        from model_training.fold_transform import transform_fold

        self.fold, (self.train_indices, self.test_indices) = self.input
        self.mlflow_fold_run_id = self.mlflow_fold_run_ids[self.fold]
        self.logger.info(
            "Transforming fold %d of %d...", self.fold + 1, self.cross_validation_folds
        )
        fold = transform_fold(
            self.data,
            self.data.iloc[self.train_indices],
            self.data.iloc[self.test_indices],
            self.schema,
        )
        self.class_names = fold.classes
        self.feature_columns = fold.feature_columns
        self.x_train, self.y_train = fold.x_train, fold.y_train
        self.x_test, self.y_test = fold.x_test, fold.y_test
        self.next(self.train_fold)

    @environment(vars=environment_variables)
    @step
    def train_fold(self):
        """Train a model on this fold's training rows; keep its weights as plain numpy."""
        from inference.forward import dense_weights
        from model_training.network import train_model

        self.logger.info("Training fold %d of %d...", self.fold + 1, self.cross_validation_folds)
        self.model, self.history = train_model(
            self.x_train,
            self.y_train,
            classes=len(self.class_names),
            seed=development_seed(current.is_production, self.fold),
            **self.hyperparameters,
        )
        # None for an architecture the numpy forward pass does not know.
        self.weights = dense_weights(self.model)
        self.next(self.evaluate_fold)

    @environment(vars=environment_variables)
    @step
    def evaluate_fold(self):
        """Score this fold's model on the rows it never saw, as the model server would.

        The same forward pass measures each feature's permutation importance on those
        rows (one batched call), for the model card.
        """
        from inference.forward import dense_forward
        from model_training.confidence_calibration import fold_support_distances, top_confidences
        from model_training.cross_validation import classification_scores
        from model_training.model_card import permutation_importance

        if self.weights is not None:
            forward = dense_forward(self.weights)
        else:
            from common.keras_runtime import import_keras

            import_keras()  # Before unpickling the model, which would import Keras slowly.
            forward = self.model.predict_on_batch
        probabilities = forward(self.x_test)
        self.test_loss, self.test_accuracy, self.test_predictions = classification_scores(
            probabilities, self.y_test
        )
        # What the calibration of the served confidences is fitted on, in average_scores.
        self.test_confidences = top_confidences(probabilities)
        # And of the input support's threshold: how far unseen rows lie from seen ones.
        self.test_support_distances = fold_support_distances(
            self.x_train, self.y_train, self.x_test
        )
        self.permutation_importance = permutation_importance(
            forward,
            self.x_test,
            self.y_test,
            self.feature_columns,
            seed=development_seed(current.is_production, self.fold),
        )
        self.logger.info(
            "Fold %d: accuracy %.3f, loss %.3f", self.fold + 1, self.test_accuracy, self.test_loss
        )
        self.next(self.average_scores)

    # Blank: the default card would list every artifact of the task, each read back in
    # the card's own process (~150 requests with the S3 datastore).
    @card(type="blank")
    @step
    def average_scores(self, inputs):
        """Average the folds' scores; gather every fold's metrics for `register` to log.

        Also the model card's evidence, from the out-of-fold predictions: accuracy per
        slice of the data, and the folds' permutation importances combined.
        """
        import numpy as np

        from common.metrics import confusion_matrix
        from model_training.cards import confusion_table, fold_scores
        from model_training.confidence_calibration import out_of_fold_calibration, support_evidence
        from model_training.cross_validation import summarize_folds
        from model_training.model_card import slice_accuracy, summarize_importance

        self.merge_artifacts(inputs, include=["mlflow_run_id"])
        folds = sorted(inputs, key=lambda task: task.fold)
        self.fold_scores = [
            {
                "fold": t.fold + 1,  # numbered from 1, as the logs and MLflow runs name folds
                "accuracy": t.test_accuracy,
                "loss": t.test_loss,
                "train": len(t.train_indices),
                "test": len(t.test_indices),
            }
            for t in folds
        ]
        summary = summarize_folds(self.fold_scores)
        self.test_accuracy, self.test_accuracy_std = summary["accuracy"], summary["accuracy_std"]
        self.test_loss, self.test_loss_std = summary["loss"], summary["loss_std"]
        self.logger.info(
            "Cross-validated accuracy: %.3f ± %.3f", self.test_accuracy, self.test_accuracy_std
        )
        # (fold run id, training history, test accuracy, test loss): `register` logs
        # them, as it imports MLflow anyway; this task then needs none.
        self.fold_metrics = [
            (t.mlflow_fold_run_id, t.history, t.test_accuracy, t.test_loss) for t in folds
        ]
        classes = folds[0].class_names
        truth = np.concatenate([t.y_test for t in folds]).reshape(-1)
        predicted = np.concatenate([t.test_predictions for t in folds])
        self.cross_validation_confusion = confusion_matrix(truth, predicted, len(classes))
        tested_rows = inputs[0].data.iloc[np.concatenate([t.test_indices for t in folds])]
        self.slice_accuracy = slice_accuracy(tested_rows, self.schema, truth == predicted)
        self.feature_importance = summarize_importance([t.permutation_importance for t in folds])
        self.calibration = out_of_fold_calibration(
            [t.test_confidences for t in folds], truth == predicted, [t.fold for t in folds]
        ).as_dict()
        self.support_evidence = support_evidence(
            np.concatenate([t.test_support_distances for t in folds]), truth == predicted
        )
        current.card.extend(fold_scores(self.fold_scores, summary))
        current.card.extend(confusion_table(self.cross_validation_confusion, classes))
        self.next(self.register)

    @step
    def transform(self):
        """Fit the transformers on the whole dataset for the final model; digest the data.

        The digest is computed here, beside the folds, rather than in a step they wait for.
        The transformers' artifact files for the registry are written here too.
        """
        from model_training.model_card import training_data_digest
        from model_training.packaging import transformer_files
        from model_training.preprocessing import fit_transform

        self.features_transformer, self.target_transformer, self.x, self.y = fit_transform(
            self.data, self.schema
        )
        # Written here, where scikit-learn is imported anyway: `register` then needs none.
        self.transformer_files = transformer_files(
            self.features_transformer, self.target_transformer
        )
        self.training_data_digest = training_data_digest(self.data)
        self.class_names = [str(name) for name in self.target_transformer.categories_[0]]
        self.next(self.train)

    @environment(vars=environment_variables)
    # Blank, as `register`'s: the default card would list every artifact, unpickling
    # the Keras model in its own process (Keras imported in full: ~5 s on this path).
    @card(type="blank")
    @step
    def train(self):
        """Train the final model on the whole dataset; write its artifact files for the registry.

        Its card draws the training curves.
        """
        from model_training.cards import training_curves
        from model_training.network import train_model
        from model_training.packaging import model_files

        self.logger.info("Training the final model on %d rows...", len(self.x))
        self.model, self.history = train_model(
            self.x,
            self.y,
            classes=len(self.class_names),
            seed=development_seed(current.is_production),
            **self.hyperparameters,
        )
        # Written here, where Keras is imported anyway: `register` then needs none.
        self.model_files = model_files(self.model)
        current.card.extend(training_curves(self.history))
        self.next(self.register)

    @environment(vars=environment_variables)
    # Blank, for the same reason as `train`'s.
    @card(type="blank", id="model_card")
    @step
    def register(self, inputs):
        """Register the final model if the cross-validated accuracy is good enough.

        A registered version gets the alias `challenger`, its cross-validated scores and
        training data digest as tags, and its model card (`model_card.md`) on its run;
        the same card is this step's Metaflow card, registered or not. Every fold's
        metrics and the cross-validation summary go to MLflow first, registered or not.
        """
        import mlflow
        from metaflow.cards import Markdown

        from model_training.confidence_calibration import fit_input_support, log_calibration
        from model_training.cross_validation import summarize_folds
        from model_training.model_card import CARD_ARTIFACT, render_markdown
        from model_training.tracking import log_cross_validation

        self.merge_artifacts(inputs)
        self.registered, self.model_version = False, None
        self.artifacts, self.code_paths, self.pip_requirements = {}, [], []
        summary = summarize_folds(self.fold_scores)
        log_cross_validation(self.mlflow_run_id, self.fold_metrics, summary)
        with mlflow.start_run(run_id=self.mlflow_run_id):
            mlflow.log_metrics({f"training_{k}": v[-1] for k, v in self.history.items()})
            if self.test_accuracy < self.accuracy_threshold:
                self.logger.warning(
                    "Not registering: cross-validated accuracy %.3f is below the threshold %.3f.",
                    self.test_accuracy,
                    self.accuracy_threshold,
                )
            else:
                self.register_servable_model()
            self.input_support = fit_input_support(
                self.x, self.y, self.class_names, self.support_evidence, self.transformer_files
            )
            if self.registered:  # The tags first: the deployment pipeline reads them.
                # Before the tags that announce them.
                log_calibration(self.calibration, self.input_support)
                self.tag_challenger()
            self.model_card = render_markdown(self.build_model_card()) + self.tuning_section()
            if self.registered:
                mlflow.log_text(self.model_card, CARD_ARTIFACT)
        current.card.append(Markdown(self.model_card))
        self.next(self.end)

    def register_servable_model(self) -> None:
        """Log and register the files `train` and `transform` wrote, on the active run.

        Neither Keras nor scikit-learn is imported here: the model is never unpickled.
        """
        from inference.metrics import class_balance_file
        from model_training.model_card import class_balance
        from model_training.packaging import log_servable_model

        balance = class_balance_file(class_balance(self.data[self.schema.target]))
        logged = log_servable_model(
            {**self.model_files, **self.transformer_files, **balance},
            self.schema,
            registered_model_name=self.project.model["name"],
            input_example=self.data[self.schema.features].head(3),
        )
        self.artifacts, self.code_paths = logged.artifacts, logged.code_paths
        self.pip_requirements = logged.pip_requirements
        self.registered, self.model_version = True, logged.version
        self.logger.info(
            "Registered model %s version %s.", self.project.model["name"], logged.version
        )

    def build_model_card(self) -> ModelCard:
        """The model card's contents, from the artifacts of the steps before `register`."""
        from datetime import UTC, datetime

        from model_training.model_card import ModelCard, class_balance

        return ModelCard(
            model_name=self.project.model["name"],
            version=self.model_version,
            metaflow_run=f"{current.flow_name}/{current.run_id}",
            mlflow_run_id=self.mlflow_run_id,
            dataset=str(self.dataset),
            training_rows=len(self.data),
            class_balance=class_balance(self.data[self.schema.target]),
            training_data_digest=self.training_data_digest,
            folds=self.fold_scores,
            accuracy=self.test_accuracy,
            accuracy_std=self.test_accuracy_std,
            accuracy_threshold=self.accuracy_threshold,
            slices=self.slice_accuracy,
            importance=self.feature_importance,
            calibration=self.calibration,
            input_support=self.input_support,
            intended_use=self.settings.model.intended_use,
            limitations=self.settings.model.limitations,
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )

    def tuning_section(self) -> str:
        """The model card's account of the tuning run's hyperparameters, if one was used."""
        from model_tuning.handoff import model_card_section

        return model_card_section(self.tuning) if self.tuning else ""

    def tag_challenger(self) -> None:
        """Point the alias `challenger` at the new version; tag it with its evidence.

        The deployment pipeline compares the challenger with the champion, and falls back
        to these cross-validated scores when production has too few labelled rows.
        """
        import json

        import mlflow

        from common.registry import CHALLENGER
        from model_training.confidence_calibration import calibration_tags

        client, name = mlflow.MlflowClient(), self.project.model["name"]
        tags = {
            "cv_accuracy": self.test_accuracy,
            "cv_accuracy_std": self.test_accuracy_std,
            "cv_fold_accuracies": json.dumps([fold["accuracy"] for fold in self.fold_scores]),
            "training_rows": len(self.data),
            "training_data_digest": self.training_data_digest,
            **calibration_tags(self.calibration, self.input_support),
        }
        if self.tuning:
            from model_tuning.handoff import version_tags

            tags.update(version_tags(self.tuning))
        for key, value in tags.items():
            client.set_model_version_tag(name, self.model_version, key, str(value))
        client.set_registered_model_alias(name, CHALLENGER, self.model_version)
        self.logger.info("Version %s is the %s.", self.model_version, CHALLENGER)

    @step
    def end(self):
        """Report the outcome."""
        self.logger.info(
            "Cross-validated accuracy %.3f ± %.3f; model %s.",
            self.test_accuracy,
            self.test_accuracy_std,
            f"registered as version {self.model_version}" if self.registered else "not registered",
        )
        self.logger.info("The pipeline finished successfully.")


if __name__ == "__main__":
    Training()

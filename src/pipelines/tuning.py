"""Tuning pipeline: search hyperparameters on the training pipeline's folds, recommend on evidence.

    uv run src/pipelines/tuning.py run
    uv run src/pipelines/training.py run --hyperparameters-from Tuning/<id>

    start ─ explore (foreach lane) ─ gather_exploration ─ plan_exploitation
          ─ exploit (foreach lane) ─ select ─ end

The search space, the number of trials, how many run at once, the seed and the
objective are the config's `tuning:` section (TuningSettings in common/settings.py).

- `start` splits the rows into the training pipeline's folds (same seed) and transforms
  them once; every trial trains on those arrays.
- `explore` and `exploit` are two fan-outs of `tuning.concurrency` lanes. A lane is one
  task that evaluates its trials one after another, each on every fold, asking Optuna's
  TPE sampler for them and telling it the results (`model_tuning.search`); after each
  fold the median pruner may stop a trial that trails the others. One task per lane,
  not per trial or fold: each task pays for importing Keras and JAX once.
  The exploration samples at random and also evaluates the defaults (the baseline);
  each exploitation lane's TPE learns from the whole exploration and its own trials.
- The study's state is the trials themselves, passed between the fan-outs as Metaflow
  artifacts: no database to share, so remote lanes (`--with batch`, `--with kubernetes`)
  need nothing more than local ones, and development runs repeat exactly.
- `select` finds the best trial, compares its fold scores with the defaults' on the
  same folds (a corrected paired t-test, `model_tuning.comparison`) and recommends it
  only if it is better; otherwise the defaults stand. It writes every trial to MLflow
  as a nested run of the parent `start` opened, and draws the card.
"""

from __future__ import annotations

from metaflow import Parameter, card, current, environment, step

from common.keras_runtime import check_backend_installed, keras_backend
from common.pipeline import Pipeline, PipelineError, dataset, development_seed

environment_variables = {"KERAS_BACKEND": keras_backend()}


class Tuning(Pipeline):
    """Search the classifier's hyperparameters with cross-validated trials."""

    cross_validation_folds = Parameter(
        "folds",
        help="Number of cross-validation folds (as the training pipeline's --folds).",
        default=5,
    )

    @dataset
    # Blank: the default card would also list `data`, every row with its pandas index.
    @card(type="blank")
    @step
    def start(self):
        """Validate, open the parent MLflow run, make the folds, plan the exploration."""
        from model_training.cards import dataset_summary
        from model_tuning.folds import transformed_folds
        from model_tuning.search import EXPLORATION, plan_lanes

        self.validate_parameters()
        self.mode = "production" if current.is_production else "development"
        self.logger.info("Running flow in %s mode.", self.mode)
        self.sampler_seed = None if current.is_production else self.settings.tuning.seed
        self.open_mlflow_run()
        self.folds, self.class_names = transformed_folds(
            self.data,
            self.schema,
            self.cross_validation_folds,
            seed=development_seed(current.is_production),
        )
        # The seeds the training pipeline trains its fold models with.
        self.fold_seeds = [
            development_seed(current.is_production, fold)
            for fold in range(self.cross_validation_folds)
        ]
        self.history = []
        self.lanes = plan_lanes(self.settings.tuning, EXPLORATION, self.sampler_seed)
        current.card.extend(dataset_summary(self.data, self.schema.target))
        self.next(self.explore, foreach="lanes")

    def validate_parameters(self):
        """Reject what the config cannot: folds the data cannot hold, a missing backend."""
        if not 2 <= self.cross_validation_folds <= len(self.data):
            raise PipelineError(
                f"--folds must be between 2 and the number of rows ({len(self.data)}), "
                f"got {self.cross_validation_folds}."
            )
        try:
            check_backend_installed(keras_backend())
        except (ValueError, ModuleNotFoundError) as error:
            raise PipelineError(str(error)) from None

    def open_mlflow_run(self):
        """The parent run every trial's nested run goes under, with the search's settings."""
        import json

        from common.settings_loader import settings_dict
        from model_training.tracking import training_run

        tuning = self.settings.tuning
        parameters = {
            "trials": tuning.trials,
            "concurrency": tuning.concurrency,
            "seed": self.sampler_seed,
            "objective": tuning.objective,
            "folds": self.cross_validation_folds,
            "pruning_startup_trials": tuning.pruning_startup_trials,
            "search_space": json.dumps(settings_dict(tuning.parameters)),
            "metaflow_run": f"{current.flow_name}/{current.run_id}",
            "mode": self.mode,
        }
        uri, experiment = self.mlflow_tracking_uri, tuning.experiment
        with training_run(uri, experiment, current.run_id, parameters) as self.mlflow_run_id:
            self.logger.info("MLflow run %s in experiment %s.", self.mlflow_run_id, experiment)

    @environment(vars=environment_variables)
    @step
    def explore(self):
        """Evaluate this lane's share of the random exploration (and the defaults)."""
        self.run_lane()
        self.next(self.gather_exploration)

    def run_lane(self):
        """This lane's trials, each on every fold, told to Optuna as they finish."""
        from model_tuning.search import run_lane

        self.lane = self.input
        self.logger.info("Lane %d: %d trials.", self.lane.index, self.lane.trials)
        self.records = run_lane(
            self.lane,
            self.settings.tuning,
            self.history,
            self.folds,
            len(self.class_names),
            self.fold_seeds,
        )
        for record in self.records:
            self.logger.info(
                "%s: %s %.4f over %d folds%s (%.1f s)",
                "defaults" if record.baseline else record.sampled,
                self.settings.tuning.objective,
                record.mean(self.settings.tuning.objective),
                len(record.accuracy),
                ", pruned" if record.pruned else "",
                record.seconds,
            )

    @step
    def gather_exploration(self, inputs):
        """Gather the exploration's trials, the history the exploitation learns from."""
        self.merge_artifacts(inputs, exclude=["lane", "records", "lanes"])
        self.history = [
            record for task in sorted(inputs, key=lambda t: t.lane.index) for record in task.records
        ]
        self.next(self.plan_exploitation)

    @step
    def plan_exploitation(self):
        """Deal the remaining trials to the lanes that exploit the exploration."""
        from model_tuning.search import EXPLOITATION, plan_lanes

        self.lanes = plan_lanes(self.settings.tuning, EXPLOITATION, self.sampler_seed)
        self.next(self.exploit, foreach="lanes")

    @environment(vars=environment_variables)
    @step
    def exploit(self):
        """Evaluate this lane's trials, TPE fitted on the exploration and its own trials."""
        self.run_lane()
        self.next(self.select)

    @card(type="blank")
    @step
    def select(self, inputs):
        """Pick the best trial, compare it with the defaults, track every trial, draw the card."""
        from model_tuning.search import best_trial, parameter_importance

        self.merge_artifacts(inputs, exclude=["lane", "records", "lanes"])
        explored = [record for record in self.history if not record.baseline]
        exploited = [
            record for task in sorted(inputs, key=lambda t: t.lane.index) for record in task.records
        ]
        self.trials = explored + exploited
        [self.baseline] = [record for record in self.history if record.baseline]
        objective = self.settings.tuning.objective
        self.best_trial = best_trial(self.trials, objective)
        self.verdict = self.compare_with_defaults()
        self.importance = parameter_importance(self.trials, self.settings.tuning)
        self.recommendation = self.recommend()
        self.track()
        self.draw_card()
        self.next(self.end)

    def compare_with_defaults(self):
        """The winner's fold scores against the defaults' (same folds, same seeds)."""
        from model_tuning.comparison import compare_with_defaults

        objective = self.settings.tuning.objective
        winner = None if self.best_trial is None else self.trials[self.best_trial]
        test_rows = sum(len(fold.y_test) for fold in self.folds)
        train_rows = sum(len(fold.y_train) for fold in self.folds)
        return compare_with_defaults(
            None if winner is None else winner.scores(objective),
            self.baseline.scores(objective),
            test_rows / train_rows,
            self.settings.tuning,
        )

    def recommend(self):
        """What `training.py run --hyperparameters-from` this run trains with."""
        from model_tuning.handoff import recommendation

        winner = None if self.best_trial is None else self.trials[self.best_trial]
        run = f"{current.flow_name}/{current.run_id}"
        return recommendation(run, winner, self.best_trial, self.baseline, self.verdict)

    def track(self):
        """Every trial as a nested MLflow run; the verdict on the parent."""
        import mlflow

        from model_tuning.tracking import log_trials, log_verdict

        parent = mlflow.MlflowClient().get_run(self.mlflow_run_id)
        log_trials(self.mlflow_run_id, parent.info.experiment_id, self.trials, self.baseline)
        log_verdict(
            self.mlflow_run_id,
            self.verdict,
            self.best_trial,
            self.recommendation["hyperparameters"],
        )

    def draw_card(self):
        from model_tuning.cards import (
            importance_chart,
            objective_chart,
            trials_table,
            verdict_summary,
        )

        tuning = self.settings.tuning
        current.card.extend(verdict_summary(self.best_trial, self.verdict, self.trials, tuning))
        current.card.extend(objective_chart(self.trials, self.baseline, tuning))
        current.card.extend(importance_chart(self.importance))
        current.card.extend(trials_table(self.trials, self.baseline, tuning))

    @step
    def end(self):
        """Report the outcome and how to train with it."""
        self.logger.info(
            "%s. Train with it: uv run src/pipelines/training.py run --hyperparameters-from %s",
            "Recommended: the winner" if self.verdict.recommended else "The defaults stand",
            self.recommendation["tuning_run"],
        )
        self.logger.info("%s", self.verdict.reason)


if __name__ == "__main__":
    Tuning()

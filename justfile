# Everyday commands. `uv run just --list` shows them; `uv run just demo` runs the whole loop.
# Each passes extra arguments through, e.g. `uv run just train --training-epochs 10`.

config := "config/local.yml"

# Train, cross-validate and register a model
train *args:
    uv run src/pipelines/training.py --config project {{config}} run {{args}}

# Deploy the newest registered model (or --model-version N / an alias) in the background
deploy *args:
    uv run src/pipelines/deployment.py --config project {{config}} run {{args}}

# Roll back to the version that served before the last deployment
rollback:
    uv run src/pipelines/deployment.py --config project {{config}} run --model-version previous

# Serve the champion in the foreground, capturing predictions (Ctrl-C stops it)
serve port="8080":
    SERVING_CAPTURE_DATABASE=penguins.db uv run mlflow models serve -m models:/penguins@champion --env-manager local -h 127.0.0.1 -p {{port}}

# Stop the background model server
stop:
    uv run python -m backends.local stop

# Show what the background model server serves
status:
    uv run python -m backends.local status

# Send realistic traffic to the deployed model (add --drift to shift a feature)
traffic *args:
    uv run src/pipelines/traffic.py --config project {{config}} run --mode traffic {{args}}

# Attach simulated ground truth to every unlabeled captured prediction
labels *args:
    uv run src/pipelines/traffic.py --config project {{config}} run --mode labels {{args}}

# Evidently reports, history and alerts on labelled production data
monitor *args:
    uv run src/pipelines/monitoring.py --config project {{config}} run {{args}}

# The SageMaker endpoint of config/sagemaker.yml: status, serving version, instances
sagemaker-status:
    uv run python -m backends.sagemaker status --config config/sagemaker.yml

# Delete the SageMaker endpoint and the configs, models and archives made for it
sagemaker-delete:
    uv run python -m backends.sagemaker delete --config config/sagemaker.yml

# The MLflow UI: a tracking server's own, else `mlflow ui` on the configured store (port 5000)
mlflow:
    #!/usr/bin/env bash
    set -euo pipefail
    uri=$(uv run python -c 'import sys; from common.config import load_project_configuration as load; print(load(sys.argv[1])["mlflow_tracking_uri"])' {{config}})
    case "$uri" in
        http://*|https://*) echo "The tracking server serves the MLflow UI: open $uri" ;;
        *) exec uv run mlflow ui --backend-store-uri "$uri" --host 127.0.0.1 --port 5000 ;;
    esac

# Start the team stack in .stack/, print what to export: eval "$(uv run just stack-up)"
stack-up *args:
    uv run python -m team_stack up {{args}}

# Stop every process of the team stack (its data stays in .stack/)
stack-down *args:
    uv run python -m team_stack down {{args}}

# What of the team stack runs, and where
stack-status *args:
    uv run python -m team_stack status {{args}}

# The Metaflow card viewer on http://127.0.0.1:8324 (FLOW: training, monitoring, ...)
cards flow="monitoring":
    uv run src/pipelines/{{flow}}.py card server

# Run the test suite, one pytest-xdist worker per core (`-n 0` to debug in one process)
test *args:
    uv run pytest -n auto {{args}}

# The fast tier: every test but the end-to-end ones (pipeline runs, model servers, the demo),
# one pytest-xdist worker per core (`-n 0` to debug in one process)
test-fast *args:
    uv run pytest -m "not e2e" -n auto {{args}}

# Lint and check formatting
lint:
    uv run ruff check .
    uv run ruff format --check .

# Train, deploy, send normal traffic, label, monitor, send drifted traffic, label, monitor
demo *args:
    uv run python scripts/demo.py --config {{config}} {{args}}

"""Where things are in the repository."""

from __future__ import annotations

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent
SRC = REPO_ROOT / "src"
PIPELINES = SRC / "pipelines"
TRAINING_FLOW = PIPELINES / "training.py"
DEPLOYMENT_FLOW = PIPELINES / "deployment.py"
TRAFFIC_FLOW = PIPELINES / "traffic.py"
MONITORING_FLOW = PIPELINES / "monitoring.py"
FLOWS_DIR = TESTS_DIR / "pipelines" / "flows"
TEMPLATE_FLOW = FLOWS_DIR / "template_flow.py"
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
LOCAL_CONFIG = REPO_ROOT / "config" / "local.yml"
SAGEMAKER_CONFIG = REPO_ROOT / "config" / "sagemaker.yml"
DEMO = REPO_ROOT / "scripts" / "demo.py"

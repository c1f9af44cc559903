"""The pipelines compile for production schedulers, against moto on 127.0.0.1.

Argo Workflows: `--with kubernetes argo-workflows create --only-json` prints the
WorkflowTemplate (offline: the S3 datastore is moto). Step Functions:
`--with batch step-functions create` reads the Batch job queue, IAM roles and DynamoDB
table, which moto holds; `--only-json` prints the state machine, and the monitoring and
scoring pipelines are deployed for real to moto's Step Functions and EventBridge, so
their schedules can be read back. Every compile is a subprocess (Metaflow reads its settings when it
is imported); they run once per module, three at a time.

`--only-json` prints only the WorkflowTemplate, not the CronWorkflow or the Argo
Events Sensor Metaflow creates beside it; their settings are asserted through the
template's annotations (`metaflow/cron`, `metaflow/triggers`), which Metaflow compiles
from the same values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from support.aws import MotoServer
from support.flows import run_cli
from support.paths import LOCAL_CONFIG, REPO_ROOT

# Each compiles whole flows through Metaflow's deploy CLI: end to end, if not a run.
pytestmark = pytest.mark.e2e

TRAINING = REPO_ROOT / "src" / "pipelines" / "training.py"
MONITORING = REPO_ROOT / "src" / "pipelines" / "monitoring.py"
SCORING = REPO_ROOT / "src" / "pipelines" / "scoring.py"
TUNING = REPO_ROOT / "src" / "pipelines" / "tuning.py"
DEPLOYMENT = REPO_ROOT / "src" / "pipelines" / "deployment.py"
BUCKET = "scheduling-tests"
PREFIX = "scheduling-tests"
TRACKING_URI = "http://mlflow.penguins.internal:5000"
RETRAINING_EVENT = "retrain"
PROMOTION_EVENT = "promote"
CAPTURE_DATABASE = "postgresql://penguins@captures.penguins.internal:5432/captures"
DAILY_AT_SIX_THIRTY = "30 6 * * ? *"
COMMON_PARAMETERS = {"backend", "dataset", "mlflow-tracking-uri"}
TRAINING_PARAMETERS = COMMON_PARAMETERS | {
    "training-epochs",
    "training-batch-size",
    "accuracy-threshold",
    "folds",
    "hyperparameters-from",
}
TUNING_PARAMETERS = COMMON_PARAMETERS | {"folds"}
MONITORING_PARAMETERS = COMMON_PARAMETERS | {"samples", "model-version", "fail-on-alert"}
SCORING_PARAMETERS = COMMON_PARAMETERS | {
    "input",
    "output",
    "model-version",
    "chunk-rows",
    "max-invalid-fraction",
    "fail-on-drift",
    "no-capture",
}


@dataclass
class Compiled:
    """One compile's exit code and output; `document` is the JSON it printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def document(self) -> dict[str, Any]:
        # `--environment uv` prints "Bootstrapping uv..." before the JSON.
        text = self.stdout[self.stdout.index("{") :]
        return json.JSONDecoder().raw_decode(text)[0]

    def describe(self) -> str:
        return f"returncode={self.returncode}\n{self.stderr[-4000:]}"


# --- AWS stand-ins and the environment of the compiles --------------------------------


def create_role(iam: Any, name: str, service: str) -> str:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName=f"{PREFIX}-{name}", AssumeRolePolicyDocument=json.dumps(policy))
    return role["Role"]["Arn"]


def create_batch_queue(url: str, service_role: str) -> str:
    """A Batch job queue on a MANAGED compute environment: `step-functions create` checks it."""
    ec2 = boto3.client("ec2", endpoint_url=url)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=PREFIX, Description=PREFIX, VpcId=vpc)
    batch = boto3.client("batch", endpoint_url=url)
    environment = batch.create_compute_environment(
        computeEnvironmentName=PREFIX,
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 16,
            "subnets": [subnet],
            "securityGroupIds": [group["GroupId"]],
        },
        serviceRole=service_role,
    )
    batch.create_job_queue(
        jobQueueName=PREFIX,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    return PREFIX


@pytest.fixture(scope="module")
def compile_env(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """moto's environment plus the Metaflow settings `metaflow configure aws` would write."""
    url = moto_server.url
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", endpoint_url=url)
    roles = {
        name: create_role(iam, name, service)
        for name, service in [
            ("batch", "batch.amazonaws.com"),
            ("states", "states.amazonaws.com"),
            ("tasks", "ecs-tasks.amazonaws.com"),
            ("events", "events.amazonaws.com"),
        ]
    }
    boto3.client("dynamodb", endpoint_url=url).create_table(
        TableName=PREFIX,
        KeySchema=[{"AttributeName": "pathspec", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pathspec", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return {
        **moto_server.env,
        # No developer's ~/.metaflowconfig; production tokens are written here.
        "METAFLOW_HOME": str(tmp_path_factory.mktemp("metaflow-home")),
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{BUCKET}/metaflow",
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_KUBERNETES_NAMESPACE": "penguins",
        "METAFLOW_ARGO_EVENTS_EVENT": "metaflow-event",
        "METAFLOW_ARGO_EVENTS_EVENT_BUS": "default",
        "METAFLOW_ARGO_EVENTS_EVENT_SOURCE": "argo-events-webhook",
        "METAFLOW_ARGO_EVENTS_SERVICE_ACCOUNT": "operate-workflow-sa",
        "METAFLOW_ARGO_EVENTS_WEBHOOK_URL": "http://argo-events-webhook:12000/metaflow-event",
        "METAFLOW_BATCH_JOB_QUEUE": create_batch_queue(url, roles["batch"]),
        "METAFLOW_SFN_DYNAMO_DB_TABLE": PREFIX,
        "METAFLOW_SFN_IAM_ROLE": roles["states"],
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": roles["tasks"],
        "METAFLOW_ECS_FARGATE_EXECUTION_ROLE": roles["tasks"],
        "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": roles["events"],
        # A shared tracking server: the config takes it when the flow is deployed.
        "MLFLOW_TRACKING_URI": TRACKING_URI,
    }


def team_settings() -> dict[str, Any]:
    """config/local.yml with captures in PostgreSQL: a flow whose steps use the capture
    store runs remotely only with a store every worker reaches (backends/local.py)."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["backend"] = {**config["backend"], "database": CAPTURE_DATABASE}
    return config


@pytest.fixture(scope="module")
def team_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "team.yml"
    path.write_text(yaml.safe_dump(team_settings()))
    return path


@pytest.fixture(scope="module")
def retraining_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """team_settings() with retraining on alert, promotion by event and a daily
    monitoring schedule."""
    config = team_settings()
    config["retraining"] = {"event": RETRAINING_EVENT}
    config["promotion"] = {"auto": True, "event": PROMOTION_EVENT}
    config["monitoring"]["schedule"] = DAILY_AT_SIX_THIRTY
    path = tmp_path_factory.mktemp("config") / "retraining.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def compiled(compile_env: dict, retraining_config: Path, team_config: Path) -> dict[str, Compiled]:
    config = ("--config", "project", str(retraining_config))
    team = ("--config", "project", str(team_config))
    argo = ("--with", "kubernetes", "argo-workflows", "create", "--only-json")
    sfn = ("--with", "batch", "step-functions", "create")
    commands = {
        "argo training": (TRAINING, "--environment", "uv", "--with", "retry", *argo),
        "argo training retraining": (TRAINING, *config, "--production", *argo),
        "argo monitoring": (MONITORING, *team, "--with", "retry", *argo),
        "argo scoring": (SCORING, *team, "--with", "retry", *argo),
        "argo tuning": (TUNING, "--with", "retry", *argo),
        "argo deployment promotion": (DEPLOYMENT, *config, "--production", *argo),
        "sfn training": (TRAINING, "--with", "retry", *sfn, "--only-json"),
        "sfn training retraining": (TRAINING, *config, *sfn, "--only-json"),
        "sfn monitoring deployed": (MONITORING, *config, "--production", *sfn),
        "sfn scoring deployed": (SCORING, *team, "--production", "--with", "retry", *sfn),
        "sfn tuning": (TUNING, "--with", "retry", *sfn, "--only-json"),
        "sfn deployment": (DEPLOYMENT, *team, *sfn, "--only-json"),
    }

    def run(command: tuple) -> Compiled:
        process = run_cli(*command, env=compile_env, timeout=180)
        return Compiled(process.returncode, process.stdout, process.stderr)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(commands, pool.map(run, commands.values()), strict=True))


def compiled_document(compiled: dict[str, Compiled], name: str) -> dict[str, Any]:
    result = compiled[name]
    assert result.returncode == 0, result.describe()
    return result.document


def flow_steps(flow_file: Path) -> dict[str, str]:
    """Step name -> Metaflow node type, from the flow's own graph."""
    import importlib

    from metaflow.graph import FlowGraph

    module = importlib.import_module(f"pipelines.{flow_file.stem}")
    flow = next(
        getattr(value, "_flow_cls", value)
        for name, value in vars(module).items()
        if name in {"Training", "Monitoring", "Scoring", "Tuning", "Deployment"}
    )
    return {node.name: node.type for node in FlowGraph(flow)}


# --- Argo Workflows -------------------------------------------------------------------


def argo_templates(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {template["name"]: template for template in document["spec"]["templates"]}


def argo_parameters(document: dict[str, Any]) -> dict[str, Any]:
    return {
        parameter["name"]: json.loads(parameter["value"])
        for parameter in document["spec"]["arguments"]["parameters"]
    }


def argo_command(template: dict[str, Any]) -> str:
    return " ".join(template["container"]["command"])


def step_templates(document: dict[str, Any], flow_file: Path) -> dict[str, dict[str, Any]]:
    templates = argo_templates(document)
    steps = flow_steps(flow_file)
    missing = {step for step in steps if step.replace("_", "-") not in templates}
    assert not missing, f"steps without an Argo template: {missing}"
    return {step: templates[step.replace("_", "-")] for step in steps}


@pytest.mark.parametrize(
    ("name", "flow_file"),
    [
        ("argo training", TRAINING),
        ("argo monitoring", MONITORING),
        ("argo scoring", SCORING),
        ("argo tuning", TUNING),
    ],
)
def test_argo_runs_every_step_as_a_dag_task_with_retries(
    compiled: dict[str, Compiled], name: str, flow_file: Path
) -> None:
    document = compiled_document(compiled, name)
    assert document["kind"] == "WorkflowTemplate"
    tasks = {
        task["template"]
        for template in document["spec"]["templates"]
        for task in template.get("dag", {}).get("tasks", [])
    }
    for step, template in step_templates(document, flow_file).items():
        assert template["name"] in tasks, f"{step} is not a task of the DAG"
        # `--with retry`: three retries, as Metaflow's @retry defaults to.
        assert template["retryStrategy"]["limit"] == 3, step


def test_argo_fans_out_the_cross_validation_folds(compiled: dict[str, Compiled]) -> None:
    document = compiled_document(compiled, "argo training")
    assert flow_steps(TRAINING)["cross_validation"] == "foreach"
    templates = argo_templates(document)
    [fan_out] = [
        task
        for template in templates.values()
        for task in template.get("dag", {}).get("tasks", [])
        if "withParam" in task
    ]
    assert "cross-validation.outputs.parameters.num-splits" in fan_out["withParam"]
    inner = {task["template"] for task in templates[fan_out["template"]]["dag"]["tasks"]}
    assert inner == {"transform-fold", "train-fold", "evaluate-fold"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("argo training", TRAINING_PARAMETERS),
        ("argo monitoring", MONITORING_PARAMETERS),
        ("argo scoring", SCORING_PARAMETERS),
        ("argo tuning", TUNING_PARAMETERS),
    ],
)
def test_argo_parameters_default_from_the_config(
    compiled: dict[str, Compiled], name: str, expected: set[str]
) -> None:
    parameters = argo_parameters(compiled_document(compiled, name))
    assert set(parameters) == expected
    assert parameters["backend"] == "backend.Local"
    assert parameters["dataset"] == "data/penguins.csv"  # Shipped in the code package.
    assert parameters["mlflow-tracking-uri"] == TRACKING_URI


def test_argo_fans_out_the_tuning_lanes_twice(compiled: dict[str, Compiled]) -> None:
    document = compiled_document(compiled, "argo tuning")
    steps = flow_steps(TUNING)
    assert steps["start"] == steps["plan_exploitation"] == "foreach"
    templates = argo_templates(document)
    fan_outs = [
        task
        for template in templates.values()
        for task in template.get("dag", {}).get("tasks", [])
        if "withParam" in task
    ]
    inner = sorted(
        task["template"]
        for fan_out in fan_outs
        for task in templates[fan_out["template"]]["dag"]["tasks"]
    )
    assert inner == ["exploit", "explore"]


def test_argo_tasks_install_dependencies_with_uv(compiled: dict[str, Compiled]) -> None:
    document = compiled_document(compiled, "argo training")
    for step, template in step_templates(document, TRAINING).items():
        command = argo_command(template)
        assert "python -m metaflow.plugins.uv.bootstrap" in command, step
        assert "uv run --no-sync python training.py" in command, step


def test_argo_development_deployment_is_on_the_users_branch(
    compiled: dict[str, Compiled],
) -> None:
    document = compiled_document(compiled, "argo training")
    annotations = document["metadata"]["annotations"]
    branch = annotations["metaflow/branch_name"]
    assert branch.startswith("user.")
    assert document["metadata"]["name"] == f"penguins.{branch}.training"
    for step, template in step_templates(document, TRAINING).items():
        assert "--production" not in argo_command(template), step
    assert "metaflow/triggers" not in annotations  # Retraining on alert is off by default.


def test_argo_production_deployment_is_on_the_prod_branch(compiled: dict[str, Compiled]) -> None:
    """`--production` reaches every task, where `current.is_production` picks a fresh seed."""
    document = compiled_document(compiled, "argo training retraining")
    assert document["metadata"]["name"] == "penguins.prod.training"
    assert document["metadata"]["annotations"]["metaflow/branch_name"] == "prod"
    for step, template in step_templates(document, TRAINING).items():
        assert "--production" in argo_command(template), step


def test_argo_training_is_triggered_by_the_branch_scoped_retraining_event(
    compiled: dict[str, Compiled],
) -> None:
    annotations = compiled_document(compiled, "argo training retraining")["metadata"]["annotations"]
    triggers = json.loads(annotations["metaflow/triggers"])
    assert triggers == [{"name": f"mfns.penguins.prod.{RETRAINING_EVENT}", "type": "event"}]
    assert annotations["metaflow/sensor_name"] == "penguins-prod-training"


def test_argo_deployment_is_triggered_by_the_promotion_event_with_the_version(
    compiled: dict[str, Compiled],
) -> None:
    """Monitoring on Argo publishes `promotion.event`; the deployment deployed there runs on
    it. Metaflow compiles the payload-to-parameter mapping into the Argo Events Sensor,
    which `--only-json` does not print; the compile itself checks that the mapped
    parameter exists and that the payload key is one Argo Events accepts."""
    document = compiled_document(compiled, "argo deployment promotion")
    annotations = document["metadata"]["annotations"]
    triggers = json.loads(annotations["metaflow/triggers"])
    assert triggers == [{"name": f"mfns.penguins.prod.{PROMOTION_EVENT}", "type": "event"}]
    assert annotations["metaflow/sensor_name"] == "penguins-prod-deployment"
    assert "model-version" in argo_parameters(document)
    step_templates(document, DEPLOYMENT)


def test_sfn_deployment_compiles_without_the_promotion_event(
    compiled: dict[str, Compiled],
) -> None:
    """The trigger is opt-in: without `promotion.event` the deployment pipeline still
    deploys to Step Functions, which refuses @trigger."""
    sfn_step_states(compiled_document(compiled, "sfn deployment"), DEPLOYMENT)


def test_argo_scoring_fans_out_the_chunks_and_runs_daily(compiled: dict[str, Compiled]) -> None:
    document = compiled_document(compiled, "argo scoring")
    assert flow_steps(SCORING)["start"] == "foreach"
    templates = argo_templates(document)
    [fan_out] = [
        task
        for template in templates.values()
        for task in template.get("dag", {}).get("tasks", [])
        if "withParam" in task
    ]
    assert "start.outputs.parameters.num-splits" in fan_out["withParam"]
    inner = {task["template"] for task in templates[fan_out["template"]]["dag"]["tasks"]}
    assert inner == {"score-chunk"}
    annotations = document["metadata"]["annotations"]
    # `scoring.schedule` defaults to daily: midnight UTC.
    assert json.loads(annotations["metaflow/cron"])["schedule"] == "0 0 * * ?"


def test_argo_monitoring_runs_hourly(compiled: dict[str, Compiled]) -> None:
    annotations = compiled_document(compiled, "argo monitoring")["metadata"]["annotations"]
    # Metaflow gives Argo's CronWorkflow the first five fields of the EventBridge cron.
    assert json.loads(annotations["metaflow/cron"])["schedule"] == "0 * * * ?"


# --- Step Functions -------------------------------------------------------------------


def sfn_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, inside Parallel branches and Map iterators too."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from sfn_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from sfn_states(state[key]["States"])


def sfn_step_states(document: dict[str, Any], flow_file: Path) -> dict[str, dict[str, Any]]:
    states = sfn_states(document["States"])
    tasks = {name: state for name, state in states if state["Type"] == "Task"}
    missing = set(flow_steps(flow_file)) - set(tasks)
    assert not missing, f"steps without a Step Functions task: {missing}"
    return {step: tasks[step] for step in flow_steps(flow_file)}


def sfn_environment(state: dict[str, Any]) -> dict[str, str]:
    overrides = state["Parameters"]["ContainerOverrides"]["Environment"]
    return {item["Name"]: item.get("Value") for item in overrides}


def deployed_state_machine(moto_server: MotoServer, name: str) -> dict[str, Any]:
    client = boto3.client("stepfunctions", endpoint_url=moto_server.url)
    [machine] = [m for m in client.list_state_machines()["stateMachines"] if m["name"] == name]
    return client.describe_state_machine(stateMachineArn=machine["stateMachineArn"])


def test_sfn_training_runs_every_step_as_a_batch_job_with_retries(
    compiled: dict[str, Compiled],
) -> None:
    document = compiled_document(compiled, "sfn training")
    for step, state in sfn_step_states(document, TRAINING).items():
        assert state["Resource"] == "arn:aws:states:::batch:submitJob.sync", step
        assert state["Parameters"]["JobQueue"] == PREFIX, step
        # `--with retry`: Batch runs each job up to four times (three retries).
        assert state["Parameters"]["RetryStrategy"] == {"Attempts": 4}, step
        assert state["Retry"], step  # Step Functions retries Batch's own API errors.


def test_sfn_fans_out_the_cross_validation_folds_in_a_map(compiled: dict[str, Compiled]) -> None:
    document = compiled_document(compiled, "sfn training")
    [fold_map] = [state for _, state in sfn_states(document["States"]) if state["Type"] == "Map"]
    inner = {name for name, state in sfn_states(fold_map["Iterator"]["States"])}
    assert {"transform_fold", "train_fold", "evaluate_fold"} <= inner


def test_sfn_tuning_runs_its_lanes_in_two_maps_with_retries(
    compiled: dict[str, Compiled],
) -> None:
    document = compiled_document(compiled, "sfn tuning")
    for step, state in sfn_step_states(document, TUNING).items():
        assert state["Parameters"]["RetryStrategy"] == {"Attempts": 4}, step
    maps = [state for _, state in sfn_states(document["States"]) if state["Type"] == "Map"]
    inner = sorted(
        name for lane_map in maps for name, _ in sfn_states(lane_map["Iterator"]["States"])
    )
    assert inner == ["exploit", "explore"]
    start = sfn_step_states(document, TUNING)["start"]
    defaults = json.loads(sfn_environment(start)["METAFLOW_DEFAULT_PARAMETERS"])
    assert set(defaults) == TUNING_PARAMETERS


def test_sfn_parameters_default_from_the_config(compiled: dict[str, Compiled]) -> None:
    start = sfn_step_states(compiled_document(compiled, "sfn training"), TRAINING)["start"]
    defaults = json.loads(sfn_environment(start)["METAFLOW_DEFAULT_PARAMETERS"])
    assert set(defaults) == TRAINING_PARAMETERS
    assert defaults["mlflow-tracking-uri"] == TRACKING_URI
    assert defaults["dataset"] == "data/penguins.csv"


def test_sfn_refuses_the_retraining_trigger(compiled: dict[str, Compiled]) -> None:
    """Why retraining on alert is opt-in: Step Functions cannot deploy a flow with it."""
    result = compiled["sfn training retraining"]
    assert result.returncode != 0
    assert "@trigger" in result.stdout + result.stderr
    assert "not supported" in result.stdout + result.stderr


def test_sfn_monitoring_deploys_on_the_configured_schedule(
    compiled: dict[str, Compiled], moto_server: MotoServer
) -> None:
    result = compiled["sfn monitoring deployed"]
    assert result.returncode == 0, result.describe()
    name = "penguins.prod.Monitoring"
    machine = deployed_state_machine(moto_server, name)
    sfn_step_states(json.loads(machine["definition"]), MONITORING)

    events = boto3.client("events", endpoint_url=moto_server.url)
    rule = events.describe_rule(Name=name)
    assert rule["ScheduleExpression"] == f"cron({DAILY_AT_SIX_THIRTY})"
    assert rule["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule=name)["Targets"]
    assert target["Arn"] == machine["stateMachineArn"]
    assert target["RoleArn"].endswith(f"role/{PREFIX}-events")


def test_sfn_scoring_deploys_with_its_chunks_in_a_map_on_the_daily_schedule(
    compiled: dict[str, Compiled], moto_server: MotoServer
) -> None:
    result = compiled["sfn scoring deployed"]
    assert result.returncode == 0, result.describe()
    name = "penguins.prod.Scoring"
    machine = deployed_state_machine(moto_server, name)
    document = json.loads(machine["definition"])
    for step, state in sfn_step_states(document, SCORING).items():
        assert state["Parameters"]["RetryStrategy"] == {"Attempts": 4}, step
    [chunk_map] = [state for _, state in sfn_states(document["States"]) if state["Type"] == "Map"]
    assert {name for name, _ in sfn_states(chunk_map["Iterator"]["States"])} == {"score_chunk"}
    defaults = json.loads(
        sfn_environment(sfn_step_states(document, SCORING)["start"])["METAFLOW_DEFAULT_PARAMETERS"]
    )
    assert set(defaults) == SCORING_PARAMETERS
    assert defaults["model-version"] == "champion" and defaults["chunk-rows"] == 100_000
    rule = boto3.client("events", endpoint_url=moto_server.url).describe_rule(Name=name)
    assert rule["ScheduleExpression"] == "cron(0 0 * * ? *)"

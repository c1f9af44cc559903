"""team_stack.stack: what `up` refuses, what it prints, and a real stack up, used and
brought down with no process left."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO_ROOT
from support.team_stack import ADMIN, ADMIN_PASSWORD, TeamStack

from team_stack.__main__ import main
from team_stack.stack import Settings, StackError, admin_credentials, exports

# --- refused before anything starts ------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({}, "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD not set"),
        ({"MLFLOW_TRACKING_USERNAME": "admin"}, "MLFLOW_TRACKING_PASSWORD not set"),
        ({"MLFLOW_TRACKING_PASSWORD": "long-enough-password"}, "MLFLOW_TRACKING_USERNAME not set"),
    ],
)
def test_up_without_admin_credentials_is_refused_naming_what_to_set(
    environment: dict[str, str], named: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["up", "--dir", str(tmp_path / "stack")]) == 1
    error = capsys.readouterr().err
    assert named in error and "then run `up` again" in error
    assert "long-enough-password" not in error
    assert not (tmp_path / "stack").exists()  # nothing made, nothing started


def test_a_password_mlflow_would_refuse_is_refused_before_anything_starts() -> None:
    with pytest.raises(StackError, match="shorter than 12 characters") as info:
        admin_credentials({"MLFLOW_TRACKING_USERNAME": "a", "MLFLOW_TRACKING_PASSWORD": "short1"})
    assert "short1" not in str(info.value)


def test_settings_come_from_options_then_stack_variables_then_defaults(tmp_path: Path) -> None:
    environ = {"STACK_MLFLOW_PORT": "6001", "STACK_BUCKET": "team", "STACK_DIR": str(tmp_path)}
    settings = Settings.from_environment(environ, mlflow_port="7001")
    assert (settings.mlflow_port, settings.bucket, settings.dir) == (7001, "team", tmp_path)
    assert settings.postgres_port == Settings().postgres_port
    with pytest.raises(StackError, match="STACK_S3_PORT='nine' is not a int"):
        Settings.from_environment({"STACK_S3_PORT": "nine"})


def test_the_exports_point_clients_at_the_stack_and_never_hold_the_password() -> None:
    lines = exports(Settings(mlflow_port=5055, s3_port=9099, bucket="team"))
    text = "\n".join(lines)
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5055" in lines
    assert 'export MLFLOW_TRACKING_PASSWORD="$MLFLOW_TRACKING_PASSWORD"' in lines
    assert "export METAFLOW_DATASTORE_SYSROOT_S3=s3://team/metaflow" in lines
    assert "export METAFLOW_S3_ENDPOINT_URL=http://127.0.0.1:9099" in lines
    # A real S3: no stand-in credentials, the endpoint given.
    real = "\n".join(exports(Settings(s3_endpoint_url="https://s3.example.com")))
    assert (
        "AWS_ACCESS_KEY_ID" not in real
        and "METAFLOW_S3_ENDPOINT_URL=https://s3.example.com" in real
    )
    assert "AWS_ACCESS_KEY_ID=testing" in text


# --- a real stack ------------------------------------------------------------------------


def processes_mentioning(*needles: str) -> list[str]:
    """`pid pgid state args` of every live process (exited ones, zombies, aside) whose
    line holds one of `needles`."""
    listing = subprocess.run(
        ["ps", "-eo", "pid,pgid,stat,args"], capture_output=True, text=True, check=True
    ).stdout
    return [
        line
        for line in listing.splitlines()[1:]
        if not line.split()[2].startswith("Z") and any(n in line for n in needles)
    ]


@pytest.mark.e2e
def test_up_prints_what_clients_export_without_the_password(team_stack: TeamStack) -> None:
    assert ADMIN_PASSWORD not in team_stack.up.stdout + team_stack.up.stderr
    exported = team_stack.exports
    assert exported["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{team_stack.ports['mlflow']}"
    assert exported["MLFLOW_TRACKING_USERNAME"] == ADMIN
    assert exported["METAFLOW_DEFAULT_DATASTORE"] == "s3"


@pytest.mark.e2e
def test_the_stack_files_holding_secrets_are_its_owners_only(team_stack: TeamStack) -> None:
    for name in ("secrets.json", "basic_auth.ini", "stack.json"):
        mode = stat.S_IMODE((team_stack.directory / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert ADMIN_PASSWORD not in (team_stack.directory / "stack.json").read_text()


@pytest.mark.e2e
def test_a_client_logs_a_run_whose_artifacts_land_in_the_bucket(team_stack: TeamStack) -> None:
    code = (
        "import mlflow, boto3, os\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_metric('x', 1.0)\n"
        "    mlflow.log_text('hello', 'note.txt')\n"
        "print('ARTIFACTS=' + run.info.artifact_uri)\n"
        "s3 = boto3.client('s3', endpoint_url=os.environ['METAFLOW_S3_ENDPOINT_URL'])\n"
        "keys = [o['Key'] for o in s3.list_objects_v2(Bucket='penguins')['Contents']]\n"
        "print('KEYS=' + ' '.join(keys))\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=team_stack.client_environment(),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-4000:]
    # Proxied: the client sees mlflow-artifacts:, the files are in the bucket.
    assert "ARTIFACTS=mlflow-artifacts:/" in process.stdout
    assert "note.txt" in process.stdout.split("KEYS=")[1] and "mlflow/" in process.stdout


@pytest.mark.e2e
def test_a_wrong_password_is_refused_by_the_server(team_stack: TeamStack) -> None:
    code = "import mlflow\nmlflow.search_experiments()\n"
    env = team_stack.client_environment(MLFLOW_TRACKING_PASSWORD="not-the-password")
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert process.returncode != 0 and "401" in process.stderr, process.stderr[-2000:]


@pytest.mark.e2e
def test_up_again_says_the_stack_is_up_and_status_names_every_part(team_stack: TeamStack) -> None:
    again = team_stack.cli("up")
    assert again.returncode == 0, again.stderr
    assert "the stack is up already" in again.stderr
    assert again.stdout == team_stack.up.stdout
    status = team_stack.cli("status")
    lines = status.stdout.splitlines()
    assert any(line.startswith("postgresql: running") for line in lines), lines
    assert any(line.startswith("moto_server: running") for line in lines), lines
    assert any(line.startswith("mlflow server: running") for line in lines), lines


@pytest.mark.e2e
def test_up_with_another_admin_password_says_the_server_refuses_it(team_stack: TeamStack) -> None:
    env = {**team_stack.admin_environment, "MLFLOW_TRACKING_PASSWORD": "another-long-password"}
    again = team_stack.cli("up", env=env)
    assert again.returncode == 1
    assert "refuses MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD" in again.stderr
    assert "another-long-password" not in again.stderr


@pytest.mark.e2e
def test_down_leaves_no_process_and_down_again_is_fine(team_stack: TeamStack) -> None:
    import json

    state = json.loads((team_stack.directory / "stack.json").read_text())
    groups = [p["pid"] for p in state["processes"]] + [state["postgres"]["pid"]]
    down = team_stack.cli("down")
    assert down.returncode == 0, down.stderr
    for pid in groups:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid
    members = [
        line for line in processes_mentioning("")
        if int(line.split()[1]) in groups
    ]  # fmt: skip
    assert members == [], members
    assert processes_mentioning(str(team_stack.directory)) == []
    assert "postgresql: stopped" in team_stack.cli("status").stdout
    again = team_stack.cli("down")
    assert again.returncode == 0 and "the stack is down" in again.stderr


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_database_url_is_refused_for_an_unknown_database_or_a_stack_never_started(
    tmp_path: Path, capsys
) -> None:
    assert main(["database-url", "nope", "--dir", str(tmp_path)]) == 1
    assert "no database 'nope': it has mlflow, mlflow_auth, captures" in capsys.readouterr().err
    assert main(["database-url", "captures", "--dir", str(tmp_path / "none")]) == 1
    assert "was never started: run `up` first" in capsys.readouterr().err

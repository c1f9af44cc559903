"""The team stack: PostgreSQL, an S3 bucket and `mlflow server` with basic auth, on
127.0.0.1, under one state directory; up, down and status.

What lives in the state directory (default `.stack/` in the working directory):
`postgres/` (the cluster: databases `mlflow`, `mlflow_auth` and `captures`, owned by
the role `penguins`), `secrets.json` (0600: that role's password and the server's
session key, made at the first `up`), `basic_auth.ini` (0600: MLflow's auth app
configuration), `stack.json` (0600: what runs, pids with start times), and each
server's log. Deleting the directory (after `down`) forgets everything.

The MLflow admin is whoever runs `up`: MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, which that person's clients use too. MLflow creates the
admin user at the first start only; later starts check that the password still works.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlencode

from common.secrets import PASSWORD_VARIABLE, USERNAME_VARIABLE, authorization_header
from team_stack import processes
from team_stack.postgres import Cluster

ROLE = "penguins"
DATABASES = ("mlflow", "mlflow_auth", "captures")
# MLflow's own rule for a basic-auth password (mlflow.utils.validation._validate_password).
MIN_PASSWORD_LENGTH = 12
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT = 240  # seconds: `mlflow server` migrates a new database first; the host is slow


class StackError(RuntimeError):
    """The stack cannot start, or its state is not what the command needs."""


@dataclass(frozen=True)
class Settings:
    """Where the stack lives and listens. Every field has an environment variable
    (STACK_<FIELD>, e.g. STACK_MLFLOW_PORT) and a command-line option."""

    dir: Path = Path(".stack")
    mlflow_port: int = 5000
    postgres_port: int = 5433
    s3_port: int = 9000
    bucket: str = "penguins"
    # Empty: moto_server stands in for S3 on s3_port. An endpoint (a real S3, MinIO):
    # no stand-in; the bucket must exist, and AWS credentials come from the environment.
    s3_endpoint_url: str = ""
    mlflow_workers: int = 2

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for name, default in asdict(cls()).items():
            raw = overrides.get(name)
            if raw is None:
                raw = environ.get(f"STACK_{name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                values[name] = type(default)(raw)
            except ValueError:
                raise StackError(
                    f"STACK_{name.upper()}={raw!r} is not a {type(default).__name__}"
                ) from None
        settings = cls(**values)  # type: ignore[arg-type]
        return replace(settings, dir=Path(settings.dir).resolve())

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def s3_endpoint(self) -> str:
        return self.s3_endpoint_url or f"http://127.0.0.1:{self.s3_port}"

    @property
    def state_file(self) -> Path:
        return self.dir / "stack.json"

    def cluster(self) -> Cluster:
        return Cluster(self.dir / "postgres", self.postgres_port)


def admin_credentials(environ: Mapping[str, str]) -> tuple[str, str]:
    """The MLflow admin's user name and password from the environment, or a StackError
    that says what to set (never showing a password)."""
    username = environ.get(USERNAME_VARIABLE, "")
    password = environ.get(PASSWORD_VARIABLE, "")
    missing = [
        name
        for name, value in ((USERNAME_VARIABLE, username), (PASSWORD_VARIABLE, password))
        if not value
    ]
    if missing:
        raise StackError(
            f"{' and '.join(missing)} not set: the stack's MLflow admin is the user who runs "
            f"it. Export {USERNAME_VARIABLE}=<admin name> and {PASSWORD_VARIABLE}=<a password "
            f"of at least {MIN_PASSWORD_LENGTH} characters>, then run `up` again"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StackError(
            f"{PASSWORD_VARIABLE} is shorter than {MIN_PASSWORD_LENGTH} characters, which "
            "MLflow's basic auth refuses: choose a longer one"
        )
    return username, password


def private_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only from the start."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


def stack_secrets(settings: Settings) -> dict[str, str]:
    """The database role's password and the server's session key: made at the first
    `up`, kept in secrets.json (0600) after."""
    path = settings.dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    made = {
        "postgres_password": secrets.token_urlsafe(24),
        "flask_secret_key": secrets.token_urlsafe(32),
    }
    private_file(path, json.dumps(made, indent=2))
    return made


def database_url(settings: Settings, database: str) -> str:
    """The URL of one of the stack's databases, password included (show it only through
    common.secrets.redact)."""
    if database not in DATABASES:
        raise StackError(f"the stack has no database {database!r}: it has {', '.join(DATABASES)}")
    if not settings.cluster().initialized:
        raise StackError(f"the stack in {settings.dir} was never started: run `up` first")
    return settings.cluster().url(database, ROLE, stack_secrets(settings)["postgres_password"])


def read_state(settings: Settings) -> dict | None:
    try:
        return json.loads(settings.state_file.read_text())
    except FileNotFoundError:
        return None


def recorded_processes(state: Mapping | None) -> list[processes.Process]:
    return [processes.Process(**entry) for entry in (state or {}).get("processes", [])]


def prepare_directory(settings: Settings) -> None:
    """The state directory: the owner's only, but enterable by the `postgres` user when
    root runs the stack (the cluster then runs as that user)."""
    settings.dir.mkdir(parents=True, exist_ok=True)
    settings.dir.chmod(0o711 if os.geteuid() == 0 else 0o700)


def start_postgres(settings: Settings) -> None:
    cluster = settings.cluster()
    cluster.start()
    cluster.create_user(ROLE, stack_secrets(settings)["postgres_password"])
    for database in DATABASES:
        cluster.create_database(database, owner=ROLE)


def s3_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """What the MLflow server (and the bucket's creation) needs to reach the bucket."""
    environment = {"MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint}
    if not settings.s3_endpoint_url:
        environment.update(MOTO_CREDENTIALS)
        # Never a developer's real profile: the stand-in takes any key.
        environment.update(
            {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        )
    return environment


def start_moto(settings: Settings, environ: Mapping[str, str]) -> processes.Process:
    executable = Path(sys.executable).with_name("moto_server")
    if not executable.exists():
        raise StackError(
            f"moto_server (the S3 stand-in) is not installed in {executable.parent}: "
            "`uv sync` installs it (dev group), or set STACK_S3_ENDPOINT_URL to a real S3"
        )
    command = [str(executable), "-H", "127.0.0.1", "-p", str(settings.s3_port)]
    process = processes.start(
        "moto_server", command, settings.dir / "moto.log", environ, settings.dir
    )
    processes.wait_for_url(process, f"{settings.s3_endpoint}/moto-api/", timeout=60)
    return process


def ensure_bucket(settings: Settings, environ: Mapping[str, str]) -> None:
    """Create the bucket on the stand-in; check that it exists on a real S3."""
    import boto3  # only `up` needs it
    import botocore.exceptions

    environment = s3_environment(settings, environ)
    session = boto3.session.Session(
        aws_access_key_id=environment.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=environment.get("AWS_SECRET_ACCESS_KEY"),
        region_name=environment.get("AWS_DEFAULT_REGION", environ.get("AWS_DEFAULT_REGION")),
    )
    client = session.client("s3", endpoint_url=settings.s3_endpoint)
    try:
        client.head_bucket(Bucket=settings.bucket)
    except botocore.exceptions.ClientError:
        if settings.s3_endpoint_url:
            raise StackError(
                f"the bucket {settings.bucket!r} is not reachable at {settings.s3_endpoint_url} "
                "with the AWS credentials of this environment: create it, or fix the credentials"
            ) from None
        client.create_bucket(Bucket=settings.bucket)


def write_auth_config(settings: Settings) -> Path:
    """MLflow's basic-auth configuration: its users in the stack's PostgreSQL. Every
    user may read and edit every experiment and model (a team shares them); the admin
    manages users.

    A checked password is remembered for a minute (per server worker): without that the
    server hashes it again (scrypt, ~0.3-0.6 s of CPU here) for each of a training
    run's ~160 requests. A changed or removed password takes up to that minute to be
    refused by every worker."""
    path = settings.dir / "basic_auth.ini"
    private_file(
        path,
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = {database_url(settings, 'mlflow_auth')}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n",
    )
    return path


def mlflow_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: the stores' URLs and secrets in variables (a command
    line is visible to every user of the machine), no client settings."""
    username, password = admin_credentials(environ)
    environment = {
        name: value
        for name, value in environ.items()
        if not name.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))
    }
    environment.update(s3_environment(settings, environ))
    environment.update({
        "MLFLOW_BACKEND_STORE_URI": database_url(settings, "mlflow"),
        "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(settings)),
        "MLFLOW_AUTH_ADMIN_USERNAME": username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        # One key for every worker: a session made by one is valid in the others.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": stack_secrets(settings)["flask_secret_key"],
        # The job runner serves MLflow's GenAI jobs, which this project does not use; its
        # consumers are extra processes (stopped with the group all the same).
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })  # fmt: skip
    return environment


def start_mlflow(settings: Settings, environ: Mapping[str, str]) -> processes.Process:
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--app-name", "basic-auth",
        "--host", "127.0.0.1",
        "--port", str(settings.mlflow_port),
        "--workers", str(settings.mlflow_workers),
        "--artifacts-destination", f"s3://{settings.bucket}/mlflow",
    ]  # fmt: skip
    process = processes.start(
        "mlflow server",
        command,
        settings.dir / "mlflow.log",
        mlflow_environment(settings, environ),
        settings.dir,
    )
    processes.wait_for_url(process, f"{settings.tracking_uri}/health", timeout=START_TIMEOUT)
    return process


def check_admin_login(settings: Settings, environ: Mapping[str, str]) -> None:
    """The admin's credentials from the environment work on the server (MLflow keeps the
    password of the first start: a changed MLFLOW_TRACKING_PASSWORD does not change it)."""
    username, _ = admin_credentials(environ)
    request = urllib.request.Request(
        f"{settings.tracking_uri}/api/2.0/mlflow/users/get?{urlencode({'username': username})}",
        headers=authorization_header(environ),
    )
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise StackError(
                f"the stack is up, but the MLflow server refuses {USERNAME_VARIABLE}/"
                f"{PASSWORD_VARIABLE} (HTTP {error.code}): the admin user was created at the "
                "first start with another password. Export that one, or run `down`, delete "
                f"{settings.dir} (every run and model goes with it) and `up` again"
            ) from None
        raise


def up(settings: Settings, environ: Mapping[str, str], say=print) -> list[str]:
    """Start whatever of the stack does not run; return the lines to export."""
    admin_credentials(environ)
    state = read_state(settings)
    running = [p for p in recorded_processes(state) if processes.alive(p)]
    if state and len(running) == len(recorded_processes(state)) and settings.cluster().running():
        say(f"the stack is up already ({settings.dir})")
        settings = recorded_settings(settings)
        check_admin_login(settings, environ)
        return exports(settings)
    if state:
        say("the stack is partly up: stopping what is left before starting it again")
        down(settings, say=lambda _: None)
    prepare_directory(settings)
    started: list[processes.Process] = []
    try:
        start_postgres(settings)
        say(f"postgresql: 127.0.0.1:{settings.postgres_port} (databases {', '.join(DATABASES)})")
        if not settings.s3_endpoint_url:
            started.append(start_moto(settings, environ))
        ensure_bucket(settings, environ)
        say(f"s3: s3://{settings.bucket} at {settings.s3_endpoint}")
        started.append(start_mlflow(settings, environ))
        write_state(settings, started)
        say(
            f"mlflow server: {settings.tracking_uri} (basic auth; artifacts in s3://{settings.bucket}/mlflow)"
        )
    except BaseException:
        for process in reversed(started):
            processes.stop(process)
        settings.cluster().stop()
        settings.state_file.unlink(missing_ok=True)
        raise
    check_admin_login(settings, environ)
    return exports(settings)


def write_state(settings: Settings, started: list[processes.Process]) -> None:
    settings_record = {k: v for k, v in asdict(settings).items() if k != "dir"}
    state = {"settings": settings_record, "processes": [p.as_dict() for p in started]}
    postgres_pid = settings.cluster().pid()
    if postgres_pid is not None:
        state["postgres"] = {"pid": postgres_pid, "started": processes.start_time(postgres_pid)}
    private_file(settings.state_file, json.dumps(state, indent=2))


def recorded_settings(settings: Settings) -> Settings:
    """The settings `up` ran with (ports, bucket), for `down` and `status`, which are
    given the state directory only."""
    state = read_state(settings)
    if not state:
        return settings
    return Settings(**{**asdict(settings), **state["settings"], "dir": settings.dir})


def down(settings: Settings, say=print) -> None:
    """Stop every process of the stack (servers with their process groups, PostgreSQL
    with pg_ctl); the data stays. A stopped stack is fine."""
    settings = recorded_settings(settings)
    for process in reversed(recorded_processes(read_state(settings))):
        processes.stop(process)
        # moto keeps objects in memory only, while PostgreSQL keeps the runs that name them.
        forgotten = (
            " (the stand-in's objects are gone with it)" if process.name == "moto_server" else ""
        )
        say(f"{process.name}: stopped{forgotten}")
    cluster = settings.cluster()
    if cluster.initialized and cluster.running():
        cluster.stop()
        say("postgresql: stopped")
    settings.state_file.unlink(missing_ok=True)
    say(f"the stack is down (its data stays in {settings.dir})")


def status(settings: Settings) -> list[str]:
    """One line per part of the stack: what runs, where."""
    settings = recorded_settings(settings)
    state = read_state(settings)
    cluster = settings.cluster()
    pg = f"running, 127.0.0.1:{settings.postgres_port}" if cluster.running() else "stopped"
    lines = [f"state: {settings.dir}" + ("" if state else " (not started)"), f"postgresql: {pg}"]
    for process in recorded_processes(state):
        where = {"mlflow server": settings.tracking_uri, "moto_server": settings.s3_endpoint}
        shown = f"running, pid {process.pid}, {where.get(process.name, '')}"
        lines.append(f"{process.name}: {shown if processes.alive(process) else 'stopped'}")
    return lines


def exports(settings: Settings) -> list[str]:
    """Shell lines that point a client at the stack. The password is not in them: the
    line refers to the variable the user has set already."""
    lines = [
        f"export MLFLOW_TRACKING_URI={settings.tracking_uri}",
        f'export {USERNAME_VARIABLE}="${USERNAME_VARIABLE}"',
        f'export {PASSWORD_VARIABLE}="${PASSWORD_VARIABLE}"',
        "export METAFLOW_DEFAULT_DATASTORE=s3",
        f"export METAFLOW_DATASTORE_SYSROOT_S3=s3://{settings.bucket}/metaflow",
        f"export METAFLOW_S3_ENDPOINT_URL={settings.s3_endpoint}",
    ]
    if not settings.s3_endpoint_url:
        lines += [f"export {name}={value}" for name, value in MOTO_CREDENTIALS.items()]
    return lines

"""A private PostgreSQL cluster from Debian's `postgresql` package.

The cluster lives in one directory of its own (data, socket, log), listens on
127.0.0.1 only, on a given port, and asks a password (SCRAM) on TCP. Administration
goes through the Unix socket, which sits in that directory: the directory is the
access control for the superuser, so it is made readable by its owner only.

`initdb` and `pg_ctl` refuse to run as root: as root, they run as the `postgres`
user (`runuser -u postgres --`), which then owns the directory; every parent of the
directory must let that user through (a directory under a root-only one does not).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

INSTALL_HINT = "install Debian's PostgreSQL: apt-get install postgresql"
# A Unix socket's path must fit in sun_path (108 bytes on Linux, terminator included).
_SOCKET_PATH_LIMIT = 107
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SERVICE_USER = "postgres"


class PostgresError(RuntimeError):
    """The cluster cannot be set up, started, stopped or administered."""


def bin_directory() -> Path:
    """The directory of the newest installed PostgreSQL's programs (POSTGRES_BIN_DIR
    overrides it: another distribution's layout)."""
    override = os.environ.get("POSTGRES_BIN_DIR")
    if override:
        if not (Path(override) / "initdb").is_file():
            raise PostgresError(f"POSTGRES_BIN_DIR={override} holds no initdb")
        return Path(override)
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise PostgresError(
            f"PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/initdb): "
            f"{INSTALL_HINT}, or set POSTGRES_BIN_DIR to the directory of its programs"
        )
    newest = max(found, key=lambda path: int(Path(path).parent.parent.name.split(".")[0]))
    return Path(newest).parent


def is_installed() -> bool:
    try:
        bin_directory()
    except PostgresError:
        return False
    return True


def check_name(name: str, what: str) -> str:
    """`name` when it is a plain lower-case SQL identifier; the error says what is wrong."""
    if not _NAME.match(name):
        raise PostgresError(
            f"{what} {name!r} is not a plain PostgreSQL name: use lower-case letters, digits "
            "and _ (not first a digit), at most 63 characters"
        )
    return name


class Cluster:
    """A PostgreSQL cluster in `directory`, on 127.0.0.1:`port`.

    `durable=False` turns fsync off (and skips initdb's sync): for throw-away clusters
    (tests), whose data may be lost in a machine crash.
    """

    def __init__(self, directory: Path | str, port: int, durable: bool = True) -> None:
        self.directory = Path(directory).resolve()
        self.port = port
        self.durable = durable
        self.data = self.directory / "data"
        self.socket_directory = self.directory / "socket"
        self.log = self.directory / "postgres.log"

    # -- running the programs --------------------------------------------------------

    def _as_owner(self) -> list[str]:
        """The prefix that runs a PostgreSQL program as the cluster's owner."""
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise PostgresError(
                f"running as root, PostgreSQL's programs must run as the user "
                f"{SERVICE_USER!r}, which does not exist: {INSTALL_HINT} (it creates that user)"
            ) from None
        return ["runuser", "-u", SERVICE_USER, "--"]

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*self._as_owner(), str(bin_directory() / program), *args]
        # The working directory must be one the owner can enter (root's home is not).
        result = subprocess.run(
            command, cwd=self.directory, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise PostgresError(
                f"{program} failed (exit {result.returncode}) for the cluster in "
                f"{self.directory}:\n{result.stderr.strip() or result.stdout.strip()}"
                + (f"\nserver log: {self.log}" if program == "pg_ctl" else "")
            )
        return result

    def _prepare_directory(self) -> None:
        """The directory, the socket's, owned by the user PostgreSQL runs as, 0700."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_directory.mkdir(exist_ok=True)
        socket = self.socket_directory / f".s.PGSQL.{self.port}"
        if len(str(socket)) > _SOCKET_PATH_LIMIT:
            raise PostgresError(
                f"the socket path {socket} is longer than {_SOCKET_PATH_LIMIT} characters, "
                "the limit of a Unix socket: choose a shorter state directory"
            )
        for path in (self.directory, self.socket_directory):
            path.chmod(0o700)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVICE_USER)
            for path in (self.directory, self.socket_directory):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            reachable = subprocess.run(
                [*self._as_owner(), "test", "-w", str(self.directory)], check=False
            )
            if reachable.returncode != 0:
                raise PostgresError(
                    f"the user {SERVICE_USER!r} cannot reach {self.directory} (a parent "
                    "directory does not let it through, e.g. one of mode 0700): choose a "
                    "state directory whose parents it may traverse (chmod o+x)"
                )

    # -- life cycle ------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def initialize(self) -> None:
        """Make the data directory (once): superuser `postgres`, trusted on the socket
        only, SCRAM passwords on TCP."""
        self._prepare_directory()
        if self.initialized:
            return
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", SERVICE_USER,
            "-E", "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            *([] if self.durable else ["--no-sync"]),
        )  # fmt: skip

    def pid(self) -> int | None:
        """The postmaster's pid when the cluster runs, else None."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> Cluster:
        """Initialize if needed and start; a running cluster is left as it is."""
        self.initialize()
        if self.running():
            return self
        options = [
            f"-p {self.port}",
            f"-k {self.socket_directory}",
            "-c listen_addresses=127.0.0.1",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", " ".join(options), "start",
        )  # fmt: skip
        return self

    def stop(self, timeout: float = 60) -> None:
        """Stop the cluster (fast: open sessions are ended); a stopped one is fine."""
        pid = self.pid()
        if pid is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except PostgresError:
            # pg_ctl could not do it: end the postmaster by its pid, which ends its children.
            os.kill(pid, 15)
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL (pid {pid}) did not stop in {timeout:.0f} s")
            time.sleep(0.1)

    # -- administration --------------------------------------------------------------

    def admin_conninfo(self, database: str = "postgres") -> str:
        """libpq connection string of the superuser through the socket."""
        return (
            f"host={self.socket_directory} port={self.port} user={SERVICE_USER} dbname={database}"
        )

    def _execute(self, *statements: object) -> None:
        import psycopg  # a driver: only the commands that administer the cluster need it

        with psycopg.connect(self.admin_conninfo(), autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)  # type: ignore[arg-type]

    def _exists(self, query: str, name: str) -> bool:
        import psycopg

        with psycopg.connect(self.admin_conninfo(), autocommit=True) as connection:
            return connection.execute(query, (name,)).fetchone() is not None

    def create_user(self, name: str, password: str) -> None:
        """A login role with this password (set again when the role exists)."""
        from psycopg import sql

        check_name(name, "user name")
        if not password:
            raise PostgresError(f"the user {name!r} needs a password (TCP logins ask for one)")
        verb = (
            "ALTER" if self._exists("SELECT 1 FROM pg_roles WHERE rolname = %s", name) else "CREATE"
        )
        self._execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )

    def create_database(self, name: str, owner: str | None = None) -> None:
        """A database (owned by `owner` when given); an existing one is left as it is."""
        from psycopg import sql

        check_name(name, "database name")
        if self._exists("SELECT 1 FROM pg_database WHERE datname = %s", name):
            return
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            statement = sql.SQL("{} OWNER {}").format(
                statement, sql.Identifier(check_name(owner, "owner"))
            )
        self._execute(statement)

    def url(self, database: str, user: str, password: str) -> str:
        """The SQLAlchemy/libpq URL of `database` over TCP (holds the password: show it
        only through common.secrets.redact)."""
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database, safe='')}"
        )

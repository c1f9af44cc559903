"""A real PostgreSQL cluster (Debian's package) on 127.0.0.1 for the tests.

Without PostgreSQL's programs the tests that need it skip, saying why, unless
REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.ports import free_port
from team_stack.postgres import INSTALL_HINT, Cluster, is_installed


def require_postgres() -> None:
    """Skip (or, with REQUIRE_POSTGRES=1, fail) when PostgreSQL is not installed."""
    if is_installed():
        return
    reason = f"PostgreSQL is not installed ({INSTALL_HINT})"
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, and REQUIRE_POSTGRES=1")
    pytest.skip(reason)


def traversable_directory(prefix: str) -> Path:
    """A new temporary directory that the `postgres` user may enter when the tests run as
    root (pytest's own tmp directories are under a root-only one)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o711)
    return directory


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[Cluster]:
    """A started cluster of its own per test module (fsync off: throw-away data), stopped
    and removed at the end. `create_user`, `create_database` and `url` give a test its
    database."""
    require_postgres()
    parent = traversable_directory("postgres-tests-")
    cluster = Cluster(parent / "cluster", free_port(), durable=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)

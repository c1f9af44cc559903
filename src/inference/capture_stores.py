"""Which capture store a database setting names: a SQLite file (`inference.capture`)
or a PostgreSQL URL (`inference.capture_postgres`), both with one interface.

The model server opens its store from SERVING_CAPTURE_DATABASE (a path or a
`postgresql://user@host:port/dbname` URL, never with a password) and
SERVING_CAPTURE_PASSWORD (the PostgreSQL password, when libpq's PGPASSWORD or
~/.pgpass does not give it); the retention from SERVING_CAPTURE_RETENTION.
"""

from __future__ import annotations

from collections.abc import Mapping

from inference.capture import CaptureStore, StoreBase
from inference.capture_postgres import PostgresCaptureStore, is_postgres_url
from inference.retention import Retention
from inference.retention import from_environment as retention_from_environment

DATABASE_VARIABLE = "SERVING_CAPTURE_DATABASE"
PASSWORD_VARIABLE = "SERVING_CAPTURE_PASSWORD"


def open_store(
    database: str, retention: Retention | None = None, password: str | None = None
) -> StoreBase:
    """The capture store `database` names, open (CaptureError if it cannot be)."""
    if is_postgres_url(database):
        return PostgresCaptureStore(database, retention, password)
    return CaptureStore(database, retention)


def from_environment(environment: Mapping[str, str]) -> StoreBase | None:
    """The store the server's environment names; None when it captures nothing."""
    database = environment.get(DATABASE_VARIABLE)
    if not database:
        return None
    retention = retention_from_environment(environment)
    return open_store(database, retention, environment.get(PASSWORD_VARIABLE) or None)

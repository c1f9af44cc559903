"""team_stack.postgres on a real cluster: password logins on TCP, databases, stop."""

from __future__ import annotations

import pytest

from team_stack.postgres import Cluster, PostgresError, check_name


def test_a_created_user_logs_in_on_tcp_with_its_password(postgres_cluster: Cluster) -> None:
    import psycopg

    postgres_cluster.create_user("alice", "s3cret pass/@:")
    postgres_cluster.create_database("alice_db", owner="alice")
    url = postgres_cluster.url("alice_db", "alice", "s3cret pass/@:")
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("alice", "alice_db")


def test_a_wrong_password_is_refused_on_tcp(postgres_cluster: Cluster) -> None:
    import psycopg

    postgres_cluster.create_user("bob", "right")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres_cluster.url("postgres", "bob", "wrong")).close()


def test_creating_a_database_or_user_twice_keeps_the_first(postgres_cluster: Cluster) -> None:
    import psycopg

    postgres_cluster.create_user("carol", "one")
    postgres_cluster.create_database("twice", owner="carol")
    postgres_cluster.create_database("twice")
    postgres_cluster.create_user("carol", "two")
    with psycopg.connect(postgres_cluster.url("twice", "carol", "two")) as connection:
        owner = connection.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'twice'"
        ).fetchone()
    assert owner == ("carol",)


def test_the_cluster_listens_on_loopback_only(postgres_cluster: Cluster) -> None:
    import psycopg

    with psycopg.connect(postgres_cluster.admin_conninfo()) as connection:
        setting = connection.execute("SHOW listen_addresses").fetchone()
    assert setting == ("127.0.0.1",)


def test_a_name_that_is_not_a_plain_identifier_is_refused() -> None:
    with pytest.raises(PostgresError, match="not a plain PostgreSQL name"):
        check_name('x"; DROP TABLE y; --', "database name")
    assert check_name("captures", "database name") == "captures"


@pytest.mark.e2e
def test_stop_ends_the_postmaster_and_start_again_keeps_the_data() -> None:
    from support.ports import free_port
    from support.postgres import require_postgres, traversable_directory

    require_postgres()
    cluster = Cluster(traversable_directory("postgres-restart-") / "c", free_port(), durable=False)
    try:
        cluster.start()
        pid = cluster.pid()
        assert pid is not None
        cluster.create_database("kept")
        cluster.stop()
        assert not cluster.running()
        cluster.stop()  # a stopped cluster: nothing to do
        cluster.start()
        assert cluster._exists("SELECT 1 FROM pg_database WHERE datname = %s", "kept")
    finally:
        cluster.stop()

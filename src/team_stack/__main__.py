"""`python -m team_stack up|down|status|database-url NAME`: see team_stack.stack and
docs/team-setup.md. `up` prints the shell lines to export on standard output and its
progress on standard error, so `eval "$(uv run python -m team_stack up)"` works."""

from __future__ import annotations

import argparse
import os
import sys

from team_stack.postgres import PostgresError
from team_stack.stack import Settings, StackError, database_url, down, status, up


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m team_stack", description=__doc__)
    cli.add_argument("command", choices=["up", "down", "status", "database-url"])
    cli.add_argument("database", nargs="?", help="database-url: mlflow, mlflow_auth or captures")
    defaults = Settings()
    for name, default in vars(defaults).items():
        cli.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            help=f"default: ${'STACK_' + name.upper()}, else {str(default) or '(moto_server)'}",
        )
    return cli


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    overrides = {k: v for k, v in vars(arguments).items() if k not in ("command", "database")}
    try:
        settings = Settings.from_environment(os.environ, **overrides)
        if arguments.command == "up":
            lines = up(settings, os.environ, say=lambda text: print(text, file=sys.stderr))
            print("\n".join(lines))
        elif arguments.command == "down":
            down(settings, say=lambda text: print(text, file=sys.stderr))
        elif arguments.command == "status":
            print("\n".join(status(settings)))
        else:
            if not arguments.database:
                raise StackError("database-url needs a database name: mlflow or captures")
            print(database_url(settings, arguments.database))
    except (StackError, PostgresError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

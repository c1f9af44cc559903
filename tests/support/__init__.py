"""Helpers shared by the tests, bench/ and the demo test, each defined once.

Imported as ordinary modules (`from support.flows import run_flow`): pyproject.toml puts
tests/ on pytest's `pythonpath`. bench/, run as modules from the repository root
(`python -m bench.serving`), imports the few it needs as `tests.support.places`,
`tests.support.load` and `tests.support.ports`: those, and what they import of this
package, import each other relatively (`from .ports import free_port`), so that they
work under either name.
Fixtures are defined here too and exposed to every test by tests/conftest.py.

- `paths`: where the repository's flows, config and dataset are.
- `rows`: example request rows (the spec's curl row).
- `state`: isolated MLflow and Metaflow state (a session's, or a subprocess's own).
- `flows`: running flows and Python in fresh processes, reading cards.
- `ports`: free ports of 127.0.0.1.
- `aws`: a real `moto_server` process.
- `places`: where a Local backend keeps its things (`Place`), and a real model server
  started there (`ModelServer`); bench/serving.py uses it too.
- `serving`: tiny registered models and the shared model server.
- `monitoring`: monitoring runs on captures made as production makes them.
- `demo`: scripts/demo.py in an environment of its own, started early in the background.
- `browser`: finding Chromium, or skipping (failing in CI) without it.
"""

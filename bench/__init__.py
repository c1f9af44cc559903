"""Benchmarks of the pipelines, the model server and the libraries they lean on.

Each module is a command, run from the repository root as a module so that it imports
its sibling modules (`bench.machine`, `bench.training`...), the tests' shared helpers
(`tests.support.places`...) and the project's installed packages (`common`, `backends`...)
the ordinary way, with nothing added to `sys.path`:

    uv run python -m bench.training --runs 3

bench/README.md lists every benchmark and the figures they gave.
"""

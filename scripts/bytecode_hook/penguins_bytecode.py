"""Compile the environment's site-packages to bytecode once after each change.

Every Metaflow task is a new Python process that imports Keras, MLflow or scikit-learn
again. Where `PYTHONDONTWRITEBYTECODE=1` is set (many Docker images and CI runners) Python
never keeps the `.pyc` files it compiles, so without compiled bytecode each task would
compile those libraries from source (Keras 34 s instead of 5.6 s). uv's `compile-bytecode`
setting compiles at install, but also re-checks all ~37,000 files at every `uv run`
(astral-sh/uv#12202), 1-4 s before any command starts.

So `penguins_bytecode.pth` calls `compile_if_changed()` at every start of this
environment's Python: one `stat` of site-packages and one small file read. When
site-packages changed since the last compilation (uv installed, upgraded or removed a
package, which adds or removes its entries there), it compiles the whole directory with
`compileall`, files already up to date skipped, under a lock so that processes started
together compile once. The first command of a fresh clone pays it (about a minute on
2 cores), as it paid uv's compilation before; later ones do not.

The root pyproject's dev group installs this package, so only the local environment has
the hook; a worker's `uv sync --no-dev` leaves it out: a task there is one process, which
compiles only what it imports. `python -m penguins_bytecode` compiles now if needed and
says what it found.
"""

from __future__ import annotations

import os
import sys

SITE_PACKAGES = os.path.dirname(os.path.abspath(__file__))
# Beside the top-level modules' bytecode: writing there leaves site-packages' own mtime,
# the state the stamp records, unchanged.
CACHE_DIRECTORY = os.path.join(SITE_PACKAGES, "__pycache__")
STAMP = os.path.join(CACHE_DIRECTORY, "penguins_bytecode.stamp")
LOCK = os.path.join(CACHE_DIRECTORY, "penguins_bytecode.lock")
# Set while compiling, so that the compilation's own worker processes (which start this
# environment's Python too, under the `spawn` start method) do not wait for the lock.
COMPILING = "PENGUINS_BYTECODE_COMPILING"


def current_state() -> str:
    """What the compiled bytecode depends on: the Python version and site-packages' entries."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{version} {os.stat(SITE_PACKAGES).st_mtime_ns}"


def is_compiled() -> bool:
    try:
        with open(STAMP, encoding="ascii") as stamp:
            return stamp.read() == current_state()
    except OSError:
        return False


def compile_if_changed() -> bool:
    """Compile site-packages if it changed since the last time; True if it is compiled.

    Never raises: a failure here must not stop the interpreter it runs in, which only
    starts slower without the bytecode.
    """
    if os.environ.get(COMPILING) or is_compiled() or _is_uv_compiling():
        return True
    if not os.access(SITE_PACKAGES, os.W_OK):
        return False  # A read-only install: nothing could be written, now or later.
    try:
        _compile_under_lock()
    except Exception as error:  # see the docstring
        print(f"penguins-bytecode: site-packages not compiled: {error}", file=sys.stderr)
        return False
    return True


def _is_uv_compiling() -> bool:
    """Whether this is one of uv's own compile workers (`uv sync --compile-bytecode` or
    UV_COMPILE_BYTECODE=1 still work): uv compiles everything itself, and gives each
    worker 60 s to start, less than this compilation takes."""
    arguments = getattr(sys, "argv", None) or [""]  # an embedded Python may have none
    return os.path.basename(arguments[0]) == "pip_compileall.py"


def _compile_under_lock() -> None:
    import fcntl
    import time

    os.makedirs(CACHE_DIRECTORY, exist_ok=True)
    with open(LOCK, "a", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_compiled():
            return  # Another process compiled it while this one waited.
        print(
            "penguins-bytecode: compiling site-packages once after its change"
            " (a minute or two on a fresh environment)...",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        files = _compile_site_packages()
        with open(STAMP, "w", encoding="ascii") as stamp:
            stamp.write(current_state())
        seconds = time.monotonic() - started
        print(f"penguins-bytecode: {files} files checked in {seconds:.0f} s", file=sys.stderr)


def _compile_site_packages() -> int:
    """Compile every .py file under site-packages that lacks current bytecode; the count."""
    from concurrent.futures import ProcessPoolExecutor

    files = [
        os.path.join(directory, name)
        for directory, _, names in os.walk(SITE_PACKAGES)
        for name in names
        if name.endswith(".py")
    ]
    # A few large batches per worker, as uv feeds its workers, not compileall.compile_dir's
    # four files per task: measured here, its messages cost 30-50% more CPU in all.
    count = (os.cpu_count() or 1) * 8
    os.environ[COMPILING] = "1"
    try:
        with ProcessPoolExecutor() as executor:
            list(executor.map(_compile_files, [files[start::count] for start in range(count)]))
    finally:
        del os.environ[COMPILING]
    return len(files)


def _compile_files(paths: list[str]) -> None:
    import compileall
    import warnings

    # Errors and warnings are ignored as uv and pip ignore them: some packages ship files
    # for other Python versions (templates, tests) that never compile.
    warnings.simplefilter("ignore")
    for path in paths:
        compileall.compile_file(path, quiet=2)


if __name__ == "__main__":
    state = "compiled" if compile_if_changed() else "not compiled"
    print(f"{SITE_PACKAGES}: {state} ({current_state()})")

"""Which Keras backend the project uses, decided without importing Keras."""

from __future__ import annotations

import pytest

from common.keras_runtime import DEFAULT_KERAS_BACKEND, check_backend_installed, keras_backend


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_or_empty_keras_backend_is_jax(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    # Keras would read an empty value as "no choice" and fall back to TensorFlow,
    # which this project does not install: every training task would fail.
    if value is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", value)
    assert keras_backend() == DEFAULT_KERAS_BACKEND == "jax"


def test_a_chosen_keras_backend_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert keras_backend() == "torch"


def test_a_backend_keras_does_not_know_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"KERAS_BACKEND='jaxx' is not a Keras backend.*jax"):
        check_backend_installed("jaxx")


def test_a_backend_that_is_not_installed_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    expected = r"needs the 'torch' package.*unset KERAS_BACKEND.*uv sync --extra torch"
    with pytest.raises(ModuleNotFoundError, match=expected):
        check_backend_installed("torch")


def test_the_default_backend_is_installed() -> None:
    check_backend_installed(DEFAULT_KERAS_BACKEND)


def test_a_training_task_refuses_a_missing_backend_before_importing_keras() -> None:
    """In a fresh process, as a training task imports Keras: a clear error, no Keras."""
    from support.flows import python_result

    outcome = python_result(
        "import json, os, sys\n"
        "os.environ['KERAS_BACKEND'] = 'tensorflow'\n"
        "from common.keras_runtime import import_keras\n"
        "try:\n"
        "    import_keras()\n"
        "    error = None\n"
        "except ModuleNotFoundError as exc:\n"
        "    error = str(exc)\n"
        "print('OUTCOME=' + json.dumps({'error': error, 'keras': 'keras' in sys.modules}))\n",
        "OUTCOME",
    )
    assert outcome["error"] and "'tensorflow' package, which is not installed" in outcome["error"]
    assert outcome["keras"] is False

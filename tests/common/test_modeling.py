"""Which Keras backend the project uses, decided without importing Keras."""

from __future__ import annotations

import pytest

from common.modeling import DEFAULT_KERAS_BACKEND, keras_backend


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

"""Tests for promotion.compatibility: whether a shadow takes the served model's inputs."""

from __future__ import annotations

from common.data import DatasetSchema
from model_training.packaging import model_signature
from promotion.compatibility import input_columns, schema_differences


def test_schema_differences_name_each_differing_column() -> None:
    full = DatasetSchema("species", ("length", "mass"), ("island", "sex"), {})
    other = DatasetSchema("species", ("length",), ("island", "mass", "colour"), {})

    served, shadow = (input_columns(model_signature(s)) for s in (full, other))

    assert schema_differences(served, served) == []
    differences = schema_differences(served, shadow)
    assert differences[0].startswith("mass (served ")  # a number there, a string here
    assert differences[1:] == [
        "sex (only the served model takes it)",
        "colour (only the shadow takes it)",
    ]
    assert input_columns(None) == {}

"""Tests for common.registry: pinned requirements and the model signature."""

from __future__ import annotations

from importlib import metadata

from common.data import DatasetSchema
from common.registry import model_signature, pinned_requirements


def test_pinned_requirements_for_jax() -> None:
    requirements = pinned_requirements("jax")
    names = ["mlflow", "keras", "scikit-learn", "pandas", "numpy", "jax", "jaxlib"]
    assert requirements == [f"{name}=={metadata.version(name)}" for name in names]
    for requirement in requirements:
        _, _, version = requirement.partition("==")
        assert version and "==" not in version


def test_pinned_requirements_for_unknown_backend_lists_serving_packages_only() -> None:
    names = [requirement.partition("==")[0] for requirement in pinned_requirements("other")]
    assert names == ["mlflow", "keras", "scikit-learn", "pandas", "numpy"]


def test_model_signature_inputs_are_all_optional() -> None:
    schema = DatasetSchema("label", ("width", "height"), ("color",), {})
    signature = model_signature(schema)

    inputs = signature.inputs.inputs
    assert [column.name for column in inputs] == ["width", "height", "color"]
    # Numbers are typed `any` so whole numbers pass MLflow; the model checks values.
    assert [column.to_dict()["type"] for column in inputs] == ["any", "any", "string"]
    assert all(column.required is False for column in inputs)
    assert signature.inputs.required_input_names() == []
    assert "label" not in signature.inputs.input_names()


def test_model_signature_outputs() -> None:
    signature = model_signature(DatasetSchema("y", ("x",), (), {}))
    outputs = {column.name: column.type.name for column in signature.outputs.inputs}
    assert outputs == {"prediction": "string", "confidence": "double"}

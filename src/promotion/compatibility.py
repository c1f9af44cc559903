"""Whether a shadow can score the served model's requests: the same input columns.

A shadow gets every request the served model gets, validated as the served model
validates it: a version trained on other features would fail or score nonsense. The
check reads both versions' signatures from the registry, before anything serves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def input_columns(signature: Any) -> dict[str, str]:
    """A model signature's input columns, name -> type, in order."""
    if signature is None or signature.inputs is None:
        return {}
    columns = {}
    for column in signature.inputs.inputs:
        described = column.to_dict()
        columns[str(described.get("name"))] = json.dumps(
            {k: v for k, v in described.items() if k != "name"}, sort_keys=True
        )
    return columns


def schema_differences(served: Mapping[str, str], shadow: Mapping[str, str]) -> list[str]:
    """How the shadow's input columns differ from the served model's, one line per column."""
    differences = []
    for name in served:
        if name not in shadow:
            differences.append(f"{name} (only the served model takes it)")
        elif served[name] != shadow[name]:
            differences.append(f"{name} (served {served[name]}, shadow {shadow[name]})")
    differences += [f"{name} (only the shadow takes it)" for name in shadow if name not in served]
    return differences


def registered_input_differences(served_uri: str, shadow_uri: str) -> list[str]:
    """`schema_differences` between two registered models, read from their signatures."""
    from mlflow.models import get_model_info

    served = input_columns(get_model_info(served_uri).signature)
    shadow = input_columns(get_model_info(shadow_uri).signature)
    return schema_differences(served, shadow)

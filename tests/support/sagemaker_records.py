"""Captures as SageMaker writes them, for tests: moto's endpoints write none.

The record itself is `backends.sagemaker.formats.capture_record` (the backend writes it
too, for batch predictions); this says where SageMaker puts the files of a variant.
"""

from __future__ import annotations

from datetime import datetime

from backends.sagemaker import formats
from backends.sagemaker.formats import capture_record

__all__ = ["capture_key", "capture_record"]


def capture_key(
    prefix: str,
    endpoint: str,
    version: str,
    when: datetime,
    name: str,
    role: str = formats.SERVED,
) -> str:
    """Where SageMaker writes a capture file of `version` in `role`:
    `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<name>.jsonl`."""
    variant = formats.variant_name(role, version)
    return formats.capture_key(prefix, endpoint, variant, when, name)

"""The SageMaker backend's settings (the config's `backend:` section), checked once.

Refused with a message naming the key under `backend.`: an unset `${VAR}`, an unknown
key (with the nearest valid name), a missing required one, a wrong type, an endpoint
name SageMaker would refuse, a URI that is not `s3://bucket/prefix`, a count below 1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backends.base import SettingsError, load_backend_settings
from common.settings_loader import require_positive_integers

REQUIRED = ("target", "data_capture_uri", "ground_truth_uri", "region")
# SageMaker resource names: at most 63 letters, digits and inner hyphens.
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class SagemakerSettings:
    """See the `backends.sagemaker` module doc for what each setting means."""

    module: str | None = None  # The backend selector, read by the pipelines.
    target: str = ""
    data_capture_uri: str = ""
    ground_truth_uri: str = ""
    region: str = ""
    assume_role: str | None = None
    execution_role: str | None = None
    image: str | None = None
    model_artifacts_uri: str | None = None
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    wait_seconds: int = 1800

    def __post_init__(self) -> None:
        absent = [key for key in REQUIRED if not getattr(self, key)]
        if absent:
            raise SettingsError(
                f"backend.{absent[0]}: missing; the SageMaker backend needs "
                f"{', '.join('backend.' + key for key in absent)} in the config "
                "(see config/sagemaker.yml)."
            )
        if not _NAME.fullmatch(self.target):  # `$` alone would let a final newline in
            raise SettingsError(
                f"backend.target: {self.target!r} is not a valid endpoint name: up to 63 "
                "letters, digits and hyphens, starting with a letter or digit."
            )
        require_positive_integers(self, "instance_count", "wait_seconds")
        # Each URI is checked now, not at the first AWS call that needs it.
        for key in ("data_capture_uri", "ground_truth_uri", "model_artifacts_uri"):
            if getattr(self, key) is not None:
                split_s3_uri(getattr(self, key), key)

    @property
    def endpoint(self) -> str:
        return self.target

    @property
    def capture_location(self) -> tuple[str, str]:
        """(bucket, prefix) of `data_capture_uri`."""
        return split_s3_uri(self.data_capture_uri, "data_capture_uri")

    @property
    def truth_location(self) -> tuple[str, str]:
        """(bucket, prefix) of `ground_truth_uri`."""
        return split_s3_uri(self.ground_truth_uri, "ground_truth_uri")

    @property
    def artifacts_location(self) -> tuple[str, str]:
        """(bucket, prefix) of `model_artifacts_uri`; default `models/` in the capture bucket."""
        if self.model_artifacts_uri:
            return split_s3_uri(self.model_artifacts_uri, "model_artifacts_uri")
        return self.capture_location[0], "models"


def parse_settings(config: Mapping[str, Any] | None) -> SagemakerSettings:
    """The checked settings of `config` (the `backend:` section); SettingsError otherwise."""
    from common.config import unexpanded_placeholders

    config = dict(config or {})
    missing = sorted(set(unexpanded_placeholders(config)))
    if missing:
        raise SettingsError(
            f"The SageMaker settings use {', '.join('${' + n + '}' for n in missing)}, "
            f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            f"Export {'it' if len(missing) == 1 else 'them'} (e.g. `export "
            f"{missing[0]}=...`) or write the value into the config file."
        )
    # `${SAGEMAKER_ROLE:-}` expands to "" and a bare `region:` is null: both mean unset.
    config = {key: value for key, value in config.items() if value not in ("", None)}
    return load_backend_settings(SagemakerSettings, config)


def split_s3_uri(uri: str, key: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> ("bucket", "some/prefix"); SettingsError otherwise."""
    if not uri.startswith("s3://") or not uri[len("s3://") :].partition("/")[0]:
        raise SettingsError(
            f"backend.{key}: {uri!r} is not an S3 URI: it must look like s3://bucket/prefix."
        )
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")

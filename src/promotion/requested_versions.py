"""Which registered versions a deployment request names: the one to serve and its shadow.

`--model-version` and `--shadow` take a version number, an alias (`champion`,
`previous`, `challenger`) or nothing; a name that matches no version fails with the
list of what is registered, and a shadow must be another version that takes the
served model's inputs (`promotion.compatibility`), all before anything serves.
"""

from __future__ import annotations

from typing import Any

from common.registry import CHAMPION, equals_filter, model_uri, resolve_version
from promotion.compatibility import registered_input_differences
from promotion.errors import PromotionError

NEWEST = (None, "", "latest")  # what `--model-version` says when it names no version


def available_versions(client: Any, name: str) -> str:
    """The versions and aliases of `name`, for messages: `1, 2, 3 (aliases: champion=3)`."""
    versions = sorted(
        int(v.version) for v in client.search_model_versions(equals_filter("name", name))
    )
    if not versions:
        return "none: no version is registered"
    aliases = getattr(client.get_registered_model(name), "aliases", None) or {}
    listed = ", ".join(map(str, versions))
    if aliases:
        named = ", ".join(f"{alias}={version}" for alias, version in sorted(aliases.items()))
        listed += f" (aliases: {named})"
    return listed


def requested_to_serve(
    model_version: str | None, shadow: str | None, champion: str | None, name: str
) -> str | None:
    """What `--model-version` asks for; with only `--shadow`, the champion keeps serving."""
    if shadow and model_version in NEWEST:
        if champion is None:
            raise PromotionError(
                f"--shadow {shadow}: no champion of model {name!r} serves to shadow. Deploy "
                "one first, or name the version to serve with --model-version."
            )
        return CHAMPION
    return model_version


def resolve_requested(client: Any, name: str, requested: str | None, option: str) -> str:
    """The version `requested` names; a message listing what exists if none."""
    try:
        return resolve_version(client, name, requested)
    except LookupError as error:
        raise PromotionError(
            f"{option} {requested}: {error} Registered versions of {name!r}: "
            f"{available_versions(client, name)}."
        ) from None


def resolve_shadow(client: Any, name: str, shadow: str | None, served: str) -> str | None:
    """The `--shadow` version (None without one), once it exists and takes `served`'s inputs."""
    if not shadow:
        return None
    version = resolve_requested(client, name, shadow, "--shadow")
    if version == served:
        raise PromotionError(
            f"--shadow {shadow}: version {version} is the one being served; a model "
            "cannot shadow itself. Name another version (e.g. --shadow challenger)."
        )
    differences = registered_input_differences(model_uri(name, served), model_uri(name, version))
    if differences:
        raise PromotionError(
            f"--shadow {shadow}: version {version} does not take the inputs version "
            f"{served} takes: {'; '.join(differences)}. A shadow scores the served "
            "model's requests: shadow a version trained on the same features."
        )
    return version

"""A run's settings from what a Python caller has at hand: a YAML path, a dict or a
RunConfig, then overrides in the CLI's dotted keys, validated by the same code as
`--set` so every mistake is the CLI's one-line ClipAdaptError."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path

from clipadapt.config import RunConfig, read_config_file, validate_overridden
from clipadapt.errors import ClipAdaptError


def raw_settings(config) -> tuple[dict, str]:
    """(the raw settings, what to call them in an error) of a YAML path, a dict or a
    RunConfig; None: every default."""
    if config is None:
        return {}, "settings"
    if isinstance(config, RunConfig):
        return config.model_dump(mode="json"), "config"
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), "config"
    if isinstance(config, (str, os.PathLike)):
        return read_config_file(config), str(config)
    raise ClipAdaptError(f"config is a {type(config).__name__}; give a YAML file path, a dict or a RunConfig.")


def as_override_texts(overrides=None, keywords: Mapping | None = None) -> list[str]:
    """The CLI's `key=value` texts for `overrides` (a list of such texts, or a mapping
    {dotted key: value}) and `keywords` (`train__epochs=3`: a double underscore for each dot)."""
    if overrides is None:
        texts = []
    elif isinstance(overrides, str):
        texts = [overrides]
    elif isinstance(overrides, Mapping):
        texts = [_text(key, value) for key, value in overrides.items()]
    else:
        texts = [str(text) for text in overrides]
    return texts + [_text(key.replace("__", "."), value) for key, value in (keywords or {}).items()]


def _text(key: str, value) -> str:
    """key=value with the value written as YAML reads it back (JSON is YAML's flow style)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return f"{key}={json.dumps(value, default=str)}"


def resolve_config(config, overrides=None, keywords: Mapping | None = None) -> RunConfig:
    """The validated RunConfig of `config` with `overrides` and `keywords` applied."""
    raw, source = raw_settings(config)
    return validate_overridden(raw, as_override_texts(overrides, keywords), source=source)


def config_folder(config) -> Path | None:
    """The folder of a config file (an adapt run finds its descriptions file beside it)."""
    return Path(config).expanduser().resolve().parent if isinstance(config, (str, os.PathLike)) else None

"""Adaptation methods, registered by name (`METHODS`); add your own with `register_method`."""

from clipadapt.methods import clip_adapter, coop, linear_probe, majority, mhadapter, microclip, promptpar, zeroshot  # noqa: F401
from clipadapt.methods.base import METHODS, FeatureNeeds, Method, MethodParams, register_method


def build_method(name: str, backbone, task, params: dict | None = None) -> Method:
    """Instantiate method `name` with validated params; a method refused on the
    backbone's family (`backbone/families.py`) is one clear error, before any work."""
    from clipadapt.backbone.families import check_method

    cls = METHODS.get(name)
    check_method(name, backbone)
    return cls(backbone, task, cls.parse_params(params or {}))


def describe_methods() -> list[str]:
    """One line per method: what it is, and its params (`method.params.*`)."""
    lines = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        params = f"; params: {', '.join(cls.Params.model_fields)}" if cls.Params.model_fields else ""
        lines.append(f"{name}: {cls.summary or 'registered by you'}{params}")
    return lines


__all__ = ["METHODS", "FeatureNeeds", "Method", "MethodParams", "build_method", "describe_methods", "register_method"]

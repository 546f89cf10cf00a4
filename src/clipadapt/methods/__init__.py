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


__all__ = ["METHODS", "FeatureNeeds", "Method", "MethodParams", "build_method", "register_method"]

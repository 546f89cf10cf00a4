"""Adaptation methods, registered by name (`METHODS`); add your own with `register_method`."""

from clipadapt.methods import clip_adapter, coop, linear_probe, majority, mhadapter, microclip, promptpar, zeroshot  # noqa: F401
from clipadapt.methods import tip_adapter  # noqa: F401  (tip_adapter, tip_adapter_f)
from clipadapt.errors import ClipAdaptError
from clipadapt.methods.base import METHODS, FeatureNeeds, Method, MethodParams, register_method


def build_method(name: str, backbone, task, params: dict | None = None) -> Method:
    """Instantiate method `name` with validated params; a method refused on the
    backbone's family (`Method.refused_families`) is one clear error, before any work,
    naming the methods that do run there."""
    cls = METHODS.get(name)
    try:
        cls.check_backbone(backbone)
    except ClipAdaptError as exc:
        family = getattr(backbone, "family", "clip")
        runs = [m for m in METHODS.names() if family not in METHODS.get(m).refused_families]
        raise ClipAdaptError(f"{exc} Or one of {', '.join(runs)} on this one.") from None
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

"""Checks of a run config that need more than its schema: names that must exist in a
registry (method, data format, backbone), the method's params, the format's data.*
settings (each format checks its own) and values that must fit the backbone (attention
heads, tap block). They run when the config is loaded, so a
mistake is reported before any data is read, any model built or any file written.
"""

from __future__ import annotations

from typing import Any

from clipadapt.errors import ClipAdaptError


def check_settings(cfg, source: str) -> None:
    """Raise one ClipAdaptError listing every problem found (each naming its key and the fix)."""
    problems: list[str] = []
    for check in (_check_format, _check_method, _check_backbone_fit):
        try:
            check(cfg)
        except ClipAdaptError as exc:
            problems.append(str(exc))
    if problems:
        raise ClipAdaptError(f"Invalid {source}: " + "; ".join(problems))


def _check_format(cfg) -> None:
    """The format's name (from the index, importing no reader), then its own check of its
    data.* settings (which imports that one format)."""
    from clipadapt.format_index import DATA_FORMATS, check_data_settings

    if cfg.data.format not in DATA_FORMATS:
        _unknown("data.format", cfg.data.format, DATA_FORMATS.names())
    check_data_settings(cfg.data)


def _check_method(cfg) -> None:
    from clipadapt.methods import METHODS

    if cfg.method.name not in METHODS:
        _unknown("method.name", cfg.method.name, METHODS.names())
    cls = METHODS.get(cfg.method.name)
    known = list(cls.Params.model_fields)
    for key in cfg.method.params:
        if key not in known:
            from clipadapt.suggest import did_you_mean

            hint = did_you_mean(key, known) or f" Known params: {', '.join(known) or 'none'}."
            raise ClipAdaptError(f"unknown key 'method.params.{key}' for method '{cls.name}'.{hint}")
    try:
        cls.parse_params(cfg.method.params)  # ranges (blend weights in [0, 1] ...), with the method named
    except ClipAdaptError as exc:
        raise ClipAdaptError(str(exc).replace("Value error, ", "")) from None


def _check_backbone_fit(cfg) -> None:
    """Method params that must agree with the backbone's shape, read from its architecture
    file (no weights are loaded): the tap block here, the rest by the method itself
    (`Method.check_backbone_fit`, e.g. CLIP-MHAdapter's heads)."""
    from clipadapt.backbone.hf_transformers import AUTO_NAME

    name = cfg.backbone.name
    if name.startswith("hf-hub:") or name == AUTO_NAME:
        return  # its architecture is only known once downloaded, or read from the transformers folder
    import open_clip

    from clipadapt.backbone.factory import list_backbones
    from clipadapt.methods import METHODS

    known = list_backbones()
    if name not in known:
        _unknown("backbone.name", name, known)
    arch = open_clip.get_model_config(name) or {}
    layers = (arch.get("vision_cfg") or {}).get("layers")
    params = cfg.method.params
    if cfg.method.name in METHODS:  # an unknown name is _check_method's to report
        METHODS.get(cfg.method.name).check_backbone_fit(params, arch, name)
    tap = params.get("tap_block")
    if isinstance(tap, int) and layers and not 1 <= tap <= layers:
        raise ClipAdaptError(f"method.params.tap_block={tap}, but backbone '{name}' has blocks 1..{layers}")


def _unknown(key: str, value: Any, known: list[str]) -> None:
    from clipadapt.suggest import did_you_mean

    hint = did_you_mean(str(value), known)
    listed = "" if hint or len(known) > 30 else f" Known: {', '.join(known)}."
    raise ClipAdaptError(f"{key} '{value}' does not exist.{hint}{listed}")

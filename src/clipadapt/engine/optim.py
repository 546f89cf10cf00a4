"""Optimisers over a method's trainable parameters, and their state as safetensors."""

from __future__ import annotations

import torch

from clipadapt.config import TrainConfig
from clipadapt.errors import ClipAdaptError


def build_optimizer(method, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; parameters the method names in no_weight_decay() get none, and those
    it gives options (param_group_options: lr_scale, warmup_epochs) get their own group."""
    no_wd = method.no_weight_decay()
    grouped: dict[tuple, list] = {}
    for name, p in method.named_parameters():
        if p.requires_grad:
            options = method.param_group_options(name)
            key = (name in no_wd, tuple(sorted(options.items())))
            grouped.setdefault(key, []).append(p)
    if not grouped:
        raise ClipAdaptError(f"Method '{method.name}' has no trainable parameters; set train.epochs=0 or pick another method.")
    groups = [{"params": params, "weight_decay": 0.0 if plain else cfg.weight_decay, **dict(options)}
              for (plain, options), params in grouped.items()]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON metadata."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of optimizer_state."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

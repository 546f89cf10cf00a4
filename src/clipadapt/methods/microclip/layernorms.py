"""microCLIP's own LayerNorms: it trains every LayerNorm of the image tower (SPEC 3), but the
backbone may be shared with other methods (the demo, tests, a caller's loop, other threads),
so it never changes the backbone's parameters, their requires_grad flags or any module state
during a pass. It holds trainable copies of the norms and runs them instead of the
backbone's within `applied()`.

How: each backbone LayerNorm gets, once, a forward hook (`_own_norm`) that reads a context
variable; `applied()` sets that variable, for the calling thread (and asyncio task) only, to
the table {backbone norm: this method's copy}, and the hook returns the copy's output in
place of the norm's. Another thread, or another method on the same backbone, sees its own
table or none, so passes run side by side (tests/test_thread_safety.py). Outside any
`applied()` the hook returns None: the backbone's own output, unchanged.
"""

from __future__ import annotations

import copy
import threading
import weakref
from contextlib import contextmanager
from contextvars import ContextVar

from torch import nn

from clipadapt.errors import ClipAdaptError

# the norms the running pass replaces: {backbone LayerNorm: its copy}, per thread / task
_REPLACED: ContextVar[dict | None] = ContextVar("clipadapt_microclip_layernorms", default=None)
_HOOKED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()  # backbone norms that carry `_own_norm`
_HOOKING = threading.Lock()


def _own_norm(module: nn.Module, args: tuple, output):
    """Forward hook of a backbone LayerNorm: the copy's output when the running pass replaces
    this norm (inside some `OwnedLayerNorms.applied()` of this thread), else None (its own)."""
    replaced = _REPLACED.get()
    copy_ = replaced.get(module) if replaced else None
    return None if copy_ is None else copy_(*args)


def _hook_once(module: nn.Module) -> None:
    """Give a backbone LayerNorm the `_own_norm` hook, once however many methods share it."""
    with _HOOKING:
        if module not in _HOOKED:
            module.register_forward_hook(_own_norm)
            _HOOKED.add(module)


def layernorm_parameters(backbone) -> dict[str, nn.Parameter]:
    """Every LayerNorm parameter of the image tower (CLIP: ln_pre, ln_1 / ln_2 of each block,
    ln_post; timm towers: their norms, EVA's inner norms, SigLIP's pool norm), keyed by its
    name under the backbone module. Found by module type (`backbone.image_layernorms`)."""
    params = {}
    for prefix, module in backbone.image_layernorms().items():
        for name, p in module.named_parameters(recurse=False):
            params[f"{prefix}.{name}"] = p
    if not params:
        raise ClipAdaptError(f"Backbone '{backbone.name}' has no LayerNorm in its image tower; microCLIP trains them. "
                             "Set method.params.train_layernorms: false.")
    return params


class OwnedLayerNorms(nn.Module):
    """Trainable copies of the image tower's LayerNorms, under the same names as in the
    backbone (`model.visual....ln_1.weight` here is the copy of the backbone's
    `model.visual....ln_1.weight`), run in place of the backbone's within `applied()`."""

    def __init__(self, backbone):
        super().__init__()
        layernorm_parameters(backbone)  # one clear error for a tower without LayerNorms
        # {backbone norm: its copy}; a plain dict, so the backbone's modules are not registered
        # here (`.to()` moves the copies in place: the same module objects stay in the table)
        self._table = {}
        for path, module in backbone.image_layernorms().items():
            own = _copy_of(module)
            parent, _, name = path.rpartition(".")
            self._container(parent).add_module(name, own)
            self._table[module] = own
            _hook_once(module)

    def _container(self, path: str) -> nn.Module:
        """The (empty) submodule at dotted `path`, made on the way."""
        node: nn.Module = self
        for part in filter(None, path.split(".")):
            if part not in node._modules:
                node.add_module(part, nn.Module())
            node = node._modules[part]
        return node

    @contextmanager
    def applied(self):
        """Within (this thread / task only): the backbone's LayerNorms compute with these
        copies. Re-entrant; nothing is written to the backbone, so nothing needs putting back."""
        token = _REPLACED.set(self._table)
        try:
            yield
        finally:
            _REPLACED.reset(token)


def _copy_of(module: nn.Module) -> nn.Module:
    """A trainable copy of a backbone LayerNorm: the same class (so the same arithmetic, dtype
    casts included) with parameters of its own. It may carry the backbone norm's `_own_norm`
    hook (a second microCLIP on one backbone); that hook returns None for it: no table has
    the copy as a key."""
    return copy.deepcopy(module).requires_grad_(True)

"""microCLIP's own LayerNorms: it trains every LayerNorm of the image tower (SPEC 3), but the
backbone may be shared with other methods (the demo, tests, a caller's loop), so it never
changes the backbone's parameters or their requires_grad flags. It holds trainable copies
and puts them in place of the backbone's only while one of its own passes runs.

Not thread-safe: two passes of different methods on one backbone at the same time would
see each other's swap (the server runs one prediction at a time).
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from clipadapt.errors import ClipAdaptError


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
    """Trainable copies of the image tower's LayerNorm parameters, under the same names as
    in the backbone (`model.visual....ln_1.weight` here is the copy of the backbone's
    `model.visual....ln_1.weight`), swapped into the backbone by `applied()`."""

    def __init__(self, backbone):
        super().__init__()
        found = layernorm_parameters(backbone)
        modules = dict(backbone.named_modules())
        # (backbone module, its copy's container, attribute); a plain list, so the backbone's
        # modules are not registered here (the copy is read at each swap: `.to()` may replace it)
        self._slots = []
        for name, original in found.items():
            path, attr = name.rsplit(".", 1)
            container = self._container(path)
            container.register_parameter(attr, nn.Parameter(original.detach().clone()))
            self._slots.append((modules[path], container, attr))
        self._depth = 0

    def _container(self, path: str) -> nn.Module:
        """The (empty) submodule at dotted `path`, made on the way."""
        node: nn.Module = self
        for part in path.split("."):
            if part not in node._modules:
                node.add_module(part, nn.Module())
            node = node._modules[part]
        return node

    @contextmanager
    def applied(self):
        """Within: the backbone's LayerNorms hold these copies (re-entrant); the backbone's
        own parameters are put back after, also on an error."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        saved = []
        try:
            for module, container, attr in self._slots:
                saved.append((module, attr, module._parameters[attr]))
                module._parameters[attr] = container._parameters[attr]
            self._depth = 1
            yield
        finally:
            self._depth = 0
            for module, attr, original in reversed(saved):
                module._parameters[attr] = original

"""A trained run scoring another class list: cross-data-set transfer, base-to-novel, and
ImageNet's classifier on the 200 classes of ImageNet-A / -R.

A method whose classifier comes from the class names and holds nothing trained per class
(`Method.scores_any_classes`: zeroshot, coop, clip_adapter, mhadapter) is rebuilt for the
data's classes: the same trained tensors, its text side encoded from the data's class
names and prompt template. A method with a trained row per class (linear_probe, majority)
scores a subset of its own classes (its rows for those classes only) and nothing else.
"""

from __future__ import annotations

import torch

from clipadapt.engine.checkpoint import load_state_strict
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import Method, build_method
from clipadapt.task import TaskSpec

TEXT_METHODS = "zeroshot, coop, clip_adapter, mhadapter"  # the shipped methods with scores_any_classes


def method_for_classes(method: Method, data_task: TaskSpec, source: str) -> tuple[Method, list[str]]:
    """`method` (a loaded run) made to score `data_task`'s classes, and notes saying how
    (empty when the class lists are the run's own). The attributes must be the run's."""
    own = method.task
    if own.names != data_task.names or own.multilabel != data_task.multilabel:
        raise ClipAdaptError(
            f"{source} predicts attributes {own.names}, but the data has {data_task.names}. "
            "Evaluate on data with the same label columns (a benchmark data set's attribute is 'class').")
    changed = [(mine, theirs) for mine, theirs in zip(own.attributes, data_task.attributes)
               if list(mine.classes) != list(theirs.classes)]
    if not changed:
        return method, []
    described = "; ".join(f"{theirs.name}: {theirs.num_classes} classes (trained on {mine.num_classes})"
                          for mine, theirs in changed)
    if type(method).scores_any_classes:
        rebuilt = build_method(method.name, method.backbone, data_task, method.params.model_dump())
        load_state_strict(rebuilt, method.trained_state(), source=source)
        notes = [f"scored with the data's class list ({described}): {method.name}'s text side was rebuilt from "
                 "the data's class names and prompts, its trained tensors kept."]
        return rebuilt.to(next(method.backbone.parameters()).device).eval(), notes
    columns = []
    for mine, theirs in zip(own.attributes, data_task.attributes):
        unknown = [c for c in theirs.classes if c not in mine.classes]
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            raise ClipAdaptError(
                f"{source}: method '{method.name}' has a trained output per class, so it scores only the classes "
                f"it was trained on; the data's '{theirs.name}' has {len(unknown)} other(s): {shown}. Methods whose "
                f"classifier comes from the class names ({TEXT_METHODS}) can be evaluated on other classes.")
        columns.append([mine.classes.index(c) for c in theirs.classes])
    notes = [f"scored with the data's class list ({described}): {method.name}'s outputs for those classes only."]
    return ClassSubsetView(method, data_task, columns), notes


class ClassSubsetView(Method):
    """A run's method with its outputs restricted to some of its classes, in the data's
    order (a softmax over those classes only). Not registered: built by `method_for_classes`."""

    def __init__(self, inner: Method, task: TaskSpec, columns: list[list[int]]):
        super().__init__(inner.backbone, task, inner.params)
        self.name = inner.name
        self.inner = inner
        self.trains = False
        for a, cols in enumerate(columns):
            self.register_buffer(f"columns_{a}", torch.tensor(cols, dtype=torch.long), persistent=False)

    def needs(self):
        return self.inner.needs()

    def _select(self, logits: list[torch.Tensor]) -> list[torch.Tensor]:
        return [lg.index_select(1, getattr(self, f"columns_{a}")) for a, lg in enumerate(logits)]

    # the inner method's calibrated outputs (its temperature applied), restricted; this view's
    # own temperature stays 1
    def logits(self, features):
        return self._select(self.inner(features))

    def image_logits(self, images):
        return self._select(self.inner.forward_images(images))

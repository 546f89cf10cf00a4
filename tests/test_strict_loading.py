"""One strict weight loader (`backbone.weights.load_strict`): a backbone's weights file and a
method's checkpoint are refused with the same wording (what is missing, unexpected, mis-shaped)."""

from __future__ import annotations

import pytest
import torch

from clipadapt.backbone.weights import load_strict
from clipadapt.engine.checkpoint import load_state_strict
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.task import Attribute, TaskSpec


def test_a_method_and_a_backbone_are_refused_in_the_same_words(micro_backbone):
    method = build_method("linear_probe", micro_backbone, TaskSpec((Attribute("weather", ("clear", "foggy")),)), {})
    state = method.trained_state()
    dropped = sorted(k for k in state if k != "temperature")[0]
    partial = {k: v for k, v in state.items() if k != dropped}
    with pytest.raises(ClipAdaptError, match=rf"Weights run/x do not fit method 'linear_probe' on backbone "
                                             rf"'clipadapt-micro': 1 missing keys \(e.g. \['{dropped}'\]\)\. It was trained"):
        load_state_strict(method, partial, source="run/x")
    whole = micro_backbone.model.state_dict()
    grown = {**whole, "extra": torch.ones(1)}
    with pytest.raises(ClipAdaptError, match=r"Weights w\.pt do not fit model 'clipadapt-micro': 1 unexpected keys "
                                             r"\(e\.g\. \['extra'\]\)\. Check that backbone\.name"):
        load_strict(micro_backbone.model, grown, source="w.pt", what="model 'clipadapt-micro'")
    before = {k: v.clone() for k, v in whole.items()}
    load_strict(micro_backbone.model, before, source="w.pt", what="model 'clipadapt-micro'")  # fits: loads, no error

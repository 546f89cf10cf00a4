"""Method math: parameter counts, blends, prompts, the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipadapt.backbone import ImageFeatures, create_backbone
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import METHODS, Method, build_method, register_method
from clipadapt.task import TaskSpec


def features(backbone, batch=4):
    return ImageFeatures(torch.randn(batch, backbone.num_patches, backbone.width), torch.randn(batch, backbone.embed_dim))


@pytest.fixture(scope="module")
def vit_b16():
    return create_backbone("ViT-B-16", None)


@pytest.mark.parametrize("heads", [4, 8, 16])
def test_mhadapter_has_1380096_parameters_on_vit_b16_for_any_heads(vit_b16, weather_task, heads):
    method = build_method("mhadapter", vit_b16, weather_task, {"heads": heads})
    assert method.num_trainable() == 1_380_096
    assert method.needs().tap_block == 11  # output of block L-1 of 12


def test_clip_adapter_has_131072_parameters_on_vit_b16(vit_b16, weather_task):
    assert build_method("clip_adapter", vit_b16, weather_task).num_trainable() == 131_072


def test_mhadapter_beta_zero_is_zero_shot_and_beta_one_ignores_clip(micro_backbone, weather_task):
    feats = features(micro_backbone)
    zs = build_method("zeroshot", micro_backbone, weather_task)(feats)[0]
    m0 = build_method("mhadapter", micro_backbone, weather_task, {"beta": 0.0}).eval()
    assert torch.allclose(m0(feats)[0], zs, atol=1e-5)
    m1 = build_method("mhadapter", micro_backbone, weather_task, {"beta": 1.0}).eval()
    other = ImageFeatures(feats.tokens, torch.randn_like(feats.embedding))
    assert torch.allclose(m1(feats)[0], m1(other)[0], atol=1e-5)


def test_mhadapter_attention_rows_are_distributions(micro_backbone, weather_task):
    method = build_method("mhadapter", micro_backbone, weather_task, {"heads": 4}).eval()
    attn = method.attention_maps(features(micro_backbone, 2))[0]
    assert attn.shape == (2, 4, micro_backbone.num_patches, micro_backbone.num_patches)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, micro_backbone.num_patches), atol=1e-5)


def test_mhadapter_per_attribute_settings(micro_backbone, two_attribute_task):
    method = build_method("mhadapter", micro_backbone, two_attribute_task,
                          {"beta": {"weather": 0.2, "glare": 0.8}, "heads": {"weather": 8, "glare": 2}})
    assert method.betas == [0.2, 0.8]
    assert [a.attn.num_heads for a in method.adapters] == [8, 2]
    logits = method(features(micro_backbone))
    assert [lg.shape[1] for lg in logits] == [5, 2]


def test_zero_shot_logits_are_scaled_cosines(micro_backbone, weather_task):
    feats = features(micro_backbone)
    text = micro_backbone.encode_text(weather_task.attributes[0].prompts())
    expected = micro_backbone.logit_scale * F.normalize(feats.embedding, dim=-1) @ text.t()
    assert torch.allclose(build_method("zeroshot", micro_backbone, weather_task)(feats)[0], expected, atol=1e-5)


def test_coop_context_gets_gradient_and_changes_text_features(micro_backbone, weather_task):
    method = build_method("coop", micro_backbone, weather_task, {"n_ctx": 4})
    loss = method(features(micro_backbone))[0].logsumexp(-1).mean()
    loss.backward()
    assert method.contexts[0].grad is not None and method.contexts[0].grad.abs().sum() > 0
    before = method.class_text_features(0).detach().clone()
    with torch.no_grad():
        method.contexts[0].add_(1.0)
    assert not torch.allclose(before, method.class_text_features(0))
    assert all(not p.requires_grad for p in micro_backbone.parameters())


def test_majority_predicts_the_most_frequent_class_per_attribute(micro_backbone, two_attribute_task):
    method = build_method("majority", micro_backbone, two_attribute_task)
    labels = torch.tensor([[3, 1], [3, -1], [0, 1], [-1, 0]])
    method.fit_statistics(labels)
    logits = method(features(micro_backbone, 3))
    assert logits[0].argmax(1).tolist() == [3, 3, 3]
    assert logits[1].argmax(1).tolist() == [1, 1, 1]


def test_trained_state_holds_no_frozen_backbone_weights(micro_backbone, weather_task):
    method = build_method("mhadapter", micro_backbone, weather_task)
    keys = set(method.trained_state())
    assert keys and not any(k.startswith("backbone.") for k in keys)
    assert sum(method.trained_state()[k].numel() for k in keys) == method.num_trainable()


def test_unknown_method_and_bad_params_are_clear(micro_backbone, weather_task):
    with pytest.raises(ClipAdaptError, match="Did you mean 'mhadapter'"):
        build_method("mhadaptor", micro_backbone, weather_task)
    with pytest.raises(ClipAdaptError, match="beta must be in"):
        build_method("mhadapter", micro_backbone, weather_task, {"beta": 1.5})
    with pytest.raises(ClipAdaptError, match="Known params"):
        build_method("mhadapter", micro_backbone, weather_task, {"head": 4})


def test_methods_can_be_registered_from_outside(micro_backbone, weather_task):
    @register_method("test_constant")
    class Constant(Method):
        trains = False

        def forward(self, features):
            return [torch.zeros(features.embedding.shape[0], a.num_classes) for a in self.task.attributes]

    try:
        assert isinstance(build_method("test_constant", micro_backbone, weather_task), Constant)
    finally:
        METHODS._items.pop("test_constant")

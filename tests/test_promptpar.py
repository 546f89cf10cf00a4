"""PromptPAR: token layout, strips and mask, prompts, the authors' defects fixed, and the
trainable-parameter count of the paper's configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipadapt.backbone import create_backbone
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import build_method
from clipadapt.methods.promptpar import TokenLayout, region_attention_mask, strips_for_grid
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

SENTENCES = {"Hat": "A pedestrian wearing a hat", "Backpack": "A pedestrian wearing a backpack",
             "Female": "A woman or girl"}


def par_task(names=tuple(SENTENCES)) -> TaskSpec:
    return TaskSpec(tuple(Attribute(n, BINARY_CLASSES, template=SENTENCES.get(n, f"A pedestrian with {n}"))
                          for n in names), multilabel=True)


SMALL = {"fusion_width": 32, "fusion_heads": 4, "global_prompts": 2, "group_prompts": 2, "text_prompts": 2,
         "drop_path": 0.0}


@pytest.fixture(scope="module")
def model(micro_backbone):
    return build_method("promptpar", micro_backbone, par_task(), SMALL)


def test_strips_match_the_authors_for_16_rows_and_cover_any_grid():
    assert strips_for_grid(16, 4) == [(0, 4), (3, 8), (7, 12), (11, 15)]
    for rows in (4, 7, 14, 16, 24):
        strips = strips_for_grid(rows, 4)
        covered = set().union(*(range(a, b + 1) for a, b in strips))
        assert covered == set(range(rows))
        assert all(strips[k][0] <= strips[k + 1][0] and strips[k][1] <= strips[k + 1][1] for k in range(3))
    with pytest.raises(ValueError, match="cannot cut 3 patch rows into 4"):
        strips_for_grid(3, 4)


def test_layout_of_the_paper_is_311_tokens():
    layout = TokenLayout(global_prompts=10, groups=4, group_prompts=10, grid=(16, 16))
    assert layout.length == 311 and layout.prefix == 55
    assert layout.part_indices() == [11, 22, 33, 44]
    assert len(layout.prompt_indices()) == 50 and not set(layout.prompt_indices()) & set(layout.part_indices())


def test_mask_limits_parts_to_their_group_and_strip():
    layout = TokenLayout(global_prompts=2, groups=4, group_prompts=2, grid=(8, 8))
    mask = region_attention_mask(layout)
    open_ = mask == 0
    assert open_[0].all() and open_[1].all()  # CLS and a global prompt see everything
    assert open_[layout.prefix:].all()  # patches see everything
    first, last = strips_for_grid(8, 4)[1]
    part = layout.part_index(1)
    allowed = {part, *layout.group_prompt_indices(1), *layout.patch_indices_of_strip(first, last)}
    for row in (part, *layout.group_prompt_indices(1)):
        assert set(torch.nonzero(open_[row]).flatten().tolist()) == allowed


def test_masked_block_hides_patches_outside_the_strip(micro_backbone, model):
    """One real CLIP block with the mask: part token 0 changes when a patch of strip 0
    changes, and does not when a patch outside strip 0 changes."""
    layout = model.layout
    embedded = micro_backbone.embed(torch.randn(1, 3, 32, 32), ln_pre=False)
    seq = model.visual.inject(0, model.visual.sequence(embedded, micro_backbone.visual.ln_pre))
    mask = model.attn_mask
    first, last = strips_for_grid(layout.grid[0], layout.groups)[0]
    inside = layout.patch_indices_of_strip(first, last)[0]
    outside = layout.patch_indices_of_strip(layout.grid[0] - 1, layout.grid[0] - 1)[0]
    assert outside not in layout.patch_indices_of_strip(first, last)
    part = layout.part_index(0)
    base = micro_backbone.block(0, seq, attn_mask=mask)[0, part]
    for index, should_change in ((outside, False), (inside, True)):
        moved = seq.clone()
        moved[0, index] += 3.0 * torch.randn(moved.shape[-1])  # not a constant: ln_1 would remove it
        out = micro_backbone.block(0, moved, attn_mask=mask)[0, part]
        assert (not torch.allclose(out, base, atol=1e-6)) == should_change


def test_deep_prompts_replace_their_slots_at_every_block(model):
    x = torch.zeros(2, model.layout.length, model.backbone.width)
    for layer in range(model.backbone.num_blocks):
        out = model.visual.inject(layer, x)
        slots = model.layout.prompt_indices()
        assert torch.equal(out[:, slots], model.visual.prompts[layer].detach().expand(2, -1, -1))
        assert torch.equal(out[:, 0], x[:, 0])


def test_text_prompts_reach_the_text_features(model):
    """The authors' prompts sat after EOT and had zero gradient; ours act."""
    model.zero_grad()
    model.text_features().sum().backward()
    grad = model.text_prompts.context.grad
    assert grad is not None and grad.abs().sum(dim=(1, 2, 3)).gt(0).all()  # every text block's prompts


def test_aggregation_is_per_sample(model):
    """In eval mode each sample's aggregation ignores the rest of the batch (the authors
    broadcast the last sample's result to all)."""
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        tokens = model.encode_tokens(images)
        text = model.text_features()
        parts = tokens[:, model.layout.part_indices()]
        batch = model.aggregation(tokens[:, 0], parts, text)
        single = torch.cat([model.aggregation(tokens[i:i + 1, 0], parts[i:i + 1], text) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_outputs_are_two_class_logits_and_training_adds_the_aggregation_branch(model):
    images = torch.randn(4, 3, 32, 32)
    model.train()
    logits, extra = model.training_forward_images(images)
    assert len(logits) == 3 and logits[0].shape == (4, 2) and torch.all(logits[0][:, 0] == 0)
    assert len(extra) == 1 and extra[0][0] == 0.5
    model.eval()
    probs = torch.softmax(model.forward_images(images)[1], -1)
    assert torch.allclose(probs.sum(-1), torch.ones(4))


def test_switches_remove_their_parts(micro_backbone):
    plain = build_method("promptpar", micro_backbone, par_task(), {**SMALL, "regions": False, "text_prompts": 0})
    assert plain.attn_mask is None and plain.aggregation is None and plain.text_prompts is None
    assert plain.layout.groups == 0 and len(plain.layout.prompt_indices()) == 2 + 4 * 2
    none = build_method("promptpar", micro_backbone, par_task(), {**SMALL, "visual_prompts": False, "regions": False})
    assert none.layout.length == 1 + micro_backbone.num_patches


def test_fusion_block_is_frozen_but_its_layernorms_unless_asked(micro_backbone, model):
    trainable = {n for n, p in model.fusion.block.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("norm1.", "norm2.")) for n in trainable)
    whole = build_method("promptpar", micro_backbone, par_task(), {**SMALL, "fusion_trainable": True})
    assert all(p.requires_grad for p in whole.fusion.block.parameters())
    extra = sum(p.numel() for n, p in whole.fusion.block.named_parameters() if n not in trainable)
    assert whole.num_trainable() == model.num_trainable() + extra


def test_single_label_task_is_refused(micro_backbone, weather_task):
    with pytest.raises(ClipAdaptError, match="multi-label"):
        build_method("promptpar", micro_backbone, weather_task, SMALL)


def test_prompts_get_their_own_lr_and_warmup(model):
    from clipadapt.config import TrainConfig
    from clipadapt.engine.optim import build_optimizer
    from clipadapt.engine.schedule import set_epoch_lr

    cfg = TrainConfig(optimizer="sgd", lr=8e-3, warmup_epochs=5, warmup_lr=8e-5, epochs=100)
    opt = build_optimizer(model, cfg)
    set_epoch_lr(opt, 7, cfg)  # heads past their warm-up, prompts still in theirs (10 epochs)
    by_scale = {g.get("lr_scale", 1.0): g["lr"] for g in opt.param_groups}
    assert by_scale[1.0] == pytest.approx(8e-3 * 0.5 * (1 + np.cos(np.pi * 2 / 95)))
    assert by_scale[0.5] == pytest.approx(0.5 * (8e-5 + (8e-3 - 8e-5) * 7 / 10))


def test_paper_configuration_has_about_3_16m_trainable_parameters():
    """ViT-L/14, 26 PA100K attributes: the authors report about 3.16M."""
    backbone = create_backbone("ViT-L-14", None)
    names = [f"a{i}" for i in range(26)]
    model = build_method("promptpar", backbone, par_task(names), {})
    assert model.layout.length == 311
    assert model.num_trainable() == 3_157_635

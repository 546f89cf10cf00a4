"""The `microclip` Method (SPEC 3): what trains, how the heads start, what the forward scores,
the ablation switches, and the checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipadapt.backbone import create_backbone
from clipadapt.config import RunConfig
from clipadapt.engine.checkpoint import build_card, load_run, write_checkpoint
from clipadapt.engine.optim import build_optimizer
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import METHODS, build_method
from clipadapt.methods.microclip import MicroCLIP, layernorm_parameters, llm_head_row, template_embedding
from clipadapt.task import Attribute, TaskSpec

CLASSES = ("red crested finch", "spotted breast thrush", "yellow billed finch")
DESCRIPTIONS = {c: [f"a small bird, the {c}.", f"look for the marks of the {c}."] for c in CLASSES}


@pytest.fixture
def backbone():
    # fresh per test: some tests below stub its text encoder
    return create_backbone("clipadapt-micro", None)


@pytest.fixture
def task():
    return TaskSpec((Attribute("species", CLASSES, "a photo of a {}."),))


def micro_names(num_blocks: int = 2, prefix: str = "layernorms") -> set[str]:
    """microCLIP's own copies of the tower's LayerNorms (`prefix="backbone"`: the names the
    checkpoint keeps for them, those of the backbone tensors they stand for)."""
    lns = [f"{prefix}.model.visual.ln_pre", f"{prefix}.model.visual.ln_post"]
    lns += [f"{prefix}.model.visual.transformer.resblocks.{i}.{ln}" for i in range(num_blocks) for ln in ("ln_1", "ln_2")]
    return {f"{m}.{p}" for m in lns for p in ("weight", "bias")}


SOAP_NAMES = {f"fusion.soap.{n}.weight" for n in ("query_proj", "key_proj", "value_proj")}


def trainable(method) -> dict[str, torch.Tensor]:
    return {n: p for n, p in method.named_parameters() if p.requires_grad}


# --- what trains ---------------------------------------------------------------------------


def test_registered():
    assert METHODS.get("microclip") is MicroCLIP


def test_trainable_set_is_exactly_layernorms_soap_projections_and_head(backbone, task):
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS})
    names = set(trainable(method))
    assert names == micro_names() | SOAP_NAMES | {"head"}
    # clipadapt-micro: 6 LayerNorms of width 64, W_q/W_k/W_v 64 x 64, W* 3 x 32
    assert method.num_trainable() == 6 * 2 * 64 + 3 * 64 * 64 + 3 * 32 == 13_152
    # nothing of the backbone itself trains: microCLIP trains copies of its LayerNorms
    assert not any(p.requires_grad for p in method.backbone.parameters())
    # the checkpoint holds exactly the trained tensors (the text heads are derived buffers),
    # the LayerNorm copies under the backbone names they stand for
    assert set(method.trained_state()) == micro_names(prefix="backbone") | SOAP_NAMES | {"head"}
    assert {method.checkpoint_name(n) for n in names} == set(method.trained_state())


def test_vit_b32_has_about_40k_layernorm_parameters():
    bb = create_backbone("ViT-B-32", None)
    lns = layernorm_parameters(bb)
    assert len(lns) == 2 * (2 + 2 * 12)  # ln_pre, ln_post, ln_1 + ln_2 of 12 blocks; weight + bias each
    ln_count = sum(p.numel() for p in lns.values())
    assert ln_count == 26 * 2 * 768 == 39_936  # SPEC 3: "about 40K for ViT-B"
    two = TaskSpec((Attribute("species", CLASSES[:2]),))
    method = build_method("microclip", bb, two)
    assert method.num_trainable() == 39_936 + 3 * 768 * 768 + 2 * 512
    assert not any(p.requires_grad for p in lns.values())  # the backbone's own stay frozen
    assert set(layernorm_parameters(bb)) == {n[len("layernorms."):] for n, p in method.named_parameters()
                                             if n.startswith("layernorms.") and p.requires_grad}


def test_no_weight_decay_on_layernorms_and_identity_projections_only(backbone, task):
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS})
    assert method.no_weight_decay() == micro_names() | SOAP_NAMES
    cfg = RunConfig().train.model_copy(update={"weight_decay": 0.1})
    optimizer = build_optimizer(method, cfg)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    params = dict(method.named_parameters())
    assert by_decay[0.1] == {id(params["head"])}
    assert by_decay[0.0] == {id(params[n]) for n in micro_names() | SOAP_NAMES}


# --- the text heads ------------------------------------------------------------------------


def e(*values, dim=32):
    v = torch.zeros(dim)
    v[: len(values)] = torch.tensor(values, dtype=torch.float32)
    return v


def stub_text(backbone, monkeypatch, table: dict[str, torch.Tensor]):
    def encode_text(texts, normalise=True):
        feats = torch.stack([table[t] for t in texts])
        return F.normalize(feats, dim=-1) if normalise else feats

    monkeypatch.setattr(backbone, "encode_text", encode_text)


def test_heads_are_initialised_as_spec_says_hand_checked(backbone, monkeypatch):
    task = TaskSpec((Attribute("species", ("a", "b"), "unused {}"),))
    table = {
        # class a: template rows of norm 3 and 1 (the Frobenius defect would weigh the first 3x)
        "t1 a": e(3, 0), "t2 a": e(0, 1),
        "t1 b": e(0, 0, 2, 0), "t2 b": e(0, 0, 0, 5),
        "a one": e(1, 0), "a two": e(1.2, 1.6),  # unit [0.6, 0.8] after normalising
        "b one": e(0, 0, 1, 0),
    }
    stub_text(backbone, monkeypatch, table)
    params = {"templates": ["t1 {}", "t2 {}"], "descriptions": {"a": ["a one", "a two"], "b": ["b one"]}}
    method = build_method("microclip", backbone, task, params)
    r = 1 / math.sqrt(2)
    # t_k: row-normalised mean, normalised: a -> [1/sqrt2, 1/sqrt2], NOT the Frobenius [0.9487, 0.3162]
    assert torch.allclose(method.template_head[0], e(r, r), atol=1e-6)
    assert torch.allclose(method.template_head[1], e(0, 0, r, r), atol=1e-6)
    frobenius = F.normalize((torch.stack([e(3, 0), e(0, 1)]) / math.sqrt(10)).mean(0), dim=0)
    assert torch.allclose(frobenius, e(0.9486833, 0.3162278), atol=1e-6)  # what the authors' code gives
    assert not torch.allclose(method.template_head[0], frobenius, atol=1e-2)
    # W_LLM: w = cos(d, t) = (0.70711, 0.98995); normalise(sum w d / sum w) = [0.85420, 0.51995]
    assert torch.allclose(method.llm_head[0], e(0.8541986, 0.5199469), atol=1e-5)
    assert torch.allclose(method.llm_head[1], e(0, 0, 1, 0), atol=1e-6)
    # W* starts at the CuPL prototype normalise(mean d) = normalise([0.8, 0.4]) = [0.89443, 0.44721]
    assert torch.allclose(method.head.detach()[0], e(0.8944272, 0.4472136), atol=1e-6)
    assert torch.allclose(method.head.detach()[1], e(0, 0, 1, 0), atol=1e-6)
    assert torch.equal(method.description_head, method.head.detach())
    # other initialisations
    llm_init = build_method("microclip", backbone, task, {**params, "head_init": "llm"})
    assert torch.equal(llm_init.head.detach(), llm_init.llm_head)
    tpl_init = build_method("microclip", backbone, task, {**params, "head_init": "templates"})
    assert torch.equal(tpl_init.head.detach(), tpl_init.template_head)


def test_template_embedding_normalises_rows_not_the_matrix():
    rows = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[0.0, 10.0], [0.0, 0.1]]])
    t = template_embedding(rows)
    r = 1 / math.sqrt(2)
    assert torch.allclose(t, torch.tensor([[r, r], [0.0, 1.0]]), atol=1e-6)
    # invariant to the scale of any single template (the Frobenius version is not)
    scaled = rows.clone()
    scaled[0, 0] *= 100
    assert torch.allclose(template_embedding(scaled), t, atol=1e-6)


def test_llm_head_row_with_non_positive_weights_falls_back_to_the_mean():
    with pytest.warns(UserWarning, match="sum to <= 0"):
        row = llm_head_row(torch.tensor([[0.0, -1.0], [-1.0, 0.0]]), torch.tensor([1.0, 1.0]))
    r = 1 / math.sqrt(2)
    assert torch.allclose(row, torch.tensor([-r, -r]), atol=1e-6)  # the plain mean, not its flip


def test_descriptions_from_a_file_and_missing_classes(backbone, task, tmp_path):
    import json

    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({c.replace(" ", "_").title(): s for c, s in DESCRIPTIONS.items()}))
    from_file = build_method("microclip", backbone, task, {"descriptions": str(path)})
    inline = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS})
    assert torch.allclose(from_file.llm_head, inline.llm_head)
    path.write_text(json.dumps({CLASSES[0]: ["only one class"]}))
    with pytest.raises(ClipAdaptError, match="no descriptions for 2 of 3 classes"):
        build_method("microclip", backbone, task, {"descriptions": str(path)})
    with pytest.raises(ClipAdaptError, match="Invalid method.params"):
        build_method("microclip", backbone, task, {"templates": ["no slot here"]})


def test_without_descriptions_the_templates_describe_each_class(backbone, task):
    method = build_method("microclip", backbone, task, {"templates": ["a photo of a {}.", "a {}, a bird."]})
    assert torch.allclose(method.head.detach(), method.template_head, atol=1e-5)
    assert torch.allclose(method.llm_head, method.template_head, atol=1e-5)


# --- the image side ------------------------------------------------------------------------


def test_forward_scores_100_times_the_unnormalised_fusion_with_renormalised_head(backbone, task):
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS}).eval()
    with torch.no_grad():
        method.head.mul_(torch.tensor([[3.0], [0.5], [7.0]]))  # W* is re-normalised at every use
    images = torch.randn(3, 3, 32, 32)
    bb, visual = backbone, backbone.visual
    with torch.no_grad():
        x = bb.block(0, bb.embed(images))  # input of the last of 2 blocks
        cls_token = visual.ln_post(bb.block(1, x)[:, 0])
        c = F.normalize(cls_token @ visual.proj, dim=-1)
        assert torch.allclose(c, F.normalize(bb.forward_features(images).embedding, dim=-1), atol=1e-6)
        patches = visual.ln_post(bb.value_path_block(1, x))[:, 1:]
        f_hat = F.normalize(method.fusion.soap(patches).fg_token @ visual.proj, dim=-1)
        expected = 100 * (0.5 * c + 0.5 * f_hat) @ F.normalize(method.head, dim=-1).t()
        logits = method.forward_images(images)
        out = method.encode(images)
    assert len(logits) == 1 and logits[0].shape == (3, 3)
    assert torch.allclose(logits[0], expected, atol=1e-4)
    assert torch.allclose(out.fused, F.normalize(0.5 * c + 0.5 * f_hat, dim=-1), atol=1e-6)
    # forward(features) of forward_features(tap = last block's input) is the same function
    with torch.no_grad():
        feats = bb.forward_features(images, method.needs().tap_block)
        assert torch.allclose(method(feats)[0], logits[0], atol=1e-4)
    assert method.needs().frozen_image_path is False


def test_layernorms_and_soap_receive_gradient(backbone, task):
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS})
    loss = F.cross_entropy(method.forward_images(torch.randn(4, 3, 32, 32))[0], torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, p in trainable(method).items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ablation_switches(backbone, task):
    images = torch.randn(2, 3, 32, 32)
    plain = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS, "use_soap": False}).eval()
    assert set(trainable(plain)) == micro_names() | {"head"}
    with torch.no_grad():
        c = F.normalize(backbone.forward_features(images).embedding, dim=-1)
        assert torch.allclose(plain.forward_images(images)[0], 100 * c @ F.normalize(plain.head, dim=-1).t(), atol=1e-4)

    fixed = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS, "learnable_head": False})
    assert "head" not in trainable(fixed)

    cls_query = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS, "query": "cls"})
    assert cls_query.fusion.soap.query_source == "cls" and cls_query.forward_images(images)[0].shape == (2, 3)

    mean_pool = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS, "pooling": "mean"})
    assert set(trainable(mean_pool)) == micro_names() | {"head"}

    cls_only = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS, "fusion_ratio": 1.0}).eval()
    with torch.no_grad():
        assert torch.allclose(cls_only.forward_images(images)[0], 100 * c @ F.normalize(cls_only.head, dim=-1).t(),
                              atol=1e-4)

    frozen_ln = build_method("microclip", create_backbone("clipadapt-micro", None), task,
                             {"descriptions": DESCRIPTIONS, "train_layernorms": False})
    assert set(trainable(frozen_ln)) == SOAP_NAMES | {"head"}


def test_refuses_multilabel_and_multi_attribute_tasks(backbone, two_attribute_task):
    with pytest.raises(ClipAdaptError, match="one single-label attribute"):
        build_method("microclip", backbone, two_attribute_task)
    multilabel = TaskSpec((Attribute("hat", ("no", "yes"), "A pedestrian wearing a hat"),), multilabel=True)
    with pytest.raises(ClipAdaptError, match="one single-label attribute"):
        build_method("microclip", backbone, multilabel)


# --- checkpoint ----------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_equal_logits(backbone, task, tmp_path):
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS})
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # pretend training moved every trainable tensor
        for p in trainable(method).values():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    card = build_card(method, config=RunConfig(method={"name": "microclip"}).model_dump(mode="json"))
    write_checkpoint(tmp_path, method, card)
    loaded, loaded_card = load_run(tmp_path)
    assert loaded_card["method"] == "microclip" and loaded.backbone is not backbone
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.forward_images(images)[0], method.eval().forward_images(images)[0], atol=1e-5)
    for name, p in trainable(loaded).items():
        assert torch.equal(p.detach(), dict(method.named_parameters())[name].detach()), name
    # a fresh, untrained method gives other logits: the checkpoint carried the difference
    fresh = build_method("microclip", create_backbone("clipadapt-micro", None), task, {"descriptions": DESCRIPTIONS})
    with torch.no_grad():
        assert not torch.allclose(fresh.eval().forward_images(images)[0], loaded.forward_images(images)[0], atol=1e-3)


# --- one fusion path; a shared backbone stays as it was -------------------------------------


def test_both_call_sites_fuse_through_token_fusion(backbone, task):
    """encode() and forward(features) go through TokenFusion.fuse; with CLIP's matrix as
    projection TokenFusion.forward gives the very same numbers (torch.equal)."""
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS}).eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for p in method.layernorms.parameters():  # as if trained: every path must use the copies
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        with method.layernorms.applied():
            x = method.last_block_input(images)
            final = backbone.block(backbone.num_blocks - 1, x)
            cls_token = backbone.global_token(final)
            patches = backbone.dense_patches(x, final=final)
        by_matrix = method.fusion(patches, cls_token, backbone.visual.proj)
        encoded = method.encode(images)
        from_features = method(method.forward_features(images))[0]  # the fused image pass (fast.py)
        bare = method(backbone.forward_features(images, method.needs().tap_block))[0]  # the backbone's own norms
    assert torch.equal(encoded.mixed, by_matrix.mixed) and torch.equal(encoded.fused, by_matrix.fused)
    assert torch.equal(encoded.fg_embedding, by_matrix.fg_embedding)
    assert (from_features - method.class_logits(encoded.mixed)).abs().max() < 1e-4
    assert (bare - from_features).abs().max() > 1e-2  # so the line above compares what it should


def test_building_and_training_microclip_leaves_a_shared_backbone_as_it_was(backbone, task):
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in backbone.named_parameters()}
    method = build_method("microclip", backbone, task, {"descriptions": DESCRIPTIONS})
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1.0)
    F.cross_entropy(method.forward_images(torch.randn(4, 3, 32, 32))[0], torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    for name, p in backbone.named_parameters():
        assert p.requires_grad == before[name][1] and torch.equal(p.detach(), before[name][0]), name
    moved = method.layernorms.model.visual.ln_post.weight
    assert not torch.equal(moved.detach(), backbone.visual.ln_post.weight)  # the copy trained
    ln, own = backbone.visual.ln_post, method.layernorms.model.visual.ln_post
    x = torch.randn(2, ln.normalized_shape[0])
    with torch.no_grad():
        with method.layernorms.applied():  # and is what the backbone computes with in microCLIP's passes
            inside = ln(x)
        outside = ln(x)
        assert torch.equal(inside, F.layer_norm(x, ln.normalized_shape, moved, own.bias, ln.eps))
        assert torch.equal(outside, F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps))
    assert not torch.equal(inside, outside)


def test_a_method_built_after_microclip_on_the_same_backbone_saves_and_reloads_strictly(tmp_path):
    """Once microCLIP made the shared backbone's LayerNorms trainable in place, so the next
    method's checkpoint held them and could not be loaded on a fresh backbone."""
    from clipadapt.config import validate_config
    from clipadapt.workflow import train_run

    backbone = create_backbone("clipadapt-micro", None)
    weather = TaskSpec((Attribute("weather", ("clear", "foggy", "rainy")),))
    build_method("microclip", backbone, weather, {})
    cfg = validate_config({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "synthetic-gss", "root": str(tmp_path / "gss"), "attributes": ["weather"],
                 "synthetic": {"n_train": 24, "n_test": 8, "seed": 0, "image_size": 40}},
        "method": {"name": "mhadapter"},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "patience": None, "device": "cpu"},
        "features": {"dir": str(tmp_path / "cache")}})
    outcome = train_run(cfg, tmp_path / "run", progress=False, backbone=backbone)
    method, card = load_run(outcome.run_dir)  # a fresh backbone from the card; strict
    assert method.name == "mhadapter" and not any(k.startswith("backbone.") for k in method.trained_state())
    assert card["trainable_parameters"] == method.num_trainable()


def test_methods_reach_the_backbone_through_its_interface_only():
    """No method reads the backbone's image tower modules (`backbone.visual`) itself."""
    from pathlib import Path

    import clipadapt.methods as package

    offenders = [str(path) for path in Path(package.__file__).parent.rglob("*.py")
                 if "bb.visual." in path.read_text() or "backbone.visual." in path.read_text()]
    assert offenders == []

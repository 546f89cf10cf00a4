"""The feature store: content keys, round trips, crash-safe resumable extraction, views."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from clipadapt.config import FeatureConfig
from clipadapt.errors import ClipAdaptError
from clipadapt.features import (
    FeatureStore,
    ViewSampler,
    default_root,
    describe_per_image_bytes,
    extract,
    feature_key,
    image_list_fingerprint,
    seeded_view_transform,
)

N_ITEMS, N_VIEWS, TOKENS, WIDTH, EMBED = 10, 2, 4, 3, 5


def base_parts(images: dict | None = None) -> dict:
    return {
        "backbone": {"name": "clipadapt-micro", "pretrained": None, "weights_id": "abc123"},
        "preprocessing": {"mode": "train", "size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "tap": {"tap_block": 1, "tokens": "patches"},
        "views": N_VIEWS,
        "view_seed": 1234,
        "images": images or {"count": 3, "sha256": "0" * 64},
    }


# ----------------------------------------------------------------------------- fakes
def fake_image(item: int, view: int) -> torch.Tensor:
    """A [3, 2, 2] image whose pixels identify (item, view)."""
    g = torch.Generator().manual_seed(item * 100 + view)
    return torch.randn(3, 2, 2, generator=g)


def make_loader_factory(batch_size: int = 3, log: list | None = None):
    def make_loader(items: list[int], view: int):
        if log is not None:
            log.append((view, list(items)))
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            yield torch.stack([fake_image(i, view) for i in chunk]), torch.tensor(chunk)
    return make_loader


class FakeEncoder:
    """tokens [B, 4, 3] = the pixels; embeds [B, 5] from them; can fail after n batches."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.batches = 0
        self.images = 0

    def __call__(self, images: torch.Tensor):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("simulated crash")
        assert not torch.is_grad_enabled()  # extract must encode under no_grad
        self.batches += 1
        self.images += len(images)
        tokens = images.flatten(2).transpose(1, 2)
        embeds = torch.cat([images.mean((2, 3)), images.amax((1, 2, 3))[:, None], images.amin((1, 2, 3))[:, None]], 1)
        return tokens, embeds


def open_set(root: Path, n_items: int = N_ITEMS, n_views: int = N_VIEWS, token_shape=(TOKENS, WIDTH), parts=None):
    return FeatureStore(root).open(parts or base_parts(), n_items, n_views, token_shape, EMBED)


# ----------------------------------------------------------------------------- keys
def test_key_is_stable_and_ignores_dict_order():
    parts = base_parts()
    reordered = dict(reversed(list(parts.items())))
    assert feature_key(parts) == feature_key(base_parts()) == feature_key(reordered)
    assert re.fullmatch(r"[0-9a-f]{16}", feature_key(parts))


@pytest.mark.parametrize("path, value", [
    (("backbone", "name"), "ViT-B-16"),
    (("backbone", "weights_id"), "def456"),
    (("preprocessing", "size"), 224),
    (("tap", "tap_block"), 2),
    (("tap", "tokens"), "all"),
    (("views",), 3),
    (("view_seed",), 1),
    (("images", "sha256"), "1" * 64),
])
def test_key_changes_with_every_part(path, value):
    parts = base_parts()
    node = parts
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    assert feature_key(parts) != feature_key(base_parts())


def test_image_fingerprint_tracks_size_mtime_and_order(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.jpg")
        paths[-1].write_bytes(b"x" * (10 + i))
    first = image_list_fingerprint(paths)
    assert first == image_list_fingerprint([str(p) for p in paths])
    assert first["count"] == 3

    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched, same bytes
    touched = image_list_fingerprint(paths)
    assert touched != first
    assert feature_key(base_parts(touched)) != feature_key(base_parts(first))
    assert image_list_fingerprint(paths) == touched  # nothing changed since

    # Putting the old mtime back does not restore the key: the change time (which nobody
    # can set) moved, as it does for a same-size file copied in with its mtime (cp -p).
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    restored = image_list_fingerprint(paths)
    assert restored != first and restored != touched
    paths[2].write_bytes(b"y" * 99)
    os.utime(paths[2], ns=(st.st_atime_ns, paths[2].stat().st_mtime_ns))
    assert image_list_fingerprint(paths) not in (first, restored)
    assert image_list_fingerprint(paths[::-1]) != image_list_fingerprint(paths)  # rows are positions


# ----------------------------------------------------------------------------- round trip
def test_write_read_round_trip_and_reopen(tmp_path):
    fs = open_set(tmp_path)
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(N_ITEMS, N_VIEWS, TOKENS, WIDTH)).astype(np.float32) * 10
    embeds = rng.normal(size=(N_ITEMS, N_VIEWS, EMBED)).astype(np.float32)
    order = rng.permutation(N_ITEMS)
    for view in range(N_VIEWS):
        fs.write(order, view, torch.from_numpy(tokens[order, view]), torch.from_numpy(embeds[order, view]))
    assert fs.complete and fs.missing() == []

    items = np.array([7, 2, 2, 9, 0])
    views = np.array([1, 0, 1, 1, 0])
    reopened = open_set(tmp_path)
    assert reopened.complete
    for store in (fs, reopened):
        tok, emb = store.read(items, views)
        assert tok.dtype == emb.dtype == torch.float32
        assert tok.shape == (5, TOKENS, WIDTH) and emb.shape == (5, EMBED)
        np.testing.assert_array_equal(emb.numpy(), embeds[items, views])
        np.testing.assert_allclose(tok.numpy(), tokens[items, views], rtol=1e-3, atol=1e-3)
    assert fs.nbytes == N_ITEMS * describe_per_image_bytes((TOKENS, WIDTH), EMBED, N_VIEWS) + N_ITEMS * N_VIEWS
    meta = fs.meta
    assert meta["shapes"]["tokens"] == [N_ITEMS, N_VIEWS, TOKENS, WIDTH]
    assert meta["dtypes"] == {"tokens": "float16", "embeds": "float32", "done": "bool"}
    assert meta["parts"] == base_parts() and "created" in meta and "clipadapt_version" in meta


def test_entry_without_tokens(tmp_path):
    fs = open_set(tmp_path, token_shape=None)
    assert fs.tokens is None and not (fs.path / "tokens.npy").exists()
    fs.write(np.arange(N_ITEMS), 0, None, torch.ones(N_ITEMS, EMBED))
    tok, emb = fs.read(np.arange(3), 0)
    assert tok is None and torch.equal(emb, torch.ones(3, EMBED))
    with pytest.raises(ValueError, match="stores no tokens"):
        fs.write(np.arange(2), 1, torch.zeros(2, TOKENS, WIDTH), torch.zeros(2, EMBED))


def test_reading_unextracted_rows_is_an_error(tmp_path):
    fs = open_set(tmp_path)
    fs.write(np.array([0, 1]), 0, torch.zeros(2, TOKENS, WIDTH), torch.zeros(2, EMBED))
    fs.read(np.array([0, 1]), 0)
    with pytest.raises(ClipAdaptError, match=r"rows \[1\]"):
        fs.read(np.array([0, 1]), np.array([0, 1]))


def test_done_mask_is_persisted_only_after_flush(tmp_path):
    fs = open_set(tmp_path)
    fs.write(np.array([3]), 1, torch.ones(1, TOKENS, WIDTH), torch.ones(1, EMBED), flush=False)
    assert fs.done[3, 1]
    assert not open_set(tmp_path).done.any()  # a crash now loses the mark, never points at missing data
    fs.flush()
    again = open_set(tmp_path)
    assert again.done[3, 1] and again.done.sum() == 1
    np.testing.assert_array_equal(again.read([3], 1)[1].numpy(), np.ones((1, EMBED)))
    assert not [p for p in fs.path.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp files


def test_non_finite_or_fp16_overflow_is_refused(tmp_path):
    fs = open_set(tmp_path)
    tokens = torch.zeros(2, TOKENS, WIDTH)
    tokens[1, 0, 0] = 1e6  # beyond float16's 65504
    with pytest.raises(ClipAdaptError, match=r"rows \[5\]"):
        fs.write(np.array([4, 5]), 0, tokens, torch.zeros(2, EMBED))
    assert not fs.done.any()


def test_wrong_batch_shape_is_refused(tmp_path):
    fs = open_set(tmp_path)
    with pytest.raises(ValueError, match="tokens: expected shape"):
        fs.write(np.array([0, 1]), 0, torch.zeros(2, TOKENS + 1, WIDTH), torch.zeros(2, EMBED))


# ----------------------------------------------------------------------------- extraction
def test_extract_resumes_after_a_crash_and_matches_an_uninterrupted_run(tmp_path):
    reference = open_set(tmp_path / "reference")
    full = FakeEncoder()
    assert extract(reference, make_loader_factory(), full, progress=False) == N_ITEMS * N_VIEWS
    assert reference.complete

    crashed = open_set(tmp_path / "resumed")
    failing = FakeEncoder(fail_after=5)  # 4 batches of view 0 (3+3+3+1) and 1 of view 1
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(crashed, make_loader_factory(), failing, progress=False, flush_every=100)
    assert failing.images == N_ITEMS + 3

    resumed = open_set(tmp_path / "resumed")  # a new process: only what reached disk counts
    assert resumed.done[:, 0].all() and resumed.done[:, 1].sum() == 3
    log: list = []
    second = FakeEncoder()
    assert extract(resumed, make_loader_factory(log=log), second, progress=True) == N_ITEMS - 3
    assert second.images == N_ITEMS - 3
    assert log == [(1, list(range(3, N_ITEMS)))]  # view 0 untouched, view 1 only the missing rows
    assert resumed.complete

    np.testing.assert_array_equal(np.asarray(resumed.tokens), np.asarray(reference.tokens))
    np.testing.assert_array_equal(np.asarray(resumed.embeds), np.asarray(reference.embeds))
    assert extract(resumed, make_loader_factory(), FakeEncoder(fail_after=0), progress=False) == 0


def test_extract_reports_rows_the_loader_never_produced(tmp_path):
    fs = open_set(tmp_path, n_views=1)

    def dropping_loader(items, view):
        yield from make_loader_factory()(items[:-1], view)

    with pytest.raises(ClipAdaptError, match=rf"\[{N_ITEMS - 1}\]"):
        extract(fs, dropping_loader, FakeEncoder(), progress=False)
    assert fs.missing() == [N_ITEMS - 1]


# ----------------------------------------------------------------------------- views
def augment():
    return T.Compose([T.RandomResizedCrop(8, scale=(0.1, 1.0), antialias=True), T.RandomHorizontalFlip()])


def test_seeded_view_transform_is_reproducible_per_item_and_view():
    image = torch.rand(3, 32, 32)
    view0 = seeded_view_transform(augment(), base_seed=7, view=0)
    view1 = seeded_view_transform(augment(), base_seed=7, view=1)
    for item in range(5):
        first = view0(image, item)
        torch.rand(10)  # unrelated draws in between must not matter
        assert torch.equal(first, view0(image, item))
        assert torch.equal(first, view1(image, item, view=0))  # a per-call view overrides the bound one
        assert first.shape == (3, 8, 8)

    differing_views = sum(not torch.equal(view0(image, i), view1(image, i)) for i in range(5))
    differing_items = sum(not torch.equal(view0(image, 0), view0(image, i)) for i in range(1, 5))
    assert differing_views == 5 and differing_items == 4
    other_seed = seeded_view_transform(augment(), base_seed=8, view=0)
    assert not torch.equal(other_seed(image, 0), view0(image, 0))
    with pytest.raises(TypeError, match="needs a view"):
        seeded_view_transform(augment(), base_seed=7)(image, 0)


def test_seeded_view_transform_restores_global_rng():
    wrapped = seeded_view_transform(augment(), base_seed=0, view=0)
    image = torch.rand(3, 16, 16)

    def reseed():
        torch.manual_seed(99)
        random.seed(99)
        np.random.seed(99)

    def draw():
        return torch.rand(4), random.random(), np.random.rand()

    reseed()
    expected = draw()
    reseed()
    wrapped(image, 3)
    got = draw()
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_view_sampler_is_deterministic_balanced_and_covers_every_view():
    items = np.arange(2000)
    sampler = ViewSampler(4, seed=3)
    assert np.array_equal(sampler.views(items, 5), ViewSampler(4, seed=3).views(items, 5))
    # An item's view does not depend on the batch it arrives in.
    assert np.array_equal(sampler.views(items[::-1], 5), sampler.views(items, 5)[::-1])
    assert not np.array_equal(sampler.views(items, 5), ViewSampler(4, seed=4).views(items, 5))
    assert not np.array_equal(sampler.views(items, 0), sampler.views(items, 1))

    epoch0 = sampler.views(items, 0)
    counts = np.bincount(epoch0, minlength=4)
    assert counts.min() > 400 and counts.max() < 600  # ~500 each
    for cycle in range(3):
        seen = np.stack([sampler.views(items, cycle * 4 + e) for e in range(4)])
        assert (np.sort(seen, axis=0) == np.arange(4)[:, None]).all()  # every view once per cycle

    assert not ViewSampler(1, seed=3).views(items, 7).any()


# ----------------------------------------------------------------------------- store housekeeping
def test_inconsistent_shapes_name_the_cache_path(tmp_path):
    fs = open_set(tmp_path)
    with pytest.raises(ClipAdaptError) as err:
        open_set(tmp_path, n_items=N_ITEMS + 1)
    message = str(err.value)
    assert str(fs.path) in message and "inconsistent" in message and "rm -r" in message
    with pytest.raises(ClipAdaptError, match="inconsistent"):
        open_set(tmp_path, token_shape=(TOKENS, WIDTH + 1))


def test_damaged_entry_is_reported_and_rebuilt(tmp_path, caplog):
    fs = open_set(tmp_path)
    fs.write(np.arange(N_ITEMS), 0, torch.ones(N_ITEMS, TOKENS, WIDTH), torch.ones(N_ITEMS, EMBED))
    (fs.path / "embeds.npy").write_bytes(b"not an array")
    with caplog.at_level("WARNING", logger="clipadapt"):
        again = open_set(tmp_path)
    assert re.search(re.escape(str(fs.path)) + r" is damaged: an array file is damaged .*; rebuilding it", caplog.text)
    assert again.path == fs.path and not again.done.any()  # rebuilt empty, nothing of the damaged copy served


def test_entries_and_remove(tmp_path):
    store = FeatureStore(tmp_path)
    assert store.entries() == []
    a = open_set(tmp_path)
    b = open_set(tmp_path, parts={**base_parts(), "view_seed": 1})
    a.write(np.arange(N_ITEMS), 0, torch.zeros(N_ITEMS, TOKENS, WIDTH), torch.zeros(N_ITEMS, EMBED))
    listed = {e.key: e for e in store.entries()}
    assert set(listed) == {a.key, b.key}
    assert listed[a.key].done_fraction == 0.5 and listed[b.key].done_fraction == 0.0
    assert listed[a.key].meta["parts"] == base_parts() and listed[a.key].nbytes > a.nbytes
    store.remove(a.key)
    assert [e.key for e in store.entries()] == [b.key] and not a.path.exists()
    with pytest.raises(ClipAdaptError, match="No feature cache entry"):
        store.remove(a.key)
    with pytest.raises(ClipAdaptError, match="not a feature cache key"):
        store.remove("../elsewhere")


def test_default_root_and_config_override(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPADAPT_CACHE", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "features"
    assert FeatureStore().root == tmp_path / "cache" / "features"
    monkeypatch.delenv("CLIPADAPT_CACHE")
    assert default_root() == Path.home() / ".cache" / "clipadapt" / "features"
    assert FeatureStore.from_config(FeatureConfig(dir=tmp_path / "mine")).root == tmp_path / "mine"


def test_describe_per_image_bytes():
    assert describe_per_image_bytes((196, 768), 512, 1) == 196 * 768 * 2 + 512 * 4  # ViT-B/16: 301 KB + 2 KB
    assert describe_per_image_bytes(None, 512, 3) == 3 * 512 * 4
    assert describe_per_image_bytes((4, 3), 5, 2) == 2 * (24 + 20)


def test_an_entry_larger_than_the_free_disk_is_refused_up_front(tmp_path):
    with pytest.raises(ClipAdaptError, match="GB are free"):
        open_set(tmp_path, n_items=10**9, token_shape=(196, 768))
    assert FeatureStore(tmp_path).entries() == []

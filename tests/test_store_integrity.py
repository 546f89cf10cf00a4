"""Feature store integrity: an entry made with other weights, preprocessing, tap or images
is never served; a truncated, corrupted or tampered entry is detected (checksums, array
headers) and its features are rebuilt equal to the originals, never used as they are."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from clipadapt.backbone import create_backbone
from clipadapt.config import FeatureConfig
from clipadapt.data.dataset import LabelledImages
from clipadapt.engine.sources import FeatureBatches
from clipadapt.features import FeatureStore
from clipadapt.methods import FeatureNeeds
from clipadapt.task import Attribute, TaskSpec

TASK = TaskSpec((Attribute("shade", ("dark", "light")),))
NEEDS = FeatureNeeds(tap_block=1, frozen_image_path=True)


@pytest.fixture()
def images(tmp_path) -> LabelledImages:
    paths = []
    for i in range(6):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (60, 40, 3), dtype=np.uint8)).save(path)  # tall: letterbox pads it
        paths.append(path)
    return LabelledImages(paths, np.array([i % 2 for i in range(6)])[:, None], TASK)


@pytest.fixture()
def cfg(tmp_path) -> FeatureConfig:
    return FeatureConfig(dir=tmp_path / "store", batch_size=4)


def features(backbone, images, cfg, needs=NEEDS) -> tuple[str, torch.Tensor, torch.Tensor]:
    """Extract (or reuse) through the training path, on the CPU; (key, tokens, embeddings) of every row."""
    # The session's shared backbone may come from a test that trained on a GPU (device auto).
    source = FeatureBatches(backbone.cpu(), needs, images, cfg, progress=False)
    tokens, embeds = source.store.read(np.arange(len(images)), 0)
    return source.key, tokens, embeds


def entries(cfg) -> list[str]:
    return [e.key for e in FeatureStore(cfg.dir).entries()]


# ----------------------------------------------------------------------------- never reused
def test_same_settings_reuse_the_entry_without_extracting(micro_backbone, images, cfg, monkeypatch):
    key, tokens, _ = features(micro_backbone, images, cfg)
    monkeypatch.setattr(micro_backbone, "forward_features", lambda *a, **k: pytest.fail("re-extracted"))
    again, tokens2, _ = features(micro_backbone, images, cfg)
    assert again == key and torch.equal(tokens, tokens2) and entries(cfg) == [key]


def test_other_weights_get_their_own_entry(micro_backbone, images, cfg, tmp_path):
    key, tokens, _ = features(micro_backbone, images, cfg)
    state = {k: v.clone() for k, v in micro_backbone.model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "same.safetensors"))
    same = create_backbone("clipadapt-micro", str(tmp_path / "same.safetensors"))
    state["visual.conv1.weight"] += 0.01
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "other.safetensors"))
    other = create_backbone("clipadapt-micro", str(tmp_path / "other.safetensors"))

    other_key, other_tokens, _ = features(other, images, cfg)
    assert other_key != key and not torch.allclose(other_tokens, tokens)
    # weights are identified by content: an identical file shares one entry, wherever it lies
    copy_key, _, _ = features(same, images, cfg)
    again_key, _, _ = features(create_backbone("clipadapt-micro", str(tmp_path / "same.safetensors")), images, cfg)
    assert copy_key == again_key and copy_key not in (key, other_key)


@pytest.mark.parametrize("preprocess, normalise", [("letterbox", "model"), ("crop", "half")])
def test_other_preprocessing_gets_its_own_entry(images, cfg, preprocess, normalise):
    plain = create_backbone("clipadapt-micro", None)
    key, tokens, _ = features(plain, images, cfg)
    changed = create_backbone("clipadapt-micro", None).set_preprocessing(preprocess, normalise)
    other_key, other_tokens, _ = features(changed, images, cfg)
    assert other_key != key and not torch.allclose(other_tokens, tokens)
    assert sorted(entries(cfg)) == sorted([key, other_key])


def test_other_tap_gets_its_own_entry(micro_backbone, images, cfg):
    key, tokens, _ = features(micro_backbone, images, cfg)
    other_key, other_tokens, _ = features(micro_backbone, images, cfg, FeatureNeeds(tap_block=2))
    assert other_key != key and not torch.allclose(other_tokens, tokens)


def test_changed_images_get_a_new_entry(micro_backbone, images, cfg):
    key, _, _ = features(micro_backbone, images, cfg)
    Image.fromarray(np.full((40, 40, 3), 7, dtype=np.uint8)).save(images.paths[2])  # a different picture
    new_key, _, _ = features(micro_backbone, images, cfg)
    assert new_key != key
    reordered = images.subset(np.array([1, 0, 2, 3, 4, 5]))  # rows are positions in the store
    assert features(micro_backbone, reordered, cfg)[0] not in (key, new_key)
    fewer = images.subset(np.arange(5))
    assert features(micro_backbone, fewer, cfg)[0] not in (key, new_key)


def test_same_size_swap_with_copied_mtime_is_caught(micro_backbone, images, cfg):
    a = images.paths[0]
    Image.new("RGB", (40, 60), (10, 10, 10)).save(a, format="BMP")  # raw pixels: any picture, same byte size
    key, _, _ = features(micro_backbone, images, cfg)
    st = a.stat()
    Image.new("RGB", (40, 60), (200, 10, 10)).save(a, format="BMP")  # what `cp -p` of another picture leaves
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    assert features(micro_backbone, images, cfg)[0] != key


# ----------------------------------------------------------------------------- damage
def _entry_path(cfg, key) -> Path:
    return Path(cfg.dir) / key


DAMAGE = {
    "tokens truncated": lambda p: os.truncate(p / "tokens.npy", (p / "tokens.npy").stat().st_size // 2),
    "embeddings truncated": lambda p: os.truncate(p / "embeds.npy", 100),
    "tokens header rewritten": lambda p: (p / "tokens.npy").write_bytes(
        (p / "tokens.npy").read_bytes().replace(b"'shape': (6,", b"'shape': (7,")),
    "done mask garbage": lambda p: (p / "done.npy").write_bytes(b"\x93NUMPY garbage"),
    "checksums missing": lambda p: (p / "crc.npy").unlink(),
    "meta missing": lambda p: (p / "meta.json").unlink(),
    "meta not JSON": lambda p: (p / "meta.json").write_text("{not json"),
    "older store format": lambda p: (p / "meta.json").write_text(
        json.dumps({**json.loads((p / "meta.json").read_text()), "format": 1})),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_entry_is_rebuilt_to_the_same_features(micro_backbone, images, cfg, damage, caplog):
    key, tokens, embeds = features(micro_backbone, images, cfg)
    DAMAGE[damage](_entry_path(cfg, key))
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        again, tokens2, embeds2 = features(micro_backbone, images, cfg)
    assert again == key and f"{_entry_path(cfg, key)} is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert torch.equal(tokens2, tokens) and torch.equal(embeds2, embeds)
    assert entries(cfg) == [key] and not list(Path(cfg.dir).glob(".*"))  # no debris left behind


@pytest.mark.parametrize("array", ["tokens.npy", "embeds.npy"])
def test_corrupted_rows_fail_their_checksum_and_only_they_are_extracted_again(micro_backbone, images, cfg, caplog,
                                                                              monkeypatch, array):
    key, tokens, embeds = features(micro_backbone, images, cfg)
    path = _entry_path(cfg, key) / array
    stored = np.load(path, mmap_mode="r+")
    stored[4, 0].reshape(-1)[3] += 1  # one value of image row 4, as a bad disk block would change it
    stored.flush()
    del stored
    encoded = []
    original = micro_backbone.forward_features
    monkeypatch.setattr(micro_backbone, "forward_features", lambda x, *a: encoded.append(len(x)) or original(x, *a))
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        _, tokens2, embeds2 = features(micro_backbone, images, cfg)
    assert "1 stored feature row(s)" in caplog.text and "image row 4, view 0" in caplog.text
    assert encoded == [1]  # just the damaged row
    # recomputed, not served: equal to the original up to float rounding (a batch of one
    # rounds differently from the batch of four that first computed it), far from the +1 damage
    torch.testing.assert_close(tokens2, tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embeds2, embeds, atol=1e-5, rtol=1e-5)
    assert torch.equal(tokens2[:4], tokens[:4]) and torch.equal(embeds2[:4], embeds[:4])  # the rest untouched


def test_row_check_can_be_switched_off(micro_backbone, images, cfg, monkeypatch):
    key, tokens, _ = features(micro_backbone, images, cfg)
    stored = np.load(_entry_path(cfg, key) / "tokens.npy", mmap_mode="r+")
    stored[0, 0, 0, 0] += 1
    stored.flush()
    del stored
    monkeypatch.setenv("CLIPADAPT_VERIFY_FEATURES", "0")
    _, tokens2, _ = features(micro_backbone, images, cfg)
    assert not torch.equal(tokens2, tokens)  # unchecked, the damaged value is served: the check is what catches it


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


def test_a_pickle_planted_as_an_array_file_runs_nothing(micro_backbone, images, cfg, tmp_path, caplog):
    key, tokens, _ = features(micro_backbone, images, cfg)
    marker = tmp_path / "pwned"
    np.save(_entry_path(cfg, key) / "done.npy", np.array([_Marker(marker)], dtype=object), allow_pickle=True)
    assert b"system" in (_entry_path(cfg, key) / "done.npy").read_bytes()  # the payload is really there
    with caplog.at_level(logging.WARNING, logger="clipadapt"):
        _, tokens2, _ = features(micro_backbone, images, cfg)
    assert not marker.exists()
    assert "Object arrays cannot be loaded" in caplog.text or "pickled data" in caplog.text
    assert torch.equal(tokens2, tokens)


# ----------------------------------------------------------------------------- the check's memory
def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status on this system")


def test_the_row_check_reads_the_files_not_the_mapping(tmp_path, monkeypatch):
    """Checking every row must not make the entry resident in this process (a 10x larger
    store would otherwise lift peak memory 10x), and must still find a flipped byte."""
    import clipadapt.features.verify as verify
    from clipadapt.features.reading import release_resident_pages

    monkeypatch.setattr(verify, "CHUNK_BYTES", 2**20)  # several chunks
    n, token_shape = 320, (50, 256)  # 8 MiB of tokens
    store = FeatureStore(tmp_path / "store")
    entry = store.open({"test": "rss"}, n, 2, token_shape, 16)
    rng = np.random.default_rng(0)
    for view in (0, 1):
        entry.write(np.arange(n), view, rng.standard_normal((n, *token_shape), dtype=np.float32),
                    rng.standard_normal((n, 16), dtype=np.float32), flush=False)
    entry.flush()
    entry.done[5, 1] = False  # a row not done is not checked, whatever its bytes
    release_resident_pages(entry)
    before = _rss_file_kib()
    assert len(entry.corrupt_rows()) == 0
    grown_kib = _rss_file_kib() - before
    assert grown_kib < 0.1 * entry.nbytes / 1024, f"the check mapped {grown_kib} KiB of a {entry.nbytes >> 10} KiB entry"

    with open(entry.path / "tokens.npy", "r+b") as f:  # flip one byte of item 200, view 1 (on disk)
        f.seek(entry.tokens.offset + (200 * 2 + 1) * 50 * 256 * 2 + 77)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert entry.corrupt_rows().tolist() == [[200, 1]]

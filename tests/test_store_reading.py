"""Store-backed batches: every row in the asked order, and the entry's pages released
from the process after each batch without changing what is read."""

from __future__ import annotations

import numpy as np
import torch

from clipadapt.features.reading import entry_batches, release_resident_pages
from clipadapt.features.store import FeatureStore
from clipadapt.features.views import ViewSampler


def rss_file_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssFile:"))


def test_batches_follow_the_order_and_release_the_pages(tmp_path):
    n, shape = 64, (64, 256)  # 32 KiB of tokens per row: 2 MiB in all
    entry = FeatureStore(tmp_path).open({"test": "reading"}, n, 1, shape, 8)
    rng = np.random.default_rng(0)
    tokens, embeds = rng.standard_normal((n, *shape)).astype(np.float16), rng.standard_normal((n, 8)).astype(np.float32)
    entry.write(np.arange(n), 0, torch.from_numpy(tokens.astype(np.float32)), torch.from_numpy(embeds))
    order = rng.permutation(n)
    release_resident_pages(entry)
    before = rss_file_kib()
    seen = []
    for feats, idx in entry_batches(entry, ViewSampler(1), order, 10):
        assert np.array_equal(feats.tokens.numpy(), tokens[idx].astype(np.float32))
        assert np.array_equal(feats.embedding.numpy(), embeds[idx])
        seen.append(idx)
    assert np.array_equal(np.concatenate(seen), order)
    # 2 MiB were read; without the release they would stay mapped into this process
    assert rss_file_kib() - before < 1024

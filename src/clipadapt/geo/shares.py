"""The tidy result table: one row per group, attribute and class, with both shares and
their intervals."""

from __future__ import annotations

import numpy as np

from clipadapt.geo.intervals import normal_interval, wilson_interval

OUTPUT_COLUMNS = ("attribute", "class", "n", "expected_share", "expected_low", "expected_high",
                  "top_share", "top_low", "top_high", "small")


def tidy_shares(index, keys, accumulators, z: float, min_count: int, small_below: int):
    """(pandas DataFrame of OUTPUT_COLUMNS after the key columns, group-attribute pairs
    dropped by `min_count`). Rows are sorted by key values, then attributes and classes
    in table order, so the result does not depend on the order rows were read in."""
    import pandas as pd

    groups = len(index)
    order = sorted(range(groups), key=lambda g: index.keys[g])
    order = np.asarray(order, dtype=np.int64)
    rank = np.empty(groups, dtype=np.int64)
    rank[order] = np.arange(groups)
    frames, ranks, dropped = [], [], 0
    for acc in accumulators:
        r = acc.result(groups)
        n = r["n"][order]
        kept = (n >= max(min_count, 1))
        dropped += int(((n > 0) & ~kept).sum())  # groups with no usable row for this attribute just do not appear
        g = order[kept]
        n = n[kept]
        mean, m2, top = r["mean"][g], r["m2"][g], r["top"][g]
        classes = acc.attribute.classes
        k = len(classes)
        nn = np.repeat(n, k)
        e_low, e_high = normal_interval(mean.ravel(), m2.ravel(), nn, z)
        t_low, t_high = wilson_interval(top.ravel(), nn, z)
        frame = {key.name: np.repeat(np.asarray([index.keys[i][j] for i in g], dtype=object), k)
                 for j, key in enumerate(keys)}
        frame.update({
            "attribute": acc.attribute.name, "class": np.tile(np.asarray(classes, dtype=object), len(g)),
            "n": nn.astype(np.int64), "expected_share": mean.ravel(), "expected_low": e_low, "expected_high": e_high,
            "top_share": top.ravel() / nn, "top_low": t_low, "top_high": t_high, "small": nn < small_below,
        })
        frames.append(pd.DataFrame(frame, columns=[*(key.name for key in keys), *OUTPUT_COLUMNS]))
        ranks.append(np.repeat(rank[g], k))
    table = pd.concat(frames, ignore_index=True)
    # all of one place's rows together (attributes in table order within it)
    table = table.iloc[np.argsort(np.concatenate(ranks), kind="stable")].reset_index(drop=True)
    for key in keys:
        table[key.name] = table[key.name].astype(str)
    return table, dropped

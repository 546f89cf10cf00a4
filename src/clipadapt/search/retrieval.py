"""Retrieval scores of attribute queries on a labelled split (`clipadapt eval --retrieval`).

Per query: a row is relevant when the query is true on its labels; a row with a missing
label (-1) for an attribute the query names is left out of that query. Rows are ranked by
the query's probability (`search.combine`), ties in the split's order. Then:

- AP: the mean of the precision at the rank of each relevant row, as
  `sklearn.metrics.average_precision_score` (rows with equal scores count as one step);
  a random ranking scores about the base rate.
- R@k: 1 when any relevant row is among the first k, else 0 (the text-to-person
  retrieval convention), so its mean over queries is the share of queries with a hit in
  the top k.
- P@10: the share of relevant rows among the first 10 (compare with the base rate:
  frequent attributes reach R@1 = 1 easily, P@10 still tells them apart).
- base rate: relevant / rows scored.
Means over queries: mAP, mean R@k, mean P@10, mean base rate; also per query size (one
term, two terms, ...).
"""

from __future__ import annotations

import itertools

import numpy as np

from clipadapt.errors import ClipAdaptError
from clipadapt.search.combine import query_probability, query_truth
from clipadapt.search.query import And, Attribute, Term, bind, parse_query, read_queries, terms

DEFAULT = "default"
DEFAULT_PAIRS = 20  # the most frequent pairs only: all pairs of 26 PA100K attributes are 325 queries
TOP_K = (1, 5, 10)
PRECISION_AT = 10
SCORES = ("ap", *(f"r@{k}" for k in TOP_K), f"p@{PRECISION_AT}", "base_rate")


def task_attributes(task) -> list[Attribute]:
    """A run's attributes in the query language's terms (multi-label: present or not)."""
    return [Attribute(a.name, () if task.multilabel else tuple(a.classes)) for a in task.attributes]


def average_precision(relevant: np.ndarray, score: np.ndarray) -> float:
    """Non-interpolated AP; tied scores form one step (as scikit-learn computes it)."""
    order = np.argsort(-score, kind="stable")
    hits, ranked = relevant[order].astype(np.float64), score[order]
    found = np.cumsum(hits)
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    precision = found[last_of_tie] / (np.nonzero(last_of_tie)[0] + 1)
    recall = found[last_of_tie] / hits.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def score_query(relevant: np.ndarray, score: np.ndarray) -> dict:
    """AP, R@k, P@10 and the base rate of one query (rows already restricted to those
    labelled for it; at least one relevant)."""
    order = np.argsort(-score, kind="stable")
    ranked = relevant[order]
    out = {"ap": average_precision(relevant, score)}
    out.update({f"r@{k}": float(ranked[:k].any()) for k in TOP_K})
    out[f"p@{PRECISION_AT}"] = float(ranked[:PRECISION_AT].mean())
    out["base_rate"] = float(relevant.mean())
    return out


def default_queries(attributes: list[Attribute], labels: np.ndarray, pairs: int = DEFAULT_PAIRS) -> tuple[list[str], str]:
    """Every attribute alone (each class of a single-label one), and the `pairs` pairs
    `a & b` (of different attributes) with the most rows where both are true; only
    queries with at least one positive in `labels`. Returns (queries, how they were
    chosen)."""
    # (attribute number, term, the label state at which the term is true)
    atoms = [(a, Term(attr.name, c), k) for a, attr in enumerate(attributes)
             for k, c in (enumerate(attr.classes) if attr.classes else [(1, None)])]
    positive = {term: labels[:, a] == state for a, term, state in atoms}
    singles = [str(term) for _, term, _ in atoms if positive[term].any()]
    counted = [(int((positive[s] & positive[t]).sum()), And((s, t)))
               for (a, s, _), (b, t, _) in itertools.combinations(atoms, 2) if a != b]
    counted = [(n, q) for n, q in counted if n > 0]
    kept = sorted(counted, key=lambda item: -item[0])[:pairs]  # stable: ties keep the attributes' order
    how = (f"default: {len(singles)} single attributes with a positive test label and the {len(kept)} most frequent "
           f"of {len(counted)} attribute pairs that have one (at most {pairs})")
    return singles + [str(q) for _, q in kept], how


def retrieval_metrics(spec: str, task, labels: np.ndarray, probs: list[np.ndarray]) -> dict:
    """metrics.json's `retrieval`: the queries of `spec` (a file of queries, or `default`)
    scored on `labels` [N, A] with the predicted `probs` ([N, K_a] per attribute)."""
    attributes = task_attributes(task)
    labels = np.asarray(labels)
    if str(spec).strip().lower() == DEFAULT:
        texts, how = default_queries(attributes, labels)
    else:
        texts, how = read_queries(spec), f"file: {spec}"
    by_name = {a.name: a for a in attributes}
    columns = {a.name: j for j, a in enumerate(attributes)}
    per_query, skipped = [], []
    for text in texts:
        node = bind(parse_query(text), attributes, text)
        used = list(dict.fromkeys(t.name for t in terms(node)))
        states = {n: np.asarray(probs[columns[n]], dtype=np.float64) for n in used}
        true, labelled = query_truth(node, {n: labels[:, columns[n]] for n in used}, by_name)
        rows = labelled & np.all([np.isfinite(s).all(axis=1) for s in states.values()], axis=0)
        if not true[rows].any():
            skipped.append({"query": str(node), "rows": int(rows.sum()),
                            "reason": "no labelled row where it is true" if rows.any() else "no labelled row"})
            continue
        score = query_probability(node, {n: s[rows] for n, s in states.items()}, by_name)
        per_query.append({"query": str(node), "terms": len(terms(node)), "rows": int(rows.sum()),
                          "relevant": int(true[rows].sum()), **score_query(true[rows], score)})
    if not per_query:
        raise ClipAdaptError(f"--retrieval {spec}: none of its {len(texts)} queries is true on any labelled test "
                             "row, so none can be scored; check the queries against the test labels.")
    return {"queries_from": how, "r@k": "any relevant row in the top k", "per_query": per_query,
            "mean": _means(per_query), "by_terms": {str(n): _means([q for q in per_query if q["terms"] == n])
                                                    for n in sorted({q["terms"] for q in per_query})},
            "skipped": skipped}


def _means(rows: list[dict]) -> dict:
    means = {key: float(np.mean([r[key] for r in rows])) for key in SCORES}
    return {"queries": len(rows), "map": means.pop("ap"), **means}


def check_queries(spec: str, task) -> None:
    """Parse and check the queries of `spec` against `task` (a TaskSpec or its dict, as
    in a run card) before minutes of evaluation; ClipAdaptError on the first bad one."""
    from clipadapt.task import TaskSpec

    if str(spec).strip().lower() == DEFAULT:
        return
    attributes = task_attributes(task if isinstance(task, TaskSpec) else TaskSpec.from_dict(task))
    for text in read_queries(spec):
        try:
            bind(parse_query(text), attributes, text)
        except ClipAdaptError as exc:  # name the file: the query alone may not say where it came from
            raise ClipAdaptError(f"--retrieval {spec}: {exc}") from None

"""A query's probability from per-attribute probabilities (numbers worked by hand), its
truth on labels, and the retrieval scores (AP, R@k, P@10, the default queries)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from clipadapt.search.combine import query_probability, query_truth
from clipadapt.search.query import Attribute, bind, parse_query
from clipadapt.search.retrieval import average_precision, default_queries, retrieval_metrics, score_query
from clipadapt.task import Attribute as TaskAttribute
from clipadapt.task import TaskSpec

ATTRS = {"A": Attribute("A"), "B": Attribute("B"), "C": Attribute("C"), "w": Attribute("w", ("sun", "rain", "snow"))}
# two rows; multi-label attributes as (absent, present), w as its three classes
P = {"A": np.array([0.8, 0.1]), "B": np.array([0.5, 0.4]), "C": np.array([0.25, 1.0])}
STATES = {n: np.stack([1 - p, p], axis=1) for n, p in P.items()} | {"w": np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])}


def prob(text: str) -> np.ndarray:
    node = bind(parse_query(text), list(ATTRS.values()))
    return query_probability(node, STATES, ATTRS)


@pytest.mark.parametrize("text, row0", [
    ("A", 0.8),
    ("!A", 0.2),
    ("A & B", 0.8 * 0.5),                                   # 0.4
    ("A & !B & C", 0.8 * 0.5 * 0.25),                       # 0.1
    ("A | B", 1 - 0.2 * 0.5),                               # 0.9
    ("A | B & C", 1 - 0.2 * (1 - 0.5 * 0.25)),              # 0.825
    ("(A | B) & C", (1 - 0.2 * 0.5) * 0.25),                # 0.225
    ("!(A & B)", 1 - 0.4),
    ("w=rain & A", 0.3 * 0.8),
    ("!w=sun | C", 1 - 0.6 * 0.75),                         # 0.55
])
def test_rules_worked_by_hand(text, row0):
    assert prob(text)[0] == pytest.approx(row0, abs=1e-12)


def test_every_row_gets_its_own_probability():
    np.testing.assert_allclose(prob("A & !C"), [0.8 * 0.75, 0.1 * 0.0])
    np.testing.assert_allclose(prob("A | C"), [1 - 0.2 * 0.75, 1.0])


def test_an_attribute_used_twice_is_conditioned_on_not_multiplied():
    # the rules alone would give p(1 - p) = 0.16 and 1 - 0.2^2 = 0.96
    np.testing.assert_allclose(prob("A & !A"), [0.0, 0.0])
    np.testing.assert_allclose(prob("A | A"), P["A"])
    # two classes of one attribute exclude each other: P(rain) + P(snow), not 1 - (1 - .3)(1 - .1)
    np.testing.assert_allclose(prob("w=rain | w=snow"), [0.4, 0.8])
    # A twice, B once: by total probability over A, 0.8 * (1) + 0.2 * (0.5 * 0.25) = 0.825
    assert prob("A | (B & !A & C) | A")[0] == pytest.approx(0.8 + 0.2 * 0.5 * 0.25)


def test_truth_follows_the_labels_and_missing_labels_leave_rows_out():
    node = bind(parse_query("A & !B | w=snow"), list(ATTRS.values()))
    labels = {"A": np.array([1, 1, 0, -1, 0]), "B": np.array([0, 1, 0, 0, 1]), "w": np.array([0, 0, 2, 2, -1])}
    true, labelled = query_truth(node, labels, ATTRS)
    assert labelled.tolist() == [True, True, True, False, False]
    assert true[labelled].tolist() == [True, False, True]


def test_average_precision_by_hand_and_as_scikit_learn():
    relevant = np.array([1, 0, 1, 0, 0, 1], bool)
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # relevant at ranks 1, 3, 6: (1/1 + 2/3 + 3/6) / 3
    assert average_precision(relevant, score) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        relevant = rng.random(40) < 0.3
        relevant[0] = True
        score = np.round(rng.random(40), 1)  # many ties
        assert average_precision(relevant, score) == pytest.approx(average_precision_score(relevant, score))


def test_hits_and_precision_at_k():
    relevant = np.zeros(20, bool)
    relevant[[2, 15]] = True
    scores = score_query(relevant, -np.arange(20.0))  # ranked in row order
    assert (scores["r@1"], scores["r@5"], scores["r@10"]) == (0.0, 1.0, 1.0)
    assert scores["p@10"] == pytest.approx(0.1) and scores["base_rate"] == pytest.approx(0.1)


def test_default_queries_are_single_attributes_and_the_most_frequent_pairs():
    attributes = [Attribute("A"), Attribute("B"), Attribute("Skirt&Dress"), Attribute("never")]
    labels = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, -1]])
    queries, how = default_queries(attributes, labels, pairs=2)
    # 'never' has no positive; pairs: A&B 3, A&S 2, B&S 1 -> the two most frequent
    assert queries == ["A", "B", "'Skirt&Dress'", "A & B", "A & 'Skirt&Dress'"]
    assert "2 most frequent of 3" in how


def test_single_label_default_queries_pick_classes():
    attributes = [Attribute("w", ("sun", "rain")), Attribute("road", ("dry", "wet"))]
    labels = np.array([[1, 1], [1, 1], [0, 0]])
    queries, _ = default_queries(attributes, labels)
    assert queries[:4] == ["w=sun", "w=rain", "road=dry", "road=wet"]
    assert queries[4] == "w=rain & road=wet"  # 2 rows, the most frequent pair


def test_retrieval_metrics_of_a_perfect_and_a_reversed_model():
    task = TaskSpec((TaskAttribute("A", ("no", "yes")), TaskAttribute("B", ("no", "yes"))), multilabel=True)
    labels = np.array([[1, 1], [1, 0], [0, 1], [0, 0], [1, -1]])
    perfect = [np.stack([1 - labels[:, a].clip(0), labels[:, a].clip(0)], 1).astype(float) for a in range(2)]
    metrics = retrieval_metrics("default", task, labels, perfect)
    assert [q["query"] for q in metrics["per_query"]] == ["A", "B", "A & B"]
    a_and_b = metrics["per_query"][2]
    assert (a_and_b["rows"], a_and_b["relevant"], a_and_b["base_rate"]) == (4, 1, 0.25)  # row 5: B missing
    assert metrics["mean"]["map"] == 1.0 and metrics["mean"]["r@1"] == 1.0
    reversed_ = retrieval_metrics("default", task, labels, [p[:, ::-1].copy() for p in perfect])
    assert reversed_["mean"]["map"] < metrics["mean"]["base_rate"] + 0.2 < 1.0
    assert set(metrics["by_terms"]) == {"1", "2"}

"""PAR (multi-label) metrics: hand-worked examples, ignored labels, thresholds, both F1s,
and agreement with scikit-learn's sample-averaged scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from clipadapt.metrics.classification import MetricsInputError
from clipadapt.metrics.multilabel import par_metrics, positive_rates

approx = pytest.approx


def test_hand_worked_example_and_the_two_f1_conventions():
    labels = [[1, 0, 1],
              [0, 1, 0],
              [1, 1, 0]]
    probs = [[0.9, 0.4, 0.6],   # predicted [1, 0, 1]
             [0.2, 0.8, 0.7],   # predicted [0, 1, 1]
             [0.3, 0.9, 0.1]]   # predicted [0, 1, 0]
    m = par_metrics(labels, probs, attribute_names=["hat", "bag", "skirt"])
    # Per attribute (#pos, #neg, TP, TN):
    #   hat   (2, 1, 1, 1) -> 0.5 * (1/2 + 1/1) = 0.75
    #   bag   (2, 1, 2, 1) -> 0.5 * (2/2 + 1/1) = 1.0
    #   skirt (1, 2, 1, 1) -> 0.5 * (1/1 + 1/2) = 0.75
    # mA = (0.75 + 1 + 0.75) / 3 = 5/6
    hat, bag, skirt = m["per_attribute"]
    assert (hat["attribute"], hat["positives"], hat["negatives"], hat["tp"], hat["tn"]) == ("hat", 2, 1, 1, 1)
    assert hat["positive_recall"] == approx(0.5) and hat["negative_recall"] == approx(1.0)
    assert hat["balanced_accuracy"] == approx(0.75)
    assert bag["balanced_accuracy"] == approx(1.0) and skirt["balanced_accuracy"] == approx(0.75)
    assert m["mA"] == approx(5 / 6)
    # Per sample: |Y n P|, |Y u P|, |P|, |Y|  -> acc, prec, rec, F1
    #   row 0: 2, 2, 2, 2 -> 1,   1,   1,   1
    #   row 1: 1, 2, 2, 1 -> 1/2, 1/2, 1,   2/3
    #   row 2: 1, 2, 1, 2 -> 1/2, 1,   1/2, 2/3
    assert m["accuracy"] == approx(2 / 3)
    assert m["precision"] == approx(5 / 6)
    assert m["recall"] == approx(5 / 6)
    # mean of per-sample F1 = (1 + 2/3 + 2/3) / 3 = 7/9; F1 of the means = 2 (5/6)(5/6) / (5/3) = 5/6
    assert m["f1_mean_of_samples"] == approx(7 / 9)
    assert m["f1_of_means"] == approx(5 / 6)
    assert m["f1_mean_of_samples"] != approx(m["f1_of_means"])
    assert m["n"] == 3 and m["threshold"] == 0.5


def test_all_negative_sample_scores_zero_as_in_the_fields_code():
    labels = [[0, 0],   # no positive attribute at all, and none predicted
              [1, 0]]
    probs = [[0.1, 0.2],
             [0.9, 0.1]]  # every prediction is right
    m = par_metrics(labels, probs)
    # row 0: |Y| = |P| = |Y u P| = 0 -> acc = prec = rec = F1 = 0 / (0 + eps) = 0
    # row 1: perfect -> 1 everywhere; means are 1/2
    assert m["accuracy"] == approx(0.5)
    assert m["precision"] == approx(0.5)
    assert m["recall"] == approx(0.5)
    assert m["f1_mean_of_samples"] == approx(0.5)
    assert m["f1_of_means"] == approx(0.5)
    # attribute 1 has no positive: TP / (0 + eps) = 0 on that half -> 0.5 * (0 + 2/2) = 0.5
    # mA = (1 + 0.5) / 2 = 0.75
    assert m["per_attribute"][1]["positive_recall"] == 0.0
    assert m["mA"] == approx(0.75)


def test_ignored_labels_leave_both_truth_and_prediction():
    labels = [[1, -1, 0],
              [-1, 1, 1]]
    probs = [[0.8, 0.9, 0.7],   # raw predictions [1, 1, 1]; the ignored one is dropped -> P = {0, 2}
             [0.9, 0.2, 0.6]]   # raw predictions [1, 0, 1]; the ignored one is dropped -> P = {2}
    m = par_metrics(labels, probs)
    # row 0: Y = {0}, P = {0, 2}: acc 1/2, prec 1/2, rec 1, F1 2/3
    # row 1: Y = {1, 2}, P = {2}: acc 1/2, prec 1, rec 1/2, F1 2/3
    assert m["accuracy"] == approx(0.5)
    assert m["precision"] == approx(0.75)
    assert m["recall"] == approx(0.75)
    assert m["f1_mean_of_samples"] == approx(2 / 3)
    assert m["f1_of_means"] == approx(0.75)
    # attribute 0: 1 pos (TP 1), 0 neg -> 0.5 * (1 + 0) = 0.5
    # attribute 1: 1 pos (TP 0), 0 neg -> 0
    # attribute 2: 1 pos (TP 1), 1 neg (TN 0) -> 0.5;  mA = 1/3
    assert [r["positives"] + r["negatives"] for r in m["per_attribute"]] == [1, 1, 2]
    assert m["mA"] == approx(1 / 3)
    # whatever is predicted on an ignored entry changes nothing
    flipped = np.array(probs)
    flipped[0, 1], flipped[1, 0] = 0.0, 0.0
    assert par_metrics(labels, flipped) == m


def test_threshold_is_strict_and_moves_the_scores():
    labels = [[1, 0],
              [0, 1]]
    probs = [[0.6, 0.4],
             [0.45, 0.55]]
    # t = 0.5: predictions [[1, 0], [0, 1]]: perfect
    at_half = par_metrics(labels, probs, threshold=0.5)
    assert at_half["mA"] == approx(1.0) and at_half["accuracy"] == approx(1.0)
    # t = 0.4: 0.4 > 0.4 is false -> [[1, 0], [1, 1]]: row 1 acc 1/2 -> accuracy 3/4;
    # attribute 0: TP 1/1, TN 0/1 -> 0.5; attribute 1: 1 -> mA 0.75
    low = par_metrics(labels, probs, threshold=0.4)
    assert low["accuracy"] == approx(0.75) and low["precision"] == approx(0.75) and low["recall"] == approx(1.0)
    assert low["mA"] == approx(0.75)
    # t = 0.6: 0.6 > 0.6 is false -> nothing predicted: instance scores 0, mA = 0.5 (all negatives right)
    high = par_metrics(labels, probs, threshold=0.6)
    assert high["accuracy"] == 0.0 and high["recall"] == 0.0 and high["f1_of_means"] == 0.0
    assert high["mA"] == approx(0.5)


def test_agrees_with_scikit_learn_sample_averages():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 7)) < 0.3).astype(int)
    probs = rng.random((200, 7))
    m = par_metrics(labels, probs, threshold=0.5)
    pred = (probs > 0.5).astype(int)
    # scikit-learn's zero_division=0 is the field's 0 / (0 + eps)
    assert m["accuracy"] == approx(jaccard_score(labels, pred, average="samples", zero_division=0))
    assert m["precision"] == approx(precision_score(labels, pred, average="samples", zero_division=0))
    assert m["recall"] == approx(recall_score(labels, pred, average="samples", zero_division=0))
    assert m["f1_mean_of_samples"] == approx(f1_score(labels, pred, average="samples", zero_division=0))
    pos_recall = recall_score(labels, pred, average=None, zero_division=0)
    neg_recall = recall_score(1 - labels, 1 - pred, average=None, zero_division=0)
    assert m["mA"] == approx(np.mean((pos_recall + neg_recall) / 2))


def test_output_is_plain_json():
    m = par_metrics(np.array([[1, 0], [0, -1]], dtype=np.int8), np.array([[0.7, 0.1], [0.2, 0.9]], dtype=np.float32))
    again = json.loads(json.dumps(m))
    assert again == m
    assert all(type(v) in (int, float) for k, v in m.items() if k != "per_attribute")


def test_positive_rates_ignore_unlabelled_entries():
    rates = positive_rates([[1, 0, -1],
                            [0, 0, -1],
                            [1, 1, -1],
                            [-1, 0, -1]])
    # column 0: 2 of 3 labelled; column 1: 1 of 4; column 2: none labelled -> NaN
    assert rates[0] == approx(2 / 3) and rates[1] == approx(0.25)
    assert np.isnan(rates[2])


@pytest.mark.parametrize(
    "labels, probs, names, message",
    [
        ([[1, 2]], [[0.1, 0.2]], None, "found 2 at row 0, attribute 1"),
        ([[1, 0]], [[0.1, 0.2, 0.3]], None, "same \\[N, A\\] shape"),
        ([1, 0], [0.1, 0.2], None, "2-D"),
        ([[1, 0]], [[0.1, float("nan")]], None, "non-finite"),
        ([[1, 0]], [[0.1, 0.2]], ["only_one"], "1 names for 2"),
        (np.zeros((0, 3), dtype=int), np.zeros((0, 3)), None, "No samples"),
    ],
)
def test_bad_input_is_a_clear_error(labels, probs, names, message):
    with pytest.raises(MetricsInputError, match=message):
        par_metrics(labels, probs, attribute_names=names)

"""Multiclass metrics on hand-worked examples (expected numbers derived in comments)."""

from __future__ import annotations

import csv
import doctest
import json

import numpy as np
import pytest

import clipadapt.metrics.classification as classification
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics import attribute_metrics, headline, multiclass_metrics, row_normalised, write_confusion_csv
from clipadapt.task import Attribute, TaskSpec

NAMES = ["clear", "cloudy", "foggy"]
# 10 images, supports 4 / 4 / 2.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 0, 0, 2, 1])
# Confusion (rows true, cols predicted):
#   clear  [3, 1, 0]
#   cloudy [2, 2, 0]
#   foggy  [0, 1, 1]
# accuracy = (3 + 2 + 1) / 10 = 0.6
# recall    = 3/4, 2/4, 1/2        -> balanced acc = (0.75 + 0.5 + 0.5) / 3 = 7/12
#   adjusted (K = 3)  = (7/12 - 1/3) / (1 - 1/3) = (3/12) / (2/3) = 0.375
# precision = 3/5, 2/4, 1/1
# F1        = 2*.6*.75/1.35 = 2/3,  2*.5*.5/1 = 1/2,  2*1*.5/1.5 = 2/3
# macro-F1  = (2/3 + 1/2 + 2/3) / 3 = 11/18
# weighted  = (4 * 2/3 + 4 * 1/2 + 2 * 2/3) / 10 = (8/3 + 2 + 4/3) / 10 = 0.6


def test_three_class_example_by_hand():
    m = multiclass_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["macro_f1"] == pytest.approx(11 / 18)
    assert m["weighted_f1"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx(0.375)
    assert m["per_class_accuracy"] == pytest.approx({"clear": 0.75, "cloudy": 0.5, "foggy": 0.5})
    assert m["confusion_matrix"] == [[3, 1, 0], [2, 2, 0], [0, 1, 1]]
    assert m["report"]["clear"] == pytest.approx({"precision": 0.6, "recall": 0.75, "f1-score": 2 / 3, "support": 4})
    assert m["report"]["foggy"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1-score": 2 / 3, "support": 2})
    assert set(m["report"]) == set(NAMES)  # per-class rows only; the averages are top-level keys


def test_values_are_plain_python_and_json_serialisable():
    m = multiclass_metrics(Y_TRUE, Y_PRED, NAMES)
    json.dumps(m, allow_nan=False)

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        else:
            assert x is None or type(x) in (int, float, str), type(x)

    walk(m)


def test_unlabelled_rows_are_ignored():
    # Same example plus three rows with label -1 and arbitrary predictions.
    y_true = np.concatenate([Y_TRUE, [-1, -1, -1]])
    y_pred = np.concatenate([Y_PRED, [2, 2, 0]])
    assert multiclass_metrics(y_true, y_pred, NAMES) == multiclass_metrics(Y_TRUE, Y_PRED, NAMES)


def test_absent_class_keeps_its_row_and_column_and_is_not_in_macro_f1():
    # Classes c and d never occur (neither true nor predicted).
    # a: P = 1/1, R = 1/2 -> F1 = 2/3;  b: P = 2/3, R = 2/2 -> F1 = 0.8
    # macro-F1 over {a, b} = (2/3 + 0.8) / 2 = 11/15 (over all 4 classes it would be 11/30)
    # balanced: recalls 1/2, 1 -> 3/4; adjusted with K = 2 true classes: (3/4 - 1/2) / (1/2) = 0.5
    m = multiclass_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b", "c", "d"])
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": None, "d": None}
    assert m["macro_f1"] == pytest.approx(11 / 15)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["report"]["d"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}


def test_predicted_but_never_true_class_counts_in_macro_f1():
    # c is predicted once but never true: P = 0/1, R undefined -> F1 = 0 (zero_division=0).
    # a: P = 1/1, R = 1/2 -> 2/3;  b: P = 2/2, R = 2/2 -> 1
    # macro-F1 over {a, b, c} = (2/3 + 1 + 0) / 3 = 5/9
    m = multiclass_metrics(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx(5 / 9)
    assert m["confusion_matrix"][0] == [1, 0, 1]


def test_majority_class_predictor_has_zero_adjusted_balanced_accuracy():
    # Always "a": recalls 1, 0, 0 -> balanced 1/3 = chance for K = 3 -> adjusted 0,
    # although plain accuracy is 3/5.
    m = multiclass_metrics(np.array([0, 0, 0, 1, 2]), np.zeros(5, dtype=int), ["a", "b", "c"])
    assert m["balanced_accuracy"] == pytest.approx(0.0, abs=1e-12)
    assert m["accuracy"] == pytest.approx(0.6)


def test_perfect_predictions():
    y = np.array([0, 1, 2, 2])
    m = multiclass_metrics(y, y, NAMES)
    assert m["accuracy"] == m["macro_f1"] == m["weighted_f1"] == pytest.approx(1.0)
    assert m["balanced_accuracy"] == pytest.approx(1.0)


def test_single_true_class_has_undefined_balanced_accuracy():
    # Chance level is 1/1 = 1, so (b - 1) / (1 - 1) is undefined (scikit-learn gives -inf).
    m = multiclass_metrics(np.array([1, 1, 1]), np.array([1, 0, 1]), NAMES)
    assert m["balanced_accuracy"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("y_true, y_pred", [
    (np.array([], dtype=int), np.array([], dtype=int)),
    (np.array([-1, -1]), np.array([0, 1])),
])
def test_nothing_labelled_is_a_clear_error(y_true, y_pred):
    with pytest.raises(ValueError, match="No labelled rows"):
        multiclass_metrics(y_true, y_pred, NAMES)


@pytest.mark.parametrize("y_true, y_pred, message", [
    (np.array([0, 1]), np.array([0]), "same length"),
    (np.array([0, 3]), np.array([0, 1]), "label id 3 is outside"),
    (np.array([0, 1]), np.array([0, -1]), "prediction id -1 is outside"),
    (np.array([0.0, 1.5]), np.array([0, 1]), "integer class ids"),
])
def test_bad_input_is_a_clear_error(y_true, y_pred, message):
    with pytest.raises(ClipAdaptError, match=message):
        multiclass_metrics(y_true, y_pred, NAMES)


def test_docstring_examples_run():
    assert doctest.testmod(classification).failed == 0


# ------------------------------------------------------------------ attributes
TASK = TaskSpec((
    Attribute("weather", tuple(NAMES)),
    Attribute("glare", ("no", "yes")),
))


def test_attribute_metrics_and_their_mean():
    # glare: 4 labelled rows (two -1 rows dropped), true [0, 0, 1, 1], pred [0, 0, 1, 0]
    #   accuracy 3/4; F1 no: P 2/3, R 1 -> 0.8; yes: P 1, R 1/2 -> 2/3; macro (0.8 + 2/3)/2 = 11/15
    #   weighted = (2 * 0.8 + 2 * 2/3) / 4 = 11/15; balanced (1 + 1/2)/2 = 3/4 -> adjusted 0.5
    glare_true = np.array([0, 0, 1, 1, -1, -1, -1, -1, -1, -1])
    glare_pred = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1, 1])
    labels = np.stack([Y_TRUE, glare_true], axis=1)
    preds = np.stack([Y_PRED, glare_pred], axis=1)
    m = attribute_metrics(labels, preds, TASK)
    assert list(m["attributes"]) == ["weather", "glare"]
    glare = m["attributes"]["glare"]
    assert glare["n"] == 4
    assert glare["accuracy"] == pytest.approx(0.75)
    assert glare["macro_f1"] == pytest.approx(11 / 15)
    # means of weather (example above) and glare
    assert m["mean"]["accuracy"] == pytest.approx((0.6 + 0.75) / 2)
    assert m["mean"]["macro_f1"] == pytest.approx((11 / 18 + 11 / 15) / 2)
    assert m["mean"]["weighted_f1"] == pytest.approx((0.6 + 11 / 15) / 2)
    assert m["mean"]["balanced_accuracy"] == pytest.approx((0.375 + 0.5) / 2)
    assert headline(m) == pytest.approx((11 / 18 + 11 / 15) / 2)
    assert headline(m, "accuracy") == pytest.approx(0.675)
    json.dumps(m, allow_nan=False)


def test_attribute_without_labels_is_reported_empty_and_left_out_of_the_mean():
    labels = np.stack([Y_TRUE, np.full(10, -1)], axis=1)
    preds = np.stack([Y_PRED, np.zeros(10, dtype=int)], axis=1)
    m = attribute_metrics(labels, preds, TASK)
    glare = m["attributes"]["glare"]
    assert glare["n"] == 0 and glare["macro_f1"] is None
    assert glare["confusion_matrix"] == [[0, 0], [0, 0]]
    assert m["mean"]["macro_f1"] == pytest.approx(11 / 18)  # weather alone


def test_attribute_metrics_rejects_wrong_shapes_and_all_unlabelled():
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        attribute_metrics(np.zeros((4, 3), dtype=int), np.zeros((4, 3), dtype=int), TASK)
    with pytest.raises(ValueError, match="No labelled rows for any attribute"):
        attribute_metrics(np.full((4, 2), -1), np.zeros((4, 2), dtype=int), TASK)


def test_headline_rejects_unknown_key():
    with pytest.raises(ValueError, match="macro_f1"):
        headline({"mean": {}}, "f2")


# ------------------------------------------------------------------ confusion matrices
def test_row_normalised_rows_sum_to_one_and_empty_rows_stay_zero():
    cm = np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    expected = np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    np.testing.assert_allclose(row_normalised(cm), expected)


def test_confusion_csv_counts_and_normalised(tmp_path):
    cm = [[3, 1], [0, 0]]
    write_confusion_csv(tmp_path / "counts.csv", cm, ["day", "dusk/dawn"], normalise=False)
    write_confusion_csv(tmp_path / "shares.csv", cm, ["day", "dusk/dawn"], normalise=True)
    with open(tmp_path / "counts.csv", newline="") as f:
        assert list(csv.reader(f)) == [["true\\predicted", "day", "dusk/dawn"], ["day", "3", "1"], ["dusk/dawn", "0", "0"]]
    with open(tmp_path / "shares.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [float(v) for v in rows[1][1:]] == [0.75, 0.25]
    assert [float(v) for v in rows[2][1:]] == [0.0, 0.0]
    with pytest.raises(ValueError, match="does not match"):
        write_confusion_csv(tmp_path / "bad.csv", cm, ["a", "b", "c"], normalise=False)

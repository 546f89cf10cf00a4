"""Mean ± sample std over seeds, with numbers worked out by hand."""

from __future__ import annotations

import doctest
import math

import pytest

import clipadapt.metrics.aggregate as aggregate
from clipadapt.metrics import aggregate_seeds, format_mean_std


def test_mean_and_sample_std_of_nested_leaves():
    runs = [
        {"mean": {"macro_f1": 0.80}, "attributes": {"weather": {"macro_f1": 0.70, "n": 10}}, "loss": 1.0},
        {"mean": {"macro_f1": 0.84}, "attributes": {"weather": {"macro_f1": 0.74, "n": 10}}, "loss": 2.0},
        {"mean": {"macro_f1": 0.88}, "attributes": {"weather": {"macro_f1": 0.78, "n": 10}}, "loss": 6.0},
    ]
    s = aggregate_seeds(runs)
    # 0.80, 0.84, 0.88: mean 0.84; deviations -0.04, 0, 0.04 -> sum sq 0.0032 / (3 - 1) = 0.0016 -> std 0.04
    assert s["mean"]["macro_f1"]["mean"] == pytest.approx(0.84)
    assert s["mean"]["macro_f1"]["std"] == pytest.approx(0.04)
    assert s["mean"]["macro_f1"]["n"] == 3
    assert s["attributes"]["weather"]["macro_f1"]["mean"] == pytest.approx(0.74)
    assert s["attributes"]["weather"]["macro_f1"]["std"] == pytest.approx(0.04)
    assert s["attributes"]["weather"]["n"] == {"mean": 10.0, "std": 0.0, "n": 3}
    # 1, 2, 6: mean 3; deviations -2, -1, 3 -> 14 / 2 = 7 -> std sqrt(7)
    assert s["loss"]["mean"] == pytest.approx(3.0)
    assert s["loss"]["std"] == pytest.approx(math.sqrt(7))


def test_only_leaves_numeric_in_every_run_are_kept():
    runs = [
        {"a": 1.0, "b": 2.0, "c": None, "cm": [[1, 0], [0, 1]], "flag": True, "sub": {"x": "s"}},
        {"a": 3.0, "c": 0.5, "cm": [[1, 0], [0, 1]], "flag": False, "sub": {"x": "t"}},
    ]
    s = aggregate_seeds(runs)
    # a: mean 2, deviations -1, 1 -> 2 / 1 -> std sqrt(2); b missing from run 2; c is None in run 1;
    # confusion matrices, flags and strings are not metrics; "sub" has no numeric leaf left.
    assert s == {"a": {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "n": 2}}


def test_one_run_has_zero_std():
    assert aggregate_seeds([{"accuracy": 0.9}]) == {"accuracy": {"mean": 0.9, "std": 0.0, "n": 1}}


def test_no_runs_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        aggregate_seeds([])


def test_format_mean_std():
    assert format_mean_std(0.8512, 0.0031) == "85.12 ± 0.31"
    assert format_mean_std(0.5, 0.0, digits=1) == "50.0 ± 0.0"
    assert format_mean_std(3.14159, 0.01, digits=3, percent=False) == "3.142 ± 0.010"
    assert format_mean_std(None, None) == "n/a"


def test_docstring_examples_run():
    assert doctest.testmod(aggregate).failed == 0

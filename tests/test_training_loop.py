"""The shared loop's helpers: which epoch a run keeps and when it stops (Selection), and
the one optimiser step (apply_gradients)."""

import math

import pytest
import torch

from clipadapt.engine.loop import LOSS_MIN_DELTA, EpochTotals, Selection, apply_gradients


def test_a_tied_score_goes_to_the_lower_validation_loss():
    selection = Selection(patience=3)
    assert selection.update(1, 0.5, val_loss=1.0)
    assert not selection.update(2, 0.5, val_loss=1.2)  # same score, higher loss: not kept
    assert selection.update(3, 0.5, val_loss=0.9)  # same score, lower loss: kept
    assert (selection.best_epoch, selection.best_score) == (3, 0.5)


def test_patience_is_spent_only_when_neither_score_nor_loss_improved():
    selection = Selection(patience=2)
    selection.update(1, 0.5, val_loss=1.0)
    for epoch, loss in ((2, 0.9), (3, 0.8), (4, 0.7)):  # flat score, falling loss: never stops
        selection.update(epoch, 0.4, val_loss=loss)
        assert selection.patience_left == 2 and not selection.exhausted
    selection.update(5, 0.4, val_loss=0.7 * (1 - LOSS_MIN_DELTA / 2))  # within float noise: no improvement
    selection.update(6, 0.4, val_loss=0.75)
    assert selection.exhausted and selection.best_epoch == 1


def test_restore_continues_from_a_resumed_history():
    history = [{"val_loss": 1.0}, {"val_loss": 0.6}, {"val_loss": 0.8}]
    selection = Selection(patience=4)
    selection.restore(history, best_epoch=2, best_score=0.7, patience_left=3)
    assert (selection.lowest_loss, selection.chosen_loss, selection.patience_left) == (0.6, 0.6, 3)
    assert not selection.update(4, 0.7, val_loss=0.65)  # a tie, but not below the kept epoch's loss
    assert selection.patience_left == 2


def test_without_patience_the_run_never_stops_and_keeps_its_best():
    selection = Selection(patience=None)
    for epoch in range(1, 20):
        selection.update(epoch, -epoch)  # worse every epoch
    assert not selection.exhausted and selection.best_epoch == 1 and selection.lowest_loss == math.inf


def test_apply_gradients_clips_the_global_norm_before_the_step():
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    apply_gradients(optimizer, (weight * torch.tensor([30.0, 40.0, 0.0])).sum(), [weight], grad_clip=1.0)
    assert torch.allclose(weight.detach(), torch.tensor([-0.6, -0.8, 0.0]), atol=1e-6)  # gradient norm 50 -> 1


def test_epoch_totals_average_the_parts_over_batches():
    totals = EpochTotals(epoch=0)
    totals.add(2.0, {"ce": 1.0})
    totals.add(4.0, {"ce": 3.0, "fair": 1.0})
    assert (totals.mean(), totals.mean("ce"), totals.mean("fair"), totals.batches) == (3.0, 2.0, 0.5, 2)


def test_calibration_scores_are_printed_but_never_select():
    from clipadapt.errors import ClipAdaptError
    from clipadapt.metrics.table import METRICS, MONITORS, resolve_monitor

    assert {"ece", "nll"} <= set(METRICS) and not {"ece", "nll"} & set(MONITORS)
    with pytest.raises(ClipAdaptError, match="not a score runs are selected on"):
        resolve_monitor("ece", multilabel=False)

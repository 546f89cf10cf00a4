"""Did a training run learn anything? Read from its history after the last epoch.

A run that did not learn still writes a checkpoint and test metrics that look like any
other run's; these checks turn it into a warning (terminal), a flag (metrics.json and
card.json: "no_progress") and a banner (report.html).
"""

from __future__ import annotations

# A loss "did not move" when its range over the epochs is under 0.1% of its first value.
# A run whose logits cannot change (classes with the same text embedding) repeats ln K to
# the last digit; a learning run moves by tens of percent. The validation loss (the same
# images every epoch) is checked too: the training loss of a run that barely moves still
# wanders by ~0.3% with the batches' composition (measured: lr 1e-7 on the photo test set,
# while its validation loss stayed within 2e-6).
STILL_LOSS = 1e-3
# The selected epoch is "at chance" when its adjusted balanced accuracy on validation
# (0 = chance, 1 = perfect; the mean over attributes, binary ones included) is at most
# this: under 5% of the way from chance to perfect, which a few dozen validation images
# cannot tell from chance.
CHANCE_BALANCED_ACCURACY = 0.05


def no_progress_reasons(history: list[dict], best_epoch: int) -> list[str]:
    """Why the run counts as not having learned (empty list: it learned)."""
    reasons = []
    for key, name in (("train_loss", "training"), ("val_loss", "validation")):
        losses = [row[key] for row in history if isinstance(row.get(key), (int, float))]
        if len(losses) >= 2 and max(losses) - min(losses) <= STILL_LOSS * max(abs(losses[0]), 1e-12):
            reasons.append(f"the {name} loss did not move over {len(losses)} epochs (it stayed at {losses[0]:.4f})")
            break
    if 1 <= best_epoch <= len(history):
        chosen = history[best_epoch - 1].get("val_balanced_accuracy")
        if isinstance(chosen, (int, float)) and chosen <= CHANCE_BALANCED_ACCURACY:
            reasons.append(f"the selected epoch {best_epoch} is at chance on validation (balanced accuracy "
                           f"{chosen:.3f}, where 0 is chance)")
    return reasons


def no_progress_message(method_name: str, reasons: list[str]) -> str:
    """One line for the terminal, metrics.json, the card and the report banner."""
    return (f"{method_name} did not learn: {'; '.join(reasons)}. Its checkpoint and test scores are those of an "
            "untrained model. Check that the classes are told apart (their prompts, or use linear_probe), raise "
            "train.lr or train.epochs, or lower train.batch_size for more steps per epoch (history.json and "
            "curves.png show each epoch).")

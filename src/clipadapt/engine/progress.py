"""Did a training run learn anything? Read from its history after the last epoch.

A run that did not learn still writes a checkpoint and test metrics that look like any
other run's; these checks turn it into a warning (terminal), a flag (metrics.json and
card.json: "no_progress") and a banner (report.html).

"no_progress" reads the training history, which a run that does not train (zero-shot,
majority, train.epochs 0) has not got. "at_chance" reads the selected model's scores on
validation (test without a validation split) and is set for every run, trained or not: a
trained run at chance on validation has both flags and one warning (its "did not learn"
line); a zero-shot run at chance has "at_chance" alone. A method that neither trains nor
reads class names (majority) is at chance by construction: the flag is recorded, with no
warning.
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


def _reads_class_names(method) -> bool:
    """Whether `method` builds its classifier from the class names (methods.text_check)."""
    from clipadapt.methods.text_check import reads_class_names  # the engine reaches methods on use only

    return reads_class_names(method)


def _advice(method, trained: bool) -> str:
    """What to try, fitted to what the method is: only a method that reads class names is
    told about its prompts (and about a method that does not read them); only a method that
    trains is told about train.*."""
    names = _reads_class_names(method)
    prompts = ("check that the classes' prompts name what the images show in words the backbone knows "
               "(data.class_words, data.templates)")
    if not method.trains:  # zero-shot: nothing to tune but its prompts, or a method that learns
        return f"{prompts}, or train a method on the images (e.g. method.name=linear_probe or mhadapter)"
    first = (f"{prompts}, or use a method that does not read class names (method.name=linear_probe)" if names
             else "check that the labels match the images")
    if not trained:
        return f"{first}; train it (train.epochs above 0)"
    return (f"{first}; raise train.lr or train.epochs, or lower train.batch_size for more steps per epoch "
            "(history.json and curves.png show each epoch)")


def no_progress_message(method, reasons: list[str]) -> str:
    """One line for the terminal, metrics.json, the card and the report banner."""
    return (f"{method.name} did not learn: {'; '.join(reasons)}. Its checkpoint and test scores are those of an "
            f"untrained model. What to try: {_advice(method, trained=True)}.")


def chance_by_construction(method) -> bool:
    """A method that neither trains nor reads class names (majority) cannot tell the images'
    classes apart: its being at chance is what it is for, not a warning."""
    return not method.trains and not _reads_class_names(method)


def at_chance_reason(balanced_accuracy, split: str) -> str | None:
    """Why the selected result counts as at chance on `split` (None: it does not, or there is
    no score). `balanced_accuracy`: chance-adjusted, the mean over attributes."""
    if isinstance(balanced_accuracy, (int, float)) and balanced_accuracy <= CHANCE_BALANCED_ACCURACY:
        return (f"its selected result is at chance on {split} (balanced accuracy {balanced_accuracy:.3f}, where 0 is "
                "chance and 1 perfect)")
    return None


def at_chance_message(method, reason: str, trained: bool) -> str:
    """One line for a run at chance that `no_progress_message` did not already explain
    (zero-shot, train.epochs 0, a trained run without a validation split)."""
    return (f"{method.name} is no better than chance: {reason}. Its predictions are as good as always answering the "
            f"same class. What to try: {_advice(method, trained)}.")


def selected_balanced_accuracy(history: list[dict], best_epoch: int, evaluate_val,
                               test_metrics: dict | None) -> tuple[float | None, str]:
    """The selected model's chance-adjusted balanced accuracy and the split it was read on:
    validation (the selected epoch's row; `evaluate_val()` for a run without epochs, which
    returns None when there is no validation split), else test."""
    chosen = history[best_epoch - 1] if 1 <= best_epoch <= len(history) else {}
    if "val_balanced_accuracy" in chosen:
        return chosen["val_balanced_accuracy"], "validation"
    val = evaluate_val() if not chosen else None  # a trained run without validation rows has no split to read
    if val is not None:
        return val["mean"].get("balanced_accuracy"), "validation"
    if test_metrics is not None:
        return test_metrics["mean"].get("balanced_accuracy"), "test"
    return None, "test"


def chance_check(method, score, split: str, no_progress: list[str], trained: bool) -> tuple[bool, str | None]:
    """The run's "at_chance" flag and the warning it still needs (None when it is not at
    chance, when the "did not learn" line already says so, or when the method is at chance
    by construction)."""
    reason = at_chance_reason(score, split)
    if reason is None:
        return False, None
    if no_progress or chance_by_construction(method):
        return True, None
    return True, at_chance_message(method, reason, trained)
